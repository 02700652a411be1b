"""Hover, completion, outline, navigation and positions on a DocumentAnalysis directly (no server)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from netdsl.editor import hover_analysis
from netdsl.editor.checked import check
from netdsl.editor.complete import complete, partial_word
from netdsl.editor.document import DocumentAnalysis
from netdsl.editor.hover import hover, signature
from netdsl.editor.navigate import definition_at, references, rename_spans
from netdsl.editor.outline import inlay_hints, symbols
from netdsl.editor.positions import from_utf16, lsp_position, span_range, to_utf16
from netdsl.errors import NetdslError, Span
from netdsl.ops import REGISTRY, layers

ROOT = Path(__file__).resolve().parents[2]


def col(an: DocumentAnalysis, line: int, word: str, nth: int = 0) -> int:
    """The 1-based column of the `nth` occurrence of `word` on a line (specs get reformatted: no fixed columns)."""
    text = an.text.split("\n")[line - 1]
    at = -1
    for _ in range(nth + 1):
        at = text.index(word, at + 1)
    return at + 1


@pytest.fixture(scope="module")
def unet() -> DocumentAnalysis:
    an = check((ROOT / "specs/unet.net").read_text(), "specs/unet.net").analysis
    assert an.graph is not None and not [d for d in an.diagnostics if d.severity == "error"]
    return an


@pytest.fixture(scope="module")
def resnet() -> DocumentAnalysis:
    return check((ROOT / "specs/zoo/resnet50.net").read_text(), "specs/zoo/resnet50.net").analysis


def test_hover_on_a_use_and_on_the_statement(unet: DocumentAnalysis) -> None:
    on_use = hover(unet, 12, col(unet, 12, "sequence2"))        # `sequence2` read by line 12
    on_def = hover(unet, 11, 3)         # where it is defined
    assert on_use is not None and on_use == on_def
    assert "sequence2: [2*NF, H/4, W/4] = 64×8×8" in on_use
    # hand-checked: conv 32->64, 3x3 with bias (18,496) and batchnorm (128); 8x8 outputs x 64 x 32*9 MACs
    assert "= 18,624" in on_use and "= 1,179,648" in on_use


def test_hover_on_a_block_call_a_param_and_an_op(unet: DocumentAnalysis) -> None:
    call = hover(unet, 10, col(unet, 10, "down"))          # `down(NF)` on line 10
    assert call is not None and "down(...): [NF, H/2, W/2] = 32×16×16" in call
    param = hover(unet, 4, col(unet, 4, "NIC"))          # NIC in the header
    assert param is not None and "NIC = 1" in param
    op = hover(unet, 7, col(unet, 7, "conv"))             # `conv` inside block down
    assert op is not None and signature(REGISTRY["conv"]) in op


def test_hover_on_a_repeated_graph_block(resnet: DocumentAnalysis) -> None:
    text = hover(resnet, 19, col(resnet, 19, "bottleneck"))        # `bottleneck(...) * 3 as i`
    assert text is not None and "[256, H/4, W/4] = 256×56×56" in text and "3 call(s)" in text


def test_signature_lists_required_then_defaults() -> None:
    sig = signature(REGISTRY["conv"])
    assert sig.startswith("conv(out: int, kernel: int, stride: int = 1")


def test_completion_contexts(unet: DocumentAnalysis) -> None:
    ops = [i.label for i in complete(unet, "y = sequence1 |> ", 15, 18)]
    assert set(layers()) <= set(ops) and {"down", "up"} <= set(ops)
    sources = [i.label for i in complete(unet, "y = ", 12, 5)]
    assert "sequence1" in sources and "x" in sources and "sequence3" not in sources  # only names defined above line 12
    args = [i.label for i in complete(unet, "y = x |> conv(8, 3, ", 15, 21)]
    assert "stride=" in args and "padding=" in args and "NF" in args
    attrs = [i.label for i in complete(unet, "y = x |> conv(8, 3) @", 15, 22)]
    assert "freeze" in attrs
    merged = [i.label for i in complete(unet, "y = cat(sequence1, ", 15, 20)]
    assert "sequence4" in merged
    assert partial_word("y = x |> co", 12) == "co"


def test_completion_without_any_analysis() -> None:
    items = complete(None, "y = x |> ", 1, 10)
    conv = next(i for i in items if i.label == "conv")
    assert conv.snippet == "conv(${1:out}, ${2:kernel})" and conv.detail == signature(REGISTRY["conv"])


def test_definition_references_and_rename(unet: DocumentAnalysis) -> None:
    d = definition_at(unet, 13, col(unet, 13, "sequence1"))     # `sequence1` in cat(sequence3, sequence1) on line 13
    assert d is not None and d.name == "sequence1" and d.span.line == 10
    spans = references(unet, d, True)
    assert [s.line for s in spans] == [10, 11, 13]
    assert [s.line for s in references(unet, d, False)] == [11, 13]
    assert rename_spans(unet, 10, 2, "first") == spans
    with pytest.raises(NetdslError, match="already defined"):
        rename_spans(unet, 10, 2, "sequence2")
    with pytest.raises(NetdslError, match="reserved"):
        rename_spans(unet, 10, 2, "conv")
    with pytest.raises(NetdslError, match="not a name"):
        rename_spans(unet, 10, 2, "2x")
    with pytest.raises(NetdslError, match="only a name"):
        rename_spans(unet, 7, col(unet, 7, "conv"), "c2")  # the op `conv`
    with pytest.raises(NetdslError, match="cannot be renamed"):
        rename_spans(unet, 14, 1, "result")  # `output` is what makes it the network's result


def test_outline_and_inlay_hints(unet: DocumentAnalysis, resnet: DocumentAnalysis) -> None:
    names = [(s.name, s.kind) for s in symbols(unet)]
    assert names[:4] == [("NIC", "param"), ("NF", "param"), ("NC", "param"), ("k", "param")]
    assert ("down", "block") in names and names[-1] == ("output", "statement")
    bottleneck = next(s for s in symbols(resnet) if s.name == "bottleneck")
    assert [k.name for k in bottleneck.children] == ["main", "skip", "output"]
    hints = inlay_hints(unet)
    assert (11, len(unet.text.split("\n")[10].rstrip()) + 1, "  [64, 8, 8]") in hints


def test_a_spec_that_does_not_parse_has_no_outline_but_diagnostics() -> None:
    an = check("net N(\n", None).analysis
    assert an.diagnostics and symbols(an) == [] and inlay_hints(an) == []


def test_oversized_text_is_one_diagnostic() -> None:
    an = check("#" * 1_000_001, None).analysis
    assert len(an.diagnostics) == 1 and "limit" in an.diagnostics[0].message and an.spec is None


def test_utf16_positions_round_trip() -> None:
    line = "# é 😀 x"
    # 😀 is one code point but two UTF-16 units: `x` is code point 7 (1-based), UTF-16 offset 7
    assert to_utf16(line, 7) == 7 and from_utf16(line, 7) == 7
    assert to_utf16(line, 5) == 4 and from_utf16(line, 4) == 5
    assert span_range([line], Span(1, 5, 1, 6)) == ((0, 4), (0, 6))
    assert lsp_position([line], 0, 100) == (1, len(line) + 1)


# --- memory and receptive fields ---------------------------------------------------------------

def _cell(formula: str, value: object) -> str:
    """A number as hover shows it: the formula in backticks and its value, or the bare number."""
    return formula if formula == str(value) else f"`{formula}` = {value}"


def _rf(formulas: dict[str, list[str]], values: dict[str, list[Any]]) -> str:
    """A receptive field as count's table prints it (size / jump / start, one entry when the axes agree)."""
    parts = []
    for part in ("size", "jump", "start"):
        cells = [_cell(f, v) for f, v in zip(formulas[part], values[part])]
        parts.append(cells[0] if cells[0] == cells[1] else "×".join(cells))
    return " / ".join(parts)


