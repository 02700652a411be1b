"""The editor's tools: the document analysis behind `netdsl lsp`, the formatter and the lexer; no torch."""
