"""Colourization's figures: curves.png, samples.png and the combined curves of a comparison."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from netdsl.tasks.colourize.loop import EpochRow
from netdsl.tasks.plots import save


def curves(rows: Sequence[EpochRow], path: Path, title: str) -> None:
    combined({title: rows}, path, with_train=True)


def combined(runs: dict[str, Sequence[EpochRow]], path: Path, with_train: bool = True) -> None:
    """Loss (validation solid, training dashed) and validation accuracy per epoch, one colour per run."""
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for i, (label, rows) in enumerate(runs.items()):
        if not rows:
            continue
        colour = f"C{i % 10}"
        ep = [r.epoch for r in rows]
        ax_loss.plot(ep, [r.val_loss for r in rows], color=colour, marker="o", ms=3, label=f"{label} val")
        if with_train:
            ax_loss.plot(ep, [r.train_loss for r in rows], color=colour, ls="--", label=f"{label} train")
        ax_acc.plot(ep, [100 * r.val_acc for r in rows], color=colour, marker="o", ms=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy per pixel", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="% pixels", title="validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save(fig, path)


def samples_title(label: str, row: EpochRow | None, best: bool, epochs: int) -> str:
    """Which weights the samples show: best.pt's (the ones a user takes), or the final ones."""
    if row is None:
        return label
    which = f"best.pt (epoch {row.epoch} of {epochs})" if best else f"final weights (epoch {row.epoch})"
    return f"{label}: {which}, val loss {row.val_loss:.3f}, pixel accuracy {100 * row.val_acc:.1f}%"


def samples(grey: np.ndarray, truth: np.ndarray, pred: np.ndarray, palette: np.ndarray,
            path: Path, title: str) -> None:
    """As the course's figure: rows are the greyscale input, the ground truth in palette colours
    and the prediction, one column per validation patch."""
    n = len(grey)
    fig = Figure(figsize=(1.2 * n, 4.0))
    axes = fig.subplots(3, n, squeeze=False)
    rows = [("input", None), ("truth", truth), ("prediction", pred)]
    for r, (name, lab) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            if lab is None:
                ax.imshow(grey[c], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(np.clip(palette[lab[c]], 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(name)
    fig.suptitle(title)
    save(fig, path)
