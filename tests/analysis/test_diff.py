"""`netdsl diff A B`: totals side by side with B - A, layers matched by module path.

The oracle for the differences is torch (the zoo's reference modules, measured) and `count` of
each spec on its own: a diff's sides are exactly what `count` says of each spec.
"""
from __future__ import annotations

import doctest
import json
from pathlib import Path
from types import ModuleType

import pytest
import sympy as sp

import netdsl
import netdsl.passes.diff
import netdsl.passes.diff_metrics
import netdsl.passes.peak
from conftest import run_cli
from netdsl.api import load
from netdsl.cli import main
from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError
from netdsl.passes.count_memory import LAYER_MEMORY_METRICS
from netdsl.passes.counts import ALL_METRICS, METRICS
from netdsl.passes.diff import DiffResult, Source, diff_sources, difference
from netdsl.passes.memory_model import MemoryOptions
from netdsl.passes.peak import FP32, PeakResult

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
TINY = "net Tiny(C = 4{extra})\ninput x: [1, H = 8, W = 8]\noutput = x |> conv(C, 3, padding=1) -> relu{tail}\n"


def _source(path: Path, **sets: int) -> Source:
    text, p = load(path)
    return Source(text, p, dict(sets))


def _diff(a: Path | str, b: Path | str, both: dict[str, int] | None = None, set_a: dict[str, int] | None = None,
          set_b: dict[str, int] | None = None) -> DiffResult:
    sa = _source(a, **(set_a or {})) if isinstance(a, Path) else Source(a, None, set_a or {})
    sb = _source(b, **(set_b or {})) if isinstance(b, Path) else Source(b, None, set_b or {})
    return diff_sources(sa, sb, both)


@pytest.fixture(scope="module")
def resnets() -> DiffResult:
    return _diff(SPECS / "zoo/resnet18.net", SPECS / "zoo/resnet34.net", {"H": 64, "W": 64})


def test_resnet34_minus_resnet18_is_what_torch_measures(resnets: DiffResult) -> None:
    torch = pytest.importorskip("torch")
    from zoo_reference import conv_linear_macs, make

    torch.manual_seed(0)
    r18, r34 = make("resnet18"), make("resnet34")
    params = sum(p.numel() for p in r34.parameters()) - sum(p.numel() for p in r18.parameters())
    macs = conv_linear_macs(r34, (3, 64, 64)) - conv_linear_macs(r18, (3, 64, 64))
    buffers = sum(b.numel() for b in r34.buffers()) - sum(b.numel() for b in r18.buffers())
    assert resnets.totals["parameters"].value_difference == params
    assert resnets.totals["macs"].value_difference == macs
    assert resnets.totals["buffers"].value_difference == buffers
    # the class count is in both and cancels; the MACs grow with the input area only
    assert resnets.totals["parameters"].difference == params
    H, W = sp.symbols("H W", integer=True, positive=True)
    assert resnets.totals["macs"].difference == sp.expand(macs * H * W / (64 * 64))


def test_resnets_match_by_path(resnets: DiffResult) -> None:
    a = [row.name for row in resnets.a.counts.layers]
    b = [row.name for row in resnets.b.counts.layers]
    assert [x.name for x in resnets.matched] == a  # ResNet-18's every module path is in ResNet-34
    assert [x.name for x in resnets.only_b] == [n for n in b if n not in set(a)]
    assert resnets.only_a == [] and [x for x in resnets.matched if x.changed] == []
    assert {x.name.split(".")[0] + "." + x.name.split(".")[1] for x in resnets.only_b} == \
        {"layer1.2", "layer2.2", "layer2.3", "layer3.2", "layer3.3", "layer3.4", "layer3.5", "layer4.2"}


@pytest.fixture(scope="module")
def seeds() -> DiffResult:
    return _diff(SPECS / "unet.net", SPECS / "pool_upsample.net", {"N": 2})


