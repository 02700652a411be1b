"""Layers that move data without weights: flatten (image to features) and pad."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.allocs import ALIAS, Alloc, Mem, fresh
from netdsl.ops.base import Args, ArgSpec, Category, OpDef, Shape, units
from netdsl.ops.saves import NOTHING, VIEW, Need, Saves
from netdsl.ops.window import Windows, pointwise, shift, whole


class Flatten(OpDef):
    name = "flatten"
    doc = "Flatten(): [C, H, W] -> [C*H*W]"
    category = Category.SHAPE
    ranks = None

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (units(ins[0]),)

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Flatten", {}

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        at = need.at[0]
        # a view, except of a channels-last image whose channels and positions both exceed one
        if len(at) == 3 and need.layouts[0] == "nhwc" and at[0] > 1 and at[1] * at[2] > 1:
            return Saves(layout="nchw")
        return VIEW

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        if len(ins[0]) != 3:
            return pointwise(1)
        return [(whole(ins[0][1]), whole(ins[0][2]))]

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # a view of a contiguous tensor; a channels-last image (not 1x1) is copied by reshape
        if len(ins[0]) == 3 and m.layouts[:1] == ("nhwc",) and sp.Mul(*ins[0][1:]) != 1:
            return fresh(m.floats(out), "nchw")
        return ALIAS


class Pad(OpDef):
    name = "pad"
    args = (ArgSpec("left", "int", minimum=0), ArgSpec("right", "int", default_from="left", minimum=0),
            ArgSpec("top", "int", default_from="left", minimum=0),
            ArgSpec("bottom", "int", default_from="top", minimum=0),
            ArgSpec("value", "float", 0.0, inf_ok=True))
    doc = "ConstantPad2d((left, right, top, bottom), value); value may be -inf"
    category = Category.SHAPE

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        c, h, w = ins[0]
        return (c, sp.expand(h + a.top + a.bottom), sp.expand(w + a.left + a.right))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        sides = (a.left, a.right, a.top, a.bottom)
        if a.value == 0:
            return "ZeroPad2d", dict(padding=sides)
        return "ConstantPad2d", dict(padding=sides, value=a.value)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return NOTHING  # constant padding keeps nothing

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return [(shift(a.top), shift(a.left))]

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return fresh(m.floats(out), "nchw")


OPS = (Flatten(), Pad())
