"""`netdsl lsp`: the language server (pygls). The only module that imports pygls.

Diagnostics are published ~200 ms after the last change, from an analysis run in one worker thread
(every SymPy computation, hover's included, runs there, one at a time); a result for a version the
editor has moved past is dropped. Nothing here runs a spec or imports torch.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from lsprotocol import types as t
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from netdsl.editor import complete as completion
from netdsl.editor import hover as hovering
from netdsl.editor import navigate, outline
from netdsl.editor.checked import Checked, check
from netdsl.editor.document import Definition, Diagnostic, DocumentAnalysis
from netdsl.editor.positions import lsp_position, span_range, text_lines
from netdsl.errors import NetdslError, Span

DEBOUNCE_S = 0.2
SEVERITY = {"error": t.DiagnosticSeverity.Error, "warning": t.DiagnosticSeverity.Warning,
            "information": t.DiagnosticSeverity.Information}
SYMBOL_KIND = {"param": t.SymbolKind.Constant, "input": t.SymbolKind.Variable, "block": t.SymbolKind.Function,
               "statement": t.SymbolKind.Variable, "learned": t.SymbolKind.Field}
ITEM_KIND = {"op": t.CompletionItemKind.Function, "block": t.CompletionItemKind.Module,
             "tensor": t.CompletionItemKind.Variable, "param": t.CompletionItemKind.Constant,
             "attribute": t.CompletionItemKind.Property, "argument": t.CompletionItemKind.Field}
R = TypeVar("R")
log = logging.getLogger("netdsl.lsp")


def to_range(lines: list[str], span: Span) -> t.Range:
    (sl, sc), (el, ec) = span_range(lines, span)
    return t.Range(t.Position(sl, sc), t.Position(el, ec))


def to_diagnostic(lines: list[str], d: Diagnostic) -> t.Diagnostic:
    """An LSP diagnostic: notes and the hint follow the message, as the command line prints them."""
    message = "\n".join([d.message, *(f"note: {n}" for n in d.notes), *([f"hint: {d.hint}"] if d.hint else [])])
    return t.Diagnostic(range=to_range(lines, d.span), message=message, severity=SEVERITY[d.severity], source="netdsl")


def _version() -> str:
    """netdsl's installed version (the package's `__version__` lives a layer above the editor)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("netdsl")
    except PackageNotFoundError:
        return "unknown"


