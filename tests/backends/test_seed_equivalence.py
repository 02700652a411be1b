"""The compiled seed specs against the write-up's hand-written classes (tests/seed_models.py)."""
from __future__ import annotations

import pytest
import torch

import netdsl
from netdsl.weights import load_in_order
from seed_models import SEED

EXPECTED_PARAMS = {"pool_upsample": 49_728, "conv_transpose": 49_728, "unet": 56_856}


def _pair(name: str, root, **kw):
    torch.manual_seed(0)
    ref = SEED[name](kernel=kw.get("k", 3), num_filters=kw.get("NF", 32), num_colours=kw.get("NC", 24),
                     num_in_channels=kw.get("NIC", 1))
    ours = netdsl.build(root / "specs" / f"{name}.net", **kw)
    return ref, ours


@pytest.mark.parametrize("name", sorted(SEED))
def test_parameter_count_and_output_shape(name: str, root) -> None:
    ref, ours = _pair(name, root)
    n = sum(p.numel() for p in ours.parameters())
    assert n == EXPECTED_PARAMS[name] == sum(p.numel() for p in ref.parameters())
    assert tuple(ours(torch.zeros(3, 1, 32, 32)).shape) == (3, 24, 32, 32)
    assert ours.output_shape == (24, 32, 32) and ours.in_channels == 1


@pytest.mark.parametrize("name", sorted(SEED))
def test_parameter_order_matches(name: str, root) -> None:
    ref, ours = _pair(name, root)
    ref_shapes = [tuple(p.shape) for p in ref.parameters()]
    our_shapes = [tuple(p.shape) for p in ours.parameters()]
    assert ref_shapes == our_shapes
    assert [tuple(b.shape) for b in ref.buffers()] == [tuple(b.shape) for b in ours.buffers()]


# The write-up's ConvTransposeNet hard-codes padding=1, so only k=3 keeps its shapes.
_CASES = [(n, kw) for n in sorted(SEED) for kw in ({}, {"NF": 8, "NC": 5, "NIC": 3}, {"k": 5, "NF": 4})
          if not (n == "conv_transpose" and "k" in kw)]


@pytest.mark.parametrize(("name", "kw"), _CASES)
def test_same_weights_same_outputs(name: str, kw: dict, root) -> None:
    ref, ours = _pair(name, root, **kw)
    load_in_order(ours, ref.state_dict())
    nic = kw.get("NIC", 1)
    x = torch.randn(4, nic, 32, 32, generator=torch.Generator().manual_seed(1))
    for mode in ("train", "eval"):
        getattr(ref, mode)()
        getattr(ours, mode)()
        # In train mode BatchNorm updates running statistics: both must update identically too.
        assert torch.equal(ref(x), ours(x)), mode
    for a, b in zip(ref.buffers(), ours.buffers()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(SEED))
def test_gradients_match(name: str, root) -> None:
    ref, ours = _pair(name, root)
    load_in_order(ours, ref.state_dict())
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    ref(x).square().mean().backward()
    ours(x).square().mean().backward()
    for a, b in zip(ref.parameters(), ours.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(SEED))
def test_fx_symbolic_trace(name: str, root) -> None:
    _, ours = _pair(name, root)
    ours.eval()
    traced = torch.fx.symbolic_trace(ours)
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(traced(x), ours(x))
    called = [n.target for n in traced.graph.nodes if n.op == "call_module"]
    assert len(called) == len([m for m in ours.modules() if not list(m.children())])


def test_load_in_order_rejects_mismatch(root) -> None:
    ref = SEED["unet"](num_filters=8)
    ours = netdsl.build(root / "specs" / "unet.net")
    with pytest.raises(netdsl.NetdslError, match="has shape"):
        load_in_order(ours, ref.state_dict())
    with pytest.raises(netdsl.NetdslError, match="distinct tensors"):
        load_in_order(ours, dict(list(ref.state_dict().items())[:3]))


def test_print_is_readable(root) -> None:
    text = repr(netdsl.build(root / "specs" / "unet.net"))
    assert text.startswith("UNet(")
    assert "(sequence1): Sequential(" in text and "(output): Conv2d(25, 24" in text
