"""The training engine: checkpoints name their task, older checkpoints resume, the task is chosen
once from the concrete graph (a broken detection spec reports its own error, a malformed `--set`
is an error), and a task defined outside netdsl runs on the engine."""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import netdsl.commands.train as command
from conftest import use_stand_in
from netdsl.cli import main
from netdsl.errors import NetdslError
from netdsl.files import CHECKPOINT_FORMAT
from netdsl.tasks.checkpoint import checkpoint_task, header, load_checkpoint
from netdsl.tasks.engine import Compiler, choose, run, save_epoch, train_epochs
from netdsl.tasks.report import EpochProgress
from netdsl.tasks.rundir import ensure_fresh
from netdsl.tasks.train import TASKS
from spec_fixtures import SDET
from test_train_resume import Toy, make_photos

SMALL = ["--max-train", "64", "--max-val", "16", "--batch-size", "32", "--quiet"]


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """test_train's stand-in model and photos: a colourization run in seconds."""
    use_stand_in(monkeypatch, tmp_path, Toy)
    return make_photos(tmp_path / "photos")


def test_checkpoint_and_run_json_name_the_task(stand_in: Path, tmp_path: Path) -> None:
    assert main(["train", "toy.net", "--data", str(stand_in), "--out", "run", "--epochs", "1", *SMALL]) == 0
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(tmp_path / "run" / name, weights_only=True)
        assert ckpt["format"] == CHECKPOINT_FORMAT == "netdsl-checkpoint-v2" and ckpt["task"] == "colourize"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["task"] == "colourize"


def test_a_run_written_in_the_old_format_resumes(stand_in: Path, tmp_path: Path) -> None:
    """A run directory as the trainer wrote it before checkpoints named their task: last.pt in the
    colourization trainer's own format, run.json without "task". It resumes, and goes on in the
    new format."""
    assert main(["train", "toy.net", "--data", str(stand_in), "--out", "run", "--epochs", "1", *SMALL]) == 0
    run_dir = tmp_path / "run"
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    old = {k: v for k, v in ckpt.items() if k != "task"} | {"format": "netdsl-train-checkpoint-v1"}
    torch.save(old, run_dir / "last.pt")
    rj = json.loads((run_dir / "run.json").read_text())
    del rj["task"]
    (run_dir / "run.json").write_text(json.dumps(rj))
    assert load_checkpoint(run_dir / "last.pt", "colourize")["task"] == "colourize"
    assert main(["train", "--resume", "run", "--epochs", "2", "--quiet"]) == 0
    again = torch.load(run_dir / "last.pt", weights_only=True)
    assert again["epoch"] == 2 and again["task"] == "colourize" and again["format"] == CHECKPOINT_FORMAT
    assert [r["epoch"] for r in again["history"]] == [1, 2]


def test_old_formats_map_to_their_tasks(tmp_path: Path) -> None:
    assert checkpoint_task({"format": "netdsl-detect-checkpoint-v1"}) == "detect"
    assert checkpoint_task({"format": "netdsl-train-checkpoint-v1"}) == "colourize"
    assert checkpoint_task({**header("detect")}) == "detect"
    assert checkpoint_task({"format": "something else", "task": "detect"}) is None
    torch.save({"format": "netdsl-detect-checkpoint-v1", "epoch": 1}, tmp_path / "det.pt")
    assert load_checkpoint(tmp_path / "det.pt", "detect")["task"] == "detect"
    with pytest.raises(NetdslError, match="not a netdsl training checkpoint"):
        load_checkpoint(tmp_path / "det.pt", "colourize")


