"""What the editor knows about one spec: its diagnostics, its names and, where the passes got that
far, its concrete graph. Made by `netdsl.editor.analysis.analyse_document`; read by the server."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from netdsl import ir
from netdsl.concrete import ConcreteGraph
from netdsl.errors import Span

Severity = Literal["error", "warning", "information"]
# What a name names: a header parameter, an input's size (`H` in `[C, H = 32, W]`), an input, a
# tensor made by a statement, a learned tensor (`param`), a block, a block's parameter, the tensor a
# graph block receives (`input x` inside it), a repetition index (`* 3 as i`), a layer's label (`fc:`).
Kind = Literal["param", "dim", "input", "tensor", "learned", "block", "block_param", "block_input", "index", "label"]


@dataclass(frozen=True)
class Diagnostic:
    span: Span
    message: str
    severity: Severity
    hint: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Definition:
    name: str
    kind: Kind
    span: Span             # the name where it is defined
    statement: Span        # the whole declaration or statement
    scope: str | None      # None at the top level; the block's name inside a block


@dataclass(frozen=True)
class Reference:
    span: Span             # the name where it is used
    target: Definition


def contains(span: Span, line: int, column: int) -> bool:
    """Whether the 1-based position (line, column) lies in `span` (its end excluded)."""
    if (line, column) < (span.line, span.column):
        return False
    return (line, column) < (span.end_line, span.end_column)


@dataclass
class DocumentAnalysis:
    text: str
    path: str | None
    diagnostics: list[Diagnostic]
    spec: ir.Spec | None = None          # None when not even the recovered text parses
    graph: ConcreteGraph | None = None   # None when an error stopped the passes before shapes
    # True when statements were taken out for errors: the graph holds the rest only (with their ends
    # as outputs where the network's output was among those taken out)
    partial: bool = False
    definitions: list[Definition] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    # what a feature computes from this analysis once, lazily (hover's memory and receptive fields):
    # it lives and dies with this version of the text
    extras: dict[str, object] = field(default_factory=dict)

    def name_at(self, line: int, column: int) -> Definition | Reference | None:
        """The definition or use of a name under a 1-based position; a position just after a name
        (where an editor's cursor sits after typing it) counts as on it."""
        for col in (column, column - 1):
            for d in self.definitions:
                if contains(d.span, line, col):
                    return d
            for r in self.references:
                if contains(r.span, line, col):
                    return r
        return None

    def uses(self, target: Definition) -> list[Span]:
        """Every use of a definition, in source order (the definition itself not included)."""
        return sorted((r.span for r in self.references if r.target == target), key=lambda s: (s.line, s.column))

    def visible(self, line: int) -> list[Definition]:
        """The names usable at a line: the top level's, and a block's own where the line is in it."""
        inside = {d.name for d in self.definitions if d.kind == "block" and d.statement.line <= line <= d.statement.end_line}
        return [d for d in self.definitions if d.scope is None or d.scope in inside]
