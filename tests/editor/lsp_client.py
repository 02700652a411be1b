"""A client that drives `netdsl lsp` in a subprocess as an editor does (pygls's own client), for the
end-to-end tests and bench/bench_lsp.py."""
from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from lsprotocol import types as t
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parents[2]


class Client(LanguageClient):
    """Keeps every publishDiagnostics (with its arrival time) and every window message."""

    def __init__(self) -> None:
        super().__init__("netdsl-test", "1")
        self.diagnostics: dict[str, list[tuple[float, t.PublishDiagnosticsParams]]] = {}
        self.messages: list[str] = []
        self.arrived = asyncio.Condition()

        @self.feature(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        async def _diagnostics(params: t.PublishDiagnosticsParams) -> None:
            async with self.arrived:
                self.diagnostics.setdefault(params.uri, []).append((time.perf_counter(), params))
                self.arrived.notify_all()

        @self.feature(t.WINDOW_LOG_MESSAGE)
        def _log(params: t.LogMessageParams) -> None:
            self.messages.append(params.message)

        @self.feature(t.WINDOW_SHOW_MESSAGE)
        def _show(params: t.ShowMessageParams) -> None:
            self.messages.append(params.message)

    async def published(self, uri: str, version: int | None, timeout: float = 30) -> tuple[float, list[t.Diagnostic]]:
        """The first diagnostics published for `uri` at `version` (any version: None), and when."""
        def found() -> tuple[float, t.PublishDiagnosticsParams] | None:
            return next((x for x in self.diagnostics.get(uri, []) if version is None or x[1].version == version), None)
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(found), timeout)
        hit = found()
        assert hit is not None
        return hit[0], list(hit[1].diagnostics)

    def open(self, uri: str, text: str, version: int = 1) -> None:
        self.text_document_did_open(t.DidOpenTextDocumentParams(t.TextDocumentItem(uri, "netdsl", version, text)))

    def change(self, uri: str, text: str, version: int) -> None:
        self.text_document_did_change(t.DidChangeTextDocumentParams(
            t.VersionedTextDocumentIdentifier(version=version, uri=uri), [t.TextDocumentContentChangeWholeDocument(text)]))


@asynccontextmanager
async def started(options: dict[str, Any] | None = None, debounce: float | None = None) -> AsyncIterator[Client]:
    """`python -m netdsl.cli lsp` started, initialized, and shut down at the end."""
    client = Client()
    extra = ["--debounce", str(debounce)] if debounce is not None else []
    await client.start_io(sys.executable, "-m", "netdsl.cli", "lsp", *extra, cwd=str(ROOT))
    await client.initialize_async(t.InitializeParams(capabilities=t.ClientCapabilities(), root_uri=ROOT.as_uri(),
                                                     initialization_options=options))
    client.initialized(t.InitializedParams())
    try:
        yield client
    finally:
        try:
            await asyncio.wait_for(client.shutdown_async(None), 10)
            client.exit(None)
        finally:
            await asyncio.wait_for(client.stop(), 10)


def uri_of(path: str) -> str:
    return (ROOT / path).as_uri()