def test_a_broken_detection_spec_reports_its_own_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before, a detection spec that did not compile was taken for a colourization spec, so this
    command said "--img applies to detection specs". Now the spec's own error, at its line."""
    spec = tmp_path / "broken.net"
    spec.write_text(SDET.replace("classes=NCLS", "classes=NCLASSES"))
    rc = main(["train", str(spec), "--img", "64", "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "NCLASSES" in err and f"{spec}:7:" in err, err
    assert "applies to detection specs" not in err and not (tmp_path / "run").exists()


def test_a_malformed_set_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "det.net"
    spec.write_text(SDET)
    for bad in ("NCLS", "NCLS=two"):
        rc = main(["train", str(spec), "--set", bad, "--img", "64", "--out", str(tmp_path / "run"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and "is not NAME=INTEGER" in err and bad in err, err
    assert not (tmp_path / "run").exists()


def test_the_task_is_the_one_the_output_op_declares(tmp_path: Path) -> None:
    spec = tmp_path / "det.net"
    spec.write_text(SDET)
    args = argparse.Namespace(specs=[str(spec)], resume=None)
    task, job = choose(args, {}, Compiler(command.analyse_spec, command.build_model), TASKS)
    assert task.name == "detect" and job.graphs[str(spec)] is not None


# ------------------------------------------------------------------------------ a third task

@dataclass
class MeanRow:
    epoch: int
    loss: float


@dataclass
class MeanHistory:
    rows: list[MeanRow] = field(default_factory=list)
    best_epoch: int = 0


class MeanTrainer:
    """Learns the mean of a few numbers by gradient descent: the smallest trainer the engine runs."""

    def __init__(self) -> None:
        self.epoch = 0
        self.history = MeanHistory()
        self.w = torch.zeros(1, requires_grad=True)
        self.opt = torch.optim.SGD([self.w], lr=0.1)
        self.data = torch.tensor([1.0, 2.0, 3.0])

    def run_epoch(self, on_batch: Callable[..., None] | None = None) -> MeanRow:
        for i, x in enumerate(self.data):
            self.opt.zero_grad()
            loss = (self.w - x).pow(2).sum()
            loss.backward()
            self.opt.step()
            if on_batch is not None:
                on_batch(i + 1)
        self.epoch += 1
        row = MeanRow(self.epoch, float((self.w.detach() - self.data).pow(2).mean()))
        self.history.rows.append(row)
        self.history.best_epoch = self.epoch
        return row

    def state(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {**header("mean"), "epoch": self.epoch, "model": {"w": self.w.detach().clone()},
                "history": [asdict(r) for r in self.history.rows], **(extra or {})}

    def restore(self, ckpt: dict[str, Any], path: str) -> None:
        self.w.data.copy_(ckpt["model"]["w"])
        self.epoch = int(ckpt["epoch"])


class MeanProgress(EpochProgress[MeanRow]):
    def line(self, row: MeanRow) -> str:
        return f"{self._label}  epoch {row.epoch}  loss {row.loss:.4f}"


class MeanTask:
    name = "mean"

    def train(self, job: Any, dist: Any, device: torch.device) -> int:
        out = Path(job.args.out)
        ensure_fresh(out)
        out.mkdir(parents=True)
        trainer = MeanTrainer()
        progress = MeanProgress.choose(job.args.quiet, dist.is_main)
        progress.start(out.name, 1, trainer.epoch, len(trainer.data))
        failure = train_epochs(trainer, 1, progress, lambda: save_epoch(out, trainer, {"note": "x"}, MeanRow))
        return 0 if failure is None else 2


def test_a_third_task_runs_on_the_engine(tmp_path: Path) -> None:
    """A task defined here (one class, one trainer) is chosen from the graph its output op declares
    and trained for an epoch: last.pt and best.pt in the common format, naming the task, and
    metrics.csv."""
    graph = SimpleNamespace(statements=[SimpleNamespace(merge=SimpleNamespace(op=SimpleNamespace(task="mean")))])
    compiler = Compiler(analyse=lambda spec, values: graph, build=lambda spec, values, freeze: torch.nn.Identity())
    args = argparse.Namespace(specs=["any.net"], resume=None, device="cpu", quiet=True, out=str(tmp_path / "run"))
    task, job = choose(args, {}, compiler, {**TASKS, "mean": MeanTask()})
    assert task.name == "mean"
    assert run(task, job) == 0
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt", "mean")
    assert ckpt["task"] == "mean" and ckpt["epoch"] == 1 and ckpt["note"] == "x"
    assert (tmp_path / "run" / "best.pt").is_file()
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0] == "epoch,loss"
