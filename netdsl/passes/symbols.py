"""Symbols, assumptions and values: IR expressions to SymPy, built node by node (never from text).

Assumptions of the form `X % m == r` (and `odd`/`even` annotations) are applied by substitution,
X -> m*X_q + r with X_q a fresh non-negative integer, which is what lets SymPy drop the `floor`s
of stride arithmetic. Results are turned back into the user's symbols for display.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from netdsl import intexpr, ir, ir_expr
from netdsl.errors import NetdslError, Span
from netdsl.limits import MAX_EXPONENT, MAX_VALUE

MAX_TERMS = 2000
MAX_CONSTANT_BITS = 256  # about 77 digits


def _terms(x: sp.Expr) -> int:
    return len(x.args) if isinstance(x, sp.Add) else 1


def _guard(x: sp.Expr, span: Span) -> sp.Expr:
    """Refuse constants too long to compute with or print (`9**64**...` style blow-ups)."""
    for r in ([x] if x.is_Rational else x.atoms(sp.Rational)):
        if max(abs(r.p).bit_length(), abs(r.q).bit_length()) > MAX_CONSTANT_BITS:
            raise NetdslError("a constant in this expression has more than 77 digits", span,
                              "no network size needs numbers this large")
    return x


def safe_str(x: object) -> str:
    """str() that survives Python's limit on printing integers of more than 4300 digits."""
    try:
        text = str(x)
    except ValueError:
        return "<a number too long to print>"
    return text if len(text) <= 200 else text[:200] + "..."


class _Sympy(intexpr.Arithmetic[sp.Expr]):
    """Formulas: products and powers expanded (and bounded in terms), `//` a floor; an exponent
    must be a constant. Every result's constants are bounded in digits (`_guard`)."""

    def binop(self, n: ir.BinOp, a: sp.Expr, b: sp.Expr) -> sp.Expr:
        return _guard(super().binop(n, a, b), n.span)

    def plain(self, n: ir.BinOp, a: sp.Expr, b: sp.Expr) -> sp.Expr:
        if n.op == "+":
            return a + b
        if n.op == "-":
            return a - b
        if n.op == "*":
            if _terms(a) * _terms(b) > MAX_TERMS:
                raise NetdslError(f"this product expands to more than {MAX_TERMS} terms", n.span,
                                  "simplify the expression")
            return sp.expand(a * b)
        if n.op == "//":
            return sp.floor(sp.expand(a / b))
        return sp.Mod(a, b)

    def divide(self, n: ir.BinOp, a: sp.Expr, b: sp.Expr) -> sp.Expr:
        return sp.expand(a / b)

    def power(self, n: ir.BinOp, a: sp.Expr, b: sp.Expr) -> sp.Expr:
        exp = intexpr.const_int(n.right)
        if exp is None or not 0 <= exp <= MAX_EXPONENT:
            raise intexpr.Refused(intexpr.Rule.EXPONENT, n, a, b)
        k = _terms(a)
        if k > 1 and math.comb(k + exp - 1, exp) > MAX_TERMS:
            raise NetdslError(f"this power expands to more than {MAX_TERMS} terms", n.span, "simplify the expression")
        return sp.expand(a ** exp)

    def minimum(self, vals: list[sp.Expr]) -> sp.Expr:
        return sp.Min(*vals)

    def maximum(self, vals: list[sp.Expr]) -> sp.Expr:
        return sp.Max(*vals)


SYMPY = _Sympy()


