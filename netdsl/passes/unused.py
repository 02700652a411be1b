"""Tensors nothing reads: a statement, a learned tensor, a split's part or an input that no statement
reads and that is no output is built (and counted) for nothing, almost always by mistake.

`unused(cg)` finds them in the concrete graph, at top level and in every graph block (once per
block, its parameters summed over its calls). `build` and `count` print each as a warning;
`--strict` (and `strict=True` in the API) makes the first one an error.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from netdsl import ir
from netdsl.concrete import Block, ConcreteGraph, Statement
from netdsl.errors import NetdslError, Span
from netdsl.ops.learned import PARAM

ADVICE = "use it, make it an output, or delete it"


class UnusedTensorWarning(UserWarning):
    """A tensor of the spec is never read (`netdsl.api.build`/`count` warn with this class)."""


@dataclass(frozen=True)
class Unused:
    """One tensor nothing reads; `params` counts its statement's parameters and those of the
    statements that only it reads (`feeders` of them), over every call of its block."""

    name: str
    span: Span
    kind: str = "tensor"          # "tensor", "input", "part" (of a split), "learned"
    block: str | None = None
    params: int = 0
    feeders: int = 0

    @property
    def message(self) -> str:
        where = f" in block '{self.block}'" if self.block else ""
        what = {"input": "input", "part": "split part", "learned": "learned tensor"}.get(self.kind, "tensor")
        head = f"{what} '{self.name}'{where} (line {self.span.line}:{self.span.column}) is never read"
        if self.params == 0:
            return head
        feed = "the statement that only feeds it" if self.feeders == 1 else f"the {self.feeders} statements that only feed it"
        holder = f"it and {feed} hold" if self.feeders else "it holds"
        return f"{head}: {holder} {self.params:,} parameters, built and counted"

    @property
    def hint(self) -> str:
        if self.kind == "part":
            return f"{ADVICE}; `_` in place of its name discards a part of a split"
        return ADVICE

    def error(self, path: str | None, text: str | None) -> NetdslError:
        return NetdslError(self.message, self.span, self.hint, path=path, source=text)

    def render(self, path: str | None, text: str | None) -> str:
        """`file:line:col: warning: ...` with the source line, as errors are shown."""
        return self.error(path, text).render().replace(": error: ", ": warning: ", 1)


def _params(cg: ConcreteGraph, st: Statement) -> int:
    total = 0
    counts = [st.merge.counts] if st.merge is not None else []
    for it in st.items:
        if isinstance(it, Block):
            total += sum(_params(cg, s) for s in it.statements)
        else:
            counts.append(it.counts)
    for c in counts:
        total += int(cg.env.at(c.weights + c.biases + c.norm_params))
    return total


def _dead(stmts: list[Statement], inputs: list[tuple[str, Span]], outputs: set[str],
          parts: set[str]) -> list[tuple[Unused, list[Statement]]]:
    """The unread tensors of one scope, each with the statements (its own first) its count covers."""
    by_name = {st.name: st for st in stmts}
    read = {i for st in stmts for i in st.inputs}
    live: set[str] = set()
    todo = [n for n in outputs if n in by_name]
    while todo:
        n = todo.pop()
        if n not in live:
            live.add(n)
            todo += [i for i in by_name[n].inputs if i in by_name]
    dead = [st for st in stmts if st.name not in live]
    reaches: dict[str, set[str]] = {}  # dead statement -> the unread sinks it feeds
    for st in reversed(dead):
        if st.name not in read:
            reaches.setdefault(st.name, set()).add(st.name)
        for i in st.inputs:
            if i in by_name and i not in live:
                reaches.setdefault(i, set()).update(reaches.get(st.name, set()))
    out: list[tuple[Unused, list[Statement]]] = []
    for name, span in inputs:
        if name not in read and name not in outputs:
            out.append((Unused(name, span, "input"), []))
    for st in dead:
        if st.name in read or st.name in outputs:
            continue
        own = [st] + [d for d in dead if d is not st and reaches.get(d.name) == {st.name}]
        kind = "part" if st.name in parts else "learned" if st.source == PARAM else "tensor"
        out.append((Unused(st.name, st.span, kind, feeders=len(own) - 1), own))
    return out


def _blocks(stmts: Iterable[Statement]) -> Iterable[Block]:
    for st in stmts:
        for it in st.items:
            if isinstance(it, Block):
                yield it
                yield from _blocks(it.statements)


def _parts(assigns: Iterable[ir.Assign]) -> set[str]:
    return {t.name for a in assigns for t in a.targets}


def unused(cg: ConcreteGraph) -> list[Unused]:
    """Every tensor nothing reads, in source order: top level, then each graph block once."""
    spec = cg.spec
    found: dict[tuple[str | None, str], Unused] = {}
    top = _dead(cg.statements, [(t.name, t.span) for t in cg.inputs], {t.name for t in cg.outputs},
                _parts(spec.assigns) if spec is not None else set())
    for u, own in top:
        found[(None, u.name)] = Unused(u.name, u.span, u.kind, None, sum(_params(cg, s) for s in own), u.feeders)
    defs = {b.name: b for b in spec.blocks} if spec is not None else {}
    for inst in _blocks(cg.statements):
        d = defs.get(inst.block)
        span = d.input.span if d is not None and d.input is not None else inst.span
        for u, own in _dead(inst.statements, [(inst.input, span)], {"output"}, _parts(d.assigns) if d else set()):
            key = (inst.block, u.name)
            prev = found.get(key)
            params = sum(_params(cg, s) for s in own) + (prev.params if prev else 0)
            found[key] = Unused(u.name, u.span, u.kind, inst.block, params, u.feeders)
    return sorted(found.values(), key=lambda u: (u.span.line, u.span.column))


def check_unused(cg: ConcreteGraph, strict: bool) -> list[Unused]:
    """The unread tensors; with `strict`, the first of them as an error (the rest as its notes)."""
    found = unused(cg)
    if strict and found:
        path, text = cg.source
        err = found[0].error(path, text)
        err.notes = tuple(u.message for u in found[1:])
        err.hint = f"{found[0].hint} (--strict makes an unread tensor an error)"
        raise err
    return found
