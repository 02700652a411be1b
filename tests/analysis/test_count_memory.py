"""`netdsl count` with the memory metrics and receptive fields: the wiring, checked against the
passes themselves (the passes are checked against torch in test_saved_bytes, test_peak_bytes,
test_train_bytes and test_receptive_field): JSON keys, --set N, --dtype, --optimizer, the text
report, --double-resolution and `netdsl.count`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sympy as sp

import netdsl
from conftest import run_cli
from netdsl.cli import main
from netdsl.commands.count import count_report
from netdsl.errors import NetdslError
from netdsl.passes.count_memory import LAYER_MEMORY_METRICS, MEMORY_METRICS
from netdsl.passes.memory_model import MemoryOptions, batch_symbol
from netdsl.passes.peak import peak_bytes
from netdsl.passes.receptive import receptive_fields
from netdsl.passes.saved import saved_bytes
from netdsl.passes.train_memory import buffer_bytes, param_bytes, train_bytes

ROOT = Path(__file__).resolve().parents[2]
UNET = "specs/unet.net"
OWN_N = """net OwnN(N = 2)
input x: [3, H = 8, W = 8]
output = x |> conv(N, 3, padding=1) -> batchnorm -> relu
"""


def _report(overrides: dict[str, int] | None = None, **kw: Any) -> dict[str, Any]:
    text = (ROOT / UNET).read_text()
    report, _, _ = count_report(text, UNET, overrides or {}, **kw)
    return report


@pytest.fixture(scope="module")
def unet2() -> dict[str, Any]:
    return _report({"N": 2}, doubled=True)


def _at(cg: Any, batch: sp.Symbol, n: int, x: sp.Expr) -> int:
    return int(cg.env.at(x).xreplace({batch: sp.Integer(n)}))


def test_json_keys_and_values_are_the_passes(unet2: dict[str, Any]) -> None:
    cg = netdsl.shapes(ROOT / UNET)
    n = batch_symbol(cg.env)
    options = MemoryOptions()
    saved, peak = saved_bytes(cg, n, options), peak_bytes(cg, n, options)
    assert unet2["batch"] == "N" and "N" in unet2["symbols"] and unet2["values"]["at"]["N"] == 2
    assert unet2["memory"] == {"batch": "N", "dtype": "fp32", "optimizer": "adam"}
    walk = list(cg.walk())
    assert len(unet2["layers"]) == len(walk)
    for i, (row, vals) in enumerate(zip(unet2["layers"], unet2["values"]["layers"])):
        assert set(LAYER_MEMORY_METRICS) | {"rf"} <= set(row) and set(LAYER_MEMORY_METRICS) | {"rf"} <= set(vals)
        assert vals["saved_bytes"] == _at(cg, n, 2, saved[i])
        assert vals["peak_bytes"] == _at(cg, n, 2, peak.layers[i])
        assert set(row["rf"]) == {"size", "jump", "start"} and all(len(v) == 2 for v in row["rf"].values())
    want = {"saved_bytes": sum(saved), "peak_bytes": peak.total, "param_bytes": param_bytes(cg, options),
            "buffer_bytes": buffer_bytes(cg), "train_bytes": train_bytes(cg, n, options)}
    for metric, expr in want.items():
        assert unet2["values"]["totals"][metric] == _at(cg, n, 2, expr), metric
    # per-layer parameter bytes add up to the pass's total (UNet has no learned tensors)
    assert sum(v["param_bytes"] for v in unet2["values"]["layers"]) == unet2["values"]["totals"]["param_bytes"]


def test_json_formulas_read_back_to_the_values(unet2: dict[str, Any]) -> None:
    syms = {s: sp.Symbol(s) for s in unet2["symbols"]}
    at = {syms[k]: v for k, v in unet2["values"]["at"].items()}
    for metric in MEMORY_METRICS:
        for key, vkey in (("totals", "totals"), ("doubled", "doubled")):
            formula = sp.sympify(unet2[key][metric], locals={**syms, "Max": sp.Max})
            assert formula.subs(at) == unet2["values"][vkey][metric], (key, metric)
    for row, vals in zip(unet2["layers"], unet2["values"]["layers"]):
        for metric in LAYER_MEMORY_METRICS:
            assert sp.sympify(row[metric], locals=syms).subs(at) == vals[metric]
        for part in ("size", "jump", "start"):
            got = [sp.sympify(f, locals=syms).subs(at) for f in row["rf"][part]]
            assert got == [sp.Rational(v) for v in vals["rf"][part]]


def test_output_receptive_fields_are_the_pass() -> None:
    report = _report()
    cg = netdsl.shapes(ROOT / UNET)
    rf = receptive_fields(cg)
    assert set(report["totals"]["rf"]) == set(rf.outputs)
    for name, field in rf.outputs.items():
        assert report["values"]["totals"]["rf"][name]["size"] == [int(cg.env.at(x)) for x in field.size]


def test_set_batch_scales_the_values_as_the_formulas_say() -> None:
    one, three = _report(), _report({"N": 3})
    assert one["values"]["at"]["N"] == 1 and three["values"]["at"]["N"] == 3
    assert one["totals"] == three["totals"]  # formulas do not depend on the value in use
    for metric in ("param_bytes", "buffer_bytes"):
        assert one["values"]["totals"][metric] == three["values"]["totals"][metric]
    grow = three["values"]["totals"]["saved_bytes"] - one["values"]["totals"]["saved_bytes"]
    assert grow > 0 and three["values"]["totals"]["train_bytes"] - one["values"]["totals"]["train_bytes"] == grow


def test_double_resolution_is_the_count_at_twice_the_size(unet2: dict[str, Any]) -> None:
    big = _report({"N": 2, "H": 2 * unet2["values"]["at"]["H"], "W": 2 * unet2["values"]["at"]["W"]})
    for metric in MEMORY_METRICS:
        assert unet2["values"]["doubled"][metric] == big["values"]["totals"][metric], metric
    assert unet2["ratios"]["param_bytes"] == "1" and unet2["ratios"]["buffer_bytes"] == "1"
    here = unet2["values"]["ratios"]["saved_bytes"]
    assert here == round(unet2["values"]["doubled"]["saved_bytes"] / unet2["values"]["totals"]["saved_bytes"], 4)


def test_optimizer_reaches_the_passes() -> None:
    cg = netdsl.shapes(ROOT / UNET)
    n = batch_symbol(cg.env)
    options = MemoryOptions(optimizer="sgd")
    report = _report(options=options)
    assert report["memory"] == {"batch": "N", "dtype": "fp32", "optimizer": "sgd"}
    assert report["values"]["totals"]["train_bytes"] == _at(cg, n, 1, train_bytes(cg, n, options))
    adam = _report()
    assert report["values"]["totals"]["train_bytes"] < adam["values"]["totals"]["train_bytes"]
    assert report["values"]["totals"]["saved_bytes"] == adam["values"]["totals"]["saved_bytes"]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_dtype_reaches_the_passes(dtype: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The passes' bytes under autocast; a metric a pass does not model there is null with a note
    (and an error from `CountResult.total`), never fp32's number, and the rest still stands."""
    cg = netdsl.shapes(ROOT / UNET)
    n = batch_symbol(cg.env)
    options = MemoryOptions(dtype="bf16" if dtype == "bf16" else "fp16")
    report = _report(options=options, doubled=True)
    assert report["memory"]["dtype"] == dtype
    assert report["values"]["totals"]["saved_bytes"] == _at(cg, n, 1, sum(saved_bytes(cg, n, options)))
    assert report["values"]["totals"]["train_bytes"] == _at(cg, n, 1, train_bytes(cg, n, options))
    try:
        peak = _at(cg, n, 1, peak_bytes(cg, n, options).total)
    except NetdslError as e:
        assert report["totals"]["peak_bytes"] is None and report["values"]["totals"]["peak_bytes"] is None
        assert report["doubled"]["peak_bytes"] is None and report["layers"][0]["peak_bytes"] is None
        assert f"peak_bytes: {e.message}" in report["notes"]
        with pytest.raises(NetdslError, match="not modelled"):
            netdsl.count(ROOT / UNET).total("peak_bytes", options=options)
        rc, out, _ = _main(capsys, "count", str(ROOT / UNET), "--dtype", dtype)
        assert rc == 0 and "not modelled (see the note)" in out
        return
    assert report["values"]["totals"]["peak_bytes"] == peak