class NetdslServer(LanguageServer):
    """The server's state: the latest analysis of each open document (for its exact text) and the
    last one that had names (completion reads it while the text does not parse)."""

    def __init__(self, debounce: float = DEBOUNCE_S) -> None:
        super().__init__("netdsl", _version())
        self.debounce = debounce
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netdsl-analysis")
        self.analyses: dict[str, DocumentAnalysis] = {}
        self.named: dict[str, DocumentAnalysis] = {}
        self.pending: dict[str, asyncio.Task[None]] = {}
        self.running: dict[str, tuple[str, asyncio.Future[Checked]]] = {}  # the analysis in the worker, by text
        self.inlay_hints = False

    async def in_worker(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    def log(self, message: str, kind: t.MessageType = t.MessageType.Log) -> None:
        self.window_log_message(t.LogMessageParams(type=kind, message=message))

    async def analysis(self, uri: str) -> DocumentAnalysis:
        """The analysis of the document's current text: the cached one, or a new one."""
        doc = self.workspace.get_text_document(uri)
        text = doc.source
        cached = self.analyses.get(uri)
        if cached is not None and cached.text == text:
            return cached
        running = self.running.get(uri)
        if running is None or running[0] != text:  # a hover during the diagnostics' run waits for that run
            running = (text, asyncio.ensure_future(self.in_worker(check, text, doc.path)))
            self.running[uri] = running
        checked = await asyncio.shield(running[1])
        if self.running.get(uri) is running:
            del self.running[uri]
        if checked.crash:
            self.log(f"netdsl: the analysis of {uri} failed:\n{checked.crash}", t.MessageType.Error)
        self.analyses[uri] = checked.analysis
        if checked.analysis.spec is not None or checked.analysis.definitions:
            self.named[uri] = checked.analysis
        return checked.analysis

    def schedule(self, uri: str, delay: float) -> None:
        """Analyse and publish after `delay` seconds unless another change comes first."""
        old = self.pending.pop(uri, None)
        if old is not None:
            old.cancel()
        self.pending[uri] = asyncio.get_running_loop().create_task(self._publish(uri, delay))

    async def _publish(self, uri: str, delay: float) -> None:
        await asyncio.sleep(delay)
        doc = self.workspace.get_text_document(uri)
        version, text = doc.version, doc.source
        try:
            an = await self.analysis(uri)
        except Exception:  # the worker itself failed: log it, keep serving
            self.log(f"netdsl: analysis failed:\n{traceback.format_exc()}", t.MessageType.Error)
            return
        now = self.workspace.text_documents.get(uri)
        if now is None or now.version != version or an.text != text:
            return  # the document changed (or closed) meanwhile: its own run publishes
        lines = text_lines(text)
        self.text_document_publish_diagnostics(t.PublishDiagnosticsParams(
            uri=uri, version=version, diagnostics=[to_diagnostic(lines, d) for d in an.diagnostics]))

    def forget(self, uri: str) -> None:
        task = self.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        self.analyses.pop(uri, None)
        self.named.pop(uri, None)
        self.running.pop(uri, None)


server = NetdslServer()


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A feature that fails answers nothing and logs why, and the server goes on; a user's mistake
    (NetdslError: a bad new name) is the request's error message."""
    @functools.wraps(fn)
    async def run(ls: NetdslServer, params: Any) -> Any:
        try:
            return await fn(ls, params)
        except NetdslError as e:
            raise JsonRpcInvalidParams(e.message + (f" ({e.hint})" if e.hint else "")) from None
        except Exception:
            ls.log(f"netdsl: {fn.__name__} failed:\n{traceback.format_exc()}", t.MessageType.Error)
            return None
    return run


@server.feature(t.INITIALIZE)
def initialize(ls: NetdslServer, params: t.InitializeParams) -> None:
    options = params.initialization_options
    if isinstance(options, dict):
        ls.inlay_hints = bool(options.get("inlayHints", False))


def _take_settings(ls: NetdslServer, settings: Any) -> bool:
    """Apply `{"netdsl": {"inlayHints": ...}}` (or the section alone); whether it held the setting."""
    section = settings.get("netdsl", settings) if isinstance(settings, dict) else None
    if isinstance(section, dict) and "inlayHints" in section:
        ls.inlay_hints = bool(section["inlayHints"])
        return True
    return False


@server.feature(t.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def did_change_configuration(ls: NetdslServer, params: t.DidChangeConfigurationParams) -> None:
    if _take_settings(ls, params.settings):
        return
    # Clients of the pull model send no settings: ask for the section, where the client offers that.
    workspace = ls.client_capabilities.workspace
    if workspace is None or not workspace.configuration:
        return
    try:
        got = await ls.workspace_configuration_async(t.ConfigurationParams([t.ConfigurationItem(section="netdsl")]))
        if got:
            _take_settings(ls, got[0])
    except Exception as e:  # an unanswered request is no reason to stop
        ls.log(f"netdsl: workspace/configuration failed: {e}")


@server.feature(t.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: NetdslServer, params: t.DidOpenTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, 0)


@server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: NetdslServer, params: t.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, ls.debounce)


@server.feature(t.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: NetdslServer, params: t.DidSaveTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, 0)


@server.feature(t.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: NetdslServer, params: t.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.forget(uri)
    ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


def _where(ls: NetdslServer, uri: str, pos: t.Position) -> tuple[list[str], int, int]:
    lines = text_lines(ls.workspace.get_text_document(uri).source)
    line, column = lsp_position(lines, pos.line, pos.character)
    return lines, line, column


@server.feature(t.TEXT_DOCUMENT_HOVER)
@guarded
async def hover(ls: NetdslServer, params: t.HoverParams) -> t.Hover | None:
    an = await ls.analysis(params.text_document.uri)
    _, line, column = _where(ls, params.text_document.uri, params.position)
    text = await ls.in_worker(hovering.hover, an, line, column)
    return None if text is None else t.Hover(t.MarkupContent(t.MarkupKind.Markdown, text))


async def _target(ls: NetdslServer, uri: str, pos: t.Position) -> tuple[DocumentAnalysis, list[str], Definition | None]:
    """The analysis, the text's lines and the definition of the name under the cursor (if any)."""
    an = await ls.analysis(uri)
    lines, line, column = _where(ls, uri, pos)
    return an, lines, navigate.definition_at(an, line, column)


@server.feature(t.TEXT_DOCUMENT_DEFINITION)
@guarded
async def definition(ls: NetdslServer, params: t.DefinitionParams) -> t.Location | None:
    _, lines, d = await _target(ls, params.text_document.uri, params.position)
    return None if d is None else t.Location(params.text_document.uri, to_range(lines, d.span))


@server.feature(t.TEXT_DOCUMENT_REFERENCES)
@guarded
async def references(ls: NetdslServer, params: t.ReferenceParams) -> list[t.Location] | None:
    an, lines, d = await _target(ls, params.text_document.uri, params.position)
    if d is None:
        return None
    spans = navigate.references(an, d, params.context.include_declaration)
    return [t.Location(params.text_document.uri, to_range(lines, s)) for s in spans]


@server.feature(t.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT)
@guarded
async def highlight(ls: NetdslServer, params: t.DocumentHighlightParams) -> list[t.DocumentHighlight] | None:
    an, lines, d = await _target(ls, params.text_document.uri, params.position)
    if d is None:
        return None
    return [t.DocumentHighlight(to_range(lines, d.span), t.DocumentHighlightKind.Write)] + \
        [t.DocumentHighlight(to_range(lines, s), t.DocumentHighlightKind.Read) for s in an.uses(d)]


@server.feature(t.TEXT_DOCUMENT_PREPARE_RENAME)
@guarded
async def prepare_rename(ls: NetdslServer, params: t.PrepareRenameParams) -> t.Range | None:
    an = await ls.analysis(params.text_document.uri)
    lines, line, column = _where(ls, params.text_document.uri, params.position)
    found = an.name_at(line, column)
    if found is None:
        raise NetdslError("only a name defined in this spec can be renamed (not an op or a keyword)", None,
                          "put the cursor on a tensor, block or parameter name")
    return to_range(lines, found.span)


@server.feature(t.TEXT_DOCUMENT_RENAME)
@guarded
async def rename(ls: NetdslServer, params: t.RenameParams) -> t.WorkspaceEdit | None:
    uri = params.text_document.uri
    an = await ls.analysis(uri)
    lines, line, column = _where(ls, uri, params.position)
    spans = navigate.rename_spans(an, line, column, params.new_name)
    return t.WorkspaceEdit(changes={uri: [t.TextEdit(to_range(lines, s), params.new_name) for s in spans]})


@server.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=[">", "@", "(", ",", " "]))
@guarded
async def complete(ls: NetdslServer, params: t.CompletionParams) -> t.CompletionList:
    uri = params.text_document.uri
    lines, line, column = _where(ls, uri, params.position)
    text = lines[line - 1] if line <= len(lines) else ""
    an = ls.named.get(uri)  # the last analysis with names: the text may not parse while typed
    items = [t.CompletionItem(
        label=i.label, kind=ITEM_KIND[i.kind], detail=i.detail or None,
        documentation=t.MarkupContent(t.MarkupKind.Markdown, i.documentation) if i.documentation else None,
        insert_text=i.snippet, insert_text_format=t.InsertTextFormat.Snippet if i.snippet else None)
        for i in completion.complete(an, text, line, column)]
    return t.CompletionList(is_incomplete=False, items=items)


