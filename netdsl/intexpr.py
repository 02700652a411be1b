"""The one evaluator of integer expressions (`+ - * // % / **`, `min`, `max`, negation).

`evaluate(e, leaf, arithmetic)` folds an expression bottom-up: `leaf` says what a literal or a
name means, `arithmetic` which numbers the operators act on. Exact integers (`Integers`: sizes,
repetition counts, conditions), exact fractions (`Fractions`: float arguments, rounded once by the
caller) and SymPy expressions (`passes.symbols`) are three arithmetics of the same rules:

- `//`, `%` and `/` by zero are refused;
- `/` of integers must divide exactly (`Integers`); of fractions it is exact anyway;
- `**` takes exponents from 0 to MAX_EXPONENT (from -MAX_EXPONENT for fractions) and bases up to
  MAX_POWER_BASE in size, so no evaluation builds a number of millions of digits.

A refusal is a `Refused` exception naming the rule and the operation; each caller words it for its
context (a repetition count, a float argument, a formula), so the messages stay where they are read.
"""
from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from fractions import Fraction
from typing import Generic, TypeVar

from netdsl import ir, ir_expr
from netdsl.errors import NetdslError
from netdsl.limits import MAX_EXPONENT, MAX_POWER_BASE

N = TypeVar("N")
R = TypeVar("R", int, Fraction)
DIVISIONS = ("//", "%", "/")


class Rule(Enum):
    ZERO_DIVISOR = "division by zero"
    EXPONENT = "exponent out of range"
    INEXACT = "division with a remainder"


class Refused(Exception):
    """An operation the rules refuse: `rule`, at `node` (a BinOp), with operands `left` and `right`."""

    def __init__(self, rule: Rule, node: ir.BinOp, left: object, right: object) -> None:
        super().__init__(rule.value)
        self.rule, self.node, self.left, self.right = rule, node, left, right


class Arithmetic(Generic[N]):
    """How the operators act on one number type; `binop` refuses a zero divisor for every type,
    the subclasses' `power` and `divide` refuse what their type cannot represent."""

    def is_zero(self, b: N) -> bool:
        return b == 0

    def binop(self, n: ir.BinOp, a: N, b: N) -> N:
        if n.op in DIVISIONS and self.is_zero(b):
            raise Refused(Rule.ZERO_DIVISOR, n, a, b)
        if n.op == "**":
            return self.power(n, a, b)
        if n.op == "/":
            return self.divide(n, a, b)
        return self.plain(n, a, b)

    def plain(self, n: ir.BinOp, a: N, b: N) -> N:
        """`+ - * // %` (the divisor is not zero)."""
        raise NotImplementedError

    def divide(self, n: ir.BinOp, a: N, b: N) -> N:
        raise NotImplementedError

    def power(self, n: ir.BinOp, a: N, b: N) -> N:
        raise NotImplementedError

    def minimum(self, vals: list[N]) -> N:
        raise NotImplementedError

    def maximum(self, vals: list[N]) -> N:
        raise NotImplementedError


def _plain(op: str, a: R, b: R) -> R:
    """`+ - * %` on Python's exact numbers (`//` differs: a Fraction's is an int)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b if op == "*" else a % b


class Integers(Arithmetic[int]):
    """Exact integers: `/` must divide, `**` from 0 to MAX_EXPONENT with |base| up to MAX_POWER_BASE."""

    def plain(self, n: ir.BinOp, a: int, b: int) -> int:
        return a // b if n.op == "//" else _plain(n.op, a, b)

    def divide(self, n: ir.BinOp, a: int, b: int) -> int:
        if a % b:
            raise Refused(Rule.INEXACT, n, a, b)
        return a // b

    def power(self, n: ir.BinOp, a: int, b: int) -> int:
        if not 0 <= b <= MAX_EXPONENT or abs(a) > MAX_POWER_BASE:
            raise Refused(Rule.EXPONENT, n, a, b)
        return int(a ** b)

    def minimum(self, vals: list[int]) -> int:
        return min(vals)

    def maximum(self, vals: list[int]) -> int:
        return max(vals)


MAX_FRACTION_BITS = 4096  # a power's numerator and denominator: powers of powers would grow without bound


def _bits(a: Fraction) -> int:
    return max(a.numerator.bit_length(), a.denominator.bit_length())


class Fractions(Arithmetic[Fraction]):
    """Exact fractions: `/` exact, `//` whole, `**` any whole exponent from -MAX_EXPONENT to MAX_EXPONENT."""

    def plain(self, n: ir.BinOp, a: Fraction, b: Fraction) -> Fraction:
        return Fraction(a // b) if n.op == "//" else _plain(n.op, a, b)

    def divide(self, n: ir.BinOp, a: Fraction, b: Fraction) -> Fraction:
        return a / b

    def power(self, n: ir.BinOp, a: Fraction, b: Fraction) -> Fraction:
        if b.denominator != 1 or not -MAX_EXPONENT <= b <= MAX_EXPONENT or abs(a) > MAX_POWER_BASE \
                or (a == 0 and b < 0) or _bits(a) * abs(int(b)) > MAX_FRACTION_BITS:
            raise Refused(Rule.EXPONENT, n, a, b)
        return Fraction(a ** int(b))

    def minimum(self, vals: list[Fraction]) -> Fraction:
        return min(vals)

    def maximum(self, vals: list[Fraction]) -> Fraction:
        return max(vals)


INTEGERS = Integers()
FRACTIONS = Fractions()


def evaluate(e: ir.Expr, leaf: Callable[[ir.Int | ir.Name], N], arithmetic: Arithmetic[N],
             cond: Callable[[ir.IfExpr], N] | None = None, real: Callable[[ir.Float], N] | None = None) -> N:
    """`e`'s value: `leaf` gives literals and names, `arithmetic` the operators (a refusal raises
    Refused); a conditional goes to `cond` (without one, conditionals must be resolved already);
    a number with a fraction to `real` (without one, it is refused: an integer is expected)."""
    return ir_expr.fold(e, leaf, arithmetic.binop, lambda n, v: -v,
                   lambda n, vs: arithmetic.minimum(vs) if n.func == "min" else arithmetic.maximum(vs), cond, real)


class _NotConstant(Exception):
    pass


def _constant_leaf(n: ir.Int | ir.Name) -> int:
    if isinstance(n, ir.Int):
        return n.value
    raise _NotConstant


def _no_conditional(n: ir.IfExpr | ir.Float) -> int:
    raise _NotConstant


def const_int(e: ir.Expr) -> int | None:
    """Value of an expression without names (repetition counts, exponents), else None (also where
    the rules refuse it: a zero divisor, an inexact `/`, an exponent out of range)."""
    try:
        return evaluate(e, _constant_leaf, INTEGERS, _no_conditional, _no_conditional)
    except (_NotConstant, Refused):
        return None


def refusal_error(r: Refused, context: str, exponents: str) -> NetdslError:
    """A refusal as an error at its operand: `context` ("in a repetition count") is the hint,
    `exponents` the message for an exponent out of range (the ranges differ by arithmetic)."""
    if r.rule is Rule.ZERO_DIVISOR:
        return NetdslError("division by zero", r.node.right.span, context)
    if r.rule is Rule.EXPONENT:
        return NetdslError(exponents, r.node.right.span, context)
    return NetdslError(f"{r.left}/{r.right} is not an integer", r.node.span, f"use // {context}")
