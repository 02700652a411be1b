"""An exponential moving average of a model's weights, for evaluation and checkpoints (`--ema`).

The decay ramps up as ultralytics' ModelEMA does: `decay * (1 - exp(-updates / tau))`, so the
first updates follow the live weights closely and the average only later becomes long. Parameters
are averaged; buffers (BatchNorm's running statistics, its batch counter) are copied from the live
model at each update, so the averaged model is always evaluated with statistics that belong to
recent weights. Frozen parameters (`requires_grad=False` in the live model) are copied too.
Written from the method's description, not from ultralytics' code.

>>> import torch
>>> live = torch.nn.Linear(2, 1)
>>> ema = ModelEMA(live, decay=0.5, tau=1e-9)
>>> with torch.no_grad():
...     _ = live.weight.add_(1.0)
>>> before = ema.module.weight.clone()
>>> ema.update(live)
>>> torch.allclose(ema.module.weight, (before + live.weight) / 2)
True
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of `model` whose parameters follow the live ones as a moving average."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if not tau > 0:
            raise ValueError(f"EMA tau must be positive, got {tau}")
        self.module = copy.deepcopy(_unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates

    def current_decay(self) -> float:
        """The decay the next update uses."""
        return self.decay * (1.0 - math.exp(-(self.updates + 1) / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.updates += 1
        live = _unwrap(model)
        for mine, theirs in zip(self.module.parameters(), live.parameters()):
            if not theirs.requires_grad:  # frozen means unchanged: d*x + (1-d)*x need not round to x
                mine.copy_(theirs)
            elif mine.dtype.is_floating_point:
                mine.mul_(d).add_(theirs.detach(), alpha=1.0 - d)
        for buf, live_buf in zip(self.module.buffers(), live.buffers()):
            buf.copy_(live_buf)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the averaged weights and the update count (the ramp's position)."""
        return {"module": self.module.state_dict(), "updates": self.updates,
                "decay": self.decay, "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
        self.tau = float(state["tau"])


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel or torch.compile's wrapper, else the model itself.

    Checked by type: a spec may well name a tensor `module`, which must not be mistaken for DDP's.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return _unwrap(model.module)
    compiled = getattr(torch, "_dynamo", None)
    wrapper = getattr(getattr(compiled, "eval_frame", None), "OptimizedModule", None)
    if wrapper is not None and isinstance(model, wrapper):
        return _unwrap(model._orig_mod)
    return model
