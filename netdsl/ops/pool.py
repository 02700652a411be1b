"""Pooling: maxpool, avgpool (sliding windows) and adaptive_avgpool, adaptive_maxpool."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.allocs import INDEX_BYTES, Alloc, Mem, fresh
from netdsl.ops.base import (
    Args,
    ArgSpec,
    Category,
    Counts,
    OpDef,
    Shape,
    pool_padding_range,
    pool_padding_rule,
    scalar,
    units,
    window_out,
)
from netdsl.ops.saves import INPUT, NOTHING, Need, Saves
from netdsl.ops.window import Windows, adaptive, sliding


class _WindowPool(OpDef):
    """Sliding-window pooling: PyTorch's padding rule, output size and one read per window cell."""

    category = Category.POOL

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        pool_padding_rule(a)

    def search_range(self, arg: str, a: Args) -> tuple[int, int, str] | None:
        return pool_padding_range(arg, a)

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        c, h, w = ins[0]
        dilation = a.get("dilation", (1, 1))
        return (c, *(window_out(x, k, st, p, d, a.ceil_mode) for x, k, st, p, d in
                     zip((h, w), a.kernel, a.stride, a.padding, dilation)))

    def connections(self, a: Args, ins: list[Shape], out: Shape, c: Counts) -> sp.Expr:
        return sp.expand(units(out) * a.kernel[0] * a.kernel[1])

    def common(self, a: Args) -> dict[str, Any]:
        kw: dict[str, Any] = dict(kernel_size=scalar(a.kernel), stride=scalar(a.stride), padding=scalar(a.padding))
        if a.ceil_mode:
            kw["ceil_mode"] = True
        return kw

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        dilation = a.get("dilation", (1, 1))
        h, w = (sliding(d * (k - 1) + 1, st, p) for k, st, p, d in zip(a.kernel, a.stride, a.padding, dilation))
        return [(h, w)]


_WINDOW = (ArgSpec("kernel", "int", minimum=1, pair=True),
           ArgSpec("stride", "int", default_from="kernel", minimum=1, pair=True),
           ArgSpec("padding", "int", 0, minimum=0, pair=True))


class MaxPool(_WindowPool):
    name = "maxpool"
    args = (*_WINDOW, ArgSpec("dilation", "int", 1, minimum=1, pair=True), ArgSpec("ceil_mode", "bool", False))
    doc = "MaxPool2d(kernel, stride=kernel, padding, dilation, ceil_mode)"

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        kw = self.common(a)
        kw["dilation"] = scalar(a.dilation)
        return "MaxPool2d", kw

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return Saves(inputs=(0,), extra=need.values(out) * INDEX_BYTES)  # the input and int64 indices

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return fresh(m.floats(out), extra=m.values(out) * INDEX_BYTES)  # int64 indices beside it, in eval too


class AvgPool(_WindowPool):
    name = "avgpool"
    args = (*_WINDOW, ArgSpec("ceil_mode", "bool", False), ArgSpec("count_include_pad", "bool", True))
    doc = "AvgPool2d(kernel, stride=kernel, padding, ceil_mode, count_include_pad)"

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        kw = self.common(a)
        if not a.count_include_pad:
            kw["count_include_pad"] = False
        return "AvgPool2d", kw

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return INPUT

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return fresh(m.floats(out))


class _Adaptive(OpDef):
    args = (ArgSpec("h", "int", 1, minimum=1), ArgSpec("w", "int", default_from="h", minimum=1))
    category = Category.POOL
    torch_name = ""

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (ins[0][0], a.h, a.w)

    def connections(self, a: Args, ins: list[Shape], out: Shape, c: Counts) -> sp.Expr:
        # Windows vary in size; every input unit is read about once.
        return units(ins[0])

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return self.torch_name, dict(output_size=scalar((a.h, a.w)))

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        _, h, w = ins[0]
        return [(adaptive(h, int(a.h)), adaptive(w, int(a.w)))]


class AdaptiveAvgPool(_Adaptive):
    name = "adaptive_avgpool"
    doc = "AdaptiveAvgPool2d((h, w)); no arguments: global average pooling to 1x1"
    torch_name = "AdaptiveAvgPool2d"

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # to 1x1 torch takes the mean over H and W, which keeps nothing; else the input
        return NOTHING if (a.h, a.w) == (1, 1) else INPUT

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return fresh(m.floats(out))


class AdaptiveMaxPool(_Adaptive):
    name = "adaptive_maxpool"
    doc = "AdaptiveMaxPool2d((h, w)); no arguments: global max pooling to 1x1"
    torch_name = "AdaptiveMaxPool2d"

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return Saves(inputs=(0,), extra=need.values(out) * INDEX_BYTES)  # the input and int64 indices

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return fresh(m.floats(out), extra=m.values(out) * INDEX_BYTES)  # int64 indices beside it, in eval too


OPS = (MaxPool(), AvgPool(), AdaptiveAvgPool(), AdaptiveMaxPool())