@dataclass
class SymEnv:
    """The spec's symbols, the substitutions its assumptions allow, and the values in use."""

    graph: ir.Spec | ir.Graph
    symbols: dict[str, sp.Symbol] = field(default_factory=dict)
    fwd: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)   # X -> m*X_q + r
    back: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)  # X_q -> (X - r)/m
    values: dict[str, int] = field(default_factory=dict)
    internal_values: dict[sp.Symbol, sp.Integer] = field(default_factory=dict)

    # --- IR -> SymPy ------------------------------------------------------------------------
    def sym(self, e: ir.Expr, *, raw: bool = False, at: dict[sp.Symbol, sp.Integer] | None = None) -> sp.Expr:
        """The expression in internal symbols (after the assumption substitutions) unless `raw`.

        With `at`, names are replaced by those values as they are read, so the result is a number
        built without symbolic Mod/floor work (the cheap way to evaluate conditions and defaults).
        """
        def leaf(n: ir.Int | ir.Name) -> sp.Expr:
            if isinstance(n, ir.Int):
                return sp.Integer(n.value)
            s = self.symbols[n.id]
            if at is not None:
                return at.get(s, s)
            return s if raw else self.fwd.get(s, s)

        def cond(n: ir.IfExpr) -> sp.Expr:
            if at is None:
                raise NetdslError("a conditional expression cannot be used here", n.span,
                                  "conditionals are allowed in layer and block arguments and repetition counts")
            a, b = self.sym(n.test.left, at=at), self.sym(n.test.right, at=at)
            ok = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[n.test.op]
            return self.sym(n.then if bool(ok) else n.orelse, at=at)

        try:
            return intexpr.evaluate(e, leaf, SYMPY, cond)
        except intexpr.Refused as r:
            if r.rule is intexpr.Rule.ZERO_DIVISOR:
                raise NetdslError("division by zero", r.node.right.span,
                                  "the right side of //, % and / must not be 0") from None
            raise NetdslError(f"exponents must be constant integers from 0 to {MAX_EXPONENT}", r.node.right.span,
                              "write the power with a literal exponent, e.g. k**2") from None

    def pin(self, names: list[str]) -> list[str]:
        """Hold these names at their values in use (they decided the network's structure);
        returns a note for each."""
        notes = []
        for name in names:
            s = self.symbols[name]
            old = self.fwd.get(s)
            if old is not None and old.is_Integer:
                continue
            for q in (old.free_symbols if old is not None else ()):
                self.back.pop(q, None)
            self.fwd[s] = sp.Integer(self.values[name])
            notes.append(f"{name} decides the network's structure (a repetition count or a condition); "
                         f"its formulas hold for {name} = {self.values[name]}")
        return notes

    def show(self, x: sp.Expr) -> sp.Expr:
        """An internal expression in the user's symbols, for display and export."""
        return sp.expand(x.xreplace(self.back)) if self.back else x

    def at(self, x: sp.Expr) -> sp.Expr:
        """The value of an internal expression at the values in use."""
        return x.xreplace(self.internal_values)

    def check_size(self, x: sp.Expr, what: str, span: Span, hint: str | Callable[[], str]) -> int:
        """A channel or spatial size: it must be a positive integer at the values in use.
        `hint` may be a function: it is only worth formatting when there is an error."""
        v = self.at(x)
        if v.is_Integer and 0 < v <= MAX_VALUE:
            return int(v)
        shown, text = self.show(x), hint() if callable(hint) else hint
        if not v.is_Integer:
            raise NetdslError(f"{what} is not an integer: {safe_str(shown)} = {safe_str(v)}", span, text)
        if v <= 0:
            raise NetdslError(f"{what} is {'zero' if v == 0 else 'negative'}: {safe_str(shown)} = {safe_str(v)}",
                              span, text)
        raise NetdslError(f"{what} is too large: {safe_str(shown)} > 10**18", span, text)


def mod_assumption(c: ir.Condition) -> tuple[str, int, int] | None:
    """`X % m == r` with X a name and m, r constants, as (X, m, r)."""
    if c.op != "==":
        return None
    for lhs, rhs in ((c.left, c.right), (c.right, c.left)):
        if isinstance(lhs, ir.BinOp) and lhs.op == "%" and isinstance(lhs.left, ir.Name):
            m, r = intexpr.const_int(lhs.right), intexpr.const_int(rhs)
            if m is not None and r is not None and m > 1:
                return lhs.left.id, m, r % m
    return None


def fixed_value(c: ir.Condition) -> tuple[str, int] | None:
    """`X == n` with X a name and n a constant, as (X, n)."""
    if c.op != "==":
        return None
    for lhs, rhs in ((c.left, c.right), (c.right, c.left)):
        if isinstance(lhs, ir.Name):
            v = intexpr.const_int(rhs)
            if v is not None:
                return lhs.id, v
    return None


def _combine(rules: list[tuple[int, int]]) -> tuple[int, int] | None:
    """Combine X ≡ r_i (mod m_i) into one X ≡ r (mod lcm); None when they contradict."""
    m = 1
    for mi, _ in rules:
        m = m * mi // math.gcd(m, mi)
    if m > 10_000:
        return None
    for r in range(m):
        if all(r % mi == ri for mi, ri in rules):
            return m, r
    return None


Header = ir.Spec | ir.Graph


def make_env(header: Header, overrides: dict[str, int] | None = None) -> SymEnv:
    """Symbols for the spec's parameters and sizes, the values in use (checked against every
    annotation and `where` condition), and the substitutions the assumptions allow."""
    overrides = dict(overrides or {})
    env = SymEnv(header)
    _declare(env, header, overrides)
    _values(env, header, overrides)
    rules = _check_annotations(env, header, overrides)
    _check_conditions(env, header, overrides, rules)
    _substitute(env, rules)
    _internal_values(env)
    return env


def _declare(env: SymEnv, h: Header, overrides: dict[str, int]) -> None:
    for p in h.params:
        # Parameters are non-negative by the language's rule; it lets SymPy settle Max(NF, 2*NF).
        env.symbols[p.name] = sp.Symbol(p.name, integer=True, nonnegative=True)
    for d in h.dims:
        env.symbols[d.name] = sp.Symbol(d.name, integer=True, positive=True)
    known = list(env.symbols)
    unknown = [k for k in overrides if k not in known]
    if unknown:
        where = None
        if h.params:  # point at the parameter list, the place that lists what can be set
            a, b = h.params[0].span, h.params[-1].span
            where = Span(a.line, a.column, b.end_line, b.end_column)
        raise NetdslError(f"--set {unknown[0]}=...: the spec has no parameter or size '{unknown[0]}'", where,
                          f"settable names: {', '.join(known)}")


