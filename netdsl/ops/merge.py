"""Ops that take several tensors and compute without weights: cat (channels), add (sum) and mul
(product); add and mul broadcast as torch does.

They start a statement (`x = cat(a, b) -> conv(...)`); the torch backend calls `combine`, the
Python export writes `source`. `detect` (netdsl/ops/detect.py) starts a statement too, with a module.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from operator import add, mul
from types import ModuleType
from typing import Any

import sympy as sp

from netdsl.ops.allocs import Alloc, Mem, fresh
from netdsl.ops.base import ONE, STRIDES_HINT, Args, ArgSpec, Category, Counts, OpDef, RuleError, Shape, units
from netdsl.ops.saves import NOTHING, Need, Saves
from netdsl.ops.window import POINT, Windows, broadcast, pointwise, shift

_AXES = {1: ("features",), 2: ("token counts", "features"), 3: ("channels", "heights", "widths")}
_JOINED = {2: ("tokens", "features"), 3: ("channels", "rows", "columns")}


class Cat(OpDef):
    name = "cat"
    args = (ArgSpec("dim", "int", 1),)
    doc = ("cat(a, b, ..., dim=1): join along torch's axis dim (batch included: 1 an image's channels or a "
           "sequence's tokens, 2 a sequence's features; negative from the end); the other sizes must match")
    category = Category.MERGE
    min_inputs, max_inputs = 2, None
    mismatch_text = ("spatial sizes", STRIDES_HINT + "; cat joins channels, so heights and widths must match")
    symbol = "cat"

    def __init__(self, dim: int = 1) -> None:
        self.dim = dim

    def axis(self, rank: int) -> int | None:
        """The per-sample axis joined (torch's `dim` less the batch), None where `dim` is no such axis."""
        d = self.dim + rank + 1 if self.dim < 0 else self.dim
        return d - 1 if 1 <= d <= rank else None

    def bind(self, a: Args, ins: list[Shape]) -> OpDef:
        joined = Cat(int(a.dim))
        rank = len(ins[0])
        axis = joined.axis(rank)
        if axis is not None and (rank == 2 or axis != 0):  # the registry's text is an image's channels
            names, along = _AXES.get(rank, ()), _JOINED.get(rank, ())
            others = " and ".join(n for i, n in enumerate(names) if i != axis) or "other sizes"
            what = along[axis] if axis < len(along) else f"axis dim={joined.dim}"
            joined.mismatch_text = (others, f"cat(..., dim={joined.dim}) joins the {what}, so the {others} must "
                                    "match" + _CAT_HINTS.get((rank, axis), ""))
        return joined

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        rank = len(ins[0])
        if Cat(a.dim).axis(rank) is None:
            raise RuleError("dim", f"cat(..., dim={a.dim}) of tensors of {rank} axes per sample: dim is torch's "
                            f"axis, batch included, so it is 1 to {rank} (or -{rank} to -1 from the end)",
                            "dim=1 joins an image's channels or a sequence's tokens; dim 0 is the batch")

    def match_axes(self, rank: int) -> Sequence[int]:
        joined = self.axis(rank)
        if joined is None:  # `check` refuses the dim
            return []
        return range(1, rank) if joined == 0 else [i for i in range(rank) if i != joined]

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        axis = Cat(a.dim).axis(len(ins[0])) or 0
        out = list(ins[0])
        out[axis] = sp.Add(*[s[axis] for s in ins])
        return tuple(out)

    def connections(self, a: Args, ins: list[Shape], out: Shape, c: Counts) -> sp.Expr:
        return sp.Integer(0)  # a copy: no unit reads several inputs

    def combine(self, xs: list[Any], torch: ModuleType) -> Any:
        return torch.cat(xs, dim=self.dim)

    def source(self, inputs: list[str]) -> str:
        return f"torch.cat(({', '.join(inputs)}), dim={self.dim})"

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return NOTHING

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        if len(ins[0]) != 2 or Cat(a.dim).axis(2) != 0:
            return pointwise(len(ins))
        # along the tokens: output token t reads token t - o of input k, o the tokens before it
        before = [sp.Add(*[s[0] for s in ins[:k]]) for k in range(len(ins))]
        return [(shift(o), POINT) for o in before]

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # under autocast, cat promotes: a copy of each narrower input, in the widest width, while it runs
        copies = sp.Add(*(m.values(s) * m.width for s, w in zip(ins, m.widths) if w < m.width))
        return fresh(m.floats(out), "nchw", copies)


_CAT_HINTS = {(2, 0): ("; to join sequences of different widths, give them one with linear(D) first, or join the "
                       "features with dim=2"),
              (2, 1): "; sequences joined feature by feature need one token count"}


BROADCAST_HINT = ("the tensors must have equal sizes on each axis, or size 1 where one is stretched (torch's "
                  "broadcasting: a [C, 1, 1] gate multiplies a [C, H, W] map); otherwise " + STRIDES_HINT)
SEQUENCE_HINT = ("sequences need equal token counts and features, or size 1 where one is stretched (torch's "
                 "broadcasting); a learned tensor added to tokens needs one row per token (a class token put in "
                 "front with cat(..., dim=1) counts too)")


def _text(s: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, s)) + "]"


