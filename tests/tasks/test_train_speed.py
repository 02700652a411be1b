"""The training loop's speed levers change speed, not results: channels_last and the
fused Adam step give the old loop's numbers up to float rounding, no step reads a number back
to the host, checkpoints are stored in the standard layout, and bf16 trains as well."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from netdsl.tasks.colourize.data import Tensors
from netdsl.tasks.colourize.loop import Hyper, Trainer

OLD = dict(channels_last=False, fused=False)  # the loop before its speed levers (contiguous layout, unfused Adam)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1),
                               nn.BatchNorm2d(8), nn.ReLU())
        self.c = nn.Conv2d(9, 24, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.cat([x, self.b(self.a(x))], 1))


def data(n: int = 60) -> Tensors:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 32, 32, generator=g)
    y = (x[:, 0] * 23.99).long()  # a learnable map from grey level to colour index
    return Tensors(x[:40], y[:40], x[40:], y[40:])


def train(levers: dict, epochs: int = 2, model: nn.Module | None = None) -> Trainer:
    torch.manual_seed(0)
    t = Trainer(model or Net(), data(), replace(Hyper(batch_size=10), **levers))
    for _ in range(epochs):
        t.run_epoch()
    return t


def test_levers_change_speed_not_results() -> None:
    old, new = train(OLD), train({})
    for a, b in zip(old.history.rows, new.history.rows):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
        assert a.val_loss == pytest.approx(b.val_loss, rel=1e-4)
    # (weights agree less tightly: Adam's first steps divide by tiny second moments, so one-ulp
    # differences in a gradient become visible in a weight; the losses are what a user reads)


def test_default_levers_are_on() -> None:
    t = train({}, epochs=0)
    assert t.module.c.weight.is_contiguous(memory_format=torch.channels_last)
    group = t.optimizer.param_groups[0]
    assert group.get("fused") or group.get("foreach")
    state = t.state()
    assert all(v.is_contiguous() for v in state["model"].values())  # checkpoints: standard layout


def test_no_per_step_host_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """The number of reads back to the host in an epoch does not grow with its steps."""
    calls = {"n": 0}
    real_item = torch.Tensor.item

    def counting_item(self: torch.Tensor):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    counts = []
    for n in (20, 60):
        torch.manual_seed(0)
        x, y = torch.rand(n, 1, 32, 32), torch.randint(0, 24, (n, 32, 32))
        t = Trainer(Net(), Tensors(x, y, x[:10], y[:10]), Hyper(batch_size=10))
        calls["n"] = 0
        t.train_epoch()
        counts.append(calls["n"])
    assert counts[0] == counts[1], counts


def test_validation_builds_no_graph() -> None:
    t = train({}, epochs=0)
    seen = []
    t.eval_module.c.register_forward_hook(lambda m, i, o: seen.append((o.requires_grad, torch.is_inference_mode_enabled())))
    t.evaluate()
    assert seen and all(not rg and inf for rg, inf in seen)


def test_bf16_trains() -> None:
    fp32, bf16 = train({}, epochs=3), train({"precision": "bf16"}, epochs=3)
    first = bf16.history.rows[0].val_loss
    assert bf16.history.rows[-1].val_loss < first  # it learns
    assert bf16.history.rows[-1].val_loss == pytest.approx(fp32.history.rows[-1].val_loss, rel=0.05)


def test_unknown_precision_is_refused() -> None:
    from netdsl.errors import NetdslError

    with pytest.raises(NetdslError, match="precision"):
        train({"precision": "fp8"}, epochs=0)
