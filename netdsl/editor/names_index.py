"""Every name of a spec where it is defined and where it is used, read off the IR as the user wrote it.

Scopes as the language has them: a graph block's statements see the block's input, its own
tensors and learned tensors, its parameters and the header's; a linear block sees its parameters
and the header's; a repetition index (`* 3 as i`) is seen by the layer call that declares it. A
name that resolves to nothing is left out (the passes report it as an error).
"""
from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import BaseModel

from netdsl import ir
from netdsl.editor.document import Definition, Kind, Reference
from netdsl.errors import Span, source_lines

Scope = dict[str, Definition]


def name_span(lines: list[str], span: Span, name: str, after: str = "") -> Span:
    """Where `name` is written in the statement starting at `span`: its first whole-word occurrence
    on that line that is not an attribute (`@freeze`), after the keyword `after` when given.
    Falls back to the statement's start."""
    if 1 <= span.line <= len(lines):
        line = lines[span.line - 1]
        start = span.column - 1
        if after:
            k = re.compile(rf"\b{after}\b").search(line, start)
            start = k.end() if k else start
        m = re.compile(rf"(?<![@\w]){re.escape(name)}\b").search(line, start)
        if m:
            return Span(span.line, m.start() + 1, span.line, m.end() + 1)
    return Span(span.line, span.column, span.line, span.column + len(name))


def _ident_span(span: Span, name: str) -> Span:
    """A node whose span starts with its name (a header parameter, a dim, a block parameter)."""
    return Span(span.line, span.column, span.line, span.column + len(name))


def names_in(node: object) -> Iterator[ir.Name]:
    """Every `Name` node under an IR node (expressions, values, arguments), in source order."""
    if isinstance(node, ir.Name):
        yield node
    elif isinstance(node, BaseModel):
        for key in type(node).model_fields:
            yield from names_in(getattr(node, key))
    elif isinstance(node, (list, tuple)):
        for x in node:
            yield from names_in(x)


class _Indexer:
    def __init__(self, spec: ir.Spec, text: str) -> None:
        self.spec = spec
        self.lines = source_lines(text)
        self.defs: list[Definition] = []
        self.refs: list[Reference] = []
        self.blocks: dict[str, Definition] = {}

    def define(self, name: str, kind: Kind, span: Span, statement: Span, scope: str | None, into: Scope) -> Definition:
        d = Definition(name, kind, span, statement, scope)
        self.defs.append(d)
        into.setdefault(name, d)  # a duplicate is an error the passes report; uses go to the first
        return d

    def use(self, span: Span, name: str, *scopes: Scope) -> None:
        for sc in scopes:
            if name in sc:
                self.refs.append(Reference(span, sc[name]))
                return

    def exprs(self, node: object, *scopes: Scope) -> None:
        for n in names_in(node):
            self.use(n.span, n.id, *scopes)

    def run(self) -> tuple[list[Definition], list[Reference]]:
        spec = self.spec
        top: Scope = {}
        for p in spec.params:
            self.define(p.name, "param", _ident_span(p.span, p.name), p.span, None, top)
        for p in spec.params:
            self.exprs(p.default, top)
        self.exprs(spec.conditions, top)
        for inp in spec.inputs:
            self.input(inp, top)
        for b in spec.blocks:
            self.blocks[b.name] = self.define(b.name, "block", name_span(self.lines, b.span, b.name, "block"), b.span,
                                              None, top)
        for d in spec.learned:
            self.learned(d, None, top)
        self.statements(spec.assigns, None, top)
        for b in spec.blocks:
            self.block(b, top)
        for c in spec.claims:
            self.exprs([c.options, c.expr], top)
        return self.defs, self.refs

    def input(self, inp: ir.InputDecl, top: Scope) -> None:
        self.define(inp.name, "input", name_span(self.lines, inp.span, inp.name, "input"), inp.span, None, top)
        for axis in inp.axes:
            if axis.dim is not None:
                dim = axis.dim
                if dim.name in top and top[dim.name].kind == "dim":
                    self.use(_ident_span(dim.span, dim.name), dim.name, top)  # an earlier input's size, reused
                else:
                    self.define(dim.name, "dim", _ident_span(dim.span, dim.name), dim.span, None, top)
                self.exprs(dim.default, top)
            else:
                self.exprs(axis.size, top)
        self.exprs(inp.conditions, top)

    def learned(self, d: ir.Learned, scope: str | None, sc: Scope, *outer: Scope) -> None:
        self.exprs([d.dims, d.value, d.attrs], sc, *outer)
        self.define(d.name, "learned", name_span(self.lines, d.span, d.name, "param"), d.span, scope, sc)

    def statements(self, assigns: list[ir.Assign], scope: str | None, sc: Scope, *outer: Scope) -> None:
        for a in assigns:
            self.sources(a.inputs, sc)
            self.exprs([a.args, a.annotation, a.attrs], sc, *outer)
            for call in a.chain:
                self.call(call, scope, sc, *outer)
            if a.targets:
                for t in a.targets:
                    if t.name != "_":
                        self.define(t.name, "tensor", t.span, a.span, scope, sc)
            else:
                after = "output" if a.output and a.name != "output" else ""
                self.define(a.name, "tensor", name_span(self.lines, a.span, a.name, after), a.span, scope, sc)

    def sources(self, inputs: list[ir.Ident | ir.MergeCall], sc: Scope) -> None:
        for x in inputs:
            if isinstance(x, ir.MergeCall):
                self.sources(x.inputs, sc)
                self.exprs(x.args, sc)
            else:
                self.use(x.span, x.name, sc)

    def call(self, call: ir.LayerCall, scope: str | None, *scopes: Scope) -> None:
        if call.op.name in self.blocks:
            self.refs.append(Reference(call.op.span, self.blocks[call.op.name]))
        local: Scope = {}
        if call.index is not None:
            self.define(call.index.name, "index", call.index.span, call.span, scope, local)
        if call.label is not None:
            self.define(call.label.name, "label", call.label.span, call.span, scope, {})
        self.exprs([call.args, call.repeat, call.attrs], local, *scopes)

    def block(self, b: ir.BlockDef, top: Scope) -> None:
        sc: Scope = {}
        for p in b.params:
            self.define(p.name, "block_param", _ident_span(p.span, p.name), p.span, b.name, sc)
        for p in b.params:
            self.exprs(p.default, sc, top)
        if b.input is not None:
            self.define(b.input.name, "block_input", b.input.span, b.input.span, b.name, sc)
        for d in b.learned:
            self.learned(d, b.name, sc, top)
        for call in b.body:
            self.call(call, b.name, sc, top)
        self.statements(b.assigns, b.name, sc, top)


def index_names(spec: ir.Spec, text: str) -> tuple[list[Definition], list[Reference]]:
    """Definitions and uses of every name in `spec` (parsed from `text`).

    >>> from netdsl.parsing import parse_text
    >>> text = "net T(C = 4)\\ninput x: [3, H = 8, W = 8]\\ny = x |> conv(C, 3)\\noutput = y |> relu\\n"
    >>> defs, refs = index_names(parse_text(text), text)
    >>> [(d.name, d.kind, d.span.line) for d in defs]
    [('C', 'param', 1), ('x', 'input', 2), ('H', 'dim', 2), ('W', 'dim', 2), ('y', 'tensor', 3), ('output', 'tensor', 4)]
    >>> [(r.target.name, r.span.line, r.span.column) for r in refs]
    [('x', 3, 5), ('C', 3, 15), ('y', 4, 10)]
    """
    return _Indexer(spec, text).run()
