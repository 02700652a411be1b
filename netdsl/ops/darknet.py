"""Ops that exist to import darknet cfgs exactly: `reorg` ([reorg]) and `darknet_shortcut` ([shortcut]
between maps of different shapes). Both move or add data as darknet's C code does, index by index,
and have no weights.

- `reorg(stride)`: darknet's `reorg_cpu(..., forward=0)` as its [reorg] layer calls it. It is not
  `pixel_unshuffle`: darknet reads the input buffer as a `[C/s², H*s, W*s]` map and writes a
  `[C, H, W]` buffer that the next layer reads as `[C*s², H/s, W/s]`; the torch module
  (`netdsl.backends.torch_darknet.Reorg`) does the same with one reshape, permute and reshape.
- `darknet_shortcut(a, b)`: AlexeyAB darknet's `shortcut_multilayer_cpu` without weights: the
  output has `a`'s shape; over the buffers flattened per sample, the first `min(|a|, |b|)` values of
  `b` are added to `a`'s. Where the heights and widths are equal this adds the channels both maps
  have (`min(C_a, C_b)`) and keeps `a`'s others; where they differ it is darknet's flat rule.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import sympy as sp

from netdsl.ops.allocs import Alloc, Mem, fresh
from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, RuleError, Shape, units
from netdsl.ops.saves import Need, Saves
from netdsl.ops.window import POINT, Windows, pointwise, sliding, whole


class Reorg(OpDef):
    name = "reorg"
    args = (ArgSpec("stride", "int", minimum=1),)
    doc = "darknet's [reorg]: [C, H, W] -> [C*s*s, H/s, W/s] in darknet's own order (not pixel_unshuffle)"
    category = Category.SHAPE

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        c, h, w = ins[0]
        s = a.stride
        if c % (s * s):
            raise RuleError("stride", f"reorg({s}) needs channels divisible by {s * s}; the input has {c}",
                            f"darknet's reorg reads the map as [C/{s * s}, H*{s}, W*{s}]")
        if h % s or w % s:
            raise RuleError("stride", f"reorg({s}) of a {h}x{w} map: the height and width must divide by {s}",
                            "choose an input size that makes this map's sides multiples of the stride")

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        c, h, w = ins[0]
        s = a.stride
        return (sp.expand(c * s * s), sp.floor(sp.expand(h / s)), sp.floor(sp.expand(w / s)))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Reorg", dict(stride=a.stride)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return Saves(layout="nchw")  # reshape, permute, reshape: a copy, nothing kept

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        # darknet's order sends an output row to s*s input rows that wrap around the height: the
        # whole height bounds it; along the width a column reads s columns, s apart.
        _, h, w = ins[0]
        return [(whole(h), sliding(a.stride, a.stride, 0))]

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return fresh(m.floats(out), "nchw")  # reshape of the permuted cells copies


class DarknetShortcut(OpDef):
    name = "darknet_shortcut"
    doc = ("darknet_shortcut(a, b): darknet's [shortcut] of unequal maps: a's shape, b's first values added "
           "over the per-sample buffers")
    category = Category.MERGE
    min_inputs, max_inputs = 2, 2
    symbol = "+"

    def match_axes(self, rank: int) -> range:
        return range(0)  # any two images: darknet adds over the common part of the flat buffers

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        if any(len(s) != 3 for s in ins):
            raise RuleError(None, "darknet_shortcut adds images ([C, H, W] maps)", "give it two image tensors")

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def connections(self, a: Args, ins: list[Shape], out: Shape, c: Counts) -> sp.Expr:
        return units(out)

    def combine(self, xs: list[Any], torch: ModuleType) -> Any:
        a, b = xs
        fa, fb = a.flatten(1), b.flatten(1)
        na, nb = fa.shape[1], fb.shape[1]
        return torch.cat((fa[:, :nb] + fb[:, :na], fa[:, nb:]), dim=1).view_as(a)

    def source(self, inputs: list[str]) -> str:
        a, b = inputs
        return (f"torch.cat(({a}.flatten(1)[:, :{b}[0].numel()] + {b}.flatten(1)[:, :{a}[0].numel()], "
                f"{a}.flatten(1)[:, {b}[0].numel():]), dim=1).view_as({a})")

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return Saves(layout="nchw")  # slices, a sum and a cat: nothing kept

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        # Where the maps differ in size, darknet's flat rule mixes positions: b's whole map bounds it.
        (_, ha, wa), (_, hb, wb) = ins
        if sp.expand(ha - hb) == 0 and sp.expand(wa - wb) == 0:
            return pointwise(2)
        return [(POINT, POINT), (whole(hb), whole(wb))]

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # the sum of the common part, alive while cat makes the output
        common = sp.Min(sp.Mul(*ins[0]), sp.Mul(*ins[1])) * m.batch * m.width
        return fresh(m.floats(out), "nchw", sp.expand(common))


OPS = (Reorg(), DarknetShortcut())