def _symbol(lines: list[str], s: outline.Symbol) -> t.DocumentSymbol:
    whole = to_range(lines, s.span)
    name = to_range(lines, s.name_span)
    inside = (whole.start.line, whole.start.character) <= (name.start.line, name.start.character) and \
        (name.end.line, name.end.character) <= (whole.end.line, whole.end.character)
    return t.DocumentSymbol(name=s.name, kind=SYMBOL_KIND[s.kind], range=whole, selection_range=name if inside else whole,
                            detail=s.detail or None, children=[_symbol(lines, k) for k in s.children])


@server.feature(t.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
@guarded
async def document_symbols(ls: NetdslServer, params: t.DocumentSymbolParams) -> list[t.DocumentSymbol]:
    an = await ls.analysis(params.text_document.uri)
    lines = text_lines(an.text)
    return [_symbol(lines, s) for s in outline.symbols(an)]


@server.feature(t.TEXT_DOCUMENT_INLAY_HINT)
@guarded
async def inlay_hints(ls: NetdslServer, params: t.InlayHintParams) -> list[t.InlayHint]:
    if not ls.inlay_hints:
        return []
    an = await ls.analysis(params.text_document.uri)
    lines = text_lines(an.text)
    first, last = params.range.start.line + 1, params.range.end.line + 1
    out = []
    for line, column, label in outline.inlay_hints(an):
        if first <= line <= last:
            (pl, pc), _ = span_range(lines, Span(line, column, line, column))
            out.append(t.InlayHint(position=t.Position(pl, pc), label=label, kind=t.InlayHintKind.Type))
    return out


def full_range(text: str) -> t.Range:
    """The whole document, however it ends."""
    lines = text.split("\n")
    return t.Range(t.Position(0, 0), t.Position(len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2))


@server.feature(t.TEXT_DOCUMENT_FORMATTING)
@guarded
async def formatting(ls: NetdslServer, params: t.DocumentFormattingParams) -> list[t.TextEdit] | None:
    text = ls.workspace.get_text_document(params.text_document.uri).source
    try:
        from netdsl.editor.format import format_text

        formatted = await ls.in_worker(format_text, text)
    except NetdslError as e:
        where = f" (line {e.span.line})" if e.span else ""
        ls.window_show_message(t.ShowMessageParams(t.MessageType.Warning, f"netdsl: not formatted: {e.message}{where}"))
        return None
    except ImportError:
        ls.window_show_message(t.ShowMessageParams(t.MessageType.Warning, "netdsl: this version has no formatter"))
        return None
    return [] if formatted == text else [t.TextEdit(full_range(text), formatted)]


@server.feature("netdsl/status")
def status(ls: NetdslServer, params: Any) -> dict[str, Any]:
    """For tests and bug reports: what the server holds, and that torch was never imported."""
    return {"torch": "torch" in sys.modules, "documents": sorted(ls.analyses), "inlayHints": ls.inlay_hints}


def serve(tcp: tuple[str, int] | None = None, debounce: float = DEBOUNCE_S) -> None:
    """Run the server over stdio (or TCP) until the client says exit."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    server.debounce = debounce
    if tcp is not None:
        server.start_tcp(*tcp)
        return
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the protocol's channel
    server.start_io(stdin, stdout)
