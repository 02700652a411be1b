"""The editor's analysis: every independent error of a spec, warnings, and where each name is defined
and used. The command line's first error is the oracle: the editor must report it, and more."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from netdsl.editor.analysis import analyse_document, statement_groups
from netdsl.editor.document import DocumentAnalysis
from netdsl.errors import NetdslError, Span, source_lines
from netdsl.parsing import MAX_SPEC_BYTES
from netdsl.passes.front import analyse_text
from test_fuzz import fuzz_case

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "specs").glob("*.net")) + sorted((ROOT / "specs" / "zoo").glob("*.net"))

GOOD = """net T(C = 4)
input x: [3, H = 8, W = 8]
a = x |> conv(C, 3, padding=1) -> relu
b = a |> conv(C, 3, padding=1)
output = add(a, b) |> relu
"""


def errors(doc: DocumentAnalysis) -> list[tuple[int, str]]:
    return [(d.span.line, d.message) for d in doc.diagnostics if d.severity == "error"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_specs_have_no_errors_and_a_graph(path: Path) -> None:
    doc = analyse_document(path.read_text(encoding="utf-8"), str(path))
    assert errors(doc) == []
    if path.name == "conv_transpose_open.net":  # open arguments: for `netdsl solve`, a warning here
        assert [d.severity for d in doc.diagnostics] == ["warning"] and "left open" in doc.diagnostics[0].message
        return
    assert doc.graph is not None
    assert [st.name for st in doc.graph.statements] == [st.name for st in analyse_text(path.read_text(), None).statements]


def test_three_independent_errors_give_three_diagnostics_and_fixing_them_clears_them() -> None:
    broken = GOOD.replace("padding=1) -> relu", "paddin=1) -> relu").replace("b = a", "b = z") \
        + "c = b |> relu(\n"
    doc = analyse_document(broken)
    got = errors(doc)
    assert [line for line, _ in got] == [3, 4, 6], got
    assert "no argument 'paddin'" in got[0][1] and "did you mean 'padding'" in (doc.diagnostics[0].hint or "")
    assert "unknown tensor 'z'" in got[1][1]
    assert got[2][1].startswith("unexpected end of file")
    first = doc.diagnostics[0].span
    assert (first.line, first.column, first.end_column) == (3, 21, 29)  # the argument `paddin=1`, not the line
    assert analyse_document(GOOD).diagnostics == []


def test_a_consequence_of_an_error_is_not_reported_again() -> None:
    # b and output read the broken a: one error, not three
    doc = analyse_document(GOOD.replace("conv(C, 3, padding=1) -> relu", "conv(C, 3, padding=1) -> reluu"))
    assert [line for line, _ in errors(doc)] == [3]


def test_an_error_does_not_hide_an_unread_tensor_or_a_later_unknown_name() -> None:
    text = GOOD.replace("-> relu\n", "-> relu(2)\n", 1) + "d = x |> relu\ne = q |> relu\n"
    doc = analyse_document(text)
    assert [line for line, _ in errors(doc)] == [3, 7]
    warn = [d for d in doc.diagnostics if d.severity == "warning"]
    # `d` and `e` (whose statement fails) are read by nothing: warned at their names only
    assert [(w.span.line, w.span.column, w.span.end_column) for w in warn] == [(6, 1, 2), (7, 1, 2)]
    assert all("never read" in w.message for w in warn)


def test_an_error_inside_a_block_is_reported_once_for_all_its_calls() -> None:
    text = """net T()
input x: [3, H = 8, W = 8]
block bad(c) = conv(c, 3, paddin=1)
a = x |> bad(4)
b = x |> bad(8)
output = cat(a, b)
"""
    assert errors(analyse_document(text)) == [(3, "'conv' has no argument 'paddin'")]


def test_syntax_errors_in_a_graph_block_and_below_it() -> None:
    text = """net T()
