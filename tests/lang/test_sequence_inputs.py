"""Sequence inputs `[T, D]` and the one rule for an input's axes, through the compiler and torch.

An axis `NAME = expr` declares a size; a bare NAME that is no net parameter declares one (or reuses
an earlier input's); anything else (a number, a parameter, an expression) is a fixed size. A
sequence is [T, D] per sample, [N, T, D] in torch (batch first, as nn.MultiheadAttention with
batch_first=True). The errors are located at the axis.
"""
from __future__ import annotations

import pytest
import torch

import netdsl
from conftest import error_at, run_cli
from netdsl.api import shapes
from netdsl.errors import NetdslError

SEQ = "net S(D = 16)\ninput t: [T = 8, D]\n"


@pytest.mark.parametrize(("text", "symbolic", "at"), [
    ("net S()\ninput t: [T = 197, D = 768]\noutput = t |> gelu", ["T", "D"], [197, 768]),
    ("net S()\ninput t: [T = 16, 64]\noutput = t |> gelu", ["T", "64"], [16, 64]),
    ("net S(D = 32)\ninput t: [197, D]\noutput = t |> gelu", ["197", "D"], [197, 32]),
    ("net S(D = 8)\ninput t: [T = 4, 2 * D]\noutput = t |> gelu", ["T", "2*D"], [4, 16]),
    ("net S()\ninput x: [3, 224, 224]\noutput = x |> relu", ["3", "224", "224"], [3, 224, 224]),
    ("net S(S = 12)\ninput x: [3, S, S]\noutput = x |> relu", ["3", "S", "S"], [3, 12, 12]),
    ("net S()\ninput x: [C = 3, H = 8, W = 4]\noutput = x |> relu", ["C", "H", "W"], [3, 8, 4]),
    ("net S(F = 7)\ninput v: [F]\noutput = v |> relu", ["F"], [7]),
])
def test_each_axis_is_a_size_or_fixed(text: str, symbolic: list[str], at: list[int]) -> None:
    cg = shapes(text)
    assert [str(x) for x in cg.show(cg.inputs[0].shape)] == symbolic
    assert list(cg.inputs[0].at) == at


def test_a_later_input_reuses_an_earlier_size() -> None:
    cg = shapes(SEQ + "input u: [T, 2 * D]\nu2 = u |> gelu\noutput o = add(t, t)\noutput p = u2\n")
    assert list(cg.inputs[1].at) == [8, 32] and str(cg.show(cg.inputs[1].shape)[0]) == "T"


def test_the_ir_keeps_a_span_on_every_axis() -> None:
    spec = netdsl.parse(SEQ + "output = t |> gelu")
    assert spec.inputs[0].rank == 2
    axes = spec.inputs[0].axes
    assert [(a.span.line, a.span.column) for a in axes] == [(2, 11), (2, 18)]
    assert axes[0].dim is not None and axes[0].dim.name == "T" and axes[1].size is not None
    assert [d.name for d in spec.dims] == ["T"]


def test_forward_on_a_sequence_equals_torch() -> None:
    text = SEQ + "input u: [T, D]\na = add(t, u) |> gelu\noutput = mul(a, u) |> dropout(0.5)\n"
    model = netdsl.build(text).eval()
    t, u = torch.randn(3, 8, 16), torch.randn(3, 8, 16)
    with torch.no_grad():
        assert torch.equal(model(t, u), torch.nn.functional.gelu(t + u) * u)


def test_linear_on_a_sequence_builds_and_counts() -> None:
    text = SEQ + "output = t |> linear(4 * D) -> gelu -> linear(D)\n"
    model = netdsl.build(text, T=5)
    x = torch.randn(2, 5, 16)
    assert model(x).shape == (2, 5, 16)
    c = netdsl.count(text)
    assert str(c.show(c.total("parameters"))) == "8*D**2 + 5*D"
    assert c.value(c.total("parameters")) == sum(p.numel() for p in model.parameters())


def test_set_conditions_and_formulas_in_t_and_d() -> None:
    text = "net S()\ninput t: [T = 8, D = 16] where T % 4 == 0\noutput = t |> linear(D)\n"
    assert list(shapes(text, T=12, D=4).inputs[0].at) == [12, 4]
    c = netdsl.count(text)
    assert {str(s) for s in c.show(c.total("macs")).free_symbols} == {"T", "D"}
    with pytest.raises(NetdslError, match="T % 4 == 0"):
        shapes(text, T=6)
    assert c.value(c.total("macs")) == 8 * 16 * 16


