"""`netdsl lsp` end to end: a real client (pygls's) drives the server in a subprocess over stdio."""
from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types as t

from lsp_client import ROOT, Client, started, uri_of
from netdsl.editor import checked
from netdsl.editor.format import format_text

LIMIT_S = 150  # a scenario that hangs (a request never answered) fails instead of blocking the run
UNET = (ROOT / "specs/unet.net").read_text()
THREE_ERRORS = """net N(C = 4)
input x: [3, H = 8, W = 8]
a = x |> conv(C, 3, padding=1) -> bogus
b = x |> conv(C, 3, stride=0)
d = missing |> relu
output = cat(x, x) |> relu
"""


def doc(uri: str) -> t.TextDocumentIdentifier:
    return t.TextDocumentIdentifier(uri)


def column(text: str, line: int, word: str) -> int:
    """The 0-based UTF-16 column of `word` on a 1-based line (ASCII specs)."""
    return text.split("\n")[line - 1].index(word)


async def _edit_cycle(c: Client) -> None:
    uri = uri_of("specs/unet.net")
    broken = UNET.replace("|> down(NF)", "|> dwn(NF)")
    c.open(uri, broken)
    _, diags = await c.published(uri, 1)
    [bad] = [d for d in diags if "unknown op or block 'dwn'" in d.message]
    assert bad.range.start.line == 9 and bad.range.start.character == column(broken, 10, "dwn")
    assert bad.range.end.character == column(broken, 10, "dwn") + 3 and bad.source == "netdsl"
    assert bad.severity == t.DiagnosticSeverity.Error and "hint: did you mean 'down'?" in bad.message
    c.change(uri, UNET, 2)
    _, diags = await c.published(uri, 2)
    assert diags == []

    h = await c.text_document_hover_async(t.HoverParams(doc(uri), t.Position(10, column(UNET, 11, "sequence2"))))
    assert h is not None and isinstance(h.contents, t.MarkupContent)
    assert "sequence2: [2*NF, H/4, W/4] = 64×8×8" in h.contents.value

    where = t.Position(12, column(UNET, 13, "sequence1"))
    d = await c.text_document_definition_async(t.DefinitionParams(doc(uri), where))
    assert isinstance(d, t.Location) and d.range.start.line == 9 and d.range.start.character == 0
    asked = t.ReferenceParams(context=t.ReferenceContext(False), text_document=doc(uri), position=where)
    refs = await c.text_document_references_async(asked)
    assert refs is not None and sorted(r.range.start.line for r in refs) == [10, 12]
    edit = await c.text_document_rename_async(t.RenameParams(doc(uri), where, "first"))
    assert edit is not None and edit.changes is not None and len(edit.changes[uri]) == 3
    with pytest.raises(Exception, match="already defined"):
        await c.text_document_rename_async(t.RenameParams(doc(uri), where, "sequence2"))

    symbols = await c.text_document_document_symbol_async(t.DocumentSymbolParams(doc(uri)))
    assert symbols is not None and "sequence2" in [s.name for s in symbols]
    whole = t.Range(t.Position(0, 0), t.Position(20, 0))
    assert not await c.text_document_inlay_hint_async(t.InlayHintParams(doc(uri), whole))  # off by default
    c.workspace_did_change_configuration(t.DidChangeConfigurationParams({"netdsl": {"inlayHints": True}}))
    hints = await c.text_document_inlay_hint_async(t.InlayHintParams(doc(uri), whole))
    assert hints is not None and "  [64, 8, 8]" in [h.label for h in hints]

    typing = UNET + "z = sequence4 |> "  # does not parse: completion reads the last analysis and the line
    c.change(uri, typing, 3)
    last = len(typing.split("\n")) - 1
    items = await c.text_document_completion_async(t.CompletionParams(doc(uri), t.Position(last, len("z = sequence4 |> "))))
    assert isinstance(items, t.CompletionList)
    labels = [i.label for i in items.items]
    assert {"conv", "relu", "batchnorm", "down", "up"} <= set(labels)
    _, diags = await c.published(uri, 3)
    assert diags and diags[0].range.start.line >= last - 1


async def _formatting(c: Client) -> None:
    uri = uri_of("specs/messy.net")
    messy = UNET.replace("sequence2 = sequence1 |> ", "sequence2=sequence1|>")
    c.open(uri, messy)
    edits = await c.text_document_formatting_async(t.DocumentFormattingParams(doc(uri), t.FormattingOptions(2, True)))
    assert edits is not None and len(edits) == 1 and edits[0].new_text == format_text(messy)
    assert edits[0].range.start == t.Position(0, 0)
    c.change(uri, format_text(messy), 2)
    again = await c.text_document_formatting_async(t.DocumentFormattingParams(doc(uri), t.FormattingOptions(2, True)))
    assert again is not None and len(again) == 0  # already formatted: no edits (not a failure)
    c.change(uri, "net N(\n", 3)
    assert await c.text_document_formatting_async(t.DocumentFormattingParams(doc(uri), t.FormattingOptions(2, True))) is None
    await asyncio.sleep(0.2)
    assert any("not formatted" in m for m in c.messages)