@pytest.fixture(scope="module")
def unet_count() -> dict[str, Any]:
    done = run_cli("count", "specs/unet.net", "--memory", "--rf", "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_hover_shows_memory_and_receptive_field_as_count_does(unet: DocumentAnalysis, unet_count: dict[str, Any]) -> None:
    text = hover(unet, 11, 3)                                     # the statement `sequence2`
    assert text is not None
    rows = [(f, v) for f, v in zip(unet_count["layers"], unet_count["values"]["layers"])
            if f["name"].startswith("sequence2.")]
    assert [f["name"] for f, _ in rows] == ["sequence2.0", "sequence2.1", "sequence2.2"]
    (last, last_value) = rows[-1]
    saved = sum(v["saved_bytes"] for _, v in rows)                 # each layer's saved bytes are its own: they add up
    # count's per-layer formulas (the conv keeps sequence1's output, charged to sequence1), summed by hand
    assert [f["saved_bytes"] for f, _ in rows] == ["0", "H*N*NF*W/2 + 16*NF", "H*N*NF*W/2"]
    assert f"(its 3 layers, summed): `H*N*NF*W + 16*NF` = {saved:,} bytes" in text
    # the peak is the statement's largest layer's; in sequence2 that is the last (ties with the batchnorm's)
    assert last_value["peak_bytes"] == max(v["peak_bytes"] for _, v in rows)
    assert f"`{last['peak_bytes']}` = {last_value['peak_bytes']:,} bytes" in text and "while `sequence2.2` runs" in text
    assert f"of its output (size / jump / start in input pixels): {_rf(last['rf'], last_value['rf'])}" in text
    assert "batch of N = 1, fp32" in text and unet_count["memory"] == {"batch": "N", "dtype": "fp32", "optimizer": "adam"}


def test_the_passes_run_once_per_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    import netdsl.passes.receptive
    import netdsl.passes.saved

    calls: dict[str, int] = {}

    def counted(name: str, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)
        return run

    monkeypatch.setattr(netdsl.passes.saved, "saved_bytes", counted("saved", netdsl.passes.saved.saved_bytes))
    monkeypatch.setattr(hover_analysis, "peak_layers", counted("peak", hover_analysis.peak_layers))
    monkeypatch.setattr(netdsl.passes.receptive, "receptive_fields",
                        counted("rf", netdsl.passes.receptive.receptive_fields))
    an = check((ROOT / "specs/unet.net").read_text(), "specs/unet.net").analysis   # a fresh analysis: nothing cached
    assert calls == {}                                             # the analysis itself does not run them
    first = hover(an, 11, 3)
    assert calls == {"saved": 1, "peak": 1, "rf": 1}
    again, other = hover(an, 11, 3), hover(an, 14, 1)
    assert again == first and other is not None and "receptive field" in other and other != first
    assert calls == {"saved": 1, "peak": 1, "rf": 1}
    new = check(an.text + "\n", "specs/unet.net").analysis           # another version of the text: run again
    assert hover(new, 11, 3) == first and calls == {"saved": 2, "peak": 2, "rf": 2}


def test_a_partial_graph_or_a_failing_pass_leaves_the_lines_out(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = (ROOT / "specs/unet.net").read_text().replace("sequence1) |> up(NC)", "sequence1) |> upp(NC)")  # line 13
    an = check(broken, "specs/unet.net").analysis
    assert an.partial and an.graph is not None
    text = hover(an, 11, 3)
    assert text is not None and "sequence2: [2*NF, H/4, W/4]" in text
    assert "memory" not in text and "receptive field" not in text

    def fails(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a rule this network needs is missing")

    monkeypatch.setattr("netdsl.passes.saved.saved_bytes", fails)
    an = check((ROOT / "specs/unet.net").read_text(), "specs/unet.net").analysis
    text = hover(an, 11, 3)
    assert text is not None and "saved for backward" not in text
    assert "peak in an eval forward" in text and "receptive field" in text
    whole = hover_analysis.whole_network(an)
    assert whole is not None and whole.failed == {"saved": "ValueError: a rule this network needs is missing"}


def test_hover_on_a_sequence_and_on_a_detect_head() -> None:
    vit = check((ROOT / "specs/zoo/vit_b_16.net").read_text(), "specs/zoo/vit_b_16.net").analysis
    line = next(i for i, s in enumerate(vit.text.split("\n"), 1) if s.startswith("patches"))
    text = hover(vit, line, 1)
    # hand-checked: 16x16 patches at stride 16 without padding; each token lies on that grid
    assert text is not None and "in input pixels): 16 / 16 / 0 (a sequence" in text
    yolo = check((ROOT / "specs/yolov8.net").read_text(), "specs/yolov8.net").analysis
    line = next(i for i, s in enumerate(yolo.text.split("\n"), 1) if s.startswith("output"))
    text = hover(yolo, line, 1)
    assert text is not None and "(the largest level's)" in text
    # hand-checked: the three levels' strides are the spec's `strides=[8, 16, 32]`
    jumps = [part.split(" / ")[1] for part in text.split("\n- `output[")[1:]]
    assert jumps == ["8", "16", "32"] and "peak in an eval forward" in text
