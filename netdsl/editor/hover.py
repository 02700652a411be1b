"""Hover text (Markdown): a statement's or tensor's shape as a formula in the user's symbols and at
the values in use, with its parameters and MACs, its memory and receptive field (`hover_analysis`);
a layer's or block call's output; an op's signature from the registry; a header parameter's or input
size's value in use."""
from __future__ import annotations

from collections.abc import Iterable

import sympy as sp

from netdsl.concrete import Block, ConcreteGraph, Layer, Merge, Statement, walk_statements
from netdsl.editor.document import Definition, DocumentAnalysis, Reference, contains
from netdsl.editor.hover_analysis import analysis_text
from netdsl.errors import source_lines, source_text
from netdsl.ops import REGISTRY, OpDef


def shape_text(cg: ConcreteGraph, name: str, shape: tuple[sp.Expr, ...]) -> str:
    """`name: [2*NF, H/4, W/4] = 64×8×8`, as `netdsl count` prints a shape."""
    formula = ", ".join(str(x) for x in cg.show(shape))
    return f"{name}: [{formula}] = {'×'.join(map(str, cg.at(shape)))}"


def _number(cg: ConcreteGraph, x: sp.Expr) -> str:
    """A count as `formula = value`, or the value alone when the formula is a number."""
    shown, value = cg.env.show(x), int(cg.env.at(x))
    return f"{value:,}" if str(shown) == str(value) else f"`{shown}` = {value:,}"


def counts_text(cg: ConcreteGraph, items: Iterable[Layer | Merge]) -> str:
    """`parameters: ... · MACs: ...` of these layers summed (MACs as torchvision counts them)."""
    items = list(items)
    params = sp.Add(*[x.counts.weights + x.counts.biases + x.counts.norm_params for x in items])
    macs = sp.Add(*[x.counts.macs for x in items])
    return f"parameters: {_number(cg, params)} · MACs: {_number(cg, macs)}"


def _code(text: str) -> str:
    return f"```netdsl\n{text}\n```"


def signature(op: OpDef) -> str:
    """An op's arguments as a call: required ones bare, the rest with their defaults.

    >>> signature(REGISTRY["maxpool"])
    'maxpool(kernel: int, stride: int = kernel, padding: int = 0, dilation: int = 1, ceil_mode: bool = false)'
    """
    parts = []
    for a in op.args:
        default = a.default_from if a.default_from else None if a.required else _literal(a.default)
        parts.append(f"{a.name}: {a.type}" + ("" if default is None else f" = {default}"))
    return f"{op.name}({', '.join(parts)})"


