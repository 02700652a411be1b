"""`netdsl train`: the loop, the run directory, pre-flight errors and comparisons.

Most tests use a stand-in model (a plain `nn.Module`, a small conv net) in place of the compiler, and
a folder of tiny generated photos in place of the embedded data, so the file runs in seconds. A
stand-in declares no spec: training names it by its class and records the `--set` values as its
parameters. `test_real_specs_end_to_end` goes through `netdsl.build` and the seed specs.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import netdsl
import netdsl.commands.train as command
from conftest import use_stand_in
from netdsl.cli import main
from netdsl.errors import NetdslError
from netdsl.tasks.colourize import options
from netdsl.tasks.colourize.data import DataSpec, load_data, to_tensors
from netdsl.tasks.colourize.loop import Hyper, fit
from netdsl.tasks.colourize.model_check import check_model
from netdsl.tasks.colourize.prepare import identity
from netdsl.tasks.precision import resolve
from netdsl.values import parse_sets

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--max-train", "160", "--max-val", "40", "--epochs", "2", "--batch-size", "64", "--quiet"]


class Toy(nn.Module):
    """Stands in for a compiled spec: a plain module, with no spec behind it."""

    def __init__(self, NC: int = 24, k: int = 3, NF: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, NF, k, padding=1), nn.BatchNorm2d(NF), nn.ReLU(),
                                 nn.Conv2d(NF, NC, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_photos(folder: Path, n: int = 3, size: tuple[int, int] = (96, 128)) -> Path:
    """Smooth colour gradients with a few discs: enough colour structure for k-means and training."""
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        img = np.stack([xx / w, yy / h, np.full((h, w), i / max(n - 1, 1))], -1) * 255
        for _ in range(4):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(8, 20)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
        iio.imwrite(folder / f"img{i}.png", img.astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, cache: Path, tmp_path: Path) -> None:
    use_stand_in(monkeypatch, tmp_path, Toy, cache=cache)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


# --- flags -----------------------------------------------------------------------------------
def test_parse_sets_and_sweeps() -> None:
    assert parse_sets(["k=5", "NF = 64"]) == {"k": 5, "NF": 64}
    for bad in ("k", "k=five", "=3", "1k=3"):
        with pytest.raises(NetdslError):
            parse_sets([bad])
    sw = options.parse_sweeps(["batch-size=32,64", "k=3,5"])
    assert [(s.name, s.values, s.hyper) for s in sw] == [("batch_size", (32, 64), True), ("k", (3, 5), False)]
    plans = options.plan_runs(["a/unet.net", "b/unet.net"], {"NF": 8}, sw, Hyper())
    assert [p.label for p in plans][:3] == ["unet1-bs32-k3", "unet1-bs32-k5", "unet1-bs64-k3"]
    assert len(plans) == 8 and plans[1].sets == {"NF": 8, "k": 5} and plans[2].hyper.batch_size == 64
    for bad in ("lr=a", "k=", "k=3,3"):
        with pytest.raises(NetdslError):
            options.parse_sweeps([bad])


def test_help_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, argparse; from netdsl.commands.train import add_arguments; "
            "add_arguments(argparse.ArgumentParser()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


# --- the loop --------------------------------------------------------------------------------
def test_fit_learns_and_handles_partial_batch(photos: Path) -> None:
    data = load_data(DataSpec(path=str(photos), max_train=150, max_val=40))  # 150 = 2 x 64 + 22
    torch.manual_seed(0)
    hist = fit(Toy(), to_tensors(data), Hyper(epochs=3, batch_size=64, lr=1e-2))
    assert [r.epoch for r in hist.rows] == [1, 2, 3]
    assert hist.rows[-1].train_loss < hist.rows[0].train_loss
    assert 0 <= hist.rows[-1].val_acc <= 1 and hist.best_epoch in (1, 2, 3)


def test_fresh_patches_draw_a_new_subset_each_epoch() -> None:
    """With an epoch size, each epoch trains on that many distinct samples of the pool, a new
    subset each epoch; the EMA's window is an epoch of those steps."""
    from netdsl.tasks.colourize.data import Tensors
    from netdsl.tasks.colourize.loop import Trainer

    g = torch.Generator().manual_seed(0)
    x = torch.arange(200, dtype=torch.float32).view(200, 1, 1, 1).expand(200, 1, 32, 32).contiguous()
    t = Tensors(x, torch.randint(0, 24, (200, 32, 32), generator=g), x[:20], torch.zeros(20, 32, 32, dtype=torch.int64),
                epoch_size=50)
    torch.manual_seed(0)
    model = Toy()
    seen: list[list[int]] = []
    model.register_forward_hook(lambda m, i, o: seen[-1].extend(int(v) for v in i[0][:, 0, 0, 0]) if m.training else None)
    trainer = Trainer(model, t, Hyper(epochs=3, batch_size=20, lr=1e-3, ema=True))
    assert trainer.ema is not None and trainer.ema.decay == pytest.approx(1 - 1 / 3)  # ceil(50 / 20) steps
    for _ in range(3):
        seen.append([])
        trainer.run_epoch()
    assert all(len(ep) == 50 and len(set(ep)) == 50 for ep in seen)
    assert len({frozenset(ep) for ep in seen}) == 3 and len(set().union(*seen)) > 100


