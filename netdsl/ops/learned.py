"""Learned tensors: `param NAME: [dims] = INIT`, a tensor the network learns, read by name.

Not an op of the registry (nothing calls it in a chain or as a merge): the statement that declares
one is lowered to a tensor node whose source is `PARAM`, and the shape pass describes it with
`LEARNED`, so counts, reports and backends read it like any statement's source. It has no inputs;
its shape is exactly its dims (no batch axis); its elements are weights.
"""
from __future__ import annotations

import sympy as sp

from netdsl.ops.base import ZERO, Args, Category, Counts, OpDef, Shape, units
from netdsl.ops.window import Windows

PARAM = "param"  # the source of a learned tensor's statement, as "ref" is a plain statement's
# `@batch_axis param`: stored as [1, *dims], as torchvision stores a class token, so its state_dict
# loads; its shape and counts stay those of the dims.
BATCH_AXIS = "batch_axis"
INITS = ("constant", "normal")


class Learned(OpDef):
    name = PARAM
    doc = "param NAME: [d1, d2, ...] = INIT: a learned tensor (INIT a number, or normal(std))"
    # Its totals: weights (every element); no outputs or connections, as the shape ops.
    category = Category.SHAPE
    min_inputs, max_inputs = 0, 0
    ranks = None

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return tuple(a["dims"])

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        return Counts(weights=units(out))

    def connections(self, a: Args, ins: list[Shape], out: Shape, c: Counts) -> sp.Expr:
        return ZERO

    def node_path(self, statement_path: str) -> str:
        # the tensor is the owning module's attribute of that name: `layer1.0.layer_scale`
        return statement_path

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return []  # no inputs: a learned tensor has no region of the network's input


LEARNED = Learned()
