"""The one integer-expression evaluator (netdsl.intexpr) and the limits it applies (netdsl.limits)."""
from __future__ import annotations

from fractions import Fraction

import pytest

from netdsl import intexpr, ir
from netdsl.errors import NetdslError, Span
from netdsl.limits import MAX_EXPONENT, MAX_POWER_BASE

SP = Span(1, 1, 1, 2)


def i(v: int) -> ir.Int:
    return ir.Int(value=v, span=SP)


def op(a: ir.Expr, o: str, b: ir.Expr) -> ir.BinOp:
    return ir.BinOp(op=o, left=a, right=b, span=SP)


def name(n: str) -> ir.Name:
    return ir.Name(id=n, span=SP)


def ints(e: ir.Expr, **values: int) -> int:
    return intexpr.evaluate(e, lambda n: n.value if isinstance(n, ir.Int) else values[n.id], intexpr.INTEGERS)


@pytest.mark.parametrize(("o", "a", "b", "want"), [("+", 7, 2, 9), ("-", 7, 2, 5), ("*", 7, 2, 14), ("//", -7, 2, -4),
                                                   ("%", -7, 2, 1), ("/", 8, 2, 4), ("**", -3, 3, -27)])
def test_integers_follow_python(o: str, a: int, b: int, want: int) -> None:
    assert ints(op(i(a), o, i(b))) == want
    assert intexpr.const_int(op(i(a), o, i(b))) == want


def test_names_min_max_negation() -> None:
    e = ir.Call(func="max", args=[op(name("k"), "*", i(2)), ir.Neg(operand=i(3), span=SP)], span=SP)
    assert ints(e, k=5) == 10
    assert intexpr.const_int(e) is None  # a name is not a constant
    assert intexpr.const_int(ir.Call(func="min", args=[i(4), i(-1)], span=SP)) == -1


@pytest.mark.parametrize(("e", "rule"), [
    (op(i(1), "//", i(0)), intexpr.Rule.ZERO_DIVISOR), (op(i(1), "%", i(0)), intexpr.Rule.ZERO_DIVISOR),
    (op(i(1), "/", i(0)), intexpr.Rule.ZERO_DIVISOR), (op(i(7), "/", i(2)), intexpr.Rule.INEXACT),
    (op(i(2), "**", i(MAX_EXPONENT + 1)), intexpr.Rule.EXPONENT), (op(i(2), "**", i(-1)), intexpr.Rule.EXPONENT),
    (op(i(MAX_POWER_BASE + 1), "**", i(2)), intexpr.Rule.EXPONENT)])
def test_integer_refusals(e: ir.BinOp, rule: intexpr.Rule) -> None:
    with pytest.raises(intexpr.Refused) as info:
        ints(e)
    assert info.value.rule is rule and info.value.node is e
    assert intexpr.const_int(e) is None


def test_fractions_are_exact() -> None:
    def leaf(n: ir.Int | ir.Name) -> Fraction:
        assert isinstance(n, ir.Int)
        return Fraction(n.value)

    assert intexpr.evaluate(op(i(1), "/", i(3)), leaf, intexpr.FRACTIONS) == Fraction(1, 3)
    assert intexpr.evaluate(op(i(2), "**", i(-MAX_EXPONENT)), leaf, intexpr.FRACTIONS) == Fraction(1, 2**64)
    assert intexpr.evaluate(op(i(7), "//", i(2)), leaf, intexpr.FRACTIONS) == 3
    with pytest.raises(intexpr.Refused):
        intexpr.evaluate(op(i(0), "**", i(-1)), leaf, intexpr.FRACTIONS)
    with pytest.raises(intexpr.Refused):
        intexpr.evaluate(op(i(2), "**", i(-MAX_EXPONENT - 1)), leaf, intexpr.FRACTIONS)


def test_refusal_error_words_each_rule() -> None:
    right = ir.Int(value=0, span=Span(1, 5, 1, 6))
    e = ir.BinOp(op="//", left=i(1), right=right, span=Span(1, 1, 1, 6))
    with pytest.raises(intexpr.Refused) as info:
        ints(e)
    err = intexpr.refusal_error(info.value, "in a repetition count", "exponents ...")
    assert isinstance(err, NetdslError)
    assert (err.message, err.span, err.hint) == ("division by zero", right.span, "in a repetition count")
    inexact = op(i(7), "/", i(2))
    with pytest.raises(intexpr.Refused) as info:
        ints(inexact)
    err = intexpr.refusal_error(info.value, "in a size", "exponents ...")
    assert (err.message, err.hint) == ("7/2 is not an integer", "use // in a size")


def test_the_passes_word_refusals_as_before() -> None:
    """lower (counts, float arguments) and symbols (formulas) keep their own messages."""
    import netdsl

    head = "net N(k = 2)\ninput x: [1, H = 8, W = 8]\noutput = x |> "
    for body, message in (("conv(4, 3) * (k ** 65)", "exponents must be constant integers from 0 to 64"),
                          ("conv(4, 3) * (7 / k)", "7/2 is not an integer"),
                          ("conv(4, H ** 65)", "exponents must be constant integers from 0 to 64"),
                          ("conv(4, 3) -> batchnorm(eps=2 ** 65)", "exponents must be whole numbers from -64 to 64"),
                          ("conv(4 // (2 - 2), 3)", "division by zero")):
        with pytest.raises(NetdslError) as info:
            netdsl.build(head + body)
        assert message in info.value.message, (body, info.value.message)
