"""mul and broadcasting add, hardsigmoid and stochastic_depth: squeeze-excitation as torchvision
writes it, torch's broadcasting rule, stochastic depth's train/eval semantics, exports."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import netdsl
from conftest import error_at
from export_roundtrip import onnx_round_trip, python_round_trip
from netdsl.backends.torch_extra_layers import StochasticDepth
from netdsl.cli import main
from netdsl.ops import REGISTRY

HEAD = "net SE(C = 8)\ninput x: [3, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\n"
# torchvision's SqueezeExcitation with hardsigmoid (MobileNetV3), then a residual with stochastic depth
SPEC = HEAD + """a = x |> conv(C, 3, padding=1)
s = a |> adaptive_avgpool -> conv(C // 4, 1) -> relu -> conv(C, 1) -> hardsigmoid
y = mul(a, s) |> conv(C, 1) -> stochastic_depth(0.25)
output = add(a, y, s)
"""


class TorchvisionSE(nn.Module):
    """torchvision.ops.SqueezeExcitation(C, C // 4, scale_activation=nn.Hardsigmoid), written out."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)
        self.activation, self.scale_activation = nn.ReLU(), nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


def test_squeeze_excitation_equals_torchvisions() -> None:
    m = netdsl.build(SPEC).eval()
    se = TorchvisionSE(8)
    se.fc1.load_state_dict(m.s[1].state_dict())
    se.fc2.load_state_dict(m.s[3].state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        a = m.a(x)
        gate = m.s(a)
        assert tuple(gate.shape) == (2, 8, 1, 1)
        assert torch.equal(m.y[0](a * gate), m.y[0](se(a)))
        assert torch.equal(m(x), a + m.y(se(a)) + gate)


def test_broadcast_shapes_and_counts() -> None:
    cg = netdsl.shapes(SPEC)
    by = {st.name: [str(v) for v in cg.show(st.shape)] for st in cg.statements}
    assert by["s"] == ["C", "1", "1"] and by["y"] == by["output"] == ["C", "H", "W"]
    c = netdsl.count(SPEC)
    rows = {r.name: r for r in c.layers}
    # one operation per output unit per operand after the first
    assert str(c.layer_metric(rows["y(mul)"], "connections")) == "C*H*W"
    assert str(c.layer_metric(rows["output(add)"], "connections")) == "2*C*H*W"
    assert rows["y(mul)"].category == "merge" and rows["y(mul)"].weights == 0
    assert rows["s.4"].op == "hardsigmoid" and rows["y.1"].op == "stochastic_depth"


def test_either_operand_may_stretch_and_any_number() -> None:
    text = HEAD + "a = x |> conv(C, 1)\ng = a |> adaptive_maxpool -> sigmoid\no = mul(g, a, g)\noutput = add(g, o)\n"
    m = netdsl.build(text).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        a = m.a(x)
        g = m.g(a)
        assert torch.equal(m(x), g + g * a * g)


def test_a_one_channel_map_broadcasts_over_the_channels_as_in_torch() -> None:
    text = HEAD + "a = x |> conv(C, 1)\nw = x |> conv(1, 1) -> sigmoid\noutput = mul(a, w)\n"
    assert netdsl.shapes(text).at(netdsl.shapes(text).output_shape) == [8, 8, 8]


@pytest.mark.parametrize(("body", "line", "col", "words", "hint"), [
    ("a = x |> conv(C, 1)\nb = a |> maxpool(2)\noutput = mul(a, b)", 5, 10,
     "mul() of tensors whose shapes differ: 'a' is [C, H, W] = [8, 8, 8]", "size 1 where one is stretched"),
    ("a = x |> conv(C, 1)\nb = a |> adaptive_avgpool(2)\noutput = add(a, b)", 5, 10,
     "add() of tensors whose shapes differ", "torch's broadcasting"),
    ("a = x |> conv(C, 1)\ng = a |> adaptive_avgpool\nb = a |> adaptive_avgpool(2)\noutput = mul(g, a, b)", 6, 10,
     "mul() cannot broadcast [8, 1, 1], [8, 8, 8], [8, 2, 2]: the heights are 2 and 8", "torch's broadcasting"),
    ("a = x |> conv(C, 1)\nb = x |> conv(4, 1)\noutput = mul(a, b)", 5, 10,
     "mul() of tensors whose shapes differ: 'a' is [C, H, W] = [8, 8, 8]", "broadcasting"),
    ("a = x |> flatten\noutput = mul(x, a)", 4, 10, "mul() of tensors of different ranks", "images with images"),
    ("output = x |> stochastic_depth(1.5)", 3, 32, "must be from 0.0 to 1.0", ""),
    ('output = x |> stochastic_depth(0.1, mode="col")', 3, 42, "must be one of", ""),
    ("output = x |> stochastic_depth", 3, 15, "needs its argument 'p'", ""),
])
def test_mismatches_and_bad_arguments_are_located(body: str, line: int, col: int, words: str, hint: str) -> None:
    err = error_at(netdsl.shapes, HEAD + body, line, col, words)
    assert hint in (err.hint or ""), err.render()
    assert "strides" not in (err.hint or "").split(";")[0]  # the hint starts with what broadcasting allows


def test_the_cli_says_where_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.net"
    spec.write_text(HEAD + "a = x |> conv(C, 1)\nb = a |> maxpool(2)\noutput = mul(a, b)\n")
    assert main(["count", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:5:10: error: mul() of tensors whose shapes differ" in err and "Traceback" not in err


def _sd(p: float, mode: str, training: bool) -> StochasticDepth:
    return StochasticDepth(p, mode).train(training)


def test_stochastic_depth_is_torchvisions() -> None:
    x = torch.randn(64, 4, 3, 3)
    assert torch.equal(_sd(0.5, "row", False)(x), x) and torch.equal(_sd(0.0, "row", True)(x), x)
    assert torch.equal(_sd(1.0, "row", True)(x), torch.zeros_like(x))
    torch.manual_seed(0)
    y = _sd(0.5, "row", True)(x)
    kept = [torch.equal(y[i], 2 * x[i]) for i in range(64)]
    dropped = [bool((y[i] == 0).all()) for i in range(64)]
    assert all(k != d for k, d in zip(kept, dropped)) and 10 < sum(kept) < 54  # whole rows, rescaled by 1/(1-p)
    # torchvision draws the mask as one bernoulli_(1 - p) over [N, 1, 1, 1] (row) or [1, 1, 1, 1] (batch)
    for mode, size in (("row", (64, 1, 1, 1)), ("batch", (1, 1, 1, 1))):
        torch.manual_seed(3)
        got = _sd(0.3, mode, True)(x)
        torch.manual_seed(3)
        noise = torch.empty(size).bernoulli_(0.7).div_(0.7)
        assert torch.equal(got, x * noise)


def test_stochastic_depth_in_a_network_is_the_identity_in_eval_mode() -> None:
    m = netdsl.build(HEAD + "output = x |> conv(C, 1) -> stochastic_depth(0.9, mode=\"batch\")\n")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(m.eval()(x), m.output[0](x))
    assert m.output[1].training is False and m.output[1].mode == "batch" and m.output[1].p == 0.9


def test_counts_agree_with_torch() -> None:
    from torch_oracle import check_against_torch

    check_against_torch(SPEC)


def test_python_export_round_trip(tmp_path: Path) -> None:
    source = python_round_trip(SPEC, tmp_path)  # train mode too: the same seed drops the same rows
    assert "y = self.y(a * s)" in source and "output = a + y + s" in source
    assert "nn.Hardsigmoid()" in source and "StochasticDepth(p=0.25" in source


def test_onnx_round_trip(tmp_path: Path) -> None:
    assert onnx_round_trip(SPEC, tmp_path) == ["H", "W"]


def test_the_ops_say_what_they_are() -> None:
    mul = REGISTRY["mul"]
    assert mul.starts_statement and mul.symbol == "×" and mul.source(["a", "b", "c"]) == "a * b * c"
    a, b = torch.ones(2, 3, 1, 1) * 2, torch.full((2, 3, 4, 4), 3.0)
    assert torch.equal(mul.combine([a, b], torch), a * b) and tuple(mul.combine([a, b], torch).shape) == (2, 3, 4, 4)
    assert not REGISTRY["hardsigmoid"].starts_statement and REGISTRY["stochastic_depth"].category == "activation"


def test_the_picture_marks_mul() -> None:
    from netdsl.backends.picture import to_dot

    dot = to_dot(netdsl.shapes(SPEC))
    assert "<b>×</b>" in dot
