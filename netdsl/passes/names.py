"""The names of a spec: reserved words, unknown and duplicate names, the header's declarations.

Shared by lowering and by the reading of op arguments; every message offers the closest known name.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from netdsl import ir, ir_expr
from netdsl.errors import NetdslError, Span

ANNOTATIONS = ("odd", "even", "positive", "nonnegative")
RESERVED = frozenset({"cat", "add", "min", "max", "net", "input", "output", "block", "where", "claim", "true",
                      "false", "if", "else", "as", "inf", "param", "mul"})


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions of one character."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def closest(name: str, options: Iterable[str]) -> str | None:
    """The option nearest `name` (ignoring case) within a small edit distance: 1 for names of up to
    4 characters, 2 for 5, 3 for longer ones; None when none is that close. A near name is a likely
    typo (`frozen` for `freeze`); a far one only shares letters (`sigmoid` for `hardsigmoid`,
    `upsample` for `scale`), and suggesting it misleads."""
    limit = 1 if len(name) <= 4 else 2 if len(name) == 5 else 3
    key = name.lower()
    best, best_d = None, limit + 1
    for o in options:
        if abs(len(o) - len(name)) > limit:
            continue
        d = edit_distance(key, o.lower())
        if d < best_d:
            best, best_d = o, d
    return best


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`did you mean 'X'? ` for the closest option (see `closest`), or nothing."""
    close = closest(name, options)
    return f"did you mean '{close}'? " if close is not None else ""


def name_list(names: set[str], most: int = 30) -> str:
    """Names in natural order (b2 before b10), the first `most` of them and how many more."""
    ordered = sorted(names, key=lambda n: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", n)])
    more = len(ordered) - most
    return ", ".join(ordered[:most]) + (f", ... and {more} more" if more > 0 else "")


def check_names(e: ir.Expr, known: set[str] | dict, where: str) -> None:
    for n in ir_expr.names_in(e):
        if n.id not in known:
            raise NetdslError(f"unknown name '{n.id}' in {where}", n.span,
                              did_you_mean(n.id, known) + (f"known here: {', '.join(sorted(known))}" if known
                                                           else "no names are defined here"))


def fresh(name: str, span: Span, seen: dict[str, Span], what: str) -> None:
    if name in RESERVED:
        raise NetdslError(f"'{name}' is a reserved word and cannot name a {what}", span, "pick another name")
    if name in seen:
        prev = seen[name]
        raise NetdslError(f"duplicate name '{name}'", span,
                          f"'{name}' is already defined at line {prev.line}, column {prev.column}; rename one of them")
    seen[name] = span


def check_header(spec: ir.Spec) -> None:
    """Names in the header and input declarations: unique, known, defined before use."""
    seen: dict[str, Span] = {}
    params = {p.name for p in spec.params}
    for p in spec.params:
        fresh(p.name, p.span, seen, "parameter")
        if p.annotation is not None and p.annotation not in ANNOTATIONS:
            raise NetdslError(f"unknown parameter annotation '{p.annotation}'", p.span,
                              f"use one of: {', '.join(ANNOTATIONS)}, or a `where` condition")
        # Defaults may use parameters declared before them, never after.
        check_names(p.default, set(seen) - {p.name}, "parameter default")
    dims: set[str] = set()
    for inp in spec.inputs:
        fresh(inp.name, inp.span, seen, "input")
        here: dict[str, Span] = {}
        for a in inp.axes:
            if a.size is not None:
                check_names(a.size, params, "input size")
                continue
            d = a.dim
            assert d is not None
            if d.name in here:
                prev = here[d.name]
                raise NetdslError(f"the size '{d.name}' names two axes of input '{inp.name}'", d.span,
                                  f"it names the axis at line {prev.line}, column {prev.column} too; give each axis "
                                  f"its own size (a square input: `where H == W`)")
            here[d.name] = d.span
            if d.name in dims and d.default is None:
                continue  # `input b: [1, H, W]` reuses the sizes of an earlier input
            fresh(d.name, d.span, seen, "size")
            dims.add(d.name)
            if d.default is not None:
                check_names(d.default, params, "input size default")
    for c in [*spec.conditions, *(c for i in spec.inputs for c in i.conditions)]:
        for side in (c.left, c.right):
            check_names(side, params | dims, "condition")
