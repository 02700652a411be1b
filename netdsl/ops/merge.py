"""Merges that start a statement: cat (channels) and add (element-wise sum)."""
from __future__ import annotations

import sympy as sp

from netdsl.ops.base import Shape, units


class MergeDef:
    name = ""
    doc = ""

    def match_axes(self, rank: int) -> range:
        """The per-sample axes whose sizes all operands must share."""
        return range(rank)

    def shape(self, shapes: list[Shape]) -> Shape:
        return shapes[0]

    def connections(self, shapes: list[Shape], out: Shape) -> sp.Expr:
        return sp.Integer(0)

    def torch(self) -> str:
        """The expression the backend and export use, over a list `xs` of tensors."""
        raise NotImplementedError


class Cat(MergeDef):
    name = "cat"
    doc = "cat(a, b, ...): join along the channels; the other sizes must match"

    def match_axes(self, rank: int) -> range:
        return range(1, rank)

    def shape(self, shapes: list[Shape]) -> Shape:
        return (sp.Add(*[s[0] for s in shapes]), *shapes[0][1:])

    def torch(self) -> str:
        return "torch.cat(xs, dim=1)"


class Add(MergeDef):
    name = "add"
    doc = "add(a, b, ...): element-wise sum of tensors of one shape"

    def connections(self, shapes: list[Shape], out: Shape) -> sp.Expr:
        return sp.expand(units(out) * (len(shapes) - 1))

    def torch(self) -> str:
        return "sum(xs)"


MERGES = {m.name: m for m in (Cat(), Add())}
