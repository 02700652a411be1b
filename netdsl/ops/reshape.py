"""Layers that move data without weights: flatten (image to features) and pad."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.base import Args, ArgSpec, Category, OpDef, Shape, units


class Flatten(OpDef):
    name = "flatten"
    doc = "Flatten(): [C, H, W] -> [C*H*W]"
    category = Category.SHAPE
    ranks = None

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (units(ins[0]),)

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Flatten", {}


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


OPS = (Flatten(), Pad())
