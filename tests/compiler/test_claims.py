"""Claims: the seed's Question 3 formulas and hand-written formulas, proved or refuted; bad claims."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import netdsl
from netdsl.errors import NetdslError
from netdsl.parsing import parse_claims_text

ROOT = Path(__file__).resolve().parents[2]

TINY = """net Tiny(C = 4, k: odd = 3)
input x: [1, H = 8, W = 8] where H % 2 == 0, W % 2 == 0
h = x |> conv(C, k, padding=k//2) -> relu
output = h |> maxpool(2)
"""


def verdicts(source: str | Path) -> list[tuple[int, str]]:
    return [(c.line, c.status) for c in netdsl.count(source).claims]


def test_seed_question3_verdicts() -> None:
    claims = netdsl.count(ROOT / "specs/pool_upsample.net").claims
    got = {(c.metric, c.doubled): c for c in claims}
    assert len(claims) == 6
    assert all(c.source.path.endswith("pool_upsample.claims") for c in claims)
    for metric in ("weights", "outputs"):
        assert got[(metric, False)].holds and got[(metric, True)].holds
    # The student's third stage counts 8^2 k^2 NF^2 connections; the conv maps 2NF channels to NF.
    before, after = got[("connections", False)], got[("connections", True)]
    assert before.status == after.status == "fails"
    assert str(before.difference) == "-64*NF**2*k**2"
    assert str(after.difference) == "-256*NF**2*k**2"
    for c in (before, after):  # the counterexample is real: the two sides differ there
        assert c.claimed_value != c.counted_value
        counted = netdsl.count(ROOT / "specs/pool_upsample.net", H=64 if c.doubled else 32,
                               W=64 if c.doubled else 32, **c.counterexample)
        assert counted.value(counted.total("connections")) == c.counted_value


def test_claims_in_the_spec_hold_or_fail() -> None:
    spec = TINY + """claim weights == C*k**2
claim weights(biases=true) == C*k**2 + C
claim outputs == C*H*W + C*H*W/4
claim outputs(activations=true) == 2*C*H*W + C*H*W/4
claim connections == C*H*W*k**2 + C*H*W
claim connections(doubled=true, H=8, W=8) == 256*C*k**2 + 256*C
claim parameters == C*k**2 + C
claim weights == C*k**2 + 1
"""
    assert verdicts(spec) == [(5, "holds"), (6, "holds"), (7, "holds"), (8, "holds"), (9, "holds"),
                              (10, "holds"), (11, "holds"), (12, "fails")]
    bad = netdsl.count(spec).claims[-1]
    assert bad.difference == 1
    assert bad.counterexample == {"C": 1, "k": 1}


def test_claim_that_needs_the_assumptions() -> None:
    # conv(C, k, padding=k//2) keeps H only for odd k: the claim holds under `k: odd` ...
    claim = "claim outputs == C*H*W + C*H*W/4\n"
    assert verdicts(TINY + claim) == [(5, "holds")]
    # ... and without it netdsl finds an even kernel where the sizes (and counts) differ.
    res = netdsl.count(TINY.replace("k: odd = 3", "k = 3") + claim).claims[0]
    assert res.status == "fails"
    assert res.counterexample["k"] % 2 == 0
    assert res.claimed_value != res.counted_value


def test_claims_file_parses_with_comments_and_wrapping() -> None:
    claims = parse_claims_text("# header\n\nclaim weights == k**2*(\n  NIC + NF)  # note\nclaim outputs(H=32) == 1\n")
    assert [c.metric.name for c in claims] == ["weights", "outputs"]
    assert claims[1].span.line == 5
    assert parse_claims_text("") == []


def test_claims_file_next_to_the_spec_and_its_errors(tmp_path: Path) -> None:
    (tmp_path / "tiny.net").write_text(TINY)
    (tmp_path / "tiny.claims").write_text("# mine\nclaim weights == C*k**2\nclaim outputs == C*H*W\n")
    assert verdicts(tmp_path / "tiny.net") == [(2, "holds"), (3, "fails")]
    (tmp_path / "tiny.claims").write_text("claim weights == C*kk**2\n")
    with pytest.raises(NetdslError) as e:
        netdsl.count(tmp_path / "tiny.net")
    assert e.value.render().startswith(f"{tmp_path / 'tiny.claims'}:1:20: error: unknown symbol 'kk'")


BAD = [
    ("claim weigths == C", "1:7", "unknown metric 'weigths'", "did you mean 'weights'"),
    ("claim weights == C*K", "1:20", "unknown symbol 'K'", "did you mean 'k'"),
    ("claim weights == C//2", "1:18", "non-polynomial", "polynomials"),
    ("claim weights == C % 2", "1:18", "non-polynomial", "polynomials"),
    ("claim weights == max(C, 2)", "1:18", "non-polynomial", "polynomials"),
    ("claim weights == C/H", "1:18", "division by a symbol", "constants"),
    ("claim weights == C/2", "1:18", "not an integer", "at C=1 it is 1/2"),
    ("claim weights == k/2 + 1/2", "1:18", None, None),  # k is odd: (k + 1)/2 is an integer
    ("claim weights <= C", "1:1", "'<=' is not supported", "=="),
    ("claim weights(biases=1) == C", "1:22", "true or false", None),
    ("claim outputs(biases=true) == C", "1:15", "does not apply to 'outputs'", None),
    ("claim weights(resolution=2) == C", "1:15", "unknown claim option 'resolution'", None),
    ("claim weights(H=7) == C", "1:15", "does not give a valid network: it breaks the spec's assumption H % 2 == 0",
     None),
    ("claim weights(H=2, H=4) == C", "1:20", "given twice", None),
    ("claim weights(32) == C", "1:15", "named", None),
    ("claim weights(H=Q) == C", "1:17", "unknown symbol 'Q'", None),
]


@pytest.mark.parametrize("claim, where, message, hint", BAD)
def test_bad_claims_are_located_errors(claim: str, where: str, message: str | None, hint: str | None,
                                       tmp_path: Path) -> None:
    (tmp_path / "tiny.net").write_text(TINY)
    (tmp_path / "tiny.claims").write_text(claim + "\n")
    if message is None:
        netdsl.count(tmp_path / "tiny.net")
        return
    with pytest.raises(NetdslError) as e:
        netdsl.count(tmp_path / "tiny.net")
    text = e.value.render()
    assert text.startswith(f"{tmp_path / 'tiny.claims'}:{where}: error: "), text
    assert message in text
    if hint:
        assert hint in text


def test_claim_in_spec_error_points_into_the_spec(tmp_path: Path) -> None:
    (tmp_path / "tiny.net").write_text(TINY + "claim conections == 1\n")
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "count", str(tmp_path / "tiny.net")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert f"{tmp_path / 'tiny.net'}:5:7: error: unknown metric 'conections'" in r.stderr
    assert "did you mean 'connections'" in r.stderr


def test_exit_status_and_report_of_a_failing_claim(tmp_path: Path) -> None:
    (tmp_path / "tiny.net").write_text(TINY + "claim weights == C*k**2\nclaim outputs == C*H*W\n")
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "count", str(tmp_path / "tiny.net")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "✓" in r.stdout and "✗" in r.stdout
    assert "tiny.net:6" in r.stdout and "claimed − counted = -C*H*W/4" in r.stdout
    (tmp_path / "tiny.net").write_text(TINY + "claim weights == C*k**2\n")
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "count", str(tmp_path / "tiny.net")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_claims_never_evaluate_text() -> None:
    """Claims are built from the IR: no eval/exec/sympify/parse_expr/lambdify in the package."""
    import re

    pattern = re.compile(r"\b(eval|exec|sympify|parse_expr|lambdify)\s*\(|\bS\(\s*[\"']")
    for path in (ROOT / "netdsl").rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            assert not pattern.search(code) or "literal_eval" in code or "model.eval" in code \
                or ".eval(" in code, f"{path}:{i}: {line.strip()}"


def test_claims_option_reads_another_file(tmp_path: Path) -> None:
    (tmp_path / "tiny.net").write_text(TINY)
    extra = tmp_path / "more.txt"
    extra.write_text("claim biases == C\nclaim buffers == 0\n")
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "count", str(tmp_path / "tiny.net"),
                        "--claims", str(extra), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json

    claims = json.loads(r.stdout)["claims"]
    assert [(c["file"], c["line"], c["status"]) for c in claims] == [(str(extra), 1, "holds"), (str(extra), 2, "holds")]


@pytest.mark.parametrize("spec", ["pool_upsample", "conv_transpose", "unet", "residual"])
def test_netdsls_own_totals_hold_as_claims_and_a_perturbed_one_fails(spec: str, tmp_path: Path) -> None:
    """SymPy's printed totals are valid netdsl expressions: as claims they must hold, plus 1 fail."""
    from netdsl.passes.counts import METRICS, Convention

    counts = netdsl.count(ROOT / f"specs/{spec}.net")
    lines, expected = [], []
    for metric in METRICS:
        lines.append(f"claim {metric} == {counts.total(metric)}")
        expected.append("holds")
        lines.append(f"claim {metric}(doubled=true) == {counts.total(metric, doubled=True)} + 1")
        expected.append("fails")
    conv = Convention(batchnorm=True, activations=True)
    lines.append(f"claim connections(batchnorm=true, activations=true) == {counts.total('connections', conv)}")
    expected.append("holds")
    text = (ROOT / f"specs/{spec}.net").read_text() + "\n" + "\n".join(lines) + "\n"
    results = netdsl.count(text).claims
    assert [r.status for r in results] == expected
    for r in results:
        if r.status == "fails":
            assert r.difference == 1 and r.claimed_value == r.counted_value + 1


def test_counterexample_search_with_many_parameters() -> None:
    names = [f"P{i}" for i in range(12)]
    spec = (f"net Many({', '.join(f'{n} = 2' for n in names)})\ninput x: [1, H = 8, W = 8]\n"
            f"output = x |> conv({' + '.join(names)}, 1)\n"
            f"claim weights == {' + '.join(names)} + P3*P7 - P3*P7*P0\n")
    res = netdsl.count(spec).claims[0]
    assert res.status == "fails"
    assert res.claimed_value != res.counted_value
