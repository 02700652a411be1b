"""Document symbols (the header's parameters, the inputs, blocks with their statements, the
statements) and inlay hints (each statement's output shape at the end of its line)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from netdsl import ir
from netdsl.editor.document import DocumentAnalysis
from netdsl.errors import Span, source_lines

SymbolKind = Literal["param", "input", "block", "statement", "learned"]


@dataclass
class Symbol:
    name: str
    kind: SymbolKind
    span: Span           # the whole declaration
    name_span: Span      # its name (inside `span`)
    detail: str = ""
    children: list[Symbol] = field(default_factory=list)


def _name_span(an: DocumentAnalysis, name: str, span: Span, scope: str | None) -> Span:
    """Where the analysis saw `name` defined inside `span`, else the start of `span`."""
    for d in an.definitions:
        if d.name == name and d.scope == scope and span.line <= d.span.line <= span.end_line:
            return d.span
    return Span(span.line, span.column, span.line, span.column + len(name))


def _shapes(an: DocumentAnalysis) -> dict[str, str]:
    """Each top-level tensor's shape at the values in use, e.g. `[64, 8, 8]`."""
    cg = an.graph
    if cg is None:
        return {}
    out = {t.name: str(list(t.at)) for t in cg.inputs}
    out.update({st.name: str(list(st.at)) for st in cg.statements})
    return out


def _statement(an: DocumentAnalysis, a: ir.Assign, scope: str | None, shapes: dict[str, str]) -> Symbol:
    detail = shapes.get(a.name, "") if scope is None else ""
    return Symbol(a.name, "statement", a.span, _name_span(an, a.name, a.span, scope), detail)


def symbols(an: DocumentAnalysis) -> list[Symbol]:
    """The outline of the spec, in source order; empty when not even a recovered spec parsed.

    >>> from netdsl.editor.checked import check
    >>> [(s.name, s.kind) for s in symbols(check("net N()\\ninput x: [3, H = 8, W = 8]\\ny = x |> relu\\n", None).analysis)]
    [('x', 'input'), ('y', 'statement')]
    """
    spec = an.spec
    if spec is None:
        return []
    shapes = _shapes(an)
    out = [Symbol(p.name, "param", p.span, _name_span(an, p.name, p.span, None), f"= {an.graph.values.get(p.name, '')}"
                  if an.graph else "") for p in spec.params]
    out += [Symbol(i.name, "input", i.span, _name_span(an, i.name, i.span, None), shapes.get(i.name, "")) for i in spec.inputs]
    out += [Symbol(x.name, "learned", x.span, _name_span(an, x.name, x.span, None)) for x in spec.learned]
    for b in spec.blocks:
        kids = [_statement(an, a, b.name, shapes) for a in b.assigns]
        kids += [Symbol(x.name, "learned", x.span, _name_span(an, x.name, x.span, b.name)) for x in b.learned]
        out.append(Symbol(b.name, "block", b.span, _name_span(an, b.name, b.span, None),
                          f"({', '.join(p.name for p in b.params)})", sorted(kids, key=lambda s: (s.span.line, s.span.column))))
    out += [_statement(an, a, None, shapes) for a in spec.assigns]
    return sorted(out, key=lambda s: (s.span.line, s.span.column))


def inlay_hints(an: DocumentAnalysis) -> list[tuple[int, int, str]]:
    """(line, column after the line's last character, `  [64, 8, 8]`) for each top-level statement,
    1-based; empty where the passes did not reach the shapes."""
    cg = an.graph
    if cg is None:
        return []
    lines = source_lines(an.text)
    out = []
    for st in cg.statements:
        line = st.span.end_line
        if 1 <= line <= len(lines):
            out.append((line, len(lines[line - 1].rstrip()) + 1, f"  {list(st.at)}"))
    return out