TOYNET = """net ToyNet(NIC = 1, NF = 8, NC = 24, k = 3)
input x: [NIC, H = 32, W = 32]
output = x |> conv(NF, k, padding=1) -> batchnorm -> relu -> conv(NC, 3, padding=1)
"""


def test_check_model_names_shapes() -> None:
    """A compiled spec is held to what it declares; the hints name the --set that fixes it."""
    from netdsl import build

    with pytest.raises(NetdslError, match=r"output is \[N, 10, 32, 32\].*expected \[N, 24, 32, 32\]") as e:
        check_model(build(TOYNET, NC=10), 24, "ToyNet")
    assert e.value.hint == "--set NC=24"
    assert e.value.span is not None and e.value.span.line == 3  # the spec's output
    with pytest.raises(NetdslError, match=r"output is \[N, 24, 31, 31\]") as e:
        check_model(build(TOYNET, k=4), 24, "ToyNet")
    assert "--set k=" in (e.value.hint or "")
    with pytest.raises(NetdslError, match=r"declares input \[1, 64, 32\]") as e:
        check_model(build(TOYNET, H=64), 24, "ToyNet")
    assert e.value.hint == "--set H=32"
    with pytest.raises(NetdslError, match=r"takes 2 input channels") as e:
        check_model(build(TOYNET, NIC=2), 24, "ToyNet")
    assert e.value.hint == "--set NIC=1"
    check_model(build(TOYNET), 24, "ToyNet")


class Impostor(Toy):
    """A plain module with the attribute names of a compiled spec: they are not read."""

    def __init__(self, NC: int = 24, NF: int = 8) -> None:
        super().__init__(NC=NC, NF=NF)
        self.spec_name, self.params, self.in_channels, self.input_shape = "Fake", {"NC": 99}, 3, (3, 64, 64)


def test_check_model_plain_module_is_only_probed() -> None:
    """Any nn.Module trains; one that is not a compiled spec is run, not asked what it declares."""
    with pytest.raises(NetdslError, match=r"Toy's output is \[N, 10, 32, 32\]") as e:
        check_model(Toy(NC=10), 24, "Toy")
    assert e.value.hint == "training needs one score per palette colour at every pixel"
    assert e.value.span is None
    with pytest.raises(NetdslError, match=r"output is \[N, 24, 31, 31\]"):
        check_model(Toy(k=4), 24, "Toy")
    check_model(Impostor(), 24, "Impostor")  # its in_channels/input_shape would refuse it if read
    with pytest.raises(NetdslError) as e:
        check_model(Impostor(NC=10), 24, "Impostor")
    assert e.value.hint == "training needs one score per palette colour at every pixel"  # not --set NC=...


def test_identity_of_compiled_and_plain_models() -> None:
    from netdsl import build

    assert identity(build(TOYNET, NF=4), "ignored", {"NF": 4}) == (
        "ToyNet", {"NIC": 1, "NF": 4, "NC": 24, "k": 3, "H": 32, "W": 32})
    assert identity(Impostor(), "Impostor", {"NF": 8}) == ("Impostor", {"NF": 8})


def test_plain_module_run_records_class_name_and_sets(photos: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command, "build_model", lambda spec, params, freeze=None: Impostor(**params))
    assert main(["train", "toy.net", "--data", str(photos), "--out", "run", "--set", "NF=4", *SMALL]) == 0
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["spec"]["name"] == "Impostor" and meta["spec"]["params"] == {"NF": 4}