input x: [3, H = 8, W = 8]
block unit(c) {
  input y
  m = y |> conv(c, 3 padding=1)
  output = add(y, m)
}
a = x |> unit(3)
b = a |> conv(4, 3) ->
output = b |> foo
"""
    doc = analyse_document(text)
    # the chain left open on line 9 runs on into line 10, where the parser stops: one error for both
    assert [line for line, _ in errors(doc)] == [5, 10], errors(doc)


def test_a_broken_header_stops_with_one_diagnostic() -> None:
    doc = analyse_document("net T(C = )\ninput x: [3, H = 8, W = 8]\noutput = x |> conv(C, 3)\n")
    assert len(doc.diagnostics) == 1 and doc.spec is None and doc.graph is None


def test_a_text_over_the_limit_gets_one_diagnostic_and_no_analysis() -> None:
    doc = analyse_document("#" * (MAX_SPEC_BYTES + 1))
    assert len(doc.diagnostics) == 1 and "limit" in doc.diagnostics[0].message and doc.spec is None


def test_statement_groups_join_wrapped_chains() -> None:
    lines = source_lines((ROOT / "specs" / "zoo" / "resnet50.net").read_text())
    groups = statement_groups(lines)
    assert (11, 13) in groups  # `main = x |> conv(...)` wrapped over three lines
    assert (9, 9) in groups and (16, 16) in groups  # the block's `{` line and its `}`


def test_names_of_unet() -> None:
    text = (ROOT / "specs" / "unet.net").read_text()
    doc = analyse_document(text)
    at = doc.name_at(13, 30)  # `sequence1` in `cat(sequence3, sequence1)`
    assert at is not None and not hasattr(at, "kind")
    target = at.target  # type: ignore[union-attr]
    assert (target.name, target.kind, target.span) == ("sequence1", "tensor", Span(10, 1, 10, 10))
    assert [s.line for s in doc.uses(target)] == [11, 13]
    k = next(d for d in doc.definitions if d.name == "k")
    assert k.kind == "param" and [s.line for s in doc.uses(k)] == [4, 7, 7, 8, 8, 14, 14]
    down = next(d for d in doc.definitions if d.name == "down")
    assert down.kind == "block" and down.span == Span(7, 7, 7, 11) and [s.line for s in doc.uses(down)] == [10, 11]


def test_names_in_graph_blocks_and_repetitions() -> None:
    text = (ROOT / "specs" / "zoo" / "resnet50.net").read_text()
    doc = analyse_document(text)
    main = next(d for d in doc.definitions if d.name == "main")
    assert main.scope == "bottleneck" and [s.line for s in doc.uses(main)] == [15]
    x_in_block = next(d for d in doc.definitions if d.name == "x" and d.scope == "bottleneck")
    assert x_in_block.kind == "block_input" and [s.line for s in doc.uses(x_in_block)] == [11, 14]
    indices = [d for d in doc.definitions if d.kind == "index"]
    assert [d.span.line for d in indices] == [19, 20, 21, 22]
    for d in indices:  # each `i` is read only in its own call
        assert [s.line for s in doc.uses(d)] == [d.span.line]
    assert {d.name for d in doc.visible(12)} >= {"main", "x", "c", "s", "down", "NCLS", "H"}
    assert "main" not in {d.name for d in doc.visible(19)}


def test_fuzzed_specs_report_the_commands_first_error_and_never_crash() -> None:
    rng = random.Random(2024)
    failing = several = 0
    for _ in range(120):
        text = fuzz_case(rng)
        doc = analyse_document(text)
        lines = source_lines(text)
        for d in doc.diagnostics:
            assert 1 <= d.span.line <= max(len(lines), 1) + 1, (d, text)
        try:
            analyse_text(text, None)
        except NetdslError as e:
            failing += 1
            got = [(d.span, d.message) for d in doc.diagnostics]
            assert (e.span, e.message) in got, (e.render(), got)
            several += sum(d.severity == "error" for d in doc.diagnostics) > 1
        except Exception:  # an escape of the passes is test_fuzz's to report, not this test's
            continue
        else:
            assert not any(d.severity == "error" for d in doc.diagnostics), text
    assert failing > 50 and several > 10  # the corpus does exercise the recovery


def test_what_precedes_an_error_keeps_its_shapes_when_the_output_is_taken_out() -> None:
    text = (ROOT / "specs" / "unet.net").read_text().replace("up(NF)", "up(NF) -> relu(inplace=true)") \
        + "skip = sequence1 |> conv(NF, 1, stide=2)\n"
    doc = analyse_document(text)
    assert [line for line, _ in errors(doc)] == [12, 15]
    assert doc.partial and doc.graph is not None  # sequence3, sequence4 and output are out: the rest has shapes
    assert [st.name for st in doc.graph.statements] == ["sequence1", "sequence2"]
    assert [str(x) for x in doc.graph.show(doc.graph.statements[1].shape)] == ["2*NF", "H/4", "W/4"]
    assert not analyse_document((ROOT / "specs" / "unet.net").read_text()).partial