def test_analysis_off_is_the_report_before_the_new_metrics() -> None:
    report = _report(analysis=False)
    assert not set(MEMORY_METRICS) & set(report["totals"]) and "rf" not in report["totals"]
    assert "saved_bytes" not in report["layers"][0]
    lean = _report(layer_memory=False, rf=False)  # what the text report needs without --memory and --rf
    assert "saved_bytes" not in lean["layers"][0] and "rf" not in lean["layers"][0] and "rf" not in lean["totals"]
    assert lean["values"]["totals"]["saved_bytes"] == _report()["values"]["totals"]["saved_bytes"]


def test_a_spec_with_its_own_n_has_the_batch_called_batch() -> None:
    report, _, _ = count_report(OWN_N, None, {"N": 4, "batch": 3})
    assert report["batch"] == "batch" and report["values"]["at"]["N"] == 4 and report["values"]["at"]["batch"] == 3
    assert "batch" in report["totals"]["saved_bytes"]


def test_api_count_takes_the_batch() -> None:
    c = netdsl.count(ROOT / UNET, N=2)
    assert c.batch == sp.Symbol("N", integer=True, positive=True) and c.batch_value == 2
    report = _report({"N": 2})
    for metric in MEMORY_METRICS:
        assert int(c.value(c.total(metric))) == report["values"]["totals"][metric]


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`netdsl ARGS` in this process (the CLI's subprocess tests live in tests/compiler/test_count.py)."""
    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse's errors
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "N=0"], "the batch size must be a positive integer"),
    (["--set", "N=-2"], "the batch size must be a positive integer"),
    (["--set", "batch=2"], "its batch is 'N'"),
    (["--dtype", "fp64"], "invalid choice: 'fp64'"),
    (["--optimizer", "adamw"], "invalid choice: 'adamw'"),
])
def test_bad_memory_options_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _main(capsys, "count", str(ROOT / UNET), *args)
    assert rc == 2 and message in err and "Traceback" not in err, err


