"""What a detection run writes and shows besides its checkpoints: metrics.csv (train box/obj/cls
losses (the v8 recipe: box/cls/dfl), validation losses, precision, recall, mAP@0.5, mAP@0.5:0.95, lr, seconds, samples/s),
curves.png, samples.png (validation images, true boxes above, predicted below), and the progress
display."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from netdsl.files import atomic_write_rows_csv
from netdsl.tasks.detect.draw import draw_detections
from netdsl.tasks.detect.trainer import DetRow, DetTrainer, sample_images, truth
from netdsl.tasks.detect.trainer_v8 import V8Row
from netdsl.tasks.plots import save
from netdsl.tasks.report import EpochProgress


def write_metrics(path: Path, rows: list[Any], row_type: type = DetRow) -> None:
    atomic_write_rows_csv(path / "metrics.csv", row_type, rows)


def loss_names(row: Any) -> tuple[str, ...]:
    """The row's three loss columns: V8Row's LOSSES (box, cls, dfl), else YOLOv3's box, obj, cls."""
    return tuple(getattr(type(row), "LOSSES", ("box", "obj", "cls")))


def curves(rows: Sequence[Any], path: Path, title: str) -> None:
    fig = Figure(figsize=(12, 4))
    ax_l, ax_m = fig.subplots(1, 2)
    ep = [r.epoch for r in rows]
    for i, k in enumerate(loss_names(rows[0]) if rows else ()):
        ax_l.plot(ep, [getattr(r, k) for r in rows], color=f"C{i}", marker="o", ms=3, label=f"train {k}")
        ax_l.plot(ep, [getattr(r, "val_" + k) for r in rows], color=f"C{i}", ls="--", label=f"val {k}")
    for i, (k, name) in enumerate((("precision", "precision"), ("recall", "recall"), ("map50", "mAP@0.5"),
                                   ("map50_95", "mAP@0.5:0.95"))):
        ax_m.plot(ep, [getattr(r, k) for r in rows], color=f"C{i}", marker="o", ms=3, label=name)
    ax_l.set(xlabel="epoch", ylabel="weighted loss", title=f"{title}: losses")
    ax_m.set(xlabel="epoch", title="validation", ylim=(0, 1))
    for ax in (ax_l, ax_m):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save(fig, path)


def samples(trainer: DetTrainer, path: Path, title: str, names: list[str]) -> None:
    """Validation images: true boxes (top row), predictions at conf 0.25 (bottom row)."""

    images, targets = sample_images(trainer.data.val)
    dets = trainer.predict_letterboxed(images)
    gts = truth(targets, len(images), trainer.hyper.img)
    n = len(images)
    fig = Figure(figsize=(2.2 * n, 4.8))
    axes = fig.subplots(2, n, squeeze=False)
    for c in range(n):
        im = (images[c].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        g = gts[c]
        true = np.concatenate([g["boxes"], np.ones((len(g["boxes"]), 1)), g["classes"][:, None]], 1)
        for r, boxes in enumerate((true, dets[c].numpy())):
            ax = axes[r][c]
            ax.imshow(draw_detections(im, boxes, names), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_ylabel("truth")
    axes[1][0].set_ylabel("prediction")
    fig.suptitle(title)
    save(fig, path)


class Progress(EpochProgress[DetRow]):
    """The detection trainer's display: the bar notes the running box/obj/cls losses."""

    def line(self, row: DetRow) -> str:
        return (f"{self._label}  epoch {row.epoch}/{self._epochs}  box {row.box:.4f}  obj {row.obj:.4f}  "
                f"cls {row.cls:.4f}  P {row.precision:.3f}  R {row.recall:.3f}  mAP@0.5 {row.map50:.3f}  "
                f"mAP@0.5:0.95 {row.map50_95:.3f}  {row.seconds:.1f}s")

    def batch_note(self, *state: Any) -> str:
        (means,) = state  # DetTrainer passes the epoch's running mean losses
        b, o, c = means.tolist()
        return f"box {b:.4f} obj {o:.4f} cls {c:.4f}"


class V8Progress(EpochProgress[V8Row]):
    """The v8 recipe's display: box, cls and dfl losses."""

    def line(self, row: V8Row) -> str:
        return (f"{self._label}  epoch {row.epoch}/{self._epochs}  box {row.box:.4f}  cls {row.cls:.4f}  "
                f"dfl {row.dfl:.4f}  P {row.precision:.3f}  R {row.recall:.3f}  mAP@0.5 {row.map50:.3f}  "
                f"mAP@0.5:0.95 {row.map50_95:.3f}  {row.seconds:.1f}s")

    def batch_note(self, *state: Any) -> str:
        (means,) = state
        b, c, d = means.tolist()
        return f"box {b:.4f} cls {c:.4f} dfl {d:.4f}"