async def _three_errors(c: Client) -> None:
    uri = uri_of("three.net")
    c.open(uri, THREE_ERRORS)
    _, diags = await c.published(uri, 1)
    assert sorted(d.range.start.line for d in diags if d.severity == t.DiagnosticSeverity.Error) == [2, 3, 4]


def test_edit_hover_definition_completion_and_settings() -> None:
    async def scenario() -> None:
        async with started() as c:
            await _edit_cycle(c)
            await _formatting(c)
            await _three_errors(c)
            status = await c.protocol.send_request_async("netdsl/status", {})
            assert status.torch is False and status.inlayHints is True
    asyncio.run(asyncio.wait_for(scenario(), LIMIT_S))


def test_inlay_hints_option_debounce_and_close() -> None:
    async def scenario() -> None:
        async with started({"inlayHints": True}) as c:
            uri = uri_of("specs/unet.net")
            c.open(uri, UNET)
            await c.published(uri, 1)
            whole = t.Range(t.Position(0, 0), t.Position(20, 0))
            hints = await c.text_document_inlay_hint_async(t.InlayHintParams(doc(uri), whole))
            assert hints and len(hints) == 5
            for version in range(2, 7):  # typed faster than the debounce: only the last is analysed
                c.change(uri, UNET.replace("NF = 32", f"NF = {30 + version}"), version)
            c.change(uri, UNET.replace("|> down(NF)", "|> dwn(NF)"), 7)
            _, diags = await c.published(uri, 7)
            assert any("dwn" in d.message for d in diags)
            await asyncio.sleep(0.5)
            assert [p.version for _, p in c.diagnostics[uri]] == [1, 7]
            c.text_document_did_close(t.DidCloseTextDocumentParams(doc(uri)))
            for _ in range(50):  # closing clears the document's diagnostics
                if len(c.diagnostics[uri]) == 3:
                    break
                await asyncio.sleep(0.1)
            assert len(c.diagnostics[uri]) == 3 and len(c.diagnostics[uri][-1][1].diagnostics) == 0
    asyncio.run(asyncio.wait_for(scenario(), LIMIT_S))


def test_server_survives_the_fuzz_corpus() -> None:
    from test_fuzz import fuzz_case  # imports torch in this process only; the server's is checked below

    rng = random.Random(24)
    cases = [fuzz_case(rng) for _ in range(40)]

    async def scenario() -> None:
        async with started(debounce=0) as c:
            uri = uri_of("fuzz.net")
            c.open(uri, cases[0])
            for version, text in enumerate(cases[1:], 2):
                c.change(uri, text, version)
            await c.published(uri, len(cases), timeout=120)
            c.change(uri, UNET, len(cases) + 1)
            h = await c.text_document_hover_async(t.HoverParams(doc(uri), t.Position(10, 0)))
            assert h is not None and "sequence2" in h.contents.value  # type: ignore[union-attr]
            assert c._server is not None and c._server.returncode is None
            status = await c.protocol.send_request_async("netdsl/status", {})
            assert status.torch is False
    asyncio.run(asyncio.wait_for(scenario(), LIMIT_S))


def test_a_crash_in_the_analysis_is_one_diagnostic(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str, path: str | None) -> None:
        raise ZeroDivisionError("boom")
    monkeypatch.setattr(checked, "analyse_document", broken)
    result = checked.check("net N()\n", None)
    [d] = result.analysis.diagnostics
    assert d.message == "internal error in netdsl: ZeroDivisionError: boom" and d.span.line == 1
    assert result.crash is not None and "ZeroDivisionError" in result.crash


def test_the_server_module_does_not_import_torch() -> None:
    code = "import sys, netdsl.editor.server, netdsl.commands.lsp; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=Path(ROOT), check=True, timeout=60)


def test_settings_are_read_with_or_without_their_section() -> None:
    from netdsl.editor.server import NetdslServer, _take_settings

    ls = NetdslServer()
    assert _take_settings(ls, {"netdsl": {"inlayHints": True}}) and ls.inlay_hints
    assert _take_settings(ls, {"inlayHints": False}) and not ls.inlay_hints
    assert not _take_settings(ls, {"other": {"inlayHints": True}}) and not ls.inlay_hints
    assert not _take_settings(ls, None)
