"""A Max of memory formulas, evaluated as SymPy evaluates it but without most of its slow path.

`sp.Max(a, b, ...)` drops every argument it can show another one bounds: it compares each new
argument with those kept so far through the assumptions system, twice per pair and both ways.
On YOLOv8's 22 peak candidates (sums of 20 terms in floors, Mins and Maxes of the parameters)
that is about 20 s. Here, as SymPy does it and in its order, with two shortcuts that change
nothing it decides:

- each non-polynomial part (`floor(WIDTH*Min(64, MAXC)/800 + 799/800)`) becomes a symbol with
  the facts SymPy knows of it (integer, nonnegative, ...), the arguments kept are returned as
  they were;
- a pair whose difference takes both signs at points that satisfy every symbol's facts is one
  SymPy cannot order (it proves only what holds at every such point): no comparison is made.
"""
from __future__ import annotations

import random
from collections.abc import Iterable

import sympy as sp
from sympy.core.operations import ShortCircuit

_FACTS = ("integer", "rational", "real", "finite", "positive", "nonnegative", "negative", "nonpositive", "zero")
_OPAQUE = (sp.floor, sp.ceiling, sp.Max, sp.Min, sp.Mod, sp.Piecewise)
_POINTS = 12  # sample points per Max: more only find more pairs SymPy cannot order


def _stand_in(x: sp.Expr) -> sp.Dummy:
    """A symbol with every fact SymPy can tell of `x` (what the comparisons would ask of it)."""
    facts = {k: v for k in _FACTS if (v := getattr(x, f"is_{k}")) is not None}
    return sp.Dummy(**facts)


def _points(symbols: Iterable[sp.Symbol]) -> list[dict[sp.Symbol, sp.Integer]]:
    """Points where every symbol is a positive integer: only where each symbol allows one (a
    symbol that may be negative or must be 0 gets none, and no point is made). Random ones, and
    corners (every symbol 1 but one large, or the reverse; random mixes of small and large): a
    pair that SymPy cannot order often changes sign only where one symbol is far from the rest."""
    syms = sorted(symbols, key=str)
    if not all(s.is_positive is not False and s.is_zero is not True and s.is_finite is not False for s in syms):
        return []
    rng = random.Random(0)  # the same points every run: the result never depends on them anyway
    points = [{s: rng.randint(1, 64) for s in syms} for _ in range(_POINTS)]
    for big in (64, 4096):
        points += [{s: big if s == x else 1 for s in syms} for x in syms]
        points += [{s: 1 if s == x else big for s in syms} for x in syms]
    points += [{s: rng.choice((1, 2, 3, 64, 4096)) for s in syms} for _ in range(_POINTS)]
    return [{s: sp.Integer(v) for s, v in p.items()} for p in points]


def _at_points(v: sp.Expr, points: list[dict[sp.Symbol, sp.Integer]]) -> list[sp.Expr]:
    """`v` at each point: through its polynomial (a long sum of products, fast to evaluate in
    exact rationals) where it is one, else through `xreplace`."""
    syms = sorted(v.free_symbols, key=str)
    if not syms or not points:
        return [v.xreplace(p) for p in points]
    try:
        poly = sp.ring(syms, sp.QQ)[0].from_expr(v)
    except ValueError:
        return [v.xreplace(p) for p in points]
    terms = [(sp.Rational(int(c.numerator), int(c.denominator)), m) for m, c in poly.terms()]
    out = []
    for p in points:
        xs = [int(p[s]) for s in syms]
        total = sp.Integer(0)
        for c, m in terms:
            prod = 1
            for x, e in zip(xs, m):
                prod *= x ** e
            total += c * prod
        out.append(total)
    return out


def _unordered(values: list[list[sp.Expr]], i: int, j: int) -> bool:
    """The two arguments' difference is positive at one point and negative at another."""
    diffs = [a - b for a, b in zip(values[i], values[j])]
    return any(d > 0 for d in diffs) and any(d < 0 for d in diffs)


def evaluated_max(args: list[sp.Expr]) -> sp.Expr:
    """`sp.Max(*args)`: the same arguments kept, in much less time where they are long sums."""
    parts = {a for x in args for a in x.atoms(*_OPAQUE)}
    rule = {p: _stand_in(p) for p in parts}
    plain = {x.xreplace(rule): x for x in args}  # xreplace: outermost parts first
    try:
        kept = _localzeros(list(plain))
    except (AttributeError, TypeError, ValueError, ShortCircuit):  # an infinity, one argument, SymPy changed
        return sp.Max(*args)
    if len(plain) != len(set(args)) or not all(k in plain for k in kept):
        return sp.Max(*args)  # not a choice among the arguments: SymPy's own way
    return plain[kept[0]] if len(kept) == 1 else sp.Max(*(plain[k] for k in kept), evaluate=False)


def _localzeros(args: list[sp.Expr]) -> list[sp.Expr]:
    """`Max.__new__`'s filtering (SymPy 1.14), pairs SymPy cannot order skipped."""
    values = list(sp.Max._collapse_arguments(frozenset(sp.Max._new_args_filter(args))))  # in SymPy's order
    if len(values) < 2:
        raise ValueError("nothing to compare")
    points = _points(set().union(*(v.free_symbols for v in values)))
    at = [_at_points(v, points) for v in values]
    index = {id(v): k for k, v in enumerate(values)}
    zeros: set[sp.Expr] = set()
    for k, v in enumerate(values):  # MinMaxBase._find_localzeros
        new = True
        for z in list(zeros):
            if id(v) == id(z):
                new = False
                continue
            con = False if points and _unordered(at, k, index[id(z)]) else sp.Max._is_connected(v, z)
            if con:
                new = False
                if con is True or con == sp.Max:
                    zeros.remove(z)
                    zeros.add(v)
        if new:
            zeros.add(v)
    return list(zeros)