# --- the command -----------------------------------------------------------------------------
def test_fresh_patches_flag_is_recorded_and_resumed(photos: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    small = [a for a in SMALL if a != "--quiet"]
    assert main(["train", "toy.net", "--data", str(photos), "--out", "fresh", "--set", "NF=4", "--fresh-patches",
                 "--max-train", "400", *small[2:]]) == 0
    meta = json.loads((tmp_path / "fresh" / "run.json").read_text())
    assert meta["data"]["patches"] == "fresh" and meta["train_patches_per_epoch"] == 400
    assert "drawn each epoch from" not in capsys.readouterr().out  # max-train 400 < 5000: all of them
    assert main(["train", "--resume", "fresh", "--epochs", "3", "--quiet"]) == 0
    rows = list(csv.DictReader((tmp_path / "fresh" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]


def test_run_directory(photos: Path, tmp_path: Path) -> None:
    assert main(["train", "toy.net", "--data", str(photos), "--out", "run", "--set", "NF=4", *SMALL]) == 0
    run = tmp_path / "run"
    names = {p.name for p in run.iterdir()}
    assert {"run.json", "spec.net", "palette.npy", "metrics.csv", "curves.png", "samples.png",
            "last.pt", "best.pt"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    meta = json.loads((run / "run.json").read_text())
    assert meta["spec"]["params"]["NF"] == 4 and meta["spec"]["sets"] == {"NF": 4}
    auto = resolve("auto", torch.device("cpu"))  # bf16 where this CPU has AVX-512 BF16 or AMX, else fp32
    assert meta["train"] == {"epochs": 2, "batch_size": 64, "lr": 0.001, "seed": 0, "ema": True,
                             "precision": auto.used, "compile": False, "channels_last": True, "fused": True}
    assert meta["precision"] == {"requested": "auto", "used": auto.used, "why": auto.why}
    assert meta["train_patches"] == 160 and meta["val_patches"] == 40
    m = rows(run / "metrics.csv")
    assert [r["epoch"] for r in m] == ["1", "2"] and all(math.isfinite(float(r["val_loss"])) for r in m)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and set(ckpt["model"]) == set(Toy(NF=4).state_dict())
    for png in ("curves.png", "samples.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG"
    assert np.load(run / "palette.npy").shape == (24, 3)


def test_default_out_dir_and_plain_progress(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [a for a in SMALL if a != "--quiet"]
    assert main(["train", "toy.net", "--data", str(photos), *args]) == 0
    out = capsys.readouterr().out
    assert "toy  epoch 1/2  train loss" in out and "val acc" in out and "done: val loss" in out
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("toy-") and (run / "last.pt").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--set", "k=4"], "output is [N, 24, 31, 31]"),
    (["--set", "NC=10"], "output is [N, 10, 32, 32]"),
    (["--set", "k"], "is not NAME=INTEGER"),
    (["--data", "nowhere"], "data path does not exist"),
    (["--palette", "bad.npy"], "palette has shape [24, 2]"),
    (["--palette", "missing.npy"], "palette file not found"),
    (["--epochs", "0"], "--epochs 0"),
    (["--category", "horse"], "--category applies to CIFAR-10 data"),
])
def test_preflight_errors_write_nothing(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                        extra: list[str], message: str) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((24, 2), np.float32))
    data = [] if "--data" in extra else ["--data", str(photos)]
    assert main(["train", "toy.net", *data, "--out", "run", *SMALL, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_missing_spec_and_existing_out(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "nope.net", "--data", str(photos), *SMALL]) == 2
    assert "nope.net: error: no such file: nope.net" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    assert main(["train", "toy.net", "--data", str(photos), "--out", "run", *SMALL]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]


def test_out_names_a_file(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "afile").write_text("mine")
    assert main(["train", "toy.net", "--data", str(photos), "--out", "afile", *SMALL]) == 2
    err = capsys.readouterr().err
    assert "afile: error: the output path is a file, not a directory" in err and "not empty" not in err
    assert main(["train", "toy.net", "--data", str(photos), "--out", "afile/run", *SMALL]) == 2
    assert "afile is a file, so the output directory cannot be made inside it" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine"


def test_given_palette(photos: Path, tmp_path: Path) -> None:
    pal = np.linspace(0, 0.99, 30).reshape(1, 10, 3).astype(np.float32)  # the course's [1, K, 3] layout
    np.save(tmp_path / "pal.npy", pal)
    assert main(["train", "toy.net", "--data", str(photos), "--palette", "pal.npy", "--set", "NC=10",
                 "--out", "run", *SMALL]) == 0
    assert np.array_equal(np.load(tmp_path / "run" / "palette.npy"), pal[0])


class Diverging(Toy):
    """Returns NaN from the 4th training batch on: a run that diverges in its second epoch."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.training:
            Diverging.calls += 1
            if Diverging.calls > 3:
                return out * float("nan")
        return out


def test_nan_stops_and_keeps_last_good(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture) -> None:
    Diverging.calls = 0
    monkeypatch.setattr(command, "build_model", lambda spec, params, freeze=None: Diverging(**params))
    assert main(["train", "toy.net", "--data", str(photos), "--out", "run", *SMALL, "--epochs", "4"]) == 2
    err = capsys.readouterr().err
    assert "the loss became nan in epoch 2" in err and "last good checkpoint" in err
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in rows(tmp_path / "run" / "metrics.csv")] == ["1"]


def test_sweep(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["train", "toy.net", "--data", str(photos), "--sweep", "batch-size=32,64", "--sweep", "NF=4,8",
            "--out", "cmp", *[a for a in SMALL if a != "--quiet"], "--epochs", "1", "--max-train", "64"]
    assert main(args) == 0
    out = capsys.readouterr().out
    group = tmp_path / "cmp"
    labels = ["toy-bs32-NF4", "toy-bs32-NF8", "toy-bs64-NF4", "toy-bs64-NF8"]
    assert json.loads((group / "group.json").read_text())["members"] == labels
    for label in labels:
        assert label in out and (group / label / "metrics.csv").is_file()
    assert "val loss" in out and "best val loss" in out  # the table
    table = (group / "comparison.md").read_text()
    assert table.count("\n") == 2 + len(labels) and "| toy-bs64-NF8 | Toy | 1 |" in table
    assert (group / "curves.png").read_bytes()[:4] == b"\x89PNG"
    meta = json.loads((group / "toy-bs64-NF4" / "run.json").read_text())
    assert meta["train"]["batch_size"] == 64 and meta["spec"]["params"]["NF"] == 4


def test_real_specs_end_to_end(photos: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("netdsl.api")
    monkeypatch.undo()  # the real compiler, not the stand-in
    monkeypatch.setenv("NETDSL_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    specs = [str(ROOT / "specs" / f"{s}.net") for s in ("pool_upsample", "conv_transpose", "unet")]
    assert main(["train", *specs, "--data", str(photos), "--out", "cmp", *SMALL, "--epochs", "1",
                 "--max-train", "64"]) == 0
    for label, name in (("pool_upsample", "PoolUpsampleNet"), ("unet", "UNet")):
        meta = json.loads((tmp_path / "cmp" / label / "run.json").read_text())
        assert meta["spec"]["name"] == name and meta["spec"]["params"]["NC"] == 24
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert all(f"| {s} |" in table for s in ("PoolUpsampleNet", "ConvTransposeNet", "UNet"))
    capsys.readouterr()
    assert main(["train", specs[0], "--set", "k=5", "--set", "NC=12", "--data", str(photos), "--out", "x", *SMALL]) == 2
    assert "PoolUpsampleNet's output is [N, 12, 32, 32]" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_freeze_and_weights_in_training(photos: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--weights starts from a file; --freeze keeps those statements as they were (no optimizer
    state, no change), recorded in run.json and kept by --resume."""
    monkeypatch.undo()  # the real compiler, not the stand-in
    monkeypatch.setenv("NETDSL_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    spec = str(ROOT / "specs" / "unet.net")
    start = netdsl.build(spec)
    torch.save(start.state_dict(), tmp_path / "start.pt")
    assert main(["train", spec, "--data", str(photos), "--out", "run", *SMALL, "--epochs", "1",
                 "--weights", str(tmp_path / "start.pt"), "--freeze", "sequence1,sequence2", "--freeze-bn", "eval"]) == 0
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["freeze"] == {"first": 0, "names": ["sequence1", "sequence2"], "bn": "eval"}
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    before, after = start.state_dict(), ckpt["model"]
    for key in before:
        same = torch.equal(before[key], after[key])
        assert same == key.startswith(("sequence1.", "sequence2.")) or key.endswith("num_batches_tracked"), key
    assert main(["train", "--resume", "run", "--epochs", "2", "--quiet"]) == 0
    after2 = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(before[k], after2[k]) for k in before if k.startswith("sequence1."))