def test_each_side_is_what_count_says(seeds: DiffResult) -> None:
    for side, spec in ((seeds.a, "unet.net"), (seeds.b, "pool_upsample.net")):
        counts = netdsl.count(SPECS / spec, N=2)
        for m in ALL_METRICS:
            assert side.metrics.totals[m] == counts.total(m), m
            assert side.value(side.metrics.totals[m]) == counts.value(counts.total(m)), m
        for i, row in enumerate(side.metrics.layers):
            assert all(row[m] == counts.layer_memory(i, m) for m in LAYER_MEMORY_METRICS)
        rf = counts.receptive().outputs["output"]
        assert side.metrics.rf["output"]["size"] == tuple(counts.show(x) for x in rf.size)
    for c in seeds.totals.values():
        assert c.difference is not None and c.a is not None and c.b is not None
        assert c.a_value is not None and c.b_value is not None
        assert sp.expand(c.difference - (c.b - c.a)) == 0
        assert c.value_difference == c.b_value - c.a_value
    assert [x.name for x in seeds.matched] == ["output"]  # the only path both have: the last conv
    assert len(seeds.only_a) == 14 and len(seeds.only_b) == 16


def test_memory_differences_are_what_torch_measures(seeds: DiffResult) -> None:
    torch = pytest.importorskip("torch")
    from live_oracle import measured_peak
    from memory_oracle import saved_by_torch, train_step_bytes

    measured: dict[str, dict[str, int]] = {}
    for spec in ("unet", "pool_upsample"):
        torch.manual_seed(0)
        model = netdsl.build(SPECS / f"{spec}.net")
        peak = measured_peak(model, torch.randn(2, *model.input_shape))
        step = train_step_bytes(model, 2, "adam")
        measured[spec] = {"saved_bytes": step["saved"], "peak_bytes": peak, "param_bytes": step["param"],
                          "buffer_bytes": step["buffer"], "train_bytes": sum(step.values())}
        if spec == "unet":
            one = saved_by_torch(model, 1)
    for m, v in measured["unet"].items():
        assert seeds.totals[m].value_difference == measured["pool_upsample"][m] - v, m
    # the same spec at two batch sizes: BatchNorm's statistics do not grow with the batch
    d = _diff(SPECS / "unet.net", SPECS / "unet.net", set_a={"N": 1}, set_b={"N": 2})
    assert d.totals["saved_bytes"].value_difference == measured["unet"]["saved_bytes"] - one
    assert d.totals["saved_bytes"].difference == 0 and any("N = 1 in A, 2 in B" in n for n in d.notes)


def test_a_spec_against_itself_differs_nowhere() -> None:
    d = _diff(SPECS / "unet.net", SPECS / "unet.net")
    assert all(c.difference == 0 and c.value_difference == 0 for c in d.totals.values())
    for parts in d.rf.values():
        assert all(h.difference == 0 and w.difference == 0 for h, w in parts.values())
    assert len(d.matched) == len(d.a.counts.layers) and not d.only_a and not d.only_b
    assert [x.name for x in d.matched if x.changed] == []
    assert [n for n in d.notes if not n.startswith(("A: ", "B: "))] == []  # only the receptive-field pass's notes


def test_one_changed_argument_changes_that_layer_only(tmp_path: Path) -> None:
    text = (SPECS / "unet.net").read_text()
    changed = text.replace("conv(NC, k, padding=k // 2)", "conv(NC, k, padding=k // 2, bias=false)")
    assert changed != text
    (tmp_path / "unet_nobias.net").write_text(changed)
    d = _diff(SPECS / "unet.net", tmp_path / "unet_nobias.net")
    assert [x.name for x in d.matched if x.changed] == ["output"]
    NC = sp.Symbol("NC", integer=True, nonnegative=True)
    out = next(x for x in d.matched if x.name == "output")
    assert out.metrics["biases"].difference == -NC and d.totals["biases"].difference == -NC
    assert d.totals["weights"].difference == 0


