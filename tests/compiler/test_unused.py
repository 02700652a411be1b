"""Tensors nothing reads: a warning naming each (with the parameters it holds) from `build`,
`count` and the API; `--strict` / `strict=True` make it an error."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main
from netdsl.errors import NetdslError
from netdsl.passes.front import analyse_text
from netdsl.passes.unused import UnusedTensorWarning, unused

ROOT = Path(__file__).resolve().parents[2]

DEAD = """net T(C = 8)
input x: [3, H = 16, W = 16]
input z: [3, H, W]
block g(c) {
  input x
  a, b = x |> split(2)
  t = a |> conv(c, 3, padding=1)
  output = cat(a, b) |> channel_shuffle(2)
}
dead0 = x |> conv(64, 3, padding=1)
dead = dead0 |> conv(64, 3, padding=1)
a, b = x |> conv(C, 1) -> split(2)
y = b |> g(4) -> g(4)
output = y
"""


def test_each_unread_tensor_is_found_with_its_parameters() -> None:
    found = unused(analyse_text(DEAD, None, {}))
    assert [(u.name, u.kind, u.block, u.span.line, u.params, u.feeders) for u in found] == [
        ("z", "input", None, 3, 0, 0),
        ("t", "tensor", "g", 7, 2 * (4 * 2 * 9 + 4), 0),            # once for the block, over its 2 calls
        ("dead", "tensor", None, 11, 3 * 64 * 9 + 64 + 64 * 64 * 9 + 64, 1),  # with the conv only it reads
        ("a", "part", None, 12, 0, 0),
    ]
    assert found[2].message == ("tensor 'dead' (line 11:1) is never read: it and the statement that only feeds it "
                                "hold 38,720 parameters, built and counted")
    assert "`_` in place of its name" in found[3].hint


def test_discarded_parts_outputs_and_hidden_statements_are_never_unused() -> None:
    spec = ("net T()\ninput x: [4, H = 8, W = 8]\na, _ = x |> conv(4, 1) -> split(2)\n"
            "output y = add(x, cat(a, a))\noutput z = x |> conv(2, 1)\n")
    assert unused(analyse_text(spec, None, {})) == []


def test_count_warns_on_stderr_and_strict_makes_it_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dead.net"
    path.write_text(DEAD)
    assert main(["count", str(path), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["warnings"][0] == "input 'z' (line 3:1) is never read"
    assert f"{path}:11:1: warning: tensor 'dead' (line 11:1) is never read" in out.err
    assert main(["count", str(path), "--strict"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3:1: error: input 'z' (line 3:1) is never read" in err
    assert "note: tensor 'dead' (line 11:1) is never read" in err and "--strict" in err


def test_build_warns_and_strict_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dead.net"
    path.write_text(DEAD)
    assert main(["build", str(path), "--json"]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)["warnings"]) == 4
    assert f"{path}:7:3: warning: tensor 't' in block 'g' (line 7:3) is never read" in out.err
    assert main(["build", str(path), "--strict"]) == 2
    assert f"{path}:3:1: error: input 'z'" in capsys.readouterr().err


def test_the_api_warns_with_its_class_and_strict_raises() -> None:
    for run in (netdsl.count, netdsl.build):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(DEAD)
        assert [w.category for w in caught] == [UnusedTensorWarning] * 4
        assert "<input>:11:1: warning: tensor 'dead' (line 11:1) is never read" in str(caught[2].message)
    with pytest.raises(NetdslError, match="input 'z' .* is never read") as info:
        netdsl.count(DEAD, strict=True)
    assert info.value.span is not None and info.value.span.line == 3
    with pytest.raises(NetdslError, match="strict must be True or False"):
        netdsl.count(DEAD, strict="yes")  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        netdsl.count("net T()\ninput x: [3, H = 8, W = 8]\noutput = x |> conv(4, 1)", strict=True)


@pytest.mark.slow
def test_no_shipped_spec_has_an_unread_tensor() -> None:
    specs = [p for p in sorted([*ROOT.glob("specs/**/*.net"), *ROOT.glob("bench/**/*.net")])
             if "?" not in p.read_text()]  # open arguments are for `netdsl solve`
    assert specs
    for p in specs:
        assert [u.message for u in unused(analyse_text(p.read_text(), str(p), {}))] == [], p


def test_an_unread_learned_tensor_is_named_with_its_parameters() -> None:
    spec = ("net T()\ninput x: [3, H = 8, W = 8]\nparam g: [3, 1, 1] = 1e-6\nparam h: [3, 1, 1] = 1\n"
            "output = mul(x, h)\n")
    assert [u.message for u in unused(analyse_text(spec, None, {}))] == [
        "learned tensor 'g' (line 3:1) is never read: it holds 3 parameters, built and counted"]
