"""Ops that take several tensors and compute without weights: cat (channels), add (sum) and mul
(product); add and mul broadcast as torch does.

They start a statement (`x = cat(a, b) -> conv(...)`); the torch backend calls `combine`, the
Python export writes `source`. `detect` (netdsl/ops/detect.py) starts a statement too, with a module.
"""
from __future__ import annotations

from functools import reduce
from operator import add, mul
from types import ModuleType
from typing import Any

import sympy as sp

from netdsl.ops.allocs import Alloc, Mem, fresh
from netdsl.ops.base import ONE, STRIDES_HINT, Args, Category, Counts, OpDef, RuleError, Shape, units
from netdsl.ops.saves import NOTHING, Need, Saves
from netdsl.ops.window import Windows, broadcast, pointwise


class Cat(OpDef):
    name = "cat"
    doc = "cat(a, b, ...): join along the channels; the other sizes must match"
    category = Category.MERGE
    min_inputs, max_inputs = 2, None
    mismatch_text = ("spatial sizes", STRIDES_HINT + "; cat joins channels, so heights and widths must match")
    symbol = "cat"

    def match_axes(self, rank: int) -> range:
        return range(1, rank)

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (sp.Add(*[s[0] for s in ins]), *ins[0][1:])

    def connections(self, a: Args, ins: list[Shape], out: Shape, c: Counts) -> sp.Expr:
        return sp.Integer(0)  # a copy: no unit reads several inputs

    def combine(self, xs: list[Any], torch: ModuleType) -> Any:
        return torch.cat(xs, dim=1)

    def source(self, inputs: list[str]) -> str:
        return f"torch.cat(({', '.join(inputs)}), dim=1)"

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return NOTHING

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(len(ins))

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # under autocast, cat promotes: a copy of each narrower input, in the widest width, while it runs
        copies = sp.Add(*(m.values(s) * m.width for s, w in zip(ins, m.widths) if w < m.width))
        return fresh(m.floats(out), "nchw", copies)


BROADCAST_HINT = ("the tensors must have equal sizes on each axis, or size 1 where one is stretched (torch's "
                  "broadcasting: a [C, 1, 1] gate multiplies a [C, H, W] map); otherwise " + STRIDES_HINT)


_AXES = {1: ("features",), 3: ("channels", "heights", "widths")}


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

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        # The shape pass compares each input with the first; a first input of size 1 on an axis
        # leaves the others unchecked against each other there, so this compares them all.
        for axis in range(len(ins[0])):
            sizes = {s[axis] for s in ins} - {1}
            if len(sizes) > 1:
                shapes = ", ".join(_text(s) for s in ins)
                what = _AXES.get(len(ins[0]), ())[axis:axis + 1] or (f"sizes of axis {axis + 1}",)
                raise RuleError(None, f"{self.name}() cannot broadcast {shapes}: the {what[0]} are "
                                f"{' and '.join(map(str, sorted(sizes)))}", BROADCAST_HINT)

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
