"""The live set of an eval forward, measured by torch itself: the oracle of `passes.peak`.

A `TorchDispatchMode` sees every aten op the forward runs; after each one it holds a weak
reference to every storage an op made, and sums the bytes of those still alive (the network's
input included, parameters and buffers excluded). The largest such sum over the forward is the
measured peak. It sees aten ops, not what a kernel allocates inside itself.
"""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveSet(TorchDispatchMode):
    """Tracks the storages aten ops make; `peak` is the largest live total seen after an op."""

    def __init__(self, exclude: set[int], held: list[torch.Tensor]) -> None:
        super().__init__()
        self.exclude = exclude  # data pointers of parameters and buffers
        self.live: dict[int, tuple[weakref.ref, int]] = {}
        self.peak = 0
        self.where = ""
        self.inside: list[str] = []  # the module paths being run, innermost last
        self.per: dict[str, int] = {}  # module path -> the largest live total while it ran
        for t in held:
            self.track(t)
        self.measure("input")

    def track(self, t: torch.Tensor) -> None:
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if s.nbytes() == 0 or ptr in self.exclude:
            return
        known = self.live.get(ptr)
        if known is None or known[0]() is None:
            self.live[ptr] = (weakref.ref(s), s.nbytes())

    def measure(self, where: str) -> None:
        total = sum(n for ref, n in self.live.values() if ref() is not None)
        if total > self.peak:
            self.peak, self.where = total, where
        if self.inside:
            self.per[self.inside[-1]] = max(self.per.get(self.inside[-1], 0), total)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.track(t)
        self.measure(str(func))
        return out


def _autocast(dtype: torch.dtype | None) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext() if dtype is None else torch.autocast("cpu", dtype=dtype)


def measured_peak(net: torch.nn.Module, *xs: torch.Tensor, autocast: torch.dtype | None = None) -> int:
    """The largest total of live activation storages during `net(*xs)` in eval mode under
    no_grad (and a CPU autocast to `autocast`, where given): the inputs included, parameters and
    buffers excluded."""
    net.eval()
    exclude = {t.untyped_storage().data_ptr() for t in (*net.parameters(), *net.buffers())}
    with torch.no_grad(), _autocast(autocast), LiveSet(exclude, list(xs)) as mode:
        net(*xs)
    return mode.peak


def measured_layers(net: torch.nn.Module, paths: set[str], *xs: torch.Tensor,
                    autocast: torch.dtype | None = None) -> tuple[int, dict[str, int]]:
    """`measured_peak`, and per module path in `paths` the largest live total while that module
    ran (a module that runs no aten op, such as nn.Identity, has none)."""
    net.eval()
    exclude = {t.untyped_storage().data_ptr() for t in (*net.parameters(), *net.buffers())}
    mode = LiveSet(exclude, list(xs))

    def enter(path: str) -> Callable[..., None]:
        return lambda *_: mode.inside.append(path)

    def leave(*_: object) -> None:  # a hook that returns something replaces the output
        mode.inside.pop()

    hooks = []
    for path, m in net.named_modules():
        if path in paths:
            hooks += [m.register_forward_pre_hook(enter(path)), m.register_forward_hook(leave)]
    try:
        with torch.no_grad(), _autocast(autocast), mode:
            net(*xs)
    finally:
        for h in hooks:
            h.remove()
    return mode.peak, mode.per
