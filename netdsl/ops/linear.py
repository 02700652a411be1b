"""linear: a fully connected layer on features (Linear)."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, Shape


class Linear(OpDef):
    name = "linear"
    args = (ArgSpec("out", "int", minimum=1), ArgSpec("bias", "bool", True))
    doc = "Linear(in inferred, out, bias); takes features [F]: flatten an image first"
    category = Category.LINEAR
    ranks = (1,)

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (a.out,)

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        return Counts(weights=sp.expand(ins[0][0] * a.out), biases=a.out if a.bias else sp.Integer(0),
                      macs=sp.expand(ins[0][0] * a.out))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Linear", dict(in_features=ins[0][0], out_features=a.out, bias=a.bias)


OPS = (Linear(),)