def _values(env: SymEnv, h: Header, overrides: dict[str, int]) -> None:
    """Values in use: overrides, else defaults in declaration order (a default may use earlier ones)."""
    raw: dict[sp.Symbol, sp.Integer] = {}
    for p in h.params:
        val = overrides[p.name] if p.name in overrides else _default(env, p.name, p.default, raw, "parameter")
        if not 0 <= val <= MAX_VALUE:
            how = f"--set {p.name}=..." if p.name in overrides else "its default"
            raise NetdslError(f"parameter '{p.name}' is {'negative' if val < 0 else 'larger than 10**18'} ({how})",
                              p.span, "parameters are non-negative integers up to 10**18")
        env.values[p.name] = val
        raw[env.symbols[p.name]] = sp.Integer(val)
    for d in h.dims:
        if d.name in overrides:
            val = overrides[d.name]
        elif d.default is not None:
            val = _default(env, d.name, d.default, raw, "size")
        else:
            raise NetdslError(f"the input size '{d.name}' has no value", d.span,
                              f"give it a default, `{d.name} = 32`, or pass --set {d.name}=32")
        if not 0 < val <= MAX_VALUE:
            raise NetdslError(f"the input size '{d.name}' must be a positive integer up to 10**18", d.span,
                              f"pass --set {d.name}=32")
        env.values[d.name] = val
        raw[env.symbols[d.name]] = sp.Integer(val)


def _default(env: SymEnv, name: str, e: ir.Expr, raw: dict[sp.Symbol, sp.Integer], what: str) -> int:
    v = env.sym(e, at=raw)
    if not v.is_Integer:
        raise NetdslError(f"the default of '{name}' is not an integer: {safe_str(v)}", e.span,
                          "defaults are integer expressions" if what == "parameter" else "sizes are integers")
    return int(v)


def _check_annotations(env: SymEnv, h: Header, overrides: dict[str, int]) -> dict[str, list[tuple[int, int]]]:
    """`k: odd` and friends hold at the values in use; odd/even become modular rules."""
    rules: dict[str, list[tuple[int, int]]] = {}
    for p in h.params:
        if p.annotation in ("odd", "even"):
            rules.setdefault(p.name, []).append((2, 1 if p.annotation == "odd" else 0))
        v = env.values[p.name]
        bad = {"odd": v % 2 != 1, "even": v % 2 != 0, "positive": v <= 0, "nonnegative": v < 0}.get(p.annotation or "", False)
        if bad:
            how = f"--set {p.name}={v}" if p.name in overrides else f"its default {v}"
            raise NetdslError(f"'{p.name}' must be {p.annotation}, but {how} is not", p.span,
                              f"choose a{'n' if p.annotation in ('odd',) else ''} {p.annotation} value for {p.name}")
    return rules


def conditions_of(h: Header) -> list[ir.Condition]:
    return [*h.conditions, *(c for i in h.inputs for c in i.conditions)]


def _check_conditions(env: SymEnv, h: Header, overrides: dict[str, int], rules: dict[str, list[tuple[int, int]]]) -> None:
    """Each condition holds at the values in use; `X % m == r` and `X == n` become assumptions."""
    raw = {env.symbols[n]: sp.Integer(v) for n, v in env.values.items()}
    for c in conditions_of(h):
        lv, rv = env.sym(c.left, at=raw), env.sym(c.right, at=raw)
        ok = {"==": lv == rv, "!=": lv != rv, "<": lv < rv, "<=": lv <= rv, ">": lv > rv, ">=": lv >= rv}[c.op]
        if not bool(ok):
            names = sorted({n.id for side in (c.left, c.right) for n in ir_expr.names_in(side)})
            used = ", ".join(f"{n}={env.values[n]}" + (" (from --set)" if n in overrides else "") for n in names)
            raise NetdslError(f"the condition {ir_expr.condition_text(c)} does not hold for {used}", c.span,
                              "choose values that satisfy the spec's `where` conditions")
        mod = mod_assumption(c)
        if mod is not None:
            rules.setdefault(mod[0], []).append((mod[1], mod[2]))
        fixed = fixed_value(c)
        if fixed is not None:  # `k == 3`: the symbol is that constant everywhere
            env.fwd[env.symbols[fixed[0]]] = sp.Integer(fixed[1])


def _substitute(env: SymEnv, rules: dict[str, list[tuple[int, int]]]) -> None:
    for name, rs in rules.items():
        s = env.symbols[name]
        combined = _combine(rs)
        if s in env.fwd or combined is None:
            continue
        m, r = combined
        q = sp.Symbol(f"{name}_q", integer=True, nonnegative=True)
        env.fwd[s] = m * q + r
        env.back[q] = (s - r) / m


def _internal_values(env: SymEnv) -> None:
    for name, s in env.symbols.items():
        if s in env.fwd and env.fwd[s].free_symbols:
            q = next(iter(env.fwd[s].free_symbols))
            env.internal_values[q] = sp.Integer((env.values[name] - env.fwd[s].subs(q, 0)) // (env.fwd[s].coeff(q)))
        env.internal_values[s] = sp.Integer(env.values[name])