def _literal(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def op_hover(op: OpDef) -> str:
    """An op's signature, category and summary."""
    doc = (op.doc or type(op).__doc__ or "").strip()
    kind = "starts a statement" if op.starts_statement else "a layer"
    return "\n\n".join(x for x in (_code(signature(op)), f"*{op.category.value}* op, {kind}", doc) if x)


def find_statement(cg: ConcreteGraph, line: int, column: int) -> Statement | None:
    """The top-level statement whose text holds the position."""
    for st in cg.statements:
        if contains(st.span, line, column):
            return st
    return None


def _block_statement(cg: ConcreteGraph, block: str, name: str) -> Statement | None:
    """A graph block's statement `name` in the block's first call."""
    todo = list(cg.statements)
    while todo:
        st = todo.pop(0)
        for it in st.items:
            if isinstance(it, Block):
                if it.block == block:
                    return next((s for s in it.statements if s.name == name), None)
                todo.extend(it.statements)
    return None


def statement_hover(cg: ConcreteGraph, st: Statement, where: str = "") -> str:
    """A statement's output shape, its parameters and MACs."""
    return _code(shape_text(cg, st.name, st.shape)) + where + "\n\n" + counts_text(cg, walk_statements([st]))


def _statement_hover(an: DocumentAnalysis, cg: ConcreteGraph, st: Statement, where: str = "") -> str:
    """`statement_hover` and the statement's memory and receptive field (a top-level one's per output level)."""
    top = any(s is st for s in cg.statements)
    return statement_hover(cg, st, where) + analysis_text(an, list(walk_statements([st])), st.name if top else None)


def _layer_hover(an: DocumentAnalysis, cg: ConcreteGraph, st: Statement, line: int, column: int, word: str) -> str | None:
    """The layer or block call under the position inside statement `st` (`word` names it): the
    output of the last one (a repetition makes several), the counts and memory of all of them and
    the receptive field of the last."""
    calls = [it for it in st.items if isinstance(it, Block) and contains(it.span, line, column)]
    layers = [x for x in walk_statements([st]) if isinstance(x, Layer) and contains(x.node.origin, line, column)]
    if calls:
        call = calls[-1]
        head = _code(shape_text(cg, f"{call.block}(...)", call.out_shape))
        items = list(walk_statements([s for c in calls for s in c.statements]))
        return head + f"\n\n{len(calls)} call(s) of block `{call.block}`\n\n" + counts_text(cg, items) + \
            analysis_text(an, items)
    if not layers:
        return None
    last = layers[-1]
    if last.node.via:  # a linear block's call: its layers
        head = _code(shape_text(cg, f"{word}(...)", last.out_shape))
        return head + f"\n\nblock `{word}`: {len(layers)} layer(s)\n\n" + counts_text(cg, layers) + analysis_text(an, layers)
    args = ", ".join(f"{k}={_literal(v)}" for k, v in last.args.items())
    return _code(f"{last.op.name}({args})\n{shape_text(cg, last.path, last.out_shape)}") + "\n\n" + \
        counts_text(cg, layers) + analysis_text(an, layers)


def _definition_hover(an: DocumentAnalysis, d: Definition) -> str:
    cg = an.graph
    if cg is not None:
        if d.kind in ("tensor", "learned") and d.scope is None:
            st = next((s for s in cg.statements if s.name == d.name), None)
            if st is not None:
                return _statement_hover(an, cg, st)
        if d.kind == "tensor" and d.scope is not None:
            st = _block_statement(cg, d.scope, d.name)
            if st is not None:
                return _statement_hover(an, cg, st, f"\n\nin the first call of `{d.scope}`")
        if d.kind == "input":
            t = next((t for t in cg.inputs if t.name == d.name), None)
            if t is not None:
                return _code(shape_text(cg, t.name, t.shape))
        if d.kind in ("param", "dim") and d.name in cg.values:
            return _code(f"{d.name} = {cg.values[d.name]}") + f"\n\n{d.kind}, the value in use"
    declared = source_text(an.text, d.statement)
    return _code(declared[:300]) + f"\n\n{d.kind.replace('_', ' ')}"


def word_at(text: str, line: int, column: int) -> str:
    """The identifier under (or just before) a 1-based position.

    >>> word_at("a = x |> conv(8, 3)", 1, 11)
    'conv'
    """
    lines = source_lines(text)
    if not 1 <= line <= len(lines):
        return ""
    s = lines[line - 1]
    i = min(column - 1, len(s))
    if i == len(s) or not (s[i].isalnum() or s[i] == "_"):
        i -= 1
    if i < 0 or not (s[i].isalnum() or s[i] == "_"):
        return ""
    start, end = i, i
    while start > 0 and (s[start - 1].isalnum() or s[start - 1] == "_"):
        start -= 1
    while end < len(s) and (s[end].isalnum() or s[end] == "_"):
        end += 1
    return s[start:end]


def hover(an: DocumentAnalysis, line: int, column: int) -> str | None:
    """The hover text at a 1-based position, or None where there is nothing to say."""
    name = an.name_at(line, column)
    cg = an.graph
    st = find_statement(cg, line, column) if cg is not None else None
    if isinstance(name, Reference) and name.target.kind == "block" and cg is not None and st is not None:
        found = _layer_hover(an, cg, st, line, column, name.target.name)
        if found:
            return found
    if name is not None:
        return _definition_hover(an, name.target if isinstance(name, Reference) else name)
    word = word_at(an.text, line, column)
    if word in REGISTRY:
        layer = _layer_hover(an, cg, st, line, column, word) if cg is not None and st is not None else None
        return op_hover(REGISTRY[word]) + ("\n\n---\n\n" + layer if layer else "")
    if cg is not None and st is not None:
        return _statement_hover(an, cg, st)
    return None