def test_text_report_memory_table_and_columns(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rc, out, err = _main(capsys, "count", str(ROOT / UNET), "--set", "N=2", "--memory", "--rf", "--optimizer", "sgd")
    assert rc == 0, err
    assert "memory in bytes for a batch of N (fp32, sgd)" in out
    assert "memory in bytes, for a batch of N (fp32; train_bytes with sgd)" in out
    assert "saved bytes" in out and "peak bytes" in out and "receptive field: size / jump / start" in out
    assert "receptive field of output" in out
    total = _report({"N": 2}, options=MemoryOptions(optimizer="sgd"))["values"]["totals"]["train_bytes"]
    assert f"{total:,} (" in out
    rc, plain, _ = _main(capsys, "count", str(ROOT / UNET))
    assert "saved bytes" not in plain and "receptive field" not in plain and "saved_bytes" in plain


def test_docstring_examples() -> None:
    import doctest

    import netdsl.passes.count_memory
    import netdsl.passes.memory_model

    # human_bytes and its example moved from commands.count_print to passes.memory_model
    for module in (netdsl.passes.count_memory, netdsl.passes.memory_model):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted >= 1 and result.failed == 0, module


def test_flag_choices_are_the_memory_models() -> None:
    # count.py spells them out so that `netdsl --help` does not import SymPy
    from netdsl.commands.count import DTYPE_NAMES, OPTIMIZER_NAMES
    from netdsl.passes.memory_model import DTYPES, OPTIMIZERS

    assert DTYPE_NAMES == tuple(DTYPES) and OPTIMIZER_NAMES == OPTIMIZERS


def test_a_spec_that_takes_every_batch_name_is_a_clear_error(tmp_path: Path) -> None:
    spec = tmp_path / "names.net"
    spec.write_text("net T(N = 1, batch = 2, batch_size = 3)\ninput x: [N + batch + batch_size, H = 8, W = 8]\n"
                    "output = x |> conv(4, 3)\n")
    r = run_cli("count", str(spec))
    assert r.returncode == 2 and "use every name the batch could have (N, batch, batch_size)" in r.stderr
    assert f"{spec}:1:1: error:" in r.stderr
    assert "Traceback" not in r.stderr
