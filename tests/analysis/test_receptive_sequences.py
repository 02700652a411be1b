"""Receptive fields over sequences against torch's gradient support, token by token.

The oracle of tests/analysis/test_receptive_field.py (weights 1/fan-in, LayerNorm as the identity,
float64, one probe per sample), with a probe per token: sample b's loss is one token of one
sequence layer (`[N, T, D]`: every feature of token t), one unit of an image layer, or a whole
output. A token that reads nothing (a class token before attention) must have no gradient at all.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sympy as sp
import torch
from torch import nn

import netdsl
from netdsl.passes.receptive import RF, receptive_fields
from test_receptive_field import _at, measure

# A tiny ViT: 8x8 patches of a 32x32 image (a 4x4 grid: 16 tokens and the class token), D = 32,
# two heads, two encoder layers; the class token and the position embedding are learned tensors.
VIT = """
net TinyViT(D = 32, HEADS = 2, P = 8)
input x: [3, H = 32, W = 32] where H % 8 == 0, W % 8 == 0
block layer(d, heads) {
  input x
  a = x |> layernorm(eps=1e-6) -> attention(heads) -> dropout(0.0)
  y = add(x, a)
  m = y |> layernorm(eps=1e-6) -> linear(2*d) -> gelu -> linear(d)
  output = add(y, m)
}
param class_token: [1, D] = 0
param pos_embedding: [H//8 * W//8 + 1, D] = normal(0.02)
patches = x |> conv(D, P, stride=P) -> tokens -> linear(D)
seq = cat(class_token, patches, dim=1)
enc = add(seq, pos_embedding) |> layer(D, HEADS) * 2 -> layernorm(eps=1e-6)
output logits = enc |> token(0) -> linear(10)
"""

# A C3TR-like block: a map's positions as tokens, a learned position term, attention with separate
# q, k, v projections (Ultralytics' TransformerLayer), back to the map, a 3x3 conv after.
C3TR = """
net TinyC3TR(C = 16)
input x: [3, H = 32, W = 32] where H % 4 == 0, W % 4 == 0
f = x |> conv(C, 3, stride=2, padding=1) -> conv(C, 3, stride=2, padding=1)
p = f |> tokens
pe = p |> linear(C)
s = add(p, pe)
q = s |> linear(C, bias=false)
k = s |> linear(C, bias=false)
v = s |> linear(C, bias=false)
a = attention_qkv(q, k, v, heads=2)
r = add(a, s) |> image(H//4, W//4)
output = r |> conv(C, 3, padding=1)
"""

# No attention: tokens and back, position-wise in between, so every unit keeps its own region.
ROUNDTRIP = """
net RoundTrip(C = 8)
input x: [3, H = 32, W = 32] where H % 4 == 0, W % 4 == 0
t = x |> conv(C, 3, stride=2, padding=1) -> conv(C, 3, stride=2, padding=1) -> tokens -> layernorm -> linear(C)
output = t |> gelu -> image(H//4, W//4) -> conv(C, 3, padding=1)
"""

Probe = tuple[str, str, tuple[int, ...]]  # module path ("": the output), kind ("token", "unit", "all"), where


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _build(text: str) -> nn.Module:
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return netdsl.build(text)
    finally:
        torch.set_default_dtype(before)


def _select(y: torch.Tensor, b: int, probe: Probe) -> torch.Tensor:
    _, kind, t = probe
    return y[b, t[0]].sum() if kind == "token" else y[b, :, t[0], t[1]].sum() if kind == "unit" else y[b].sum()


def _supports(model: nn.Module, probes: list[Probe]) -> list[torch.Tensor]:
    """Each probe's gradient support on the input (rows x columns), one probe per sample."""
    return measure(model, probes, _select)


def _mask(region: tuple[tuple[int, int], tuple[int, int]] | None, size: tuple[int, int]) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    if region is not None:
        (h0, h1), (w0, w1) = region
        mask[max(h0, 0):min(h1, size[0] - 1) + 1, max(w0, 0):min(w1, size[1] - 1) + 1] = True
    return mask


def _fields(model: nn.Module) -> tuple[dict[str, RF | None], dict[str, RF], list[str]]:
    cg = model.concrete
    res = receptive_fields(cg)
    return {x.path: rf for x, rf in zip(cg.walk(), res.layers)}, res.outputs, res.notes


def _check(model: nn.Module, probes: list[tuple[Probe, RF]]) -> list[bool]:
    """Each probe's support against the pass's region: equal where the region lies inside the
    input; bounded by it at the borders. Returns, per probe, whether it read anything."""
    at: Callable[[sp.Expr], int] = _at(model)
    size = tuple(model.input_shape[1:])
    got = _supports(model, [p for p, _ in probes])
    read = []
    for ((path, kind, where), rf), support in zip(probes, got):
        region = rf.token(where[0], at) if kind == "token" else rf.region(where if kind == "unit" else (0, 0), at)
        want = _mask(region, size)
        inside = region is None or all(0 <= lo and hi < n for (lo, hi), n in zip(region, size))
        if inside:
            assert torch.equal(support, want), (path, kind, where, region)
        else:
            assert support.any() and not (support & ~want).any(), (path, kind, where, region)
        read.append(bool(support.any()))
    return read


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    return _build(VIT)


def _field(layers: dict[str, RF | None], path: str) -> RF:
    rf = layers[path]
    assert rf is not None, path
    return rf


def test_a_tiny_vits_tokens_read_their_patch_until_attention_and_the_image_after(vit: nn.Module) -> None:
    layers, outputs, notes = _fields(vit)
    at = _at(vit)
    # the linear after `tokens` (token t is patch (t // 4, t % 4)), the first encoder layer's
    # layernorm (the class token, 0, reads nothing yet) and its attention (every token reads it all)
    seq, before, after = (_field(layers, p) for p in ("patches.2", "enc.0.a.0", "enc.0.a.1"))
    probes: list[tuple[Probe, RF]] = [(("patches.2", "token", (t,)), seq) for t in (0, 5, 15)]
    probes += [(("enc.0.a.0", "token", (t,)), before) for t in (0, 6)]
    probes += [(("enc.0.a.1", "token", (t,)), after) for t in (0, 9)]
    probes += [(("", "all", ()), outputs["logits"])]
    assert seq.token(5, at) == ((8, 15), (8, 15)) and before.token(6, at) == ((8, 15), (8, 15))
    assert before.token(0, at) is None and after.token(0, at) == ((0, 31), (0, 31))
    assert _check(vit, probes) == [True, True, True, False, True, True, True, True]
    assert outputs["logits"].region((0, 0), at) == ((0, 31), (0, 31)) and outputs["logits"].jump == (0, 0)
    assert any("grid" in n for n in notes)


def test_a_c3tr_like_blocks_output_reads_the_whole_map() -> None:
    model = _build(C3TR)
    layers, outputs, notes = _fields(model)
    assert not any("do not lie on one grid" in n for n in notes)  # q's grid, k's and v's whole: exact
    at = _at(model)
    out = outputs["output"]
    # every unit after attention reads the whole (padded) input; the 3x3 conv after it adds nothing
    assert out.jump == (0, 0) and out.region((4, 4), at) == out.region((0, 0), at)
    assert _check(model, [(("", "all", ()), out), (("p", "token", (27,)), _field(layers, "p"))]) == [True, True]


def test_tokens_and_back_keep_every_units_region() -> None:
    model = _build(ROUNDTRIP)
    layers, outputs, notes = _fields(model)
    at = _at(model)
    image = outputs["output"]
    # the linear after layernorm after tokens: token 27 of the 8x8 grid is row 3, column 3, whose
    # 7x7 field starts at 4*3 - 3
    linear = layers["t.4"]
    assert linear is not None and linear.tokens is not None and linear.token(27, at) == ((9, 15), (9, 15))
    probes: list[tuple[Probe, RF]] = [(("t.4", "token", (k,)), linear) for k in (0, 27, 63)]
    probes.append((("output.2", "unit", (3, 4)), image))
    assert _check(model, probes) == [True] * 4
    # `image` lays the tokens back: the conv after it slides over the same grid
    assert image.jump == (4, 4) and image.size == (15, 15) and not any("do not lie on one grid" in n for n in notes)
