"""The torch oracle for memory: what autograd saves in a training-mode forward, and what a training
step holds (parameters, gradients, optimizer state, buffers), measured on the compiled module."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sympy as sp
import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks

from netdsl.concrete import ConcreteGraph
from netdsl.passes.memory_model import batch_symbol


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Small networks run fastest on one thread (and the test machines are shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _storages(tensors: Iterator[torch.Tensor]) -> dict[int, int]:
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}


def _inputs(model: nn.Module, n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    inputs = getattr(model, "inputs", None) or {"x": model.input_shape}
    return [torch.randn(n, *shape, generator=g) for shape in inputs.values()]


def forward_saving(model: nn.Module, n: int, dtype: torch.dtype | None = None) -> tuple[int, object]:
    """One training-mode forward of a batch of `n` random inputs: the bytes of the distinct
    storages autograd saves (parameters and buffers excluded, a view charged as its base), and
    the output (the graph stays alive while the caller holds it)."""
    model.train()
    own = _storages(model.parameters()) | _storages(model.buffers())
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in own:
            seen[s.data_ptr()] = s.nbytes()
        return t

    cast = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with saved_tensors_hooks(pack, lambda t: t), cast:
        out = model(*_inputs(model, n))
    return sum(seen.values()), out


def saved_per_module(model: nn.Module, n: int, dtype: torch.dtype | None = None) -> dict[str, int]:
    """Like `forward_saving`, each storage charged to the leaf module running when it is first saved
    (by module path): the per-layer figures of a network whose layers are all modules."""
    running = [""]
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: running.__setitem__(0, name))
             for name, m in model.named_modules() if not list(m.children())]
    own = _storages(model.parameters()) | _storages(model.buffers())
    first: dict[int, tuple[str, int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in own:
            first.setdefault(s.data_ptr(), (running[0], s.nbytes()))
        return t

    model.train()
    cast = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
    try:
        with saved_tensors_hooks(pack, lambda t: t), cast:
            out = model(*_inputs(model, n))
    finally:
        for h in hooks:
            h.remove()
    del out
    per: dict[str, int] = {}
    for name, size in first.values():
        per[name] = per.get(name, 0) + size
    return per


def saved_by_torch(model: nn.Module, n: int, dtype: torch.dtype | None = None) -> int:
    """The bytes autograd saves for backward in one training-mode forward of a batch of `n`."""
    return forward_saving(model, n, dtype)[0]


def at(cg: ConcreteGraph, formula: sp.Expr, n: int) -> int:
    """A memory formula (internal symbols and the batch symbol) at the values in use and batch n."""
    value = cg.env.at(formula.xreplace({batch_symbol(cg.env): n}))
    assert value.is_Integer, value
    return int(value)


def _leaves(out: object) -> Iterator[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, (tuple, list)):
        for o in out:
            yield from _leaves(o)


OPTIMIZERS = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
    "sgd": lambda ps: torch.optim.SGD(ps, lr=1e-3),
    "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9),
}


def train_step_bytes(model: nn.Module, n: int, optimizer: str, dtype: torch.dtype | None = None) -> dict[str, int]:
    """One training step (forward under autocast to `dtype` if given, backward, `optimizer.step()`;
    "none": no optimizer) and the bytes it holds by kind: parameters, buffers, gradients,
    optimizer state, and what the forward saved."""
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = OPTIMIZERS[optimizer](trained) if optimizer != "none" else None
    saved, out = forward_saving(model, n, dtype)
    sum(t.float().sum() for t in _leaves(out)).backward()  # type: ignore[union-attr]
    if opt is not None:
        opt.step()
    state = [t for s in (opt.state.values() if opt is not None else ()) for t in s.values()
             if isinstance(t, torch.Tensor)]
    return {"param": sum(_storages(model.parameters()).values()), "buffer": sum(_storages(model.buffers()).values()),
            "grad": sum(_storages(p.grad for p in model.parameters() if p.grad is not None).values()),
            "optimizer": sum(_storages(iter(state)).values()), "saved": saved}
