"""`netdsl fit`'s solver on its own: budgets as written, the integer search, the batch as linear
pieces, the grid of admissible sizes, and the boundary it answers, on a stand-in metric (the
per-sample outputs and parameters from `count`) so that these tests do not depend on the memory
passes; tests/analysis/test_fit.py runs fit on the real ones."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sympy as sp

import netdsl.passes.fit as fit_pass
from netdsl import cli
from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError
from netdsl.parsing import parse_text
from netdsl.passes.counts import count_layers
from netdsl.passes.fit import fit_text
from netdsl.passes.fit_probe import batch_formula, grid
from netdsl.passes.fit_search import MAX_BUDGET, largest, parse_budget
from netdsl.passes.memory_model import MemoryOptions

SPEC = """net Small(C = 4)
input x: [3, H = 32, W = 32] where H % 8 == 0, W % 8 == 0
output = x |> conv(C, 3, padding=1) -> relu -> maxpool(2) -> conv(2*C, 3, padding=1) -> maxpool(4)
"""
BOUNDED = SPEC.replace("W % 8 == 0", "W % 8 == 0, H <= 64")


def stand_in(cg: ConcreteGraph, batch: sp.Symbol, mode: str, options: MemoryOptions) -> tuple[sp.Expr, sp.Expr]:
    """Parameters (x4 in training, as Adam holds them) plus every output per sample times the batch;
    inference: the largest single output."""
    c = count_layers(cg)
    weights = 4 * sum((x.weights + x.biases + x.norm_params + x.buffers for x in c.layers), sp.Integer(0))
    if mode == "train":
        return 4 * weights + 4 * batch * sum((x.outputs for x in c.layers), sp.Integer(0)), weights
    return sp.Max(*(4 * batch * x.outputs for x in c.layers)) + weights, weights


@pytest.fixture(autouse=True)
def _stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit_pass, "memory_formula", stand_in)


def _value(text: str, mode: str, **at: int) -> int:
    """The stand-in metric from a fresh analysis at `at` (the batch as N)."""
    from netdsl.passes.front import analyse_text
    from netdsl.passes.memory_model import batch_symbol

    n = at.pop("N", 1)
    cg = analyse_text(text, None, at)
    b = batch_symbol(cg.env)
    return int(stand_in(cg, b, mode, MemoryOptions())[0].xreplace({**cg.env.internal_values, b: n}))


@pytest.mark.parametrize(("text", "expected"), [
    ("24GiB", 24 * 2**30), ("24 GiB", 24 * 2**30), ("512MiB", 512 * 2**20), ("16GB", 16 * 10**9),
    ("1.5e9", 1_500_000_000), ("300000", 300000), (" 2 kb ", 2000), ("1.5KiB", 1536), (7, 7), ("0.5e1", 5),
])
def test_budgets_as_written(text: str | int, expected: int) -> None:
    assert parse_budget(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("24 gigs", "unknown unit 'gigs'"), ("GiB", "not a number of bytes"), ("", "not a number of bytes"),
    ("-5GiB", "not a number of bytes"), ("0", "less than one byte"), ("0.4", "less than one byte"),
    ("1e30", "larger than 2**60"), ("nan", "not a number"), ("inf", "not a number"),
    ("5 GiB!", "not a number"), ("1" * 100, "not a number"),
    (True, "must be an int"), (2.5, "must be an int"), (0, "less than one byte"),
])
def test_bad_budgets_are_errors(text: object, message: str) -> None:
    with pytest.raises(NetdslError, match=re.escape(message)):
        parse_budget(text)
    assert parse_budget(MAX_BUDGET) == MAX_BUDGET


def test_largest_is_the_last_that_fits() -> None:
    def up_to(bound: int) -> Callable[[int], bool]:
        return lambda k: k <= bound

    for bound in (0, 1, 2, 3, 17, 1000, 10**12):
        for start in (1, 5, 10**6):
            assert largest(up_to(bound), start, 1) == (bound if bound >= 1 else None)
    # not admissible below 40: the search comes down to the first admissible value, and no further
    assert largest(lambda k: None if k < 40 else k <= 50, 1000, 1) == 50
    assert largest(lambda k: None if k < 40 else False, 1000, 1) is None
    assert largest(lambda k: None if k > 60 else True, 3, 1) == 60


def test_batch_formula_pieces() -> None:
    n, h = sp.Symbol("N", integer=True, positive=True), sp.Symbol("H", integer=True, positive=True)
    assert batch_formula(7 * n + 3, n) == [(7, 3)]
    assert batch_formula(sp.Max(n + 10, 3 * n, 2 * n + 1), n) == [(1, 10), (3, 0)]
    assert batch_formula(n**2, n) is None
    assert batch_formula(n * h, n) is None
    assert batch_formula(sp.floor(n / 2), n) is None
    assert batch_formula(n / 2, n) is None


def test_grid_of_admissible_sizes() -> None:
    spec = parse_text(SPEC.replace("W % 8 == 0", "W % 6 == 4"), None)
    conds = list(spec.inputs[0].conditions)
    assert grid(conds, ("H",)) == (8, 0)
    assert grid(conds, ("W",)) == (6, 4)
    assert grid(conds, ("H", "W")) == (24, 16)


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_batch_is_the_exact_boundary(mode: str) -> None:
    at5 = _value(SPEC, mode, N=5)
    for budget, answer in ((at5, 5), (at5 - 1, 4)):
        r = fit_text(SPEC, None, {}, budget, mode=mode)
        assert (r.answer, r.next, r.solve_for) == (answer, answer + 1, ("N",))
        assert r.at_next is not None
        assert r.at_answer == _value(SPEC, mode, N=answer) <= budget < r.at_next == _value(SPEC, mode, N=answer + 1)


def test_size_is_the_exact_boundary_on_the_where_grid() -> None:
    budget = _value(SPEC, "train", H=200, N=2)
    r = fit_text(SPEC, None, {"N": 2}, budget, solve_for="H")
    assert r.answer is not None and r.answer % 8 == 0 and r.next == r.answer + 8
    assert r.at_answer == _value(SPEC, "train", H=r.answer, N=2) <= budget and r.at_next is not None
    assert budget < r.at_next == _value(SPEC, "train", H=r.next, N=2)
    assert r.values["W"] == 32 and r.values["N"] == 2 and not r.notes
    sq = fit_text(SPEC, None, {}, budget, solve_for="H,W")
    assert sq.answer is not None and sq.answer % 8 == 0 and sq.values["H"] == sq.values["W"] == sq.answer
    assert sq.at_answer == _value(SPEC, "train", H=sq.answer, W=sq.answer) <= budget
    assert budget < _value(SPEC, "train", H=sq.next, W=sq.next) == sq.at_next


def test_a_where_bound_stops_the_size() -> None:
    r = fit_text(BOUNDED, None, {}, 2**40, solve_for="H")
    assert (r.answer, r.next, r.at_next) == (64, 72, None)
    assert any("H=72 is not admissible" in n for n in r.notes)


def test_a_size_that_decides_the_structure_is_analysed_afresh() -> None:
    deep = SPEC.replace("where H % 8 == 0", "where H % 16 == 0").replace(
        "-> maxpool(4)", "-> maxpool(4) -> conv(2*C, 3, padding=1) * (H // 16)")
    budget = _value(deep, "train", H=160)
    r = fit_text(deep, None, {}, budget, solve_for="H")
    assert (r.answer, r.next) == (160, 176) and r.at_answer == budget and r.at_next == _value(deep, "train", H=176)
    assert any("H is held at the value in use in the formulas (it decides the network's structure" in n for n in r.notes)


def test_nothing_fits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "small.net"
    spec.write_text(SPEC)
    fixed = fit_text(SPEC, None, {}, 2**30).fixed
    r = fit_text(SPEC, None, {}, fixed + 1)
    assert r.answer is None and not r.fits and r.next == 1 and r.at_next == _value(SPEC, "train", N=1)
    assert fit_text(SPEC, None, {"N": 4}, fixed + 1, solve_for="H").answer is None
    assert cli.main(["fit", str(spec), "--memory", str(fixed + 1)]) == 1
    assert "nothing fits" in capsys.readouterr().out
    assert cli.main(["fit", str(spec), "--memory", str(fixed + 1), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["N"] is None


def test_a_budget_below_the_parameters_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "small.net"
    spec.write_text(SPEC)
    fixed = fit_text(SPEC, None, {}, 2**30).fixed
    with pytest.raises(NetdslError, match=re.escape(f"below what the parameters, buffers, gradients and optimizer state alone "
                                          f"take: {fixed:,} bytes")):
        fit_text(SPEC, None, {}, fixed - 1)
    assert cli.main(["fit", str(spec), "--memory", str(fixed - 1)]) == 2
    assert "alone take" in capsys.readouterr().err
    assert cli.main(["fit", str(spec), "--memory", "24 gigs"]) == 2
    assert "unknown unit 'gigs'" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--for", "C"], "'C' is a parameter of this spec"), (["--for", "Q"], "fit solves for the batch 'N'"),
    (["--for", "H,H"], "fit solves for"), (["--for", "H,W,N"], "fit solves for"), (["--set", "N=0"], "at least 1"),
    (["--set", "H=33"], "does not hold"), (["--set", "Z=1"], "no parameter or size 'Z'"),
])
def test_bad_fit_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
                                  message: str) -> None:
    spec = tmp_path / "small.net"
    spec.write_text(SPEC)
    assert cli.main(["fit", str(spec), "--memory", "1GiB", *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_spec_with_its_own_n_calls_the_batch_batch() -> None:
    text = SPEC.replace("net Small(C = 4)", "net Small(C = 4, N = 2)")
    r = fit_text(text, None, {"batch": 3, "N": 3}, 2**30, solve_for="H")
    assert r.batch == "batch" and r.values["batch"] == 3 and r.values["N"] == 3
    with pytest.raises(NetdslError, match="the batch is called 'batch' here"):
        fit_text(text, None, {}, 2**30, solve_for="N")


def test_json_is_keyed_by_the_solved_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "small.net"
    spec.write_text(SPEC)
    assert cli.main(["fit", str(spec), "--memory", "64MiB", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["at_answer"] <= out["budget"] == 64 * 2**20 < out["at_next"]
    assert out["next"] == {"N": out["N"] + 1} and out["solve_for"] == ["N"] and out["mode"] == "train"
    assert {"formula", "solved", "metric", "values", "notes", "dtype", "optimizer", "fixed"} <= set(out)
    assert cli.main(["fit", str(spec), "--memory", "64MiB", "--for", "H,W", "--infer", "--json"]) == 0
    sq = json.loads(capsys.readouterr().out)
    assert sq["H"] == sq["W"] and sq["next"] == {"H": sq["H"] + 8, "W": sq["W"] + 8} and sq["optimizer"] is None
    assert cli.main(["fit", str(spec), "--memory", "64MiB", "--for", "H"]) == 0
    text = capsys.readouterr().out
    r = fit_text(SPEC, str(spec), {}, 64 * 2**20, solve_for="H")
    assert "the largest input size H" in text
    assert f"H = {r.answer}: {r.at_answer:,} bytes <= " in text and f"H = {r.next}: {r.at_next:,} bytes > " in text


def test_the_flags_offer_what_the_memory_model_knows() -> None:
    from netdsl.commands import fit as command
    from netdsl.passes.memory_model import DTYPES, OPTIMIZERS

    assert command.DTYPES == tuple(DTYPES) and command.OPTIMIZERS == OPTIMIZERS


@pytest.mark.parametrize("module", ["netdsl.passes.fit_search", "netdsl.passes.fit_probe"])
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 and result.failed == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dtype": "fp64"}, "dtype must be one of fp32, bf16, fp16, not str 'fp64'"),
    ({"optimizer": "adamw"}, "optimizer must be one of adam, sgd, sgd-momentum, none"),
    ({"mode": "eval"}, "the mode must be 'train' or 'infer', not 'eval'"),
    ({"solve_for": 3}, "solve_for must be a name such as 'N', 'H' or 'H,W', not int 3"),
    ({"memory": 2.5}, "the memory budget must be an int (bytes) or text"),
    ({"H": "32"}, "H"),
])
def test_bad_api_arguments_are_errors(kwargs: dict[str, object], message: str) -> None:
    import netdsl

    args: dict[str, object] = {"memory": "1GiB", **kwargs}
    with pytest.raises(NetdslError, match=re.escape(message)):
        netdsl.fit(SPEC, **args)  # type: ignore[arg-type]


def test_a_spec_without_named_sizes_solves_for_the_batch_only() -> None:
    text = "net L(C = 4)\ninput x: [C]\noutput = x |> linear(8)\n"
    with pytest.raises(NetdslError, match=re.escape("fit solves for the batch 'N' (the spec's inputs have no named sizes)")):
        fit_text(text, None, {}, 2**20, solve_for="H")
    r = fit_text(text, None, {}, 2**20)
    assert r.answer is not None and r.at_answer is not None and r.at_next is not None
    assert r.at_answer <= 2**20 < r.at_next
