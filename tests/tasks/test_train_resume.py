"""`netdsl train --resume`: an interrupted run, continued, ends exactly where an uninterrupted one
does; damaged or foreign checkpoints are refused before anything is written."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import use_stand_in
from netdsl.cli import main
from netdsl.tasks.colourize.rundir import RunDir

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--max-train", "130", "--max-val", "40", "--batch-size", "50", "--quiet"]


class Toy(nn.Module):
    """A stand-in for a compiled spec, with dropout so torch's global RNG matters too."""

    def __init__(self, NC: int = 24, NF: int = 8) -> None:
        super().__init__()
        self.spec_name, self.in_channels, self.params = "Toy", 1, {"NC": NC, "NF": NF}
        self.net = nn.Sequential(nn.Conv2d(1, NF, 3, padding=1), nn.BatchNorm2d(NF), nn.ReLU(),
                                 nn.Dropout2d(0.2), nn.Conv2d(NF, NC, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_photos(folder: Path) -> Path:
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:80, 0:112]
    for i in range(2):
        img = np.stack([xx / 112, yy / 80, (xx * yy) % 97 / 97 * (i + 1) / 2], -1) * 255
        iio.imwrite(folder / f"p{i}.png", img.astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, cache: Path, tmp_path: Path) -> None:
    use_stand_in(monkeypatch, tmp_path, Toy, cache=cache)


def metrics(run: Path) -> list[tuple[str, ...]]:
    """Everything but the wall-clock columns, which legitimately differ."""
    with open(run / "metrics.csv") as fh:
        return [(r["epoch"], r["train_loss"], r["val_loss"], r["val_acc"]) for r in csv.DictReader(fh)]


def same_weights(a: Path, b: Path) -> bool:
    sa = torch.load(a, weights_only=True)["model"]
    sb = torch.load(b, weights_only=True)["model"]
    return all(torch.equal(sa[k], sb[k]) for k in sa)


class Crash(Exception):
    pass


def test_resume_matches_uninterrupted(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common = ["train", "toy.net", "--data", str(photos), "--epochs", "3", *ARGS]
    assert main([*common, "--out", "full"]) == 0

    real = RunDir.save_epoch

    def crash_after_two(self: RunDir, trainer, fp):  # type: ignore[no-untyped-def]
        real(self, trainer, fp)
        if trainer.epoch == 1:
            raise Crash  # as if killed right after epoch 1 was saved

    monkeypatch.setattr(RunDir, "save_epoch", crash_after_two)
    with pytest.raises(Crash):
        main([*common, "--out", "part"])
    monkeypatch.setattr(RunDir, "save_epoch", real)
    assert len(metrics(tmp_path / "part")) == 1
    assert main(["train", "--resume", "part", "--quiet"]) == 0
    assert metrics(tmp_path / "part") == metrics(tmp_path / "full")
    assert same_weights(tmp_path / "part" / "last.pt", tmp_path / "full" / "last.pt")
    # --epochs may extend a finished run; it continues from epoch 3
    assert main(["train", "--resume", "part", "--epochs", "4", "--quiet"]) == 0
    assert [m[0] for m in metrics(tmp_path / "part")] == ["1", "2", "3", "4"]


def test_sigkill_then_resume(photos: Path, cache: Path, tmp_path: Path) -> None:
    """A real SIGKILL at a random moment after the first checkpoint, then --resume in a new process.
    The child sleeps 30 ms per training batch (numerics untouched) so it is still running when the
    signal comes; the reference run trains in this process, without the sleeps."""
    script = ("import sys, time, torch\n"
              f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              f"sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"  # conftest
              "import netdsl.commands.train as c\n"
              "from test_train_resume import Toy\n"
              "class Slow(Toy):\n"
              "    def forward(self, x):\n"
              "        if self.training: time.sleep(0.03)\n"
              "        return super().forward(x)\n"
              "c.build_model = lambda spec, params, freeze=None: Slow(**params)\n"
              "c.analyse_spec = lambda spec, params: None\n"
              "from netdsl.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    (tmp_path / "runner.py").write_text(script)
    env = {**os.environ, "NETDSL_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    args = ["train", "toy.net", "--data", str(photos), "--epochs", "10", *ARGS]
    assert main([*args, "--out", "full"]) == 0
    proc = subprocess.Popen([sys.executable, "runner.py", *args, "--out", "killed"], env=env)
    deadline = time.time() + 60
    while not (tmp_path / "killed" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(float(np.random.default_rng().uniform(0, 0.25)))  # any moment: mid-epoch or mid-write
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "training finished before it could be killed"
    done = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["epoch"]
    assert 1 <= done < 10
    resumed = subprocess.run([sys.executable, "runner.py", "train", "--resume", "killed", "--quiet"],
                             env=env, timeout=120)
    assert resumed.returncode == 0
    assert metrics(tmp_path / "killed") == metrics(tmp_path / "full")
    assert same_weights(tmp_path / "killed" / "last.pt", tmp_path / "full" / "last.pt")
    assert not [p for p in (tmp_path / "killed").iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def finished(photos: Path, tmp_path: Path) -> Path:
    assert main(["train", "toy.net", "--data", str(photos), "--epochs", "1", "--out", "run", *ARGS]) == 0
    return tmp_path / "run"


def test_resume_refuses_corrupt_checkpoint(finished: Path, capsys: pytest.CaptureFixture) -> None:
    data = (finished / "last.pt").read_bytes()
    (finished / "last.pt").write_bytes(data[: len(data) // 2])
    before = sorted((p.name, p.stat().st_mtime_ns) for p in finished.iterdir())
    assert main(["train", "--resume", str(finished), "--epochs", "2"]) == 2
    assert "corrupt or unreadable checkpoint" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in finished.iterdir()) == before


def test_resume_refuses_pickled_code(finished: Path, capsys: pytest.CaptureFixture) -> None:
    # weights_only=True: a checkpoint that would run code on load is rejected, not executed
    torch.save({"format": "x", "payload": Crash()}, finished / "last.pt")
    assert main(["train", "--resume", str(finished), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "corrupt or unreadable checkpoint" in err
    # torch's own advice (load again with weights_only=False) would run the payload: never shown
    assert "weights_only" not in err and "trust" not in err


def test_resume_refuses_mismatched_checkpoint(finished: Path, photos: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "toy.net", "--data", str(photos), "--epochs", "1", "--set", "NF=4",
                 "--out", "other", *ARGS]) == 0
    shutil.copy(tmp_path / "other" / "last.pt", finished / "last.pt")
    assert main(["train", "--resume", str(finished), "--epochs", "2"]) == 2
    assert "checkpoint does not match" in capsys.readouterr().err
    assert [m[0] for m in metrics(finished)] == ["1"]


def test_resume_flag_errors(finished: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--resume", str(finished), "--lr", "0.1"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    assert main(["train", "--resume", "no-such-run"]) == 2
    assert "run directory not found" in capsys.readouterr().err
    (finished / "run.json").write_text("{not json")
    assert main(["train", "--resume", str(finished)]) == 2
    assert "cannot read run.json" in capsys.readouterr().err


def test_resume_without_checkpoint_restarts(photos: Path, tmp_path: Path, finished: Path) -> None:
    """Killed before the first epoch ended: resuming trains from scratch, as a fresh run would."""
    (finished / "last.pt").unlink()
    (finished / "best.pt").unlink()
    ref = metrics(finished)
    assert main(["train", "--resume", str(finished)]) == 0
    assert metrics(finished) == ref


def test_resume_comparison_group(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    """A comparison killed inside its second run: --resume GROUP finishes it and writes the table."""
    (tmp_path / "two.net").write_text("net Toy() # stand-in\n")
    real = RunDir.save_epoch

    def crash(self: RunDir, trainer, fp):  # type: ignore[no-untyped-def]
        real(self, trainer, fp)
        if self.label == "two" and trainer.epoch == 1:
            raise Crash

    monkeypatch.setattr(RunDir, "save_epoch", crash)
    with pytest.raises(Crash):
        main(["train", "toy.net", "two.net", "--data", str(photos), "--epochs", "2", "--out", "cmp", *ARGS])
    monkeypatch.setattr(RunDir, "save_epoch", real)
    assert not (tmp_path / "cmp" / "comparison.md").exists()
    assert main(["train", "--resume", "cmp"]) == 0
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| toy | Toy | 2 |" in table and "| two | Toy | 2 |" in table
    assert [m[0] for m in metrics(tmp_path / "cmp" / "two")] == ["1", "2"]