def test_symbols_only_one_spec_has_stay_in_the_difference() -> None:
    d = _diff(TINY.format(extra="", tail=""), TINY.format(extra=", G = 2", tail=" -> conv(G, 1)"))
    G, C = (sp.Symbol(n, integer=True, nonnegative=True) for n in ("G", "C"))
    assert d.totals["weights"].difference == C * G
    assert d.totals["weights"].value_difference == 8
    assert d.symbols == ["C", "H", "W", "G"]
    assert any("only B has G" in n for n in d.notes)


def test_set_applies_to_both_and_per_side() -> None:
    a, b = TINY.format(extra="", tail=""), TINY.format(extra=", G = 2", tail=" -> conv(G, 1)")
    d = _diff(a, b, {"C": 6}, set_b={"G": 3})
    assert (d.a.cg.env.values["C"], d.b.cg.env.values["C"], d.b.cg.env.values["G"]) == (6, 6, 3)
    with pytest.raises(NetdslError, match="A .<text>. has no parameter or size 'G'"):
        _diff(a, b, {"G": 3})
    with pytest.raises(NetdslError, match="neither spec has"):
        _diff(a, b, {"Q": 3})
    d = _diff(a, a, {"C": 6}, set_b={"C": 8})
    assert d.totals["weights"].difference == 0 and d.totals["weights"].value_difference == 9 * 2
    assert any("C = 6 in A, 8 in B" in n for n in d.notes)


def test_the_batch_is_shared_and_named_apart_from_the_specs_symbols() -> None:
    own_n = TINY.format(extra=", N = 2", tail="")
    d = _diff(own_n, TINY.format(extra="", tail=""), {"batch": 4})
    assert str(d.batch) == "batch" and (d.a.batch_value, d.b.batch_value) == (4, 4)
    with pytest.raises(NetdslError, match="B .<text>. has no parameter or size 'N'"):
        _diff(own_n, TINY.format(extra="", tail=""), {"N": 4})
    d = _diff(TINY.format(extra="", tail=""), TINY.format(extra="", tail=""), set_a={"N": 2}, set_b={"N": 3})
    assert (d.a.batch_value, d.b.batch_value) == (2, 3)
    d = _diff(own_n, TINY.format(extra=", batch = 1", tail=""), {"batch_size": 2})  # N and batch both taken
    saved = d.totals["saved_bytes"]
    assert str(d.batch) == "batch_size" and saved.a is not None and saved.b is not None
    assert d.batch in saved.a.free_symbols and d.batch in saved.b.free_symbols
    with pytest.raises(NetdslError, match="use every name the batch could have"):
        _diff(own_n, TINY.format(extra=", batch = 1, batch_size = 1", tail=""))
    with pytest.raises(NetdslError, match="the batch must be a positive integer"):
        _diff(TINY.format(extra="", tail=""), TINY.format(extra="", tail=""), {"N": 0})


def test_python_api() -> None:
    a, b = TINY.format(extra="", tail=""), TINY.format(extra=", G = 2", tail=" -> conv(G, 1)")
    d = netdsl.diff(a, b, params_b={"G": 5}, N=3, optimizer="sgd")
    assert d.b.cg.env.values["G"] == 5 and d.a.batch_value == d.b.batch_value == 3
    assert d.options.optimizer == "sgd"
    with pytest.raises(NetdslError, match="unknown optimizer"):
        netdsl.diff(a, b, optimizer="lamb")
    with pytest.raises(NetdslError, match="has no parameter or size 'G'"):
        netdsl.diff(a, b, params_a={"G": 5})
    with pytest.raises(NetdslError, match="must be an integer"):
        netdsl.diff(a, b, params_b={"G": "5"})


def test_an_error_in_b_points_into_b(tmp_path: Path) -> None:
    bad = tmp_path / "bad.net"
    bad.write_text("net Bad\ninput x: [1, H = 8, W = 8]\noutput = x |> conv(4, 3, padding=1) ->\n")
    with pytest.raises(NetdslError) as e:
        netdsl.diff(SPECS / "unet.net", bad)
    assert e.value.path == str(bad)


