"""ModelEMA: the averaged weights, the decay ramp, buffers copied, and a checkpoint round trip."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from netdsl.tasks.ema import ModelEMA


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))


def test_decay_ramps_up_from_zero_towards_the_nominal_decay() -> None:
    ema = ModelEMA(_net(), decay=0.99, tau=10.0)
    first = ema.current_decay()
    assert first == pytest.approx(0.99 * (1 - math.exp(-1 / 10)))
    for _ in range(200):
        ema.update(_net())
    assert first < ema.current_decay() < 0.99
    assert ema.current_decay() == pytest.approx(0.99, rel=1e-6)


def test_parameters_follow_the_moving_average_by_hand() -> None:
    live = _net()
    ema = ModelEMA(live, decay=0.9, tau=1.0)
    start = ema.module[0].weight.clone()
    expected = start
    for step in range(3):
        with torch.no_grad():
            live[0].weight.add_(0.5)
        d = 0.9 * (1 - math.exp(-(step + 1) / 1.0))
        expected = d * expected + (1 - d) * live[0].weight.detach()
        ema.update(live)
    assert torch.allclose(ema.module[0].weight, expected, atol=1e-6)
    assert not torch.equal(ema.module[0].weight, live[0].weight)  # an average, not a copy


def test_buffers_are_copied_not_averaged() -> None:
    live = _net()
    ema = ModelEMA(live, decay=0.9999, tau=1.0)
    live.train()
    live(torch.randn(4, 2, 5, 5) * 3 + 1)
    ema.update(live)
    assert torch.equal(ema.module[1].running_mean, live[1].running_mean)
    assert torch.equal(ema.module[1].num_batches_tracked, live[1].num_batches_tracked)


def test_the_average_is_frozen_and_in_eval_mode() -> None:
    ema = ModelEMA(_net())
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())


def test_state_round_trip_continues_identically() -> None:
    live = _net()
    a = ModelEMA(live, decay=0.95, tau=3.0)
    for _ in range(4):
        with torch.no_grad():
            live[0].weight.mul_(1.1)
        a.update(live)
    b = ModelEMA(_net(), decay=0.5, tau=100.0)
    b.load_state_dict(a.state_dict())
    assert b.updates == 4 and b.current_decay() == a.current_decay()
    a.update(live)
    b.update(live)
    for x, y in zip(a.module.state_dict().values(), b.module.state_dict().values()):
        assert torch.equal(x, y)


def test_a_tensor_named_module_is_not_mistaken_for_ddp() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = nn.Linear(2, 2)
            self.head = nn.Linear(2, 1)

    ema = ModelEMA(Net())
    assert hasattr(ema.module, "head")


@pytest.mark.parametrize("decay,tau", [(1.0, 1.0), (-0.1, 1.0), (0.9, 0.0)])
def test_bad_settings_are_refused(decay: float, tau: float) -> None:
    with pytest.raises(ValueError):
        ModelEMA(_net(), decay=decay, tau=tau)


def test_frozen_parameters_are_copied_not_averaged() -> None:
    live = _net()
    live[0].weight.requires_grad_(False)
    ema = ModelEMA(live, decay=0.9, tau=1.0)
    with torch.no_grad():
        live[0].weight.mul_(1.0 / 3.0)  # a frozen weight the EMA has not seen (e.g. loaded weights)
        live[0].bias.add_(1.0)
    ema.update(live)
    assert torch.equal(ema.module[0].weight, live[0].weight)
    assert not torch.equal(ema.module[0].bias, live[0].bias)  # trainable: averaged
