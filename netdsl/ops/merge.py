"""Ops that take several tensors and start a statement: cat (channels) and add (element-wise sum);
`detect` (netdsl/ops/detect.py) is one too, with weights and arguments of its own."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.base import Args, ArgSpec, Counts, Shape, units


class MergeDef:
    name = ""
    doc = ""
    args: tuple[ArgSpec, ...] = ()
    min_inputs = 2
    final = False  # its result is an output of the network, not a tensor to go on with
    category = "merge"

    def arg(self, name: str) -> ArgSpec | None:
        return next((a for a in self.args if a.name == name), None)

    def check(self, a: Args, in_shapes: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        """The rules on the arguments at the values in use (`image`: the network's image input)."""

    def counts(self, a: Args, shapes: list[Shape], out: Shape) -> Counts:
        return Counts()

    def module(self, a: Args, in_shapes: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]] | None:
        """A module holding the op's weights (class name in torch.nn or netdsl's layers), or None."""
        return None

    def match_axes(self, rank: int) -> range:
        """The per-sample axes whose sizes all operands must share."""
        return range(rank)

    def shape(self, a: Args, shapes: list[Shape]) -> Shape:
        return shapes[0]

    def connections(self, a: Args, shapes: list[Shape], out: Shape) -> sp.Expr:
        return sp.Integer(0)



class Cat(MergeDef):
    name = "cat"
    doc = "cat(a, b, ...): join along the channels; the other sizes must match"

    def match_axes(self, rank: int) -> range:
        return range(1, rank)

    def shape(self, a: Args, shapes: list[Shape]) -> Shape:
        return (sp.Add(*[s[0] for s in shapes]), *shapes[0][1:])



class Add(MergeDef):
    name = "add"
    doc = "add(a, b, ...): element-wise sum of tensors of one shape"

    def connections(self, a: Args, shapes: list[Shape], out: Shape) -> sp.Expr:
        return sp.expand(units(out) * (len(shapes) - 1))



def _merges() -> dict[str, MergeDef]:
    from netdsl.ops.detect import Detect

    return {m.name: m for m in (Cat(), Add(), Detect())}


MERGES = _merges()
