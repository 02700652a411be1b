"""Ops that take several tensors and compute without weights: cat (channels) and add (sum).

They start a statement (`x = cat(a, b) -> conv(...)`); the torch backend calls `combine`, the
Python export writes `source`. `detect` (netdsl/ops/detect.py) starts a statement too, with a module.
"""
from __future__ import annotations

from functools import reduce
from operator import add
from types import ModuleType
from typing import Any

import sympy as sp

from netdsl.ops.base import Args, Category, Counts, OpDef, Shape, units


class Cat(OpDef):
    name = "cat"
    doc = "cat(a, b, ...): join along the channels; the other sizes must match"
    category = Category.MERGE
    min_inputs, max_inputs = 2, None
    mismatch_text = ("spatial sizes", "; cat joins channels, so heights and widths must match")
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


class Add(OpDef):
    name = "add"
    doc = "add(a, b, ...): element-wise sum of tensors of one shape"
    category = Category.MERGE
    min_inputs, max_inputs = 2, None
    symbol = "+"

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def connections(self, a: Args, ins: list[Shape], out: Shape, c: Counts) -> sp.Expr:
        return sp.expand(units(out) * (len(ins) - 1))

    def combine(self, xs: list[Any], torch: ModuleType) -> Any:
        return reduce(add, xs)

    def source(self, inputs: list[str]) -> str:
        return " + ".join(inputs)


OPS = (Cat(), Add())
