"""Claims on the memory metrics: `claim saved_bytes(N=1) == ...`, the batch `N` as an option and on
the claimed side, `doubled=true`, counterexamples that are real counts, and the errors.

The claimed formulas are taken from the count itself (and a wrong one made by adding to it): the
memory formulas are checked against torch in the passes' own tests; these check the claims.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sympy as sp

import netdsl
from netdsl.commands.count import count_report
from netdsl.errors import NetdslError
from netdsl.passes.claims import ClaimResult

ROOT = Path(__file__).resolve().parents[2]
UNET = "specs/unet.net"


@pytest.fixture(scope="module")
def unet() -> Any:
    return netdsl.count(ROOT / UNET)


def _formula(counts: Any, metric: str, **at: int) -> str:
    """The count's total with some symbols fixed, as a claim's right side."""
    e = counts.total(metric, doubled=bool(at.pop("doubled", 0)))
    syms = {**{s.name: s for s in e.free_symbols}}
    return str(sp.expand(e.xreplace({syms[k]: sp.Integer(v) for k, v in at.items() if k in syms})))


def _check(tmp_path: Path, *claims: str, **overrides: int) -> list[ClaimResult]:
    f = tmp_path / "memory.claims"
    f.write_text("\n".join(claims) + "\n")
    _, _, results = count_report((ROOT / UNET).read_text(), UNET, dict(overrides), claim_files=[str(f)])
    return results[-len(claims):]


def test_claims_with_the_batch_hold(unet: Any, tmp_path: Path) -> None:
    results = _check(
        tmp_path,
        f"claim saved_bytes(N=1) == {_formula(unet, 'saved_bytes', N=1)}",
        f"claim saved_bytes == {_formula(unet, 'saved_bytes')}",  # N on the claimed side
        f"claim train_bytes(N=4) == {_formula(unet, 'train_bytes', N=4)}",
        f"claim param_bytes == {_formula(unet, 'param_bytes')}",
        f"claim saved_bytes(N=2, doubled=true) == {_formula(unet, 'saved_bytes', N=2, doubled=1)}",
        f"claim saved_bytes(N=2, H=64, W=64) == {_formula(unet, 'saved_bytes', N=2, H=64, W=64)}",
    )
    assert [r.status for r in results] == ["holds"] * 6, [(r.metric, r.difference) for r in results]
    assert results[0].at == {"N": 1} and results[4].doubled


def test_a_claim_of_n_times_one_sample_fails_with_a_real_counterexample(unet: Any, tmp_path: Path) -> None:
    # BatchNorm keeps per-channel statistics whatever the batch: bytes are not N times one sample's.
    one = _formula(unet, "saved_bytes", N=1)
    [r] = _check(tmp_path, f"claim saved_bytes == N*({one})")
    assert r.status == "fails" and "N" in r.counterexample
    # the counted side at the counterexample is what `count` gives there
    _, again, _ = count_report((ROOT / UNET).read_text(), UNET, dict(r.counterexample))
    assert again.value(again.total("saved_bytes")) == r.counted_value != r.claimed_value


def test_a_wrong_claim_at_a_fixed_batch_fails(unet: Any, tmp_path: Path) -> None:
    [r] = _check(tmp_path, f"claim peak_bytes(N=2, H=32, W=32, NIC=1, NF=32, NC=24, k=3) == "
                           f"{_formula(unet, 'peak_bytes', N=2, H=32, W=32, NIC=1, NF=32, NC=24, k=3)} + 4")
    assert r.status == "fails" and r.difference == 4


def test_values_in_use_follow_set_n(unet: Any, tmp_path: Path) -> None:
    [r] = _check(tmp_path, f"claim saved_bytes == {_formula(unet, 'saved_bytes')}", N=3)
    c = netdsl.count(ROOT / UNET, N=3)
    assert r.holds and r.values_in_use == (int(c.value(c.total("saved_bytes"))),) * 2


@pytest.mark.parametrize(("claim", "message"), [
    ("claim weights == N", "'N' is the batch size: only the memory metrics have one"),
    ("claim weights(N=2) == 1", "option 'N' is the batch size: only the memory metrics have one"),
    ("claim saved_bytes(N=0) == 1", "the claim's option N=0 is not a batch size: it must be at least 1"),
    ("claim saved_bytes(batch=2) == 1", "unknown claim option 'batch'"),
    ("claim saved_byte == 1", "unknown metric 'saved_byte'"),
    ("claim saved_bytes(biases=true) == 1", "option 'biases' does not apply to 'saved_bytes'"),
])
def test_claim_errors(claim: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(NetdslError) as e:
        _check(tmp_path, claim)
    assert message in e.value.message
