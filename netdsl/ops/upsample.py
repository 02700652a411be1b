"""upsample: nearest or bilinear, by an integer factor (Upsample)."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.allocs import Alloc, Mem, fresh
from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, Shape, units
from netdsl.ops.saves import NOTHING, Need, Saves
from netdsl.ops.window import Windows, bilinear, nearest


class Upsample(OpDef):
    name = "upsample"
    args = (ArgSpec("scale", "int", minimum=1), ArgSpec("mode", "str", "nearest", choices=("nearest", "bilinear")),
            ArgSpec("align_corners", "bool", False))
    doc = "Upsample(scale_factor=scale, mode)"
    category = Category.UPSAMPLE

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        c, h, w = ins[0]
        return (c, sp.expand(h * a.scale), sp.expand(w * a.scale))

    def connections(self, a: Args, ins: list[Shape], out: Shape, c: Counts) -> sp.Expr:
        # Bilinear reads four inputs per output unit.
        return 4 * units(out) if a.mode == "bilinear" else units(out)

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        bilinear = a.mode == "bilinear"
        return "Upsample", dict(scale_factor=a.scale, mode=a.mode, align_corners=a.align_corners if bilinear else None)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return NOTHING  # nearest and bilinear upsampling keep only sizes

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        f = int(a.scale)
        one = nearest(f) if a.mode == "nearest" else bilinear(f, bool(a.align_corners))
        return [(one, one)]

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return fresh(m.floats(out))


OPS = (Upsample(),)
