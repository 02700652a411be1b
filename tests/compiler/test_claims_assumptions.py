"""Claim options and counterexamples respect the spec's assumptions (no misleading messages).

- A counterexample satisfies every assumption of the spec (`k: odd`, `where H % 4 == 0`, ...), also
  for the sizes and parameters the claim's options set (`H=k` puts k where H was).
- An option must give a valid network for every admissible value: one that breaks a modular or
  fixed assumption (`k: odd`, `H % 4 == 0`, `k == 3`, a structural parameter) for some or every
  admissible value is a located error at the option that names the assumption.
- Options pick where the count is taken; they are never substituted into the claimed side.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from netdsl.errors import NetdslError

SPEC = """net T(C = 4, k: odd = 3, m = 2)
input x: [1, H = 8, W = 8] where H % 4 == 0, W % 4 == 0
output = x |> conv(C, k, padding=k//2) -> maxpool(2)
"""


def claim(line: str, spec: str = SPEC):  # noqa: ANN201 - ClaimResult
    (result,) = netdsl.count(spec + line + "\n").claims
    return result


def error(line: str, tmp_path: Path, spec: str = SPEC) -> str:
    (tmp_path / "t.net").write_text(spec)
    (tmp_path / "t.claims").write_text(line + "\n")
    with pytest.raises(NetdslError) as e:
        netdsl.count(tmp_path / "t.net")
    return e.value.render()


def valid(point: dict[str, int], spec: str = SPEC) -> bool:
    try:
        netdsl.shapes(spec, **point)
    except NetdslError:
        return False
    return True


# --- options that break an assumption are errors at the option -------------------------------

def test_option_that_never_meets_an_annotation_is_an_error(tmp_path: Path) -> None:
    # k: odd makes k+1 even: there is no valid network at k+1 (it used to be a silent ✓).
    text = error("claim weights(k=k+1) == C*k**2 + 2*C*k + C", tmp_path)
    assert text.startswith(f"{tmp_path / 't.claims'}:1:15: error: "), text
    assert "k: odd" in text and "no admissible value" in text


def test_option_that_never_meets_a_where_condition_is_an_error(tmp_path: Path) -> None:
    # H=k with k odd is never a multiple of 4: no counterexample can be valid, so it is an error.
    text = error("claim connections(H=k) == 0", tmp_path)
    assert f"{tmp_path / 't.claims'}:1:19: error: " in text
    assert "H % 4 == 0" in text and "no admissible value" in text
    text = error("claim outputs(H=H+2) == 0", tmp_path)
    assert "H % 4 == 0" in text and "no admissible value" in text


def test_option_that_not_always_meets_an_assumption_is_an_error(tmp_path: Path) -> None:
    # m is unconstrained: H=m is a multiple of 4 only for some m; the error shows one that is not.
    text = error("claim outputs(H=m) == 0", tmp_path)
    assert "H % 4 == 0" in text and "at m=1" in text and "H=1" in text
    text = error("claim outputs(H=k+1) == 0", tmp_path)  # k+1 is a multiple of 4 for some odd k only
    assert "at k=1" in text and "H=2" in text and "no admissible value" not in text
    # an option must be an integer wherever the spec's symbols are
    text = error("claim outputs(H=4*m/3) == 0", tmp_path)
    assert "not an integer" in text and "at m=1" in text


def test_constant_option_names_the_assumption(tmp_path: Path) -> None:
    text = error("claim weights(k=4) == 16*C", tmp_path)
    assert text.startswith(f"{tmp_path / 't.claims'}:1:15: error: "), text
    assert "k: odd" in text
    text = error("claim outputs(W=6) == 0", tmp_path)
    assert "W % 4 == 0" in text


def test_fixed_and_structural_symbols_cannot_be_moved_by_an_option(tmp_path: Path) -> None:
    fixed = SPEC.replace("where H % 4 == 0", "where k == 3, H % 4 == 0")
    text = error("claim weights(k=5) == 25*C", tmp_path, fixed)
    assert "k == 3" in text
    # n decides the structure (a repetition count): the counts are only known at n = 2
    rep = """net R(C = 2, n = 2)
input x: [1, H = 8, W = 8]
output = x |> conv(C, 3, padding=1) * n
"""
    text = error("claim weights(n=3) == 0", tmp_path, rep)
    assert "decides the network's structure" in text and "--set n=3" in text
    assert claim("claim weights(n=2) == 9*C + 9*C**2", rep).holds


def test_options_that_always_meet_the_assumptions_are_accepted() -> None:
    assert claim("claim weights(k=k+2) == C*k**2 + 4*C*k + 4*C").holds
    assert claim("claim outputs(H=2*H) == 5*C*2*H*W/4").holds
    assert claim("claim outputs(H=2*k+2) == 5*C*(2*k+2)*W/4").holds  # 2k+2 = 4j + 4 for odd k
    assert claim("claim outputs(H=4*m, W=8) == 5*C*4*m*8/4").holds
    assert claim("claim weights(k=2*m+1) == C*(2*m+1)**2").holds
    assert claim("claim weights(k=5) == 25*C").holds


def test_options_checked_at_the_values_in_use_for_inequalities(tmp_path: Path) -> None:
    # positivity is known only at the values in use (as for the spec itself): H=H-8 gives H=0 there
    text = error("claim outputs(H=H-8) == 0", tmp_path)
    assert "H=H-8" in text and "positive" in text


# --- the claimed side is the user's formula ----------------------------------------------------

def test_options_are_not_substituted_into_the_claimed_side() -> None:
    # The count at k+2 written in the user's k holds ...
    res = claim("claim weights(k=k+2) == C*(k+2)**2")
    assert res.holds and str(res.claimed) == "C*k**2 + 4*C*k + 4*C"
    # ... and the count at k written as if the option renamed k fails (it used to be ✓).
    res = claim("claim weights(k=k+2) == C*k**2")
    assert res.status == "fails"
    assert res.counterexample == {"C": 1, "k": 1}
    assert (res.claimed_value, res.counted_value) == (1, 9)
    # constant options: the claimed side keeps its symbols, so a formula in H is compared at H=32
    res = claim("claim outputs(H=32, W=32) == 5*C*H*W/4")
    assert res.status == "fails" and res.difference is not None
    assert claim("claim outputs(H=32, W=32) == 5*C*32*32/4").holds


# --- counterexamples satisfy every assumption -------------------------------------------------

@pytest.mark.parametrize("line", [
    "claim outputs(H=4*m) == 0",
    "claim connections(H=4*k, W=4*m) == C",
    "claim outputs(H=H+4) == 5*C*H*W/4",
    "claim weights(k=k+2) == C*k**2",
    "claim outputs(doubled=true, H=4*m) == 0",
])
def test_counterexamples_are_valid_networks_at_the_options(line: str) -> None:
    res = claim(line)
    assert res.status == "fails", res
    point = dict(res.counterexample)
    assert valid(point), point  # the user's values meet the spec's assumptions
    env = {s: v for s, v in point.items()}
    at = {name: int(expr.subs({sym: env[sym.name] for sym in expr.free_symbols}))
          for name, expr in res.at.items()}
    assert valid({**point, **at}), (point, at)  # and so does the network the options pick
    assert res.claimed_value != res.counted_value


def test_counterexample_respects_an_inequality_condition() -> None:
    spec = SPEC.replace("where H % 4 == 0", "where H % 4 == 0, H >= 16").replace("H = 8", "H = 16")
    res = claim("claim outputs(W=8) == 10*C*H + C", spec)
    assert res.status == "fails"
    assert res.counterexample.get("H", 16) >= 16
    assert valid({**res.counterexample, "W": 8}, spec)
