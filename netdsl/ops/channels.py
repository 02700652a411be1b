"""Channel moves without weights: channel_slice and channel_chunk (a part of the channels; the
`a, b = x |> split(...)` form lowers to them) and channel_shuffle (ShuffleNet's interleaving)."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.allocs import ALIAS, Alloc, Mem, fresh
from netdsl.ops.base import Args, ArgSpec, Category, OpDef, RuleError, Shape
from netdsl.ops.saves import VIEW, Need, Saves
from netdsl.ops.window import Windows, pointwise


class ChannelSlice(OpDef):
    name = "channel_slice"
    args = (ArgSpec("start", "int", minimum=0), ArgSpec("stop", "int", minimum=1), ArgSpec("total", "int", 0, minimum=0))
    doc = ("channel_slice(start, stop): channels start..stop-1, x[:, start:stop]; total=C (optional) checks the "
           "input has C channels")
    category = Category.SHAPE
    ranks = None

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        c = ins[0][0]
        if a.total and a.total != c:
            raise RuleError("total", f"the parts add up to {a.total} channels, but the tensor has {c}",
                            f"make the sizes add up to {c}")
        if a.start >= a.stop:
            raise RuleError("stop", f"stop={a.stop} must be greater than start={a.start}",
                            "channel_slice(start, stop) keeps channels start..stop-1: at least one")
        if a.stop > c:
            raise RuleError("stop", f"stop={a.stop} is past the input's {c} channels",
                            f"channel_slice(start, stop) needs 0 <= start < stop <= {c}")

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (sp.expand(a.stop - a.start), *ins[0][1:])

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "ChannelSlice", dict(start=a.start, stop=a.stop)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return VIEW  # a view of the input: autograd keeps nothing

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(1)

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return ALIAS  # x[:, start:stop]


class ChannelChunk(OpDef):
    name = "channel_chunk"
    args = (ArgSpec("i", "int", minimum=0), ArgSpec("n", "int", minimum=1))
    doc = "channel_chunk(i, n): the i-th of n equal parts of the channels, x.chunk(n, 1)[i]"
    category = Category.SHAPE
    ranks = None

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        c = ins[0][0]
        if a.i >= a.n:
            raise RuleError("i", f"part i={a.i} of n={a.n}: parts are numbered 0 to {a.n - 1}",
                            "the first part is 0")
        if c % a.n:
            raise RuleError("n", f"{c} channels do not divide into n={a.n} equal parts",
                            f"choose n dividing {c}, or take parts of given sizes with channel_slice")

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        # An exact quotient: `check` refuses channels n does not divide at the values in use.
        return (sp.expand(ins[0][0] / a.n), *ins[0][1:])

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "ChannelChunk", dict(index=a.i, chunks=a.n)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return VIEW  # a view of the input: autograd keeps nothing

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(1)

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return ALIAS  # x.chunk(n, 1)[i]


class ChannelShuffle(OpDef):
    name = "channel_shuffle"
    args = (ArgSpec("groups", "int", minimum=1),)
    doc = ("channel_shuffle(groups): ShuffleNet's shuffle, channels seen as [groups, C/groups] and "
           "transposed (torchvision's channel_shuffle)")
    category = Category.SHAPE

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        c = ins[0][0]
        if c % a.groups:
            raise RuleError("groups", f"groups={a.groups} does not divide the {c} channels",
                            f"choose groups dividing {c}")

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "ChannelShuffle", dict(groups=a.groups)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return Saves(layout="nchw")  # unflatten, transpose, flatten: a contiguous copy, nothing kept

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(1)

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return fresh(m.floats(out), "nchw")  # flatten of the transposed view copies


OPS = (ChannelSlice(), ChannelChunk(), ChannelShuffle())