def test_difference_is_expanded() -> None:
    H = sp.Symbol("H", integer=True, positive=True)
    assert difference(H**2 + H, (H + 1) ** 2) == H + 1


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(SPECS / "unet.net"), str(SPECS / "unet.net"), "--set", "N=2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["difference"] == "B - A" and report["batch"] == "N" and report["a"]["batch"] == 2
    assert set(report["totals"]) >= set(METRICS)
    assert all(t["difference"] == "0" for t in report["totals"].values())
    assert all(v["difference"] == 0 for v in report["values"]["totals"].values())
    assert report["layers"]["only_a"] == [] and report["layers"]["only_b"] == []
    assert all(x["changed"] == [] for x in report["layers"]["matched"])
    size = report["rf"]["output"]["size"]
    assert size["difference"] == ["0", "0"] and size["a"] == size["b"]
    values = report["values"]["rf"]["output"]["size"]
    assert values["a"] == values["b"] and all(isinstance(v, int) and v > 0 for v in values["a"])
    assert values["difference"] == [0, 0]


def test_cli_text_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(SPECS / "unet.net"), str(SPECS / "pool_upsample.net")]) == 0
    out = capsys.readouterr().out
    assert "differences are B - A" in out and "only in A: sequence1.0 ... output(cat) (14 layers)" in out
    assert main(["diff", str(SPECS / "unet.net"), str(SPECS / "zoo/resnet18.net"), "--set", "k=5"]) == 2
    assert "has no parameter or size 'k'" in capsys.readouterr().err
    assert main(["diff", str(SPECS / "unet.net"), str(SPECS / "nope.net")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_diff_runs_without_torch() -> None:
    r = run_cli("diff", "specs/unet.net", "specs/pool_upsample.net", "--json", block_torch=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["layers"]["matched"][0]["name"] == "output"


@pytest.mark.parametrize("module", [netdsl.passes.diff, netdsl.passes.diff_metrics], ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 1 and result.failed == 0


def test_a_metric_a_pass_does_not_model_is_left_out_with_a_note(capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A metric a pass does not model under some options (here a peak_bytes that refuses autocast,
    # as it once did) is left out: diff compares the rest, as count does, and says why.
    modelled = netdsl.passes.peak.peak_bytes

    def fp32_only(cg: ConcreteGraph, batch: sp.Symbol, options: MemoryOptions = FP32) -> PeakResult:
        if options.dtype != "fp32":
            raise NetdslError(f"peak bytes under --dtype {options.dtype} are not modelled")
        return modelled(cg, batch, options)

    monkeypatch.setattr(netdsl.passes.peak, "peak_bytes", fp32_only)
    assert main(["diff", str(SPECS / "unet.net"), str(SPECS / "pool_upsample.net"), "--dtype", "bf16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "peak_bytes" not in report["totals"] and "saved_bytes" in report["totals"]
    assert all("peak_bytes" not in x["metrics"] for x in report["layers"]["matched"])
    assert any(n.startswith("peak_bytes left out: ") for n in report["notes"])
    fp32 = netdsl.diff(str(SPECS / "unet.net"), str(SPECS / "pool_upsample.net"))
    bf16 = netdsl.diff(str(SPECS / "unet.net"), str(SPECS / "pool_upsample.net"), dtype="bf16")
    assert bf16.totals["saved_bytes"].a_value != fp32.totals["saved_bytes"].a_value


def test_peak_bytes_is_compared_under_autocast(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(SPECS / "unet.net"), str(SPECS / "pool_upsample.net"), "--dtype", "bf16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "peak_bytes" in report["totals"]
    assert all("peak_bytes" in x["metrics"] for x in report["layers"]["matched"])
    assert not any(n.startswith("peak_bytes left out: ") for n in report["notes"])
