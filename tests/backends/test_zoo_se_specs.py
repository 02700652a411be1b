"""What the squeeze-excitation zoo specs carry beyond counts and eval-mode outputs (test_zoo.py):
EfficientNet-B0's per-block stochastic depth rates, written as a float expression in the spec."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

import netdsl
from zoo_reference_se import MAKERS_SE, MBConv

pytestmark = pytest.mark.slow
ZOO = Path(__file__).resolve().parents[2] / "specs" / "zoo"


def test_efficientnet_b0_stochastic_depth_rates_equal_torchvisions() -> None:
    ours = netdsl.build(ZOO / "efficientnet_b0.net", H=64, W=64)
    rates = [(m.p, m.mode) for m in ours.modules() if type(m).__name__ == "StochasticDepth"]
    ref = MAKERS_SE["efficientnet_b0"](1000)
    # torchvision applies it only on the residual blocks (the others keep an unused module)
    want = [m.stochastic_depth.p for m in ref.modules() if isinstance(m, MBConv) and m.use_res_connect]
    assert len(rates) == len(want) == 9
    assert all(mode == "row" for _, mode in rates)
    assert all(math.isclose(p, q, rel_tol=1e-12) for (p, _), q in zip(rates, want))
    assert [round(p * 16 / 0.2) for p, _ in rates] == [2, 4, 6, 7, 9, 10, 12, 13, 14]

