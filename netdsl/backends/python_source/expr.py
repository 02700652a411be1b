"""SymPy integer expressions as Python source, for `netdsl export --to python`.

The expressions come from netdsl's own shape and argument rules (never from text), in the
spec's symbols. Each is printed as integer arithmetic that gives, for every value of its
symbols where netdsl accepts the spec, the integer netdsl computes: `floor(a/b)` is `a // b`,
an exact quotient `a/b` (an integer wherever the spec is valid) is `a // b` too, `Mod` is `%`
(both take the divisor's sign), `Min`/`Max` are `min`/`max`, a `Piecewise` is a conditional
expression. Anything else raises `Unprintable`, and the caller writes the value instead.

>>> import sympy as sp
>>> k, NF = sp.symbols("k NF", integer=True)
>>> python_expr(sp.floor(k / 2), {})
'k // 2'
>>> python_expr(2 * NF + sp.floor((k - 1) / 2), {})
'2 * NF + (k - 1) // 2'
"""
from __future__ import annotations

import keyword

import sympy as sp

# Precedences, as Python's grammar orders them.
_COND, _OR, _AND, _NOT, _CMP, _ADD, _MUL, _NEG, _POW, _ATOM = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
_RELS = {sp.Eq: "==", sp.Ne: "!=", sp.Lt: "<", sp.Le: "<=", sp.Gt: ">", sp.Ge: ">="}


class Unprintable(Exception):
    """An expression outside what the printer writes as exact integer arithmetic."""


def python_name(name: str, taken: set[str]) -> str:
    """A Python identifier for a spec name: keywords and names the file itself uses get a `_`."""
    out = name
    while keyword.iskeyword(out) or out in taken or out in RESERVED:
        out += "_"
    return out


# Names the generated file uses itself, in methods where spec names become local variables.
RESERVED = frozenset({"self", "torch", "nn", "super", "min", "max", "float", "getattr", "OrderedDict"})


def python_expr(x: sp.Expr, names: dict[str, str]) -> str:
    """Python source for the integer expression `x`; `names` maps symbol names to Python names."""
    return _Printer(names).top(x)


class _Printer:
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def top(self, x: sp.Expr) -> str:
        return self.p(sp.Integer(x) if isinstance(x, int) else x)[0]

    def wrap(self, x: sp.Basic, prec: int, strict: bool = False) -> str:
        """`x` printed, parenthesised unless it binds at least as tightly as `prec` (more if strict)."""
        text, own = self.p(x)
        return f"({text})" if own < prec or (strict and own == prec) else text

    def p(self, x: sp.Basic) -> tuple[str, int]:
        if x is sp.true or x is sp.false:
            return ("True" if x is sp.true else "False"), _ATOM
        if isinstance(x, sp.Integer):
            v = int(x)
            return str(v), (_NEG if v < 0 else _ATOM)
        if isinstance(x, sp.Symbol):
            name = self.names.get(x.name, x.name)
            if not name.isidentifier():
                raise Unprintable(f"symbol {x.name}")
            return name, _ATOM
        if isinstance(x, sp.Rational):  # a non-integer constant: only as an exact quotient
            return self.quotient(x)
        if isinstance(x, (sp.Add, sp.Mul, sp.Pow)):
            num, den = x.as_numer_denom()
            if den != 1:
                return self.floordiv(sp.expand(num), den)
            return self.poly(sp.expand(x) if isinstance(x, sp.Pow) else x)
        if isinstance(x, sp.floor):
            num, den = x.args[0].as_numer_denom()
            if den == 1:
                return self.p(num)
            return self.floordiv(sp.expand(num), den)
        if isinstance(x, sp.ceiling):
            num, den = x.args[0].as_numer_denom()
            if den == 1:
                return self.p(num)
            return f"-({self.floordiv(sp.expand(-num), den)[0]})", _NEG
        if isinstance(x, sp.Mod):
            a, b = x.args
            return f"{self.wrap(a, _MUL)} % {self.wrap(b, _MUL, strict=True)}", _MUL
        if isinstance(x, (sp.Min, sp.Max)):
            args = sorted(x.args, key=sp.default_sort_key)
            return f"{'min' if isinstance(x, sp.Min) else 'max'}({', '.join(self.top(a) for a in args)})", _ATOM
        if isinstance(x, sp.Piecewise):
            return self.piecewise(x)
        if type(x) in _RELS:
            a, b = x.args
            return f"{self.wrap(a, _ADD)} {_RELS[type(x)]} {self.wrap(b, _ADD)}", _CMP
        if isinstance(x, sp.And):
            return " and ".join(self.wrap(a, _AND, strict=True) for a in x.args), _AND
        if isinstance(x, sp.Or):
            return " or ".join(self.wrap(a, _OR, strict=True) for a in x.args), _OR
        if isinstance(x, sp.Not):
            return f"not {self.wrap(x.args[0], _NOT)}", _NOT
        raise Unprintable(type(x).__name__)

    def quotient(self, r: sp.Rational) -> tuple[str, int]:
        return self.floordiv(sp.Integer(r.p), sp.Integer(r.q))

    def floordiv(self, num: sp.Expr, den: sp.Expr) -> tuple[str, int]:
        if den.could_extract_minus_sign():  # keep the divisor positive where it reads so
            num, den = -num, -den
        return f"{self.wrap(num, _MUL)} // {self.wrap(den, _MUL, strict=True)}", _MUL

    def poly(self, x: sp.Expr) -> tuple[str, int]:
        """A sum of products with integer coefficients (denominators were taken out)."""
        if isinstance(x, sp.Add):
            terms = x.as_ordered_terms()
            parts: list[str] = []
            for i, t in enumerate(terms):
                neg = t.could_extract_minus_sign()
                text = self.wrap(-t if neg else t, _ADD, strict=i > 0)
                if i == 0:
                    parts.append(f"-{self.wrap(-t, _NEG)}" if neg else text)
                else:
                    parts.append(f"{'-' if neg else '+'} {text}")
            return " ".join(parts), _ADD
        if isinstance(x, sp.Mul):
            coeff, rest = x.as_coeff_Mul()
            if not coeff.is_Integer:  # denominators are taken out before: never truncate one here
                raise Unprintable(f"coefficient {coeff}")
            if coeff == -1:
                return f"-{self.wrap(rest, _NEG)}", _NEG
            factors = [f for f in sp.Mul.make_args(rest)]
            factors.sort(key=lambda f: (not f.is_Symbol, sp.default_sort_key(f)))
            texts = ([str(int(coeff))] if coeff != 1 else []) + [self.wrap(f, _MUL, strict=True) for f in factors]
            text = " * ".join(texts)
            return text, (_MUL if len(texts) > 1 else _ATOM)
        if isinstance(x, sp.Pow):
            base, exp = x.args
            if not (isinstance(exp, sp.Integer) and exp >= 0):
                raise Unprintable("power")
            return f"{self.wrap(base, _POW, strict=True)} ** {int(exp)}", _POW
        return self.p(x)

    def piecewise(self, x: sp.Piecewise) -> tuple[str, int]:
        pieces = list(x.args)
        text = self.wrap(pieces[-1].expr, _COND, strict=True) if pieces[-1].cond is sp.true else None
        if text is None:
            raise Unprintable("a Piecewise without an otherwise branch")
        for e, c in reversed(pieces[:-1]):
            text = f"{self.wrap(e, _COND, strict=True)} if {self.wrap(c, _COND, strict=True)} else {text}"
        return text, _COND
