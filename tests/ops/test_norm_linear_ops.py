"""layernorm, channel_linear and layer_scale: ConvNeXt's block as torchvision writes it, the
parameters torch has (so torchvision's tensors load), counts, rules and exports."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import netdsl
from conftest import error_at
from export_roundtrip import onnx_round_trip, python_round_trip
from netdsl.ops import REGISTRY

HEAD = "net CN(C = 8)\ninput x: [3, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\n"
SPEC = HEAD + """block cn(c) {
  input t
  y = t |> conv(c, 7, padding=3, groups=c) -> layernorm(eps=1e-6) -> channel_linear(4 * c) -> gelu
  z = y |> channel_linear(c) -> layer_scale(0.5) -> stochastic_depth(0.1)
  output = add(t, z)
}
stem = x |> conv(C, 2, stride=2) -> layernorm(eps=1e-6)
output = stem |> cn(C) -> adaptive_avgpool -> flatten -> layernorm -> linear(5, bias=false)
"""


class CNBlock(nn.Module):
    """torchvision's ConvNeXt CNBlock (eval mode: stochastic depth is the identity), written out."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.layer_scale = nn.Parameter(torch.full((c, 1, 1), 0.5))
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.fc1, self.act, self.fc2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(self.act(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


def test_the_block_equals_torchvisions_cnblock() -> None:
    m = netdsl.build(SPEC).eval()
    ref = CNBlock(8).eval()
    block = m.output[0]
    ours = dict(block.named_parameters())
    theirs = dict(ref.named_parameters())
    names = {"y.0.weight": "dw.weight", "y.0.bias": "dw.bias", "y.1.weight": "norm.weight", "y.1.bias": "norm.bias",
             "y.2.weight": "fc1.weight", "y.2.bias": "fc1.bias", "z.0.weight": "fc2.weight",
             "z.0.bias": "fc2.bias", "z.1.weight": "layer_scale"}
    assert set(ours) == set(names)
    with torch.no_grad():
        for k, v in ours.items():  # torchvision's tensors load as they are: the same shapes
            assert v.shape == theirs[names[k]].shape, k
            theirs[names[k]].copy_(torch.randn_like(v))
            v.copy_(theirs[names[k]])
        x = torch.randn(2, 8, 4, 4)
        torch.testing.assert_close(block(x), ref(x), rtol=1e-5, atol=1e-6)
    assert tuple(block.y[2].weight.shape) == (32, 8) and isinstance(block.y[2], nn.Linear)
    assert isinstance(block.y[1], nn.LayerNorm) and isinstance(m.output[3], nn.LayerNorm)


def test_layernorm_is_over_the_channels_of_images_and_the_features_of_vectors() -> None:
    m = netdsl.build(SPEC).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        s = m.stem[0](x)
        norm = m.stem[1]
        want = nn.functional.layer_norm(s.permute(0, 2, 3, 1), (8,), norm.weight, norm.bias, 1e-6).permute(0, 3, 1, 2)
        assert torch.equal(m.stem(x), want)
        mean = m.stem(x).mean(dim=1)
        assert mean.abs().max() < 1e-5  # fresh affine: each position's channels have mean 0
    plain = netdsl.build(HEAD + "output = x |> flatten -> layernorm(affine=false)\n")
    assert not list(plain.parameters()) and not list(plain.buffers())


def test_layer_scale_starts_at_its_init() -> None:
    m = netdsl.build(HEAD + "output = x |> conv(C, 1) -> layer_scale\n")
    scale = m.output[1]
    assert tuple(scale.weight.shape) == (8, 1, 1) and bool((scale.weight == 1e-6).all())
    x = torch.randn(2, 8, 3, 3)
    assert torch.equal(scale(x), x * scale.weight)


def test_counts() -> None:
    c = netdsl.count(SPEC)
    rows = {r.name: r for r in c.layers}
    metric = c.layer_metric
    lin, norm, scale = rows["output.0.y.2"], rows["output.0.y.1"], rows["output.0.z.1"]
    assert lin.category == "linear" and str(metric(lin, "weights")) == "4*C**2" and str(metric(lin, "biases")) == "4*C"
    assert str(metric(lin, "macs")) == "C**2*H*W" and metric(lin, "connections") == metric(lin, "macs")  # 4C*C*(H/2)*(W/2)
    assert norm.category == "norm" and str(metric(norm, "norm_params")) == "2*C" and metric(norm, "buffers") == 0
    assert scale.category == "activation" and str(metric(scale, "weights")) == "C" and metric(scale, "macs") == 0
    model = netdsl.build(SPEC)
    assert c.value(c.total("parameters")) == sum(p.numel() for p in model.parameters())
    # macs: conv + linear multiply-accumulates only (torchvision's convention)
    assert c.value(c.total("macs")) == 3 * 8 * 4 * 16 + 49 * 8 * 16 + 2 * 8 * 32 * 16 + 8 * 5


def test_counts_agree_with_torch() -> None:
    from torch_oracle import check_against_torch

    check_against_torch(SPEC)
    check_against_torch(SPEC, C=4)


@pytest.mark.parametrize(("body", "line", "col", "words"), [
    ("output = x |> channel_linear(0)", 3, 30, "at least 1"),
    ("output = x |> flatten -> channel_linear(4)", 3, 26, "takes an image [C, H, W]"),
    ("output = x |> flatten -> layer_scale", 3, 26, "takes an image [C, H, W]"),
    ("output = x |> layernorm(eps=-1.0)", 3, 29, "must be at least 0.0"),
    ("output = x |> layernorm(affine=2)", 3, 32, "wants true or false"),
    ("output = x |> layer_scale(init=true)", 3, 32, "wants a number"),
])
def test_bad_arguments_are_located(body: str, line: int, col: int, words: str) -> None:
    error_at(netdsl.shapes, HEAD + body, line, col, words)


def test_python_export_round_trip(tmp_path: Path) -> None:
    source = python_round_trip(SPEC, tmp_path)
    for cls in ("ChannelLayerNorm(nn.LayerNorm)", "ChannelLinear(nn.Linear)", "LayerScale(nn.Module)"):
        assert f"class {cls}" in source


def test_onnx_round_trip(tmp_path: Path) -> None:
    assert onnx_round_trip(SPEC, tmp_path) == ["H", "W"]


def test_the_ops_say_what_they_are() -> None:
    for name in ("layernorm", "channel_linear", "layer_scale"):
        op = REGISTRY[name]
        assert op.doc and not op.starts_statement and op.darknet_role is None and not op.running_stats



EVERY_NEW_OP = HEAD + """a = x |> conv(C, 3, padding=1) -> layernorm -> channel_linear(2 * C) -> hardsigmoid
g = a |> adaptive_avgpool -> conv(2 * C, 1)
b = mul(a, g) |> layer_scale(0.1) -> stochastic_depth(0.2, mode="batch") -> channel_shuffle(4)
p = b |> channel_chunk(1, 2)
q = b |> channel_slice(2, 2 + C, total=2 * C)
h = g |> channel_slice(0, C)
output = add(p, q, h) |> adaptive_avgpool -> flatten -> layernorm(affine=false) -> linear(3)
"""


def test_every_new_op_in_one_network_agrees_with_torch() -> None:
    from torch_oracle import check_against_torch

    check_against_torch(EVERY_NEW_OP)
    check_against_torch(EVERY_NEW_OP, C=4)