def test_claims_and_solve_over_a_sequence() -> None:
    text = "net S()\ninput t: [T = 8, D = 16]\noutput = t |> linear(D)\nclaim parameters == D*D + D\n"
    assert [v.status for v in netdsl.count(text).claims] == ["holds"]
    # D a parameter: fixed, so a number fits for every admissible T; D a size: no number does
    solved = netdsl.solve("net S(D = 4)\ninput t: [T = 8, D]\noutput: [T, 2 * D] = t |> linear(?)\n")
    assert solved.solutions == [(8,)]
    assert netdsl.solve("net S()\ninput t: [T = 8, D = 4]\noutput: [T, 2 * D] = t |> linear(?)\n").solutions == []


SEQ_ERRORS = [
    # (id, spec, line, column, words in the message)
    ("size-twice", "net S()\ninput t: [T = 8, T]\noutput = t", 2, 18, "the size 'T' names two axes of input 't'"),
    ("size-twice-image", "net S()\ninput x: [3, H = 8, H]\noutput = x", 2, 21, "names two axes"),
    ("zero-fixed", "net S(D = 4)\ninput t: [D - 4, 8]\noutput = t", 2, 11, "the token count of input 't' is zero"),
    ("negative-fixed", "net S(D = 4)\ninput t: [8, 2 - D]\noutput = t", 2, 14,
     "the feature count of input 't' is negative"),
    ("fraction-fixed", "net S(D = 3)\ninput t: [8, D / 2]\noutput = t", 2, 14, "is not an integer"),
    ("zero-channels", "net S(C = 0)\ninput x: [C, H = 8, W = 8]\noutput = x", 2, 11,
     "the channel count of input 'x' is zero"),
    ("rank-4", "net S()\ninput x: [3, H = 8, W = 8, 2]\noutput = x", 2, 28, "has 4 axes; at most 3"),
    ("param-redeclared", "net S(D = 4)\ninput t: [T = 8, D = 16]\noutput = t", 2, 18, "duplicate name 'D'"),
    ("no-value", "net S()\ninput t: [T, 16]\noutput = t", 2, 11, "the input size 'T' has no value"),
    ("unknown-in-fixed", "net S()\ninput t: [8, 2 * Q]\noutput = t", 2, 18, "unknown name 'Q' in input size"),
    ("merge-ranks", "net S()\ninput x: [3, H = 4, W = 4]\ninput t: [T = 16, 3]\noutput = add(t, x)", 4, 10,
     "'t' is a sequence [T, D], 'x' is an image [C, H, W]"),
    ("conv-on-sequence", SEQ + "output = t |> conv(4, 1)", 3, 15, "takes an image [C, H, W], but its input is a sequence"),
]


@pytest.mark.parametrize(("text", "line", "col", "words"), [c[1:] for c in SEQ_ERRORS], ids=[c[0] for c in SEQ_ERRORS])
def test_errors_are_located(text: str, line: int, col: int, words: str) -> None:
    err = error_at(netdsl.shapes, text + "\n", line, col, words)
    assert err.hint, err.render()


def test_rank_hints_name_the_way_between_images_and_sequences() -> None:
    err = error_at(netdsl.shapes, SEQ + "output = t |> conv(4, 1)\n", 3, 15, "a sequence")
    assert "-> image(h, w)" in err.hint
    err = error_at(netdsl.shapes, "net S()\ninput x: [3, H = 4, W = 4]\ninput t: [T = 16, 3]\noutput = add(t, x)\n",
                   4, 10, "different ranks")
    assert "sequences with sequences" in err.hint and "-> tokens" in err.hint


def test_cli_exit_status_and_place(tmp_path) -> None:  # noqa: ANN001 - pytest's tmp_path
    spec = tmp_path / "bad.net"
    spec.write_text("net S()\ninput t: [T = 8, T]\noutput = t\n", encoding="utf-8")
    r = run_cli("count", str(spec))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0].startswith(f"{spec}:2:18: error: the size 'T' names two axes")


# A block called on a sequence: the exported class takes the sequence's sizes as arguments.
BLOCKS = """net Seq(D = 8)
input t: [T = 6, D]
block mlp(k) {
  input s
  h = s |> linear(k * D) -> gelu -> linear(D)
  output = add(s, h)
}
output = t |> mlp(2) -> mlp(3) -> gelu
"""


def test_python_export_of_a_sequence_round_trips(tmp_path) -> None:  # noqa: ANN001 - pytest's tmp_path
    from export_roundtrip import python_round_trip

    assert "def forward(self, t: torch.Tensor)" in python_round_trip(BLOCKS, tmp_path)


def test_onnx_export_of_a_sequence_keeps_t_dynamic(tmp_path) -> None:  # noqa: ANN001 - pytest's tmp_path
    from export_roundtrip import onnx_round_trip

    assert onnx_round_trip(BLOCKS, tmp_path) == ["T"]
