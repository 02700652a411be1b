"""Integer-valued polynomials: the exact test behind "a claim or annotation must be an integer".

Shared by claims (a formula for a count must be an integer wherever the parameters are) and solve
(an annotation like H/3 can never be a size when H is only known to be a multiple of 4).
"""
from __future__ import annotations

import itertools
from fractions import Fraction

import sympy as sp

from netdsl.passes.symbols import SymEnv

MAX_GRID_POINTS = 4096


def non_integer_point(x: sp.Expr) -> dict[sp.Symbol, int] | None:
    """A point of the non-negative integer grid where the polynomial `x` is not an integer, or None.

    A polynomial of degree d_i in each variable is integer-valued on all integers iff it is an
    integer on the grid {0..d_1} x ... x {0..d_n} (its coefficients in the binomial basis are its
    finite differences there), so this test is exact, not a sample.
    """
    syms = sorted(x.free_symbols, key=lambda s: s.name)
    if not syms:
        return None if x.is_integer else {}
    poly = sp.Poly(x, *syms)
    terms = [(m, Fraction(int(c.p), int(c.q))) for m, c in poly.terms()]
    degrees = [poly.degree(s) for s in syms]
    grid = itertools.islice(itertools.product(*[range(d + 1) for d in degrees]), MAX_GRID_POINTS)
    for point in grid:
        v = sum((c * _monomial(m, point) for m, c in terms), Fraction(0))
        if v.denominator != 1:
            return dict(zip(syms, point))
    return None


def _monomial(m: tuple[int, ...], point: tuple[int, ...]) -> int:
    out = 1
    for e, v in zip(m, point):
        if e:
            out *= v ** e
    return out


def internal_to_user(env: SymEnv, point: dict[sp.Symbol, int]) -> dict[str, int]:
    """User values for a point given in internal symbols (X_q -> m*X_q + r)."""
    out: dict[str, int] = {}
    for name, s in env.symbols.items():
        e = env.fwd.get(s, s)
        if e.free_symbols & set(point):
            out[name] = int(e.xreplace({q: sp.Integer(v) for q, v in point.items()}))
    return out
