"""`@batch_axis param NAME: [dims] = INIT`: a learned tensor stored as [1, *dims], as torchvision
stores ViT's class token [1, 1, D] and position embedding [1, T, D], so their state_dicts load.

Its shape and counts are those of its dims; forward expands the stored tensor over the batch. The
attribute belongs on `param` only (a located error elsewhere); it exports to Python and ONNX.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import netdsl
from conftest import error_at
from export_roundtrip import onnx_round_trip, python_round_trip
from netdsl.commands.build import build_report
from netdsl.weights import load_in_order

# A ViT's input stem, small: the class token joins the patch tokens, the position embedding is added.
SPEC = """net Stem(D = 8)
input x: [3, H = 8, W = 8] where H % 4 == 0, W % 4 == 0
@batch_axis param class_token: [1, D] = 0
@batch_axis param pos: [H * W // 16 + 1, D] = normal(0.02)
p = x |> conv(D, 4, stride=4) -> tokens
output = add(cat(class_token, p, dim=1), pos) |> gelu
"""


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return netdsl.build(SPEC).eval()


def test_stored_with_a_batch_axis_of_one(model: nn.Module) -> None:
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["class_token"] == (1, 1, 8) and shapes["pos"] == (1, 5, 8)
    assert model.class_token.abs().sum() == 0 and 0 < model.pos.std() < 0.05


def test_forward_expands_it_over_the_batch(model: nn.Module) -> None:
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        p = model.p[0](x).flatten(2).transpose(1, 2)
        # torchvision's VisionTransformer.forward: expand the class token, cat on dim 1, add pos
        want = nn.functional.gelu(torch.cat([model.class_token.expand(3, -1, -1), p], dim=1) + model.pos)
        assert torch.equal(model(x), want)


def test_counts_are_the_dims() -> None:
    c = netdsl.count(SPEC)
    rows = {r.name: r for r in c.layers}
    assert str(c.show(rows["class_token"].weights)) == "D" and str(c.show(rows["pos"].weights)) == "D*H*W/16 + D"
    assert c.value(c.total("parameters")) == sum(p.numel() for p in netdsl.build(SPEC).parameters())


def test_build_json_says_the_stored_shape() -> None:
    report, _ = build_report(SPEC, None, {})
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["class_token"]["out_shape"] == [1, 8] and rows["class_token"]["stored_shape"] == [1, 1, 8]
    assert "stored_shape" not in rows["p.0"]


def test_freeze_still_works_with_it() -> None:
    m = netdsl.build(SPEC.replace("@batch_axis param class_token", "@freeze @batch_axis param class_token"))
    assert not m.class_token.requires_grad and m.pos.requires_grad and m.class_token.shape == (1, 1, 8)


def test_a_torchvision_like_state_dict_loads_in_order(model: nn.Module) -> None:
    class Theirs(nn.Module):  # torchvision's names and order: class_token, conv_proj, pos_embedding
        def __init__(self) -> None:
            super().__init__()
            self.class_token = nn.Parameter(torch.randn(1, 1, 8))
            self.pos_embedding = nn.Parameter(torch.randn(1, 5, 8))
            self.conv_proj = nn.Conv2d(3, 8, 4, stride=4)

    theirs = Theirs()
    mine = netdsl.build(SPEC)
    load_in_order(mine, theirs.state_dict())
    assert torch.equal(mine.class_token, theirs.class_token) and torch.equal(mine.pos, theirs.pos_embedding)


def test_in_a_graph_block_it_is_the_call_module_s() -> None:
    text = ("net B(D = 8)\ninput t: [T = 4, D]\nblock g() {\n  input s\n  @batch_axis param b: [1, D] = 1\n"
            "  output = add(s, b)\n}\noutput = t |> g\n")
    m = netdsl.build(text)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == {"output.b": (1, 1, 8)}
    x = torch.randn(2, 4, 8)
    assert torch.equal(m(x), x + 1)


def test_python_export_round_trips(tmp_path: Path) -> None:
    source = python_round_trip(SPEC, tmp_path)
    assert "torch.full((1, 1, D), 0.0)" in source and "torch.empty((1, H * W // 16 + 1, D))" in source


def test_onnx_export_round_trips(tmp_path: Path) -> None:
    onnx_round_trip(SPEC, tmp_path)


HEAD = "net N(D = 8)\ninput t: [T = 4, D]\n"


@pytest.mark.parametrize(("body", "line", "col", "words"), [
    ("output = t |> gelu @batch_axis", 3, 20, "'@batch_axis' belongs on a learned tensor"),
    ("@batch_axis output = t |> gelu", 3, 1, "'@batch_axis' belongs on a learned tensor"),
    ("@batch_axis(1) param b: [1, D] = 0\noutput = add(t, b)", 3, 13, "'@batch_axis' takes no arguments"),
    ("@batch_axes param b: [1, D] = 0\noutput = add(t, b)", 3, 1, "unknown attribute '@batch_axes'"),
])
def test_errors_are_located(body: str, line: int, col: int, words: str) -> None:
    err = error_at(netdsl.build, HEAD + body + "\n", line, col, words)
    assert "@batch_axis param" in err.hint or "batch_axis" in err.hint, err.render()
