"""`netdsl lsp`: the language server over stdio (or `--tcp HOST:PORT`); needs the `lsp` extra
(`pip install 'netdsl[lsp]'`). pygls is imported when the server starts, so `netdsl --help` stays fast."""
from __future__ import annotations

import argparse

from netdsl.errors import NetdslError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("A Language Server Protocol server for .net specs: diagnostics as you type, hover with shapes "
                     "and counts, definitions, references, rename, completion, symbols, inlay hints, formatting.")
    p.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default; editors often pass it)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP port instead of stdio")
    p.add_argument("--debounce", type=float, default=0.2, metavar="SECONDS",
                   help="wait this long after the last change before checking a document (default 0.2)")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NetdslError(f"--tcp {text!r} is not HOST:PORT", hint="e.g. --tcp 127.0.0.1:2087")
    return host, int(port)


def run(args: argparse.Namespace) -> int:
    tcp = _address(args.tcp) if args.tcp else None
    if not 0 <= args.debounce <= 10:
        raise NetdslError(f"--debounce {args.debounce} is out of range", hint="give seconds between 0 and 10")
    try:
        from netdsl.editor.server import serve
    except ImportError as e:
        raise NetdslError(f"the language server needs pygls: {e}", hint="pip install 'netdsl[lsp]'") from None
    serve(tcp, args.debounce)
    return 0
