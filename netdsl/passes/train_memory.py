"""What a training step holds: parameters, buffers, gradients, optimizer state and saved tensors.

`train_bytes` = `param_bytes` (every parameter, trained or frozen, float32 as the compiled module
makes them; autocast casts copies, the parameters stay float32) + `buffer_bytes` (BatchNorm's
running mean and variance, float32, and its int64 `num_batches_tracked`) + the gradients of the
trained parameters (float32) + the optimizer's state after a step, exactly as `torch.optim` holds
it (Adam: `exp_avg` and `exp_avg_sq` per value and a float32 `step` tensor per parameter tensor;
SGD with momentum: `momentum_buffer`; plain SGD and none: nothing) + `passes.saved`'s total.
Frozen parameters have no gradient and no optimizer state. Formulas in internal symbols and the
batch symbol.

>>> import netdsl
>>> from netdsl.passes.memory_model import batch_symbol
>>> cg = netdsl.shapes("net T()\\ninput x: [3, H = 8, W = 8]\\noutput y = x |> conv(4, 3, padding=1) -> relu\\n")
>>> param_bytes(cg), train_bytes(cg, batch_symbol(cg.env))  # 112 weights and biases; Adam
(448, 28*H*N*W + 1800)
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from netdsl.concrete import ConcreteGraph, Layer, Merge, Statement
from netdsl.passes.memory_model import MemoryOptions
from netdsl.passes.saved import DEFAULT, saved_total

PARAM_BYTES = 4   # float32 parameters and gradients
STEP_BYTES = 4    # Adam's `step`: a float32 scalar tensor per parameter tensor
COUNTER_BYTES = 8  # BatchNorm's num_batches_tracked: int64


@dataclass(frozen=True)
class _Held:
    values: sp.Expr    # parameter values
    tensors: int       # parameter tensors
    trained: bool      # not frozen


def _frozen(cg: ConcreteGraph) -> dict[int, frozenset[str]]:
    """Each merge's statement attributes (a merge's `@freeze` is its statement's)."""
    out: dict[int, frozenset[str]] = {}

    def visit(stmts: list[Statement]) -> None:
        for st in stmts:
            if st.merge is not None:
                out[id(st.merge)] = st.attrs
            for it in st.items:
                if not isinstance(it, Layer):
                    visit(it.statements)
    visit(cg.statements)
    return out


def _held(cg: ConcreteGraph) -> list[_Held]:
    """The parameters of each walk item that has some: values, tensors, trained or frozen."""
    attrs = _frozen(cg)
    out = []
    for it in cg.walk():
        c = it.counts
        values = sp.expand(c.weights + c.biases + c.norm_params)
        if values == 0:
            continue
        tensors = it.op.param_tensors(it.args, len(it.inputs) if isinstance(it, Merge) else 1, c)
        held = it.attrs if isinstance(it, Layer) else attrs.get(id(it), frozenset())
        out.append(_Held(values, int(tensors), "freeze" not in held and not it.op.fixed_params))
    return out


def param_bytes(cg: ConcreteGraph, options: MemoryOptions = DEFAULT) -> sp.Expr:
    """Bytes of every parameter, trained or frozen (float32 whatever the autocast dtype)."""
    return sp.expand(PARAM_BYTES * sp.Add(*[h.values for h in _held(cg)]))


def buffer_bytes(cg: ConcreteGraph) -> sp.Expr:
    """Bytes of the buffers: running statistics (float32) and each such layer's int64 counter."""
    total = sp.Integer(0)
    for it in cg.walk():
        if it.op.running_stats and it.counts.buffers != 0:
            total += (it.counts.buffers - 1) * PARAM_BYTES + COUNTER_BYTES
    return sp.expand(total)


def optimizer_bytes(cg: ConcreteGraph, options: MemoryOptions = DEFAULT) -> sp.Expr:
    """Bytes of the optimizer's state after a step (trained parameters only)."""
    trained = [h for h in _held(cg) if h.trained]
    values = sp.Add(*[h.values for h in trained])
    if options.optimizer == "adam":
        return sp.expand(2 * PARAM_BYTES * values + STEP_BYTES * sum(h.tensors for h in trained))
    if options.optimizer == "sgd-momentum":
        return sp.expand(PARAM_BYTES * values)
    return sp.Integer(0)


def grad_bytes(cg: ConcreteGraph) -> sp.Expr:
    """Bytes of the gradients: one float32 per trained parameter value."""
    return sp.expand(PARAM_BYTES * sp.Add(*[h.values for h in _held(cg) if h.trained]))


def train_bytes(cg: ConcreteGraph, batch: sp.Symbol, options: MemoryOptions = DEFAULT) -> sp.Expr:
    """Parameters + buffers + gradients + optimizer state + what autograd saves, for a batch."""
    return sp.expand(param_bytes(cg, options) + buffer_bytes(cg) + grad_bytes(cg) + optimizer_bytes(cg, options)
                     + saved_total(cg, batch, options))
