"""Solve's bounded search, count's convention line, --freeze that freezes
nothing, the API's argument checks, and the colourization run's last and best epochs."""
from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import netdsl
from conftest import run_cli, use_stand_in
from netdsl.errors import NetdslError

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=timeout)


# --- item 15: `solve` with `?` in two graph-block calls ----------------------------------------

# The spec: three `?` in each of two calls, no annotation, so only the adds constrain them.
TWO_CALLS = """net R(C = 8)
input x: [C, H = 32, W = 32] where H % 2 == 0, W % 2 == 0
block basic(c, s = 1) {
  input x
  main = x |> conv(c, 3, stride=s, padding=?) -> relu -> conv(c, 3, padding=?)
  skip = x |> conv(c, 1, stride=s, padding=?)
  output = add(main, skip)
}
a = x |> basic(C)
b = a |> basic(2*C, s=2)
output = b |> conv(4, 1)
"""
KEYS = ["a.main.0.padding", "a.main.2.padding", "a.skip.padding", "b.main.0.padding", "b.main.2.padding",
        "b.skip.padding"]


def _filled(values: tuple[int, ...]) -> str:
    """The spec with each call's paddings passed as block arguments: what torch runs."""
    text = TWO_CALLS.replace("block basic(c, s = 1)", "block basic(c, s = 1, p = 0, q = 0, r = 0)")
    text = text.replace("stride=s, padding=?) -> relu", "stride=s, padding=p) -> relu")
    text = text.replace("conv(c, 3, padding=?)", "conv(c, 3, padding=q)").replace("stride=s, padding=?)",
                                                                                  "stride=s, padding=r)")
    a, b = values[:3], values[3:]
    return text.replace("basic(C)", "basic(C, 1, {}, {}, {})".format(*a)).replace(
        "basic(2*C, s=2)", "basic(2*C, 2, {}, {}, {})".format(*b))


def _torch_runs(values: tuple[int, ...]) -> bool:
    """Both adds work in torch at several even sizes (what a solution without annotations means)."""
    try:
        model = netdsl.build(_filled(values))
    except NetdslError:
        return False
    for h, w in ((32, 32), (8, 12), (18, 26)):
        try:
            model(torch.zeros(1, 8, h, w))
        except RuntimeError:
            return False
    return True


def test_solve_two_block_calls_agrees_with_torch() -> None:
    res = netdsl.solve(TWO_CALLS, max_value=3)
    assert [h.key for h in res.holes] == KEYS
    found = set(res.solutions)
    assert res.status == "several"
    # torch as the oracle on a sample of the 4**6 box: every solution runs, the others do not
    rng = random.Random(18)
    box = [tuple(rng.randrange(4) for _ in KEYS) for _ in range(24)] + rng.sample(sorted(found), 6)
    for values in box:
        assert _torch_runs(values) == (values in found), values


