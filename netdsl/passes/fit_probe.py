"""The symbolic side of `netdsl fit`: a memory formula as linear pieces in the batch, the grid of
input sizes a spec admits, and the probes that measure the metric at one input size."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from netdsl import ir
from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError
from netdsl.limits import MAX_VALUE
from netdsl.passes.fit_search import largest
from netdsl.passes.front import analyse_text
from netdsl.passes.memory_model import batch_symbol
from netdsl.passes.symbols import mod_assumption

Metric = Callable[[ConcreteGraph, sp.Symbol], sp.Expr]


def as_int(x: sp.Expr) -> int:
    """A byte count at numbers: an integer, or a bug in a memory rule."""
    if not x.is_Integer:
        raise RuntimeError(f"fit: a memory formula is not an integer at numbers: {x}; this is a bug in netdsl")
    return int(x)


def batch_formula(f: sp.Expr, n: sp.Symbol) -> list[tuple[int, int]] | None:
    """`f` (in `n` alone) as the pieces (a, b) of max(a*n + b, ...), with integer a >= 0 and b and
    the dominated pieces dropped; None when it is not of that form.

    >>> N = sp.Symbol("N", integer=True, positive=True)
    >>> batch_formula(sp.Max(3*N + 5, 2*N + 1, 4*N), N)
    [(3, 5), (4, 0)]
    """
    pieces: list[tuple[int, int]] = []
    todo = [f]
    while todo:
        p = todo.pop()
        if isinstance(p, sp.Max):
            todo += p.args
            continue
        p = sp.expand(p)
        if p.free_symbols - {n}:
            return None
        try:
            poly = sp.Poly(p, n)
        except sp.PolynomialError:
            return None
        a, b = poly.coeff_monomial(n), poly.coeff_monomial(1)
        if poly.degree() > 1 or not (a.is_Integer and b.is_Integer) or a < 0:
            return None
        pieces.append((int(a), int(b)))
    return sorted({p for p in pieces if not any(q != p and q[0] >= p[0] and q[1] >= p[1] for q in pieces)})


def grid(conditions: list[ir.Condition], targets: tuple[str, ...]) -> tuple[int, int]:
    """(m, r): the values the `where` conditions admit for the targets, all equal, are r + m*k.

    >>> from netdsl.parsing import parse_text
    >>> spec = parse_text("net T(C = 1)\\ninput x: [1, H = 8, W = 8] where H % 4 == 0, W % 6 == 2\\noutput = x")
    >>> grid(spec.inputs[0].conditions, ("H",)), grid(spec.inputs[0].conditions, ("H", "W"))
    ((4, 0), (12, 8))
    """
    rules = [(m, r) for c in conditions if (rule := mod_assumption(c)) is not None
             for name, m, r in [rule] if name in targets]
    m = math.lcm(*(mi for mi, _ in rules)) if rules else 1
    if m > 10_000:  # as the shape pass does: such a combination is refused, not searched
        return 1, 0
    return m, next((r for r in range(m) if all(r % mi == ri for mi, ri in rules)), 0)


@dataclass
class SizeProbe:
    """Measures the metric at input sizes r + m*k (every target set to the same size), with a
    fresh analysis of the spec (`real`) or from the formula at the values in use (`predicted`)."""

    text: str
    path: str | None
    overrides: dict[str, int]
    targets: tuple[str, ...]
    batch: int
    metric: Metric
    step: tuple[int, int]
    seen: dict[int, tuple[int | None, str, dict[str, int]]] = field(default_factory=dict)

    def size(self, k: int) -> int:
        return self.step[1] + self.step[0] * k

    def real(self, k: int) -> int | None:
        """The metric at size k from a fresh analysis; None where the spec does not admit the size."""
        if k not in self.seen:
            ov = {**self.overrides, **{t: self.size(k) for t in self.targets}}
            try:
                cg = analyse_text(self.text, self.path, ov)
            except NetdslError as e:
                self.seen[k] = (None, e.message, {})
            else:
                b = batch_symbol(cg.env)
                v = as_int(self.metric(cg, b).xreplace({**cg.env.internal_values, b: sp.Integer(self.batch)}))
                self.seen[k] = (v, "", dict(cg.env.values))
        return self.seen[k][0]

    def solve(self, budget: int, cg: ConcreteGraph, expr: sp.Expr) -> Answer:
        """The largest admissible size that fits, checked with fresh analyses on both sides."""
        m, r = self.step
        low = 0 if r > 0 else 1
        high = max((MAX_VALUE - r) // m, low)
        start = max((cg.env.values[self.targets[0]] - r) // m, low)
        guess = _formula(cg, expr, self.targets, self.batch)
        answer: int | None = None
        notes: list[str] = []

        def fits(k: int) -> bool | None:
            v = self.real(k)
            return None if v is None else v <= budget

        if guess is not None:
            answer = largest(lambda k: _at(guess, self.size(k), budget), start, low, high)
        else:
            notes.append(f"{' and '.join(self.targets)} {'is' if len(self.targets) == 1 else 'are'} held at the "
                         "value in use in the formulas (it decides the network's structure, or a `where` fixes it): "
                         "each size was analysed afresh")
        if answer is None or not fits(answer) or (answer < high and fits(answer + 1)):
            predicted, answer = answer, largest(fits, start, low, high)
            if guess is not None and answer != predicted:
                notes.append("the formula at the values in use does not hold for every size here: "
                             "each size was analysed afresh")
        if answer is None:
            first = min((k for k, s in self.seen.items() if s[0] is not None), default=low)
            return Answer(None, self.size(first), None, self.seen.get(first, (None, "", {}))[0], notes, {})
        nxt = answer + 1
        if high > answer and self.real(nxt) is None:
            notes.append(f"{'='.join(self.targets)}={self.size(nxt)} is not admissible: {self.seen[nxt][1]}")
        return Answer(self.size(answer), self.size(nxt), self.real(answer), self.seen.get(nxt, (None, "", {}))[0],
                      notes, self.seen[answer][2])


@dataclass(frozen=True)
class Answer:
    """A size search's result: the answer (None: nothing fits), the next admissible size, the
    metric at both (None where not admissible), notes, and the values in use at the answer."""

    answer: int | None
    next: int
    at_answer: int | None
    at_next: int | None
    notes: list[str]
    values: dict[str, int]


def _formula(cg: ConcreteGraph, expr: sp.Expr, targets: tuple[str, ...], batch: int) -> Callable[[int], sp.Expr] | None:
    """The metric as a function of the size from the formula at the values in use; None where a
    target decides the network's structure (the formula holds at its value in use only)."""
    env = cg.env
    b = batch_symbol(env)
    fixed = dict(env.internal_values)
    fixed[b] = sp.Integer(batch)
    inner: list[tuple[sp.Symbol, sp.Expr, sp.Expr]] = []  # (q, m, r) of X -> m*q + r
    for t in targets:
        s = env.symbols[t]
        f = env.fwd.get(s, s)
        if not f.free_symbols:
            return None
        q = next(iter(f.free_symbols))
        inner.append((q, f.coeff(q) if f != q else sp.Integer(1), f.subs(q, 0)))
        fixed.pop(s, None)
        fixed.pop(q, None)
    g = expr.xreplace(fixed)
    return lambda size: g.xreplace({q: (size - r) / m for q, m, r in inner})


def _at(formula: Callable[[int], sp.Expr], size: int, budget: int) -> bool | None:
    v = formula(size)
    return bool(v <= budget) if v.is_Integer else None