class _Broadcasting(OpDef):
    """An element-wise merge that broadcasts as torch does: the inputs have one rank, and on each
    axis the sizes are equal or literally 1 (a 1 stretches to the others' size). Counted as one
    operation per output unit per input after the first."""

    category = Category.MERGE
    min_inputs, max_inputs = 2, None
    mismatch_text = ("shapes", BROADCAST_HINT)

    def stretches(self, a: sp.Expr, b: sp.Expr) -> bool:
        return a == ONE or b == ONE

    def bind(self, a: Args, ins: list[Shape]) -> OpDef:
        if len(ins[0]) != 2:
            return self
        bound = type(self)()  # sequences: no strides made their sizes
        bound.mismatch_text = ("shapes", SEQUENCE_HINT)
        return bound

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        # The shape pass compares each input with the first; a first input of size 1 on an axis
        # leaves the others unchecked against each other there, so this compares them all.
        for axis in range(len(ins[0])):
            sizes = {s[axis] for s in ins} - {1}
            if len(sizes) > 1:
                shapes = ", ".join(_text(s) for s in ins)
                what = _AXES.get(len(ins[0]), ())[axis:axis + 1] or (f"sizes of axis {axis + 1}",)
                raise RuleError(None, f"{self.name}() cannot broadcast {shapes}: the {what[0]} are "
                                f"{' and '.join(map(str, sorted(sizes)))}", self.mismatch_text[1])

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return tuple(next((x for x in sizes if x != ONE), ONE) for sizes in zip(*ins))

    def connections(self, a: Args, ins: list[Shape], out: Shape, c: Counts) -> sp.Expr:
        return sp.expand(units(out) * (len(ins) - 1))

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return [broadcast(s, out) for s in ins]

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # reduce(add, xs): each partial result stays alive while the next one is made
        # (in the widest width of the tensors so far: torch's type promotion, no copies)
        parts = [m.values(self.shape(a, ins[:j])) * (max(m.widths[:j]) if m.widths else m.width)
                 for j in range(2, len(ins) + 1)]
        peak = sp.Max(parts[0], *(sp.expand(x + y) for x, y in zip(parts, parts[1:])))
        return Alloc(peak=peak, output=parts[-1])


class Add(_Broadcasting):
    name = "add"
    doc = "add(a, b, ...): element-wise sum; sizes equal or 1 on each axis (broadcast as torch)"
    symbol = "+"

    def combine(self, xs: list[Any], torch: ModuleType) -> Any:
        return reduce(add, xs)

    def source(self, inputs: list[str]) -> str:
        return " + ".join(inputs)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return NOTHING


class Mul(_Broadcasting):
    name = "mul"
    doc = "mul(a, b, ...): element-wise product; sizes equal or 1 on each axis (broadcast as torch)"
    symbol = "×"

    def combine(self, xs: list[Any], torch: ModuleType) -> Any:
        return reduce(mul, xs)

    def source(self, inputs: list[str]) -> str:
        return " * ".join(inputs)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # reduce(mul): a * b keeps a where b needs a gradient and b where a does; each further
        # product keeps the partial product (a new tensor) and the next operand the same way.
        kept = [i for i in (0, 1) if need.grads[1 - i]]
        extra = sp.Integer(0)
        for k in range(2, len(ins)):
            if need.grads[k]:
                extra += need.floats(self.shape(a, ins[:k]))
            if any(need.grads[:k]):
                kept.append(k)
        return Saves(inputs=tuple(kept), extra=sp.expand(extra))


OPS = (Cat(), Add(), Mul())
