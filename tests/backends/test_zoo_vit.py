"""specs/zoo/vit_b_16.net against the transcription of torchvision's VisionTransformer.

test_zoo.py checks ViT-B/16 itself (torchvision's parameters and MACs at 224, its state_dict
loading and equal outputs); here a small ViT from the same spec (32 features, 2 heads, 2 layers,
64x64 images: 17 tokens) against the reference built alike: torchvision's keys and shapes exactly,
equal outputs and gradients, counts against torch's FlopCounterMode layer by layer, the symbolic
formulas, and the position embedding at another input size.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import sympy as sp
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import netdsl
from netdsl.weights import load_in_order, load_weights
from zoo_reference_vit import VisionTransformer, flop_counter_macs

SPEC = Path(__file__).resolve().parents[2] / "specs" / "zoo" / "vit_b_16.net"
SMALL = {"D": 32, "HEADS": 2, "MLP": 64, "DEPTH": 2, "NCLS": 10}
SIDE = 64


def small_reference(side: int = SIDE) -> VisionTransformer:
    return VisionTransformer(image_size=side, patch_size=16, layers=2, heads=2, dim=32, mlp_dim=64, num_classes=10)


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, VisionTransformer]:
    torch.manual_seed(0)
    ref = small_reference()
    # torchvision zero-initialises the head: random values, so that the outputs say something
    torch.nn.init.normal_(ref.heads.head.weight, std=0.1)
    ours = netdsl.build(SPEC, H=SIDE, W=SIDE, **SMALL)
    return ours, ref


def test_keys_and_shapes_are_torchvisions_so_it_loads_strictly(pair: tuple[torch.nn.Module, VisionTransformer]) -> None:
    ours, ref = pair
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in ref.state_dict().items()]
    ours.load_state_dict(ref.state_dict(), strict=True)


def test_outputs_and_gradients_equal_the_reference(pair: tuple[torch.nn.Module, VisionTransformer]) -> None:
    ours, ref = pair
    load_in_order(ours, ref.state_dict())
    x = torch.randn(2, 3, SIDE, SIDE)
    for training in (False, True):  # dropout is 0: train mode is deterministic too
        ours.train(training)
        ref.train(training)
        ours.zero_grad()
        ref.zero_grad()
        got, want = ours(x), ref(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        (got ** 2).sum().backward()
        (want ** 2).sum().backward()
        for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
            assert p.grad is not None and q.grad is not None, name
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_macs_equal_torchs_flop_counter_layer_by_layer(pair: tuple[torch.nn.Module, VisionTransformer]) -> None:
    ours, ref = pair
    counts = netdsl.count(SPEC, H=SIDE, W=SIDE, **SMALL)
    assert counts.value(counts.total("macs")) == flop_counter_macs(ref, (3, SIDE, SIDE))
    assert counts.value(counts.total("parameters")) == sum(p.numel() for p in ref.parameters())
    # per module: FlopCounterMode's FLOPs under each layer's path (a multiply-accumulate is two)
    ours.eval()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        ours(torch.zeros(1, 3, SIDE, SIDE))
    root = type(ours).__name__
    flops = {name.removeprefix(f"{root}."): sum(per_op.values())
             for name, per_op in counter.get_flop_counts().items()}
    measured = 0
    for layer in counts.layers:
        if layer.op in ("conv", "linear", "attention"):
            assert counts.value(counts.layer_metric(layer, "macs")) * 2 == flops[layer.name], layer.name
            measured += flops[layer.name]
    assert measured == flops["Global"]


def test_formulas_are_torchvisions_at_any_size() -> None:
    counts = netdsl.count(SPEC)
    macs, params = counts.total("macs"), counts.total("parameters")
    s = {str(x): x for x in macs.free_symbols | params.free_symbols}
    assert set(s) == {"H", "W", "D", "MLP", "NCLS"}  # DEPTH is structural, held at 12
    h, w, d, mlp, ncls = (s[n] for n in ("H", "W", "D", "MLP", "NCLS"))
    t = h * w / 256 + 1  # tokens: one per 16x16 patch, and the class token
    per_layer_macs = 4 * t * d**2 + 2 * t**2 * d + 2 * t * d * mlp  # projections, 2 products, MLP
    assert sp.expand(macs - (768 * d * (t - 1) + 12 * per_layer_macs + d * ncls)) == 0
    per_layer = 2 * d + (4 * d**2 + 4 * d) + 2 * d + (2 * d * mlp + mlp + d)
    assert sp.expand(params - (769 * d + d + t * d + 12 * per_layer + 2 * d + d * ncls + ncls)) == 0
    assert counts.value(macs) == 17_563_828_224 and counts.value(params) == 86_567_656


def _pos_embedding_place() -> tuple[int, int]:
    for n, line in enumerate(SPEC.read_text().splitlines(), 1):
        if "param pos_embedding" in line:
            return n, len(line) - len(line.lstrip()) + 1
    raise AssertionError("no position embedding in the spec")


def test_weights_for_another_input_size_are_a_located_error(
        pair: tuple[torch.nn.Module, VisionTransformer], tmp_path: Path) -> None:
    _, ref = pair
    bigger = netdsl.build(SPEC, H=SIDE + 16, W=SIDE + 16, **SMALL)  # 26 tokens
    before = [t.clone() for t in bigger.state_dict().values()]
    line, col = _pos_embedding_place()
    with pytest.raises(netdsl.NetdslError) as info:
        load_in_order(bigger, ref.state_dict())
    err = info.value
    assert (err.span.line, err.span.column) == (line, col) and err.path == str(SPEC)
    assert "tensor #3 of the state_dict, 'encoder.pos_embedding', has shape (1, 17, 32) but the learned tensor " \
           "'encoder.pos_embedding' needs (1, 26, 32)" in err.message
    assert "follow the input size, here H=80, W=80" in err.message
    assert "--set H=... --set W=..." in (err.hint or "") and "interpolate_embeddings" in (err.hint or "")
    assert all(torch.equal(a, b) for a, b in zip(before, bigger.state_dict().values()))  # nothing copied
    # the same through a weights file (`netdsl build --weights`), which the message names
    path = tmp_path / "vit_small_64.pt"
    torch.save(ref.state_dict(), path)
    with pytest.raises(netdsl.NetdslError, match=r"tensor #3 of the file '.*vit_small_64\.pt', 'encoder\.pos_embedding'"):
        load_weights(bigger, path)
