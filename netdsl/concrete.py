"""The concrete graph: the network at the values in use, as every backend and report reads it.

Made by `passes.shapes` from a lowered `ir.Graph`. Every argument is a plain value, every
tensor and layer has its shape both as a SymPy expression (internal symbols: `env.show` turns
them into the user's) and as integers, every layer has its module path, counts and attributes,
and the outputs are named. Nothing downstream evaluates SymPy or pairs things by position.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from netdsl import ir
from netdsl.errors import Span
from netdsl.ops import Args, Counts, OpDef
from netdsl.passes.symbols import SymEnv

Shape = tuple[sp.Expr, ...]


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: Shape
    at: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class Layer:
    path: str                  # module path from the top, e.g. "layer1.0.a.0"
    name: str                  # its name inside its statement's Sequential
    op: OpDef
    args: Args                 # plain values (ints, pairs of ints, floats, bools, strings)
    sym: Args                  # integer arguments as SymPy expressions
    in_shape: Shape
    out_shape: Shape
    in_at: tuple[int, ...]
    out_at: tuple[int, ...]
    counts: Counts
    connections: sp.Expr
    attrs: frozenset[str]
    node: ir.Op
    line: int                  # the top-level statement it comes from

    @property
    def qualname(self) -> str:
        return self.path

    @property
    def span(self) -> Span:
        return self.node.span

    def module_spec(self) -> tuple[str, dict[str, Any]] | None:
        """The op's module for this layer: class name and keyword arguments."""
        return self.op.module(self.args, [self.in_at])


@dataclass(frozen=True)
class Merge:
    """The op that starts a statement from several tensors (cat, add, detect)."""

    path: str                  # "<statement path>(cat)", or the statement's path for a final op
    op: OpDef
    inputs: tuple[str, ...]
    out_shape: Shape
    out_at: tuple[int, ...]
    connections: sp.Expr
    span: Span
    line: int
    args: Args
    counts: Counts
    in_at: list[tuple[int, ...]]

    def module_spec(self) -> tuple[str, dict[str, Any]] | None:
        """The op's module over every input (detect), or None where the op combines them itself."""
        return self.op.module(self.args, self.in_at)


@dataclass
class Statement:
    name: str
    path: str                  # module path of the statement's module (when it has layers)
    source: str                # "ref", or the name of the op that starts it (cat, add, detect)
    inputs: tuple[str, ...]
    merge: Merge | None
    items: list[Layer | Block]
    shape: Shape
    at: tuple[int, ...]
    span: Span
    attrs: frozenset[str] = frozenset()


@dataclass
class Block:
    """One graph-block call: a child module with statements of its own."""

    name: str
    path: str
    block: str
    input: str
    statements: list[Statement]
    out_shape: Shape
    out_at: tuple[int, ...]
    attrs: frozenset[str]
    span: Span


def walk_statements(stmts: list[Statement]) -> Iterator[Layer | Merge]:
    """Every layer and merge of these statements in forward order, blocks opened."""
    for st in stmts:
        if st.merge is not None:
            yield st.merge
        for it in st.items:
            if isinstance(it, Block):
                yield from walk_statements(it.statements)
            else:
                yield it


@dataclass
class ConcreteGraph:
    name: str
    env: SymEnv
    inputs: list[Tensor]
    outputs: list[Tensor]
    statements: list[Statement]
    notes: list[str] = field(default_factory=list)
    spec: ir.Spec | None = None    # what the user wrote
    graph: ir.Graph | None = None  # as lowered at these values
    source: tuple[str | None, str | None] = (None, None)  # the spec's path and text, for errors

    def walk(self) -> Iterator[Layer | Merge]:
        """Every layer and merge in forward order, blocks opened."""
        return walk_statements(self.statements)

    @property
    def layers(self) -> list[Layer]:
        return [x for x in self.walk() if isinstance(x, Layer)]

    @property
    def tensors(self) -> dict[str, Shape]:
        out = {t.name: t.shape for t in self.inputs}
        out.update({st.name: st.shape for st in self.statements})
        return out

    @property
    def input_shape(self) -> Shape:
        return self.inputs[0].shape

    @property
    def output_shape(self) -> Shape:
        return self.outputs[0].shape

    def show(self, s: Shape) -> list[sp.Expr]:
        """A shape in the user's symbols."""
        return [self.env.show(x) for x in s]

    def at(self, s: Shape) -> list[int]:
        """A shape at the values in use."""
        return [int(self.env.at(x)) for x in s]

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.env.values)
