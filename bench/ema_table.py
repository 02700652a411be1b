"""Validation loss per epoch with and without EMA weights, for one spec on the embedded data.

One training run gives every column: the EMA only reads the live weights (it draws no random
numbers), so the live trajectory is exactly the `--no-ema` run's with the same seed. Each epoch
evaluates the live weights (= `netdsl train --no-ema`) and the EMA weights (= `netdsl train`:
a one-epoch window, `loop.ema_settings`), plus extra averages over other windows (`--windows`, in epochs), updated after
every step through the trainer's `on_batch` hook, each evaluated with the live model's BatchNorm
statistics (what `ModelEMA` copies) and with recomputed ones (+BN). Prints a markdown table and, per column, the
mean and standard deviation of the last 10 epochs' validation loss and the mean absolute change
from one epoch to the next.

    python bench/ema_table.py                      # UNet, 25 epochs, seed 0 (about 25 x one epoch)
    python bench/ema_table.py --epochs 12 --max-train 2000 --windows 1,2 --seeds 0,1
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netdsl  # noqa: E402
from netdsl.tasks.colourize.data import DataSpec, load_data, to_tensors  # noqa: E402
from netdsl.tasks.colourize.loop import Hyper, Trainer, ema_settings  # noqa: E402
from netdsl.tasks.ema import ModelEMA  # noqa: E402


def run(spec: str, seed: int, args: argparse.Namespace, tensors) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    model = netdsl.build(spec)
    hyper = Hyper(epochs=args.epochs, batch_size=args.batch_size, seed=seed, ema=True)
    trainer = Trainer(model, tensors, hyper)
    steps = math.ceil(len(tensors.x_train) / args.batch_size)
    extra: dict[str, ModelEMA] = {}
    for w in args.windows:
        decay, tau = 1.0 - 1.0 / (w * steps), float(steps)
        extra[f"EMA {w:g} ep"] = ModelEMA(trainer.module, decay=decay, tau=tau)

    def on_batch(_: int) -> None:
        for e in extra.values():
            e.update(trainer.module)

    names = [f"EMA {w:g} ep" + suffix for w in args.windows for suffix in ("", " +BN")
             if not (w == 1.0 and not suffix)]  # EMA 1 ep is the trainer's own (the default)
    cols: dict[str, list[float]] = {"no EMA": [], "EMA 1 ep (default)": [], **{k: [] for k in names}}
    decay, tau = ema_settings(steps)
    print(f"seed {seed}: {steps} steps per epoch, default EMA decay {decay:.4f}, tau {tau:g}", flush=True)
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        row = trainer.run_epoch(on_batch)
        live, _acc = trainer.evaluate(trainer.module)
        cols["no EMA"].append(live)
        cols["EMA 1 ep (default)"].append(row.val_loss)
        for k, e in extra.items():
            if k in cols:
                cols[k].append(trainer.evaluate(e.module)[0])  # with the live model's BN statistics
            if k + " +BN" in cols:
                trainer.recompute_ema_bn(e.module)  # the next update copies the live ones back
                cols[k + " +BN"].append(trainer.evaluate(e.module)[0])
        print(f"  epoch {row.epoch}: " + "  ".join(f"{k} {v[-1]:.4f}" for k, v in cols.items())
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return cols


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="specs/unet.net")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--windows", default="1,2,4", help="extra EMA windows, in epochs")
    ap.add_argument("--last", type=int, default=10)
    args = ap.parse_args()
    args.windows = [float(w) for w in args.windows.split(",")]
    t0 = time.perf_counter()
    data = load_data(DataSpec(max_train=args.max_train, patches="fixed"))
    tensors = to_tensors(data)
    print(f"{args.spec}: {len(tensors.x_train)} training / {len(tensors.x_val)} validation patches, "
          f"batch {args.batch_size}, {args.epochs} epochs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for seed in (int(s) for s in args.seeds.split(",")):
        cols = run(args.spec, seed, args, tensors)
        names = list(cols)
        print(f"\nseed {seed}: validation loss per epoch\n")
        print("| epoch | " + " | ".join(names) + " |")
        print("|---:|" + "---:|" * len(names))
        for i in range(args.epochs):
            print(f"| {i + 1} | " + " | ".join(f"{cols[n][i]:.4f}" for n in names) + " |")
        n = min(args.last, args.epochs)
        std = {k: statistics.pstdev(v[-n:]) if n > 1 else 0.0 for k, v in cols.items()}
        mean = {k: statistics.fmean(v[-n:]) for k, v in cols.items()}
        swing = {k: statistics.fmean(abs(a - b) for a, b in zip(v[-n:], v[-n + 1:])) if n > 1 else 0.0
                 for k, v in cols.items()}
        print(f"| last-{n} mean | " + " | ".join(f"{mean[k]:.4f}" for k in names) + " |")
        print(f"| last-{n} std | " + " | ".join(f"{std[k]:.4f}" for k in names) + " |")
        print(f"| last-{n} mean abs change | " + " | ".join(f"{swing[k]:.4f}" for k in names) + " |")
        print("| final | " + " | ".join(f"{cols[k][-1]:.4f}" for k in names) + " |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
