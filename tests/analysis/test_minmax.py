"""`passes.minmax.evaluated_max` keeps exactly the arguments SymPy's own `Max` keeps (it only skips
comparisons SymPy cannot decide), on memory-formula-like arguments: sums of sizes times floors,
Mins and Maxes of the parameters, some bounded by others and some not."""
from __future__ import annotations

import random

import pytest
import sympy as sp

from netdsl.passes.minmax import evaluated_max

H, W, N, C, P, M = sp.symbols("H W N C P M", integer=True, positive=True)
WIDE = sp.floor(P * sp.Min(64, M) / 800 + sp.Rational(799, 800))  # a YOLOv8 width
HEAD = sp.Max(P, sp.Min(100, C))
BOX = sp.Max(64, sp.floor(P / 4))


def _candidates(seed: int, k: int) -> list[sp.Expr]:
    rng = random.Random(seed)
    parts = [H * W * N * WIDE, H * W * N * HEAD, H * W * N * BOX, H * W * N, N * C, H * W * N * WIDE ** 2]
    base = sp.Add(*(rng.randint(0, 9) * p for p in parts))
    # each one the base plus a few terms: many pairs bounded one way, many not ordered
    return [sp.expand(base + sp.Add(*(sp.Rational(rng.randint(0, 7), rng.choice([1, 2, 32])) * p
                                      for p in rng.sample(parts, 3)))) for _ in range(k)]


@pytest.mark.parametrize("seed", range(6))
def test_it_keeps_what_sympy_keeps(seed: int) -> None:
    args = _candidates(seed, 7)
    want, got = sp.Max(*args), evaluated_max(args)
    assert got == want and got.args == want.args


def test_bounded_arguments_go_and_a_single_one_is_returned_itself() -> None:
    big = 3 * H * W * N * WIDE + 2 * N * C
    assert evaluated_max([big, H * W * N * WIDE + N * C, big + H * W * N]) == big + H * W * N
    assert evaluated_max([H * W * N * BOX]) == H * W * N * BOX


def test_what_it_does_not_compare_itself_is_sympys() -> None:
    # an infinity (SymPy's short cut), numbers, a plain symbol
    for args in ([sp.oo, H], [sp.Integer(3), sp.Integer(5), H], [H, W]):
        assert evaluated_max(args) == sp.Max(*args)
