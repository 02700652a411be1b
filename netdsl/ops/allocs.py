"""What an eval forward of one layer allocates under `torch.no_grad`: the op's rule for `peak_bytes`.

Each op says, through `OpDef.allocates(a, ins, out, m) -> Alloc`, the bytes of the storages it
makes that are alive at its busiest aten op (its output included: max-pool's int64 indices beside
its output, LayerNorm's mean and rstd, the copy a matmul makes of an input it cannot view), the
bytes of its output's new storage (none when the output is a view of its first input or that input
itself: flatten, channel slices, identity, dropout in eval), and how its output lies in memory.
The rules are what torch 2.13 runs on the CPU as a `TorchDispatchMode` sees it (aten ops, not a
kernel's own scratch memory), each measured (tests/analysis/test_peak_bytes.py).
`passes.peak` tracks the storages and the live set. SymPy only: no torch here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sympy as sp

ZERO = sp.Integer(0)
# How a tensor lies in memory: "nchw" (contiguous, any rank), "nhwc" (a permuted view of a
# contiguous [N, H, W, C] tensor, as ChannelLayerNorm and ChannelLinear return), "ndt" (a sequence
# [N, T, D] that is a transposed view of a contiguous [N, D, T]: `tokens` of a contiguous image) or
# "same": as the first input lies. It decides whether a reshape copies (flatten, the matmul inside
# channel_linear, `image(h, w)`).
Layout = Literal["nchw", "nhwc", "ndt", "same"]
INDEX_BYTES = 8  # torch.int64: max-pool indices
STAT_BYTES = 4   # float32: LayerNorm's mean and rstd


class BatchBytes:
    """Bytes of a batch: what the op rules of both memory passes (`Mem` here, `saves.Need`) share."""

    batch: sp.Symbol
    width: int

    def values(self, shape: tuple[sp.Expr, ...]) -> sp.Expr:
        """Values of a batch of tensors of this per-sample shape."""
        return sp.expand(self.batch * sp.Mul(*shape))

    def floats(self, shape: tuple[sp.Expr, ...]) -> sp.Expr:
        """Bytes of a batch of tensors of this per-sample shape in the layer's width."""
        return sp.expand(self.values(shape) * self.width)


@dataclass(frozen=True)
class Mem(BatchBytes):
    """What a layer's allocations depend on besides its arguments and shapes: the batch symbol,
    the bytes per value it computes in, each input's layout and per-sample shape at the values
    in use (a reshape that merges axes of size 1 never copies)."""

    batch: sp.Symbol
    width: int = 4
    layouts: tuple[str, ...] = ()
    at: tuple[tuple[int, ...], ...] = ()
    autocast: int | None = None  # the bytes per value of a 16-bit autocast in force (2), or None
    widths: tuple[int, ...] = ()  # each input's bytes per value


@dataclass(frozen=True)
class Alloc:
    """One layer's allocations: `peak` (bytes of the storages it makes alive at once at its
    busiest aten op, output included), `output` (bytes of its output's new storage), `alias`
    (the output is the first input's storage: nothing new), `layout` (how its output lies),
    `cached` (bytes of the 16-bit copies of its weights that autocast caches: alive from this op
    to the end of the forward, in `peak` too)."""

    peak: sp.Expr = ZERO
    output: sp.Expr = ZERO
    alias: bool = False
    layout: Layout = "same"
    cached: sp.Expr = ZERO


ALIAS = Alloc(alias=True)  # the output is the input itself or a view of it


def fresh(nbytes: sp.Expr, layout: Layout = "same", extra: sp.Expr = ZERO) -> Alloc:
    """A new output of `nbytes`, with `extra` bytes of tensors alive beside it while the op runs."""
    return Alloc(peak=sp.expand(nbytes + extra), output=nbytes, layout=layout)


def input_copies(m: Mem, ins: list[tuple[sp.Expr, ...]], which: tuple[int, ...] = (0,)) -> sp.Expr:
    """Bytes of the 16-bit copies autocast makes of the inputs `which` that are not 16 bits
    already, alive while the op runs (none without autocast)."""
    if m.autocast is None:
        return ZERO
    return sp.expand(sum((m.values(ins[i]) * m.autocast for i in which if m.widths[i] != m.autocast), ZERO))


def low_precision(m: Mem, ins: list[tuple[sp.Expr, ...]], params: sp.Expr, made: Alloc) -> Alloc:
    """An op autocast runs in 16 bits (conv, convT, linear, channel_linear): besides what it
    makes (`made`, in 16 bits), a 16-bit copy of a float32 input while it runs, and 16-bit copies
    of its `params` weight and bias values, cached for the rest of the autocast region."""
    if m.autocast is None:
        return made
    cached = sp.expand(params * m.autocast)
    return Alloc(peak=sp.expand(made.peak + input_copies(m, ins) + cached), output=made.output,
                 alias=made.alias, layout=made.layout, cached=cached)