def test_solve_two_block_calls_at_the_default_range_takes_seconds(tmp_path: Path) -> None:
    # Before: every call's three `?` were tried as one product (17**3) for each shape of the call's
    # input, 454 s for these 18,462 solutions. Now each layer is searched against the shapes that
    # reach it, and each layer's shape at one candidate and input is computed once (about 10 s).
    spec = tmp_path / "r.net"
    spec.write_text(TWO_CALLS)
    start = time.monotonic()
    r = _cli("solve", str(spec), "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["count"] == 18_462 and report["status"] == "several"
    assert time.monotonic() - start < 90


def test_solve_refuses_a_search_too_large_within_seconds(tmp_path: Path) -> None:
    spec = tmp_path / "r.net"
    spec.write_text(TWO_CALLS)
    start = time.monotonic()
    r = _cli("solve", str(spec), "--max-value", "64", timeout=120)
    assert r.returncode == 2, r.stdout
    # located at the statement that calls the block, and says what is too large
    assert r.stderr.startswith(f"{spec}:9:1: error: too many combinations of open arguments to search: "
                               "more than 3,000 layer evaluations by 'main' (line 5) in the call of block "
                               "'basic' in 'a' (line 9), with values up to 64"), r.stderr
    assert "--max-value" in r.stderr and "Traceback" not in r.stderr
    assert time.monotonic() - start < 90


# --- item 16: count's convention line says what the totals count ------------------------------

# Every op family once: activations, dropout, identity, pad, flatten, cat and add among them.
ALL_OPS = """net AllOps(C = 4)
input x: [3, H = 16, W = 16] where H % 4 == 0, W % 4 == 0
a = x |> conv(C, 3, padding=1) -> batchnorm -> relu -> dropout -> identity
b = a |> maxpool(2) -> convT(C, 2, stride=2) -> silu
c = cat(a, b) |> pad(1) -> avgpool(3, stride=1)
d = add(c, c) |> upsample(2) -> maxpool(2) -> adaptive_avgpool -> adaptive_maxpool -> flatten -> linear(10) -> softmax
output = d
"""


def _named(text: str) -> set[str]:
    """'a, b and c' -> {a, b, c}."""
    return {n.strip() for part in text.split(", ") for n in part.split(" and ")}


@pytest.mark.parametrize("flags", [[], ["--biases"], ["--batchnorm"], ["--no-batchnorm"], ["--activations"],
                                   ["--merges", "--activations", "--no-batchnorm"]])
def test_count_convention_line_names_exactly_the_ops_the_totals_add(flags: list[str], tmp_path: Path) -> None:
    import re

    spec = tmp_path / "all.net"
    spec.write_text(ALL_OPS)
    r = _cli("count", str(spec), "--json", *flags)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    m = re.fullmatch(r".*?: weights [^;]*; outputs count (.*); connections count (.*); (.*) count in neither",
                     report["convention"]["text"])
    assert m, report["convention"]["text"]
    listed = {"outputs": _named(m.group(1)), "connections": _named(m.group(2))}
    used = {layer["op"] for layer in report["layers"]}
    # what the counting code adds up: the layers whose values make the total
    counts = netdsl.count(spec)
    from netdsl.passes.counts import Convention

    conv = Convention(biases="--biases" in flags, activations="--activations" in flags, merges="--merges" in flags,
                      batchnorm=True if "--batchnorm" in flags else False if "--no-batchnorm" in flags else None)
    for metric in ("outputs", "connections"):
        added = {layer.op for layer in counts.included(metric, conv)}
        assert added == listed[metric] & used, (metric, flags)
        assert int(counts.value(counts.total(metric, conv))) == report["values"]["totals"][metric]
    never = _named(m.group(3))
    assert {"pad", "flatten", "identity"} <= never and not never & (listed["outputs"] | listed["connections"])
    # The old line: "outputs count every layer except activations and cat; connections count conv,
    # convT, pooling and upsampling". pad and flatten are left out, linear is in.
    assert "linear" in listed["connections"] and "pad" not in listed["outputs"]


# --- item 16: --freeze names that freeze nothing ------------------------------------------------

FREEZE_SPEC = """net F(N = 0)
input x: [3, H = 16, W = 16]
block opt(c) = conv(c, 3, padding=1) -> relu
block basic(c) {
  input x
  z = x |> conv(c, 3, padding=1) -> relu
  output = add(z, x)
}
a = x |> conv(4, 3, padding=1) -> opt(4) * N
b = a |> basic(4)
j = cat(a, b)
k = j |> relu
output = k |> conv(2, 1)
"""


@pytest.mark.parametrize(("name", "words"), [
    # a block used only `* 0`: no layer of it is built
    ("opt", "--freeze opt freezes nothing: block 'opt' is not in the network at the values in use: its calls "
            "(line 9) repeat 0 times"),
    # a statement that is only a cat, or only an activation: nothing with parameters
    ("j", "--freeze j freezes nothing: statement 'j' has no layer with parameters (cat)"),
    ("k", "--freeze k freezes nothing: statement 'k' has no layer with parameters (relu)"),
    (["b", "j"], "statement 'j' has no layer with parameters"),  # one name that works does not hide one that does not
])
def test_freeze_that_freezes_nothing_is_an_error(name: object, words: str) -> None:
    with pytest.raises(NetdslError) as e:
        netdsl.build(FREEZE_SPEC, freeze=name)
    assert e.value.message == words or (isinstance(name, list) and words in e.value.message), e.value.message
    assert "statements with parameters: a, b, output" in e.value.hint


def test_freeze_of_a_statement_inside_a_graph_block_says_what_to_write() -> None:
    with pytest.raises(NetdslError) as e:
        netdsl.build(FREEZE_SPEC, freeze="z")
    assert e.value.message == ("--freeze z: 'z' is a statement inside graph block 'basic' (line 6); --freeze takes "
                               "the top-level statements, labels and blocks")
    assert "--freeze basic" in e.value.hint and "--freeze b " in e.value.hint and "@freeze" in e.value.hint
    # what the hint offers works: the block's call freezes z's conv
    m = netdsl.build(FREEZE_SPEC, freeze="basic")
    assert not m.b.z[0].weight.requires_grad and m.a.weight.requires_grad


def test_freeze_that_works_still_works_and_a_spec_freeze_does_not_hide_it() -> None:
    m = netdsl.build(FREEZE_SPEC, freeze=["a", "output"], N=1)  # with N = 1, opt is built: `opt` freezes it too
    assert not m.a[0].weight.requires_grad and not m.output.weight.requires_grad
    assert not netdsl.build(FREEZE_SPEC, freeze="opt", N=1).a[1].weight.requires_grad
    # a statement frozen by the spec's own @freeze is still a name that freezes something
    spec = FREEZE_SPEC.replace("b = a |> basic(4)", "@freeze b = a |> basic(4)")
    assert not netdsl.build(spec, freeze="b").b.z[0].weight.requires_grad


def test_freeze_that_freezes_nothing_is_exit_2_on_the_command_line(tmp_path: Path) -> None:
    spec = tmp_path / "f.net"
    spec.write_text(FREEZE_SPEC)
    r = _cli("build", str(spec), "--freeze", "j")
    assert r.returncode == 2 and r.stderr.startswith(f"{spec}: error: --freeze j freezes nothing"), r.stderr


# --- item 17: the API checks its arguments -------------------------------------------------------

TINY = "net T(C = 4)\ninput x: [1, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\noutput = x |> conv(C, 3, padding=1)"
HUGE = TINY.replace("H = 8, W = 8", "H = 65536, W = 65536")  # about 64 GiB of activations: over the 8 GiB limit


@pytest.mark.parametrize(("call", "words"), [
    # NaN compares false with every size: it lifted the limit and built a 64 GiB network's module
    (lambda: netdsl.build(HUGE, max_bytes=float("nan")), "max_bytes must be a finite number of bytes, not float nan"),
    (lambda: netdsl.build(HUGE, max_bytes=float("inf")), "max_bytes must be a finite number of bytes, not float inf"),
    (lambda: netdsl.build(TINY, max_bytes="x"), "max_bytes must be an integer, not str 'x'"),  # was TypeError
    (lambda: netdsl.build(TINY, max_bytes=True), "max_bytes must be an integer, not bool True"),
    (lambda: netdsl.build(TINY, max_bytes=0), "max_bytes=0 is out of range: it must be at least 1"),
    (lambda: netdsl.build(TINY, freeze_bn=3), "freeze_bn=3: use 'train' or 'eval'"),
    (lambda: netdsl.build(TINY, freeze=["output", None]), "None is not a name"),
    (lambda: netdsl.build(None), "the spec must be a path or the spec's text, not None"),
    (lambda: netdsl.shapes(b"net"), "the spec must be a path or the spec's text, not bytes b'net'"),
    # these ran: '3' and 2.5 searched as if numbers, None as the default
    (lambda: netdsl.solve(TINY, max_value="3"), "max_value must be an integer, not str '3'"),
    (lambda: netdsl.solve(TINY, max_value=2.5), "max_value must be an integer, not float 2.5"),
    (lambda: netdsl.solve(TINY, max_value=None), "max_value must be an integer, not None"),
    (lambda: netdsl.solve(TINY, max_value=True), "max_value must be an integer, not bool True"),
    (lambda: netdsl.solve(TINY, max_value=5000), "max_value=5,000 is out of range: it must be from 0 to 1,000"),
    (lambda: netdsl.count(TINY, claims=[None]), "claims must name files (str or pathlib.Path), not None"),
    (lambda: netdsl.count(TINY, claims=3), "claims must be a list of claim files, not int 3"),
    # a string was iterated: "no such file: c"
    (lambda: netdsl.count(TINY, claims="claim weights == 9*C"), "claims must be a list of claim files, not claim text"),
    (lambda: netdsl.count(TINY, claims="t.claims"), "claims must be a list of claim files, not a single path"),
])
def test_api_arguments_are_checked(call, words: str) -> None:  # noqa: ANN001 - a lambda
    with pytest.raises(NetdslError) as e:
        call()
    assert words in e.value.message, e.value.message
    assert e.value.hint


def test_api_arguments_that_are_fine_still_work(tmp_path: Path) -> None:
    assert netdsl.build(TINY, max_bytes=2**20) is not None and netdsl.build(TINY, max_bytes=1e9) is not None
    assert netdsl.build(TINY, max_bytes=None) is not None
    with pytest.raises(NetdslError, match="the limit is"):  # a finite limit still applies
        netdsl.build(HUGE, max_bytes=2**30)
    claims = tmp_path / "t.claims"
    claims.write_text("claim weights == 9*C\n")
    assert [r.holds for r in netdsl.count(TINY, claims=[claims]).claims] == [True]
    assert [r.holds for r in netdsl.count(TINY, claims=(str(claims),)).claims] == [True]
    import numpy

    res = netdsl.solve(TINY.replace("padding=1", "padding=?").replace("output = x", "output: [C, H, W] = x"),
                       max_value=numpy.int64(3))
    assert res.solutions == [(1,)]


# --- item 18: the colourization run reports its best epoch and draws its weights -----------------

# Validation losses by epoch, in place of the measured ones: the best epoch (1) is not the last (3),
# as in the run (best epoch 19 of 25).
SCRIPTED_VAL_LOSS = {1: 0.5, 2: 0.9, 3: 0.7}


@pytest.fixture
def toy_training(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, list]:
    """A short run of test_train_resume's stand-in model on two generated photos, with scripted
    validation losses; returns what `samples.png` was drawn from."""
    from netdsl.tasks.colourize import plots
    from netdsl.tasks.colourize.loop import Trainer
    from test_train_resume import Toy, make_photos

    use_stand_in(monkeypatch, tmp_path, Toy)
    make_photos(tmp_path / "photos")
    evaluate = Trainer.evaluate

    def scripted(self: Trainer, module: torch.nn.Module | None = None) -> tuple[float, float]:
        loss, acc = evaluate(self, module)
        return (SCRIPTED_VAL_LOSS[self.epoch + 1] if module is None else loss), acc

    monkeypatch.setattr(Trainer, "evaluate", scripted)
    drawn: dict[str, list] = {"grey": [], "pred": [], "title": []}
    samples = plots.samples

    def record(grey, truth, pred, palette, path, title) -> None:  # noqa: ANN001 - plots.samples' own
        drawn["grey"].append(grey)
        drawn["pred"].append(pred)
        drawn["title"].append(title)
        samples(grey, truth, pred, palette, path, title)

    monkeypatch.setattr(plots, "samples", record)
    return drawn


def test_train_reports_last_and_best_and_draws_best(toy_training: dict[str, list], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    from netdsl.cli import main
    from netdsl.tasks.precision import of_run
    from test_train_resume import Toy

    assert main(["train", "toy.net", "--data", "photos", "--out", "run", "--set", "NF=4", "--epochs", "3",
                 "--max-train", "130", "--max-val", "40", "--batch-size", "50"]) == 0
    run = tmp_path / "run"
    with open(run / "metrics.csv") as fh:
        acc = {int(r["epoch"]): 100 * float(r["val_acc"]) for r in csv.DictReader(fh)}
    best, last = torch.load(run / "best.pt", weights_only=True), torch.load(run / "last.pt", weights_only=True)
    assert best["epoch"] == best["best_epoch"] == 1 and last["epoch"] == 3
    out = capsys.readouterr().out.strip().splitlines()
    # Before: "done: val loss 0.7000, val pixel accuracy ..% (best val loss 0.5000 at epoch 1)": the
    # last epoch's accuracy only.
    assert out[-1] == (f"done: val loss 0.7000, val pixel accuracy {acc[3]:.2f}% at the last epoch (3); best: "
                       f"val loss 0.5000, val pixel accuracy {acc[1]:.2f}% at epoch 1 (best.pt, shown in samples.png) "
                       f"-> run")
    # samples.png: the prediction of best.pt's weights, and its title says so
    (title,), (pred,), (grey,) = toy_training["title"], toy_training["pred"], toy_training["grey"]
    assert title == f"toy: best.pt (epoch 1 of 3), val loss 0.500, pixel accuracy {acc[1]:.1f}%"
    x = torch.from_numpy(grey)[:, None]

    # at the run's precision (bf16 autocast where this CPU runs it natively), as the run predicts
    precision = of_run(json.loads((run / "run.json").read_text())["train"]["precision"], torch.device("cpu"))

    def predicted(state: dict) -> np.ndarray:
        model = Toy(NF=4)
        model.load_state_dict(state)
        with torch.no_grad(), precision.autocast():
            return model.eval()(x).float().argmax(1).numpy()

    assert (pred == predicted(best["model"])).mean() > 0.999
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in best["model"])


def test_train_whose_last_epoch_is_the_best_says_so(toy_training: dict[str, list], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from netdsl.cli import main

    assert main(["train", "toy.net", "--data", "photos", "--out", "run", "--set", "NF=4", "--epochs", "1",
                 "--max-train", "130", "--max-val", "40", "--batch-size", "50"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("done: val loss 0.5000, val pixel accuracy ") and line.endswith(
        "% at the last epoch (1), the best (best.pt) -> run")
    assert toy_training["title"][0].startswith("toy: best.pt (epoch 1 of 1), val loss 0.500, ")
