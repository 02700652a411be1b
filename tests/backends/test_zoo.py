"""The model zoo against the world: each spec in specs/zoo equals torchvision's architecture.

Figures are torchvision's published ones (`zoo_reference.PUBLISHED`, themselves checked against
our hand-written reference modules in test_zoo_reference.py). Each spec must have exactly those
parameters, count exactly those conv+linear multiply-accumulates symbolically at 224x224 (the
`macs` total), and load the reference module's state_dict tensor by tensor, in order, after
which both compute the same outputs.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.weights import load_in_order
from torch_oracle import check_against_torch
from zoo_reference import PUBLISHED, make
from zoo_reference_vit import REFERENCE_SIZE

pytestmark = pytest.mark.slow
ZOO = Path(__file__).resolve().parents[2] / "specs" / "zoo"


def test_every_published_model_has_a_spec() -> None:
    assert {p.stem for p in ZOO.glob("*.net")} == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_counts_equal_torchvisions_figures(name: str) -> None:
    params, macs = PUBLISHED[name]
    counts = netdsl.count(ZOO / f"{name}.net")
    assert counts.value(counts.total("parameters")) == params
    assert counts.value(counts.total("macs")) == macs


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_state_dict_loads_in_order_and_outputs_match(name: str) -> None:
    torch.manual_seed(0)
    ref = make(name).eval()
    side = REFERENCE_SIZE.get(name, 64)  # ViT's position embedding holds it to its size
    ours = netdsl.build(ZOO / f"{name}.net", H=side, W=side).eval()
    assert sum(p.numel() for p in ours.parameters()) == PUBLISHED[name][0]
    load_in_order(ours, ref.state_dict())
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_counts_match_the_compiled_module_layer_by_layer(name: str) -> None:
    check_against_torch(ZOO / f"{name}.net", H=64, W=64)
