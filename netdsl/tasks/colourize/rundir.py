"""The colourization run directory: run.json (resolved spec, parameters, options, data), spec.net, palette.npy,
metrics.csv, last.pt / best.pt, curves.png, samples.png (the shared parts: netdsl.tasks.rundir).

Write order after each epoch: best.pt (if improved), then last.pt, then metrics.csv, all atomic.
last.pt is the truth: it carries the full history, and `--resume` rewrites metrics.csv from it, so
a SIGKILL between any two writes costs at most the epoch in progress.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netdsl.files import atomic_save_npy, atomic_write_json, atomic_write_rows_csv, atomic_write_text
from netdsl.tasks.colourize import plots
from netdsl.tasks.colourize.data import Tensors
from netdsl.tasks.colourize.loop import EpochRow, Trainer
from netdsl.tasks.engine import save_epoch
from netdsl.tasks.rundir import RUN_FORMAT

N_SAMPLES = 10


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
        if self.write:
            save_epoch(self.path, trainer, {"fingerprint": fingerprint}, EpochRow)

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
