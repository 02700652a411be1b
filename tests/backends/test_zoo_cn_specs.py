"""What test_zoo's generic checks cannot see in two of the new zoo specs.

ConvNeXt's blocks start scaled by 1e-6 (torchvision's layer scale), so at the reference's own
initial values the blocks hardly change the output and a wrongly wired block would still pass an
output comparison: here every layer scale is drawn at random first. Its stochastic depth (the
identity in eval mode) is compared in training mode too, with one seed for both models: each block
drops the same rows with torchvision's rates.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import netdsl
from netdsl.weights import load_in_order
from zoo_reference_cn import MAKERS_CN

pytestmark = pytest.mark.slow
ZOO = Path(__file__).resolve().parents[2] / "specs" / "zoo"


def _drop_rates(model: nn.Module) -> list[float]:
    return [float(m.p) for m in model.modules() if type(m).__name__ == "StochasticDepth"]


@pytest.fixture(scope="module")
def convnext() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ref = MAKERS_CN["convnext_tiny"](10)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("layer_scale"):
                p.uniform_(0.5, 1.5)
    ours = netdsl.build(ZOO / "convnext_tiny.net", H=64, W=64, NCLS=10)
    load_in_order(ours, ref.state_dict())
    return ours, ref


def test_convnext_blocks_match_with_random_layer_scales(convnext: tuple[nn.Module, nn.Module]) -> None:
    ours, ref = convnext
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), ref.eval()(x), rtol=1e-4, atol=1e-5)


def test_convnext_stochastic_depth_rates_and_training_mode(convnext: tuple[nn.Module, nn.Module]) -> None:
    ours, ref = convnext
    # Our rates are 0.1 * k / 17 computed exactly, then rounded once; torchvision's float
    # arithmetic rounds twice, so 5 of the 18 differ in the last bit.
    assert _drop_rates(ours) == pytest.approx(_drop_rates(ref), rel=1e-15, abs=0)
    assert len(_drop_rates(ours)) == 18
    x = torch.randn(8, 3, 32, 32)  # any size runs; 32 keeps it quick
    outs = []
    for model in (ours, ref):
        torch.manual_seed(1)
        with torch.no_grad():
            outs.append(model.train()(x))
    assert torch.allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(outs[1], ref.eval()(x), rtol=1e-4, atol=1e-5)  # some block did drop rows
