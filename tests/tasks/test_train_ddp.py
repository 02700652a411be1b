"""`torchrun --nproc_per_node 2 -m netdsl.cli train ...`: two gloo processes on this machine, each
training its half of every batch; rank 0 alone writes the run directory."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import one_then_torchrun

ROOT = Path(__file__).resolve().parents[2]


def photos(folder: Path) -> Path:
    import imageio.v3 as iio

    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:96, 0:128]
    for i in range(2):
        img = np.stack([xx / 128, yy / 96, ((xx // 16 + yy // 16 + i) % 2) * 0.8], -1) * 255
        iio.imwrite(folder / f"p{i}.png", img.astype(np.uint8))
    return folder


def losses(run: Path) -> list[float]:
    with open(run / "metrics.csv") as fh:
        return [float(r["train_loss"]) for r in csv.DictReader(fh)]


def test_two_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("netdsl.api")

    data = photos(tmp_path / "photos")
    env = {**os.environ, "NETDSL_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    monkeypatch.setenv("NETDSL_CACHE", env["NETDSL_CACHE"])
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = ["train", str(ROOT / "specs" / "unet.net"), "--data", str(data), "--epochs", "2",
            "--max-train", "150", "--max-val", "40", "--batch-size", "50", "--device", "cpu"]
    ddp = one_then_torchrun(args, tmp_path, env)
    run = tmp_path / "two"
    meta = json.loads((run / "run.json").read_text())
    assert meta["world_size"] == 2 and meta["device"] == "cpu"
    assert ddp.stdout.count("epoch 2/2") == 1  # rank 1 prints nothing
    assert (run / "last.pt").is_file() and (run / "samples.png").is_file()
    # Same initial weights and shuffles: only BatchNorm's per-rank batch statistics differ.
    one, two = losses(tmp_path / "one"), losses(run)
    assert len(two) == 2 and all(abs(a - b) < 0.02 * a for a, b in zip(one, two))
