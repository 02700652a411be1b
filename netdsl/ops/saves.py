"""What autograd keeps for backward when a layer runs in a training-mode forward: the op's rule.

Each op says, through `OpDef.saved(a, ins, out, need) -> Saves`, which of its inputs' storages
and whether its output's storage autograd keeps, the bytes of the tensors it makes and keeps
itself (max-pool's int64 indices, dropout's noise, BatchNorm's per-channel statistics), whether
its output is a view of one input (flatten, channel slices, identity) and the memory layout of
its output. The rules are what torch 2.13 does on the CPU (derivatives.yaml and the ATen kernels),
each measured with `torch.autograd.graph.saved_tensors_hooks` (tests/analysis/test_saved_bytes.py).
`passes.saved` tracks the storages and charges each once. SymPy only: no torch here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sympy as sp

from netdsl.ops.allocs import BatchBytes

ZERO = sp.Integer(0)
PARAM_WIDTH = 4  # parameters stay float32 under autocast (it casts copies)
# How a tensor lies in memory: "nchw" (contiguous, any rank), "nhwc" (channels last: a permuted
# view of a contiguous [N, H, W, C] tensor, as ChannelLayerNorm and ChannelLinear return), "ndt" (a
# sequence [N, T, D] that is a transposed view of a contiguous [N, D, T]: `tokens` of a contiguous
# image), or "same": the output lies as the first input does. It decides whether a reshape copies
# (flatten, the matmul inside channel_linear, `image(h, w)`).
Layout = Literal["nchw", "nhwc", "ndt", "same"]


@dataclass(frozen=True)
class Need(BatchBytes):
    """What a layer's saves depend on besides its arguments and shapes.

    `grads`: which inputs require grad; `params`: its parameters require grad (not frozen);
    `batch`: the batch symbol; `width`: bytes per value of its inputs (the widest: torch's type
    promotion; 4 for float32, 2 for a 16-bit tensor); `autocast`: the bytes per value of a 16-bit
    autocast in force (2), or None; `widths`: each input's bytes per value; `layouts`: each input's
    layout ("nchw" or "nhwc"); `eval_mode`: a normalisation held in eval mode while the network
    trains (`--freeze-bn eval`); `at`: each input's per-sample shape at the values in use (a
    reshape that merges axes of size 1 never copies).
    """

    grads: tuple[bool, ...]
    params: bool
    batch: sp.Symbol
    width: int = 4
    autocast: int | None = None
    widths: tuple[int, ...] = ()
    layouts: tuple[str, ...] = ()
    eval_mode: bool = False
    at: tuple[tuple[int, ...], ...] = ()



@dataclass(frozen=True)
class Saves:
    """What autograd keeps for one layer: `inputs` (indices of the inputs whose storage it keeps),
    `output` (it keeps its output), `extra` (bytes of tensors the layer makes and keeps, in the
    batch symbol), `alias` (the output is a view of that input's storage: no new storage),
    `layout` (how its output lies in memory) and `width` (its output's bytes per value where it is
    not its inputs': an op autocast runs in 16 bits)."""

    inputs: tuple[int, ...] = ()
    output: bool = False
    extra: sp.Expr = ZERO
    alias: int | None = None
    layout: Layout = "same"
    width: int | None = None


NOTHING = Saves()
VIEW = Saves(alias=0)
INPUT = Saves(inputs=(0,))
OUTPUT = Saves(output=True)


def low_precision(need: Need, ins: list[tuple[sp.Expr, ...]], keep: tuple[int, ...], weights: sp.Expr) -> Saves:
    """An op that autocast runs in 16 bits (conv, convT, linear): it keeps its inputs `keep` and,
    where a 16-bit autocast is in force, computes on 16-bit copies instead: of each input not
    already 16 bits (a new tensor, kept in its place) and of its weight (`weights` values, kept
    too: the copy is not the parameter). Without autocast the weight is a parameter: not counted.

    >>> n = sp.Symbol("N")
    >>> need = Need(grads=(False,), params=True, batch=n, autocast=2, widths=(4,))
    >>> low_precision(need, [(3, 8, 8)], (0,), sp.Integer(108)).extra  # input and weight copies
    384*N + 216
    """
    if need.autocast is None:
        return Saves(inputs=keep)
    kept = tuple(i for i in keep if need.widths[i] == need.autocast)
    copies = sum((need.values(ins[i]) for i in keep if i not in kept), ZERO)
    return Saves(inputs=kept, extra=sp.expand((copies + weights) * need.autocast), width=need.autocast)
