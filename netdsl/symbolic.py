"""Decisions about integer expressions with floors: equal for every value? non-negative?

Shape arithmetic writes the same size in different floor forms (`floor(H/2 - 1/2) + 1` is
`(H + 1)//2` for every integer H). SymPy cannot compare those. For expressions whose floors
are of linear arguments with rational coefficients, both questions are decidable by residue
classes: with M the common denominator of a symbol's coefficients inside floors, substituting
X = M*t + r (r = 0..M-1) turns every floor into a polynomial in t. That is what is done here;
expressions outside that class get `None` (undecided), never a guess.

>>> import sympy as sp
>>> H = sp.Symbol("H", integer=True, nonnegative=True)
>>> always_equal(sp.floor(H/2 - sp.Rational(1, 2)) + 1, sp.floor((H + 1)/2))
True
>>> always_equal(sp.floor(H/2), H/2)
False
"""
from __future__ import annotations

import itertools
import math

import sympy as sp

MAX_CLASSES = 256


def _moduli(x: sp.Expr) -> dict[sp.Symbol, int] | None:
    """Per symbol, the lcm of the denominators of its coefficients inside the innermost floors
    (and Mods); None where such an argument is not linear with rational coefficients."""
    out: dict[sp.Symbol, int] = {}
    for f in x.atoms(sp.floor, sp.ceiling, sp.Mod):
        if any(a.has(sp.floor, sp.ceiling, sp.Mod) for a in f.args):
            continue  # an outer floor: its turn comes once the inner ones are resolved
        a = sp.expand(f.args[0] / f.args[1] if isinstance(f, sp.Mod) else f.args[0])
        for s in a.free_symbols:
            c = a.coeff(s)
            if c.free_symbols or not c.is_Rational or (a - c * s).has(s):
                return None
            out[s] = math.lcm(out.get(s, 1), int(c.q))
    return out


def _classes(x: sp.Expr) -> list[sp.Expr] | None:
    """`x` rewritten once per residue class of its symbols, floors resolved from the innermost
    out (nested floors take one round per level); None if that is not possible."""
    work = [sp.expand(x)]
    for level in range(16):
        pending = [y for y in work if y.has(sp.floor, sp.ceiling, sp.Mod)]
        if not pending:
            return work
        nxt = [y for y in work if not y.has(sp.floor, sp.ceiling, sp.Mod)]
        for y in pending:
            moduli = _moduli(y)
            if not moduli or all(m == 1 for m in moduli.values()):
                return None
            syms = sorted((s for s, m in moduli.items() if m > 1), key=str)
            if len(nxt) + math.prod(moduli[s] for s in syms) > MAX_CLASSES:
                return None  # undecided: too many classes to enumerate (a stride of 10**18, say)
            fresh = {s: sp.Symbol(f"{s.name}_{level}", integer=True, nonnegative=True) for s in syms}
            for rs in itertools.product(*[range(moduli[s]) for s in syms]):
                nxt.append(sp.expand(y.xreplace({s: moduli[s] * fresh[s] + r for s, r in zip(syms, rs)})))
            if len(nxt) > MAX_CLASSES:
                return None
        work = nxt
    return None


def always_equal(a: sp.Expr, b: sp.Expr) -> bool | None:
    """True if a == b for every value of their (integer) symbols, False if not, None if undecided."""
    d = sp.expand(a - b)
    if d == 0:
        return True
    if not d.has(sp.floor, sp.ceiling, sp.Mod):
        return False if d.is_polynomial(*d.free_symbols) else None
    classes = _classes(d)
    if classes is None:
        return None
    return all(c == 0 for c in classes)


def always_nonnegative(x: sp.Expr) -> bool | None:
    """True if x >= 0 for every non-negative value of its symbols, False if x < 0 for every one;
    None when it depends on the values or cannot be decided."""
    classes = [sp.expand(x)] if not x.has(sp.floor, sp.ceiling, sp.Mod) else _classes(x)
    if classes is None:
        return None
    verdicts = set()
    for c in classes:
        if c.is_number:
            verdicts.add(bool(c >= 0))
            continue
        if not c.is_polynomial(*c.free_symbols):
            return None
        coeffs = sp.Poly(c, *sorted(c.free_symbols, key=str)).coeffs()
        const = c.xreplace({s: 0 for s in c.free_symbols})
        if all(k >= 0 for k in coeffs) and const >= 0:
            verdicts.add(True)
        elif all(k <= 0 for k in coeffs) and const < 0:
            verdicts.add(False)
        else:
            return None
    return verdicts.pop() if len(verdicts) == 1 else None
