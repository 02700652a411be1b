"""The run directory: run.json (resolved spec, parameters, options, data), spec.net, palette.npy,
metrics.csv, last.pt / best.pt, curves.png, samples.png.

Write order after each epoch: best.pt (if improved), then last.pt, then metrics.csv, all atomic.
last.pt is the truth: it carries the full history, and `--resume` rewrites metrics.csv from it, so
a SIGKILL between any two writes costs at most the epoch in progress.
"""
from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netdsl.errors import NetdslError
from netdsl.train import plots
from netdsl.train.data import Tensors
from netdsl.train.files import atomic_save_npy, atomic_write, atomic_write_json, atomic_write_rows_csv, atomic_write_text
from netdsl.train.loop import CHECKPOINT_FORMAT, EpochRow, Trainer
from netdsl.train.outdir import check_writable

RUN_FORMAT = "netdsl-run-v1"
GROUP_FORMAT = "netdsl-group-v1"
N_SAMPLES = 10


def ensure_fresh(path: Path) -> None:
    for p in (path, *path.parents):  # a file where a directory must go: say so, not "not empty" later
        if p.is_dir():
            break
        if p.exists() or p.is_symlink():
            kind = "a file" if p.is_file() else "not a directory"
            msg = (f"the output path is {kind}" + (", not a directory" if p.is_file() else "") if p == path
                   else f"{p} is {kind}, so the output directory cannot be made inside it")
            raise NetdslError(msg, path=str(path), hint="choose another --out")
    if path.exists() and any(path.iterdir()):
        raise NetdslError("output directory already exists and is not empty", path=str(path),
                          hint="choose another --out, or continue it with --resume")
    check_writable(path)


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise NetdslError(f"not a netdsl {what} directory ({path.name} is missing)", path=str(path.parent)) from None
    except (OSError, ValueError) as err:
        raise NetdslError(f"cannot read {path.name}: {err}", path=str(path)) from None
    if not isinstance(obj, dict):
        raise NetdslError(f"{path.name} is not a JSON object", path=str(path))
    return obj


def load_checkpoint(path: Path, fmt: str = CHECKPOINT_FORMAT, what: str = "training") -> dict[str, Any]:
    """A checkpoint dict whose "format" is `fmt`, or NetdslError for anything torn, foreign or
    tampered with; `what` names the kind of checkpoint expected ("detection training")."""
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before failing
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NetdslError("checkpoint not found", path=str(path)) from None
    except Exception as err:  # zip/pickle errors from truncated or foreign files vary by version
        # torch's own text for a refused pickle advises loading again with weights_only=False, which
        # runs whatever code the file holds: never pass that on, whatever the torch version words it.
        first = re.split(r"(?<=\.)\s", (str(err).strip().splitlines() or [""])[0])[0].rstrip(".")
        if isinstance(err, pickle.UnpicklingError) or re.search(r"weights.?only|trust|pickle", first, re.I):
            first = "torch's safe loader refuses its contents"
        elif isinstance(err, EOFError):
            first = "the file ends early"
        elif not first or len(first) > 160:
            first = type(err).__name__
        raise NetdslError(f"corrupt or unreadable checkpoint, or not a netdsl checkpoint ({first})", path=str(path),
                          hint="delete it to restart that run from its previous checkpoint, or start a new run") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise NetdslError(f"not a netdsl {what} checkpoint", path=str(path))
    return ckpt


class RunDir:
    def __init__(self, path: Path, label: str, write: bool = True) -> None:
        self.path = path
        self.label = label
        self.write = write  # False on ranks other than 0

    def create(self, run_json: dict[str, Any], spec_text: str, palette: np.ndarray) -> None:
        if not self.write:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "spec.net", spec_text)
        atomic_save_npy(self.path / "palette.npy", palette)
        atomic_write_json(self.path / "run.json", {"format": RUN_FORMAT, **run_json})

    def clean_temp(self) -> None:
        """Temp files a killed run left behind (its renames never happened)."""
        if self.write:
            for tmp in self.path.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def save_epoch(self, trainer: Trainer, fingerprint: str) -> None:
        if not self.write:
            return
        state = trainer.state({"fingerprint": fingerprint})
        if trainer.history.best_epoch == trainer.epoch:
            self._save_pt(self.path / "best.pt", state)
        self._save_pt(self.path / "last.pt", state)
        self.write_metrics(trainer.history.rows)

    @staticmethod
    def _save_pt(path: Path, state: dict[str, Any]) -> None:
        atomic_write(path, lambda fh: torch.save(state, fh))

    def write_metrics(self, rows: list[EpochRow]) -> None:
        if not self.write:
            return
        atomic_write_rows_csv(self.path / "metrics.csv", EpochRow, rows)

    def finish(self, trainer: Trainer, data: Tensors, palette: np.ndarray) -> None:
        """The figures; the samples from best.pt's weights, the ones a user takes from the run."""
        if not self.write:
            return
        rows = trainer.history.rows
        plots.curves(rows, self.path / "curves.png", self.label)
        n = len(data.x_val)
        pick = np.unique(np.linspace(0, n - 1, min(N_SAMPLES, n)).round().astype(int))
        x = data.x_val[pick]
        best = trainer.best_module(self.path / "best.pt")
        pred = trainer.predict(x, best[0] if best else None).numpy()
        title = plots.samples_title(self.label, best[1] if best else (rows[-1] if rows else None), best is not None,
                                    len(rows))
        plots.samples(x.cpu().numpy()[:, 0], data.y_val[pick].cpu().numpy(), pred, palette,
                      self.path / "samples.png", title)
