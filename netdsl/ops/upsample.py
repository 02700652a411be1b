"""upsample: nearest or bilinear, by an integer factor (Upsample)."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.base import Args, ArgSpec, Counts, OpDef, Shape, units


class Upsample(OpDef):
    name = "upsample"
    args = (ArgSpec("scale", "int", minimum=1), ArgSpec("mode", "str", "nearest", choices=("nearest", "bilinear")),
            ArgSpec("align_corners", "bool", False))
    doc = "Upsample(scale_factor=scale, mode)"
    category = "upsample"

    def shape(self, a: Args, s: Shape) -> Shape:
        c, h, w = s
        return (c, sp.expand(h * a.scale), sp.expand(w * a.scale))

    def connections(self, a: Args, s_in: Shape, s_out: Shape, c: Counts) -> sp.Expr:
        # Bilinear reads four inputs per output unit.
        return 4 * units(s_out) if a.mode == "bilinear" else units(s_out)

    def torch(self, a: Args, in_shape: tuple[int, ...]) -> tuple[str, dict[str, Any]]:
        bilinear = a.mode == "bilinear"
        return "Upsample", dict(scale_factor=a.scale, mode=a.mode, align_corners=a.align_corners if bilinear else None)


OPS = (Upsample(),)
