"""Detection quality in fp32 against bf16 autocast, over seeds: does `--precision auto`'s bf16 move
mAP beyond the seed-to-seed spread?

    python bench/detect_precision.py [--spec specs/yolov3-tiny.net] [--img 160] [--epochs 10]
                                     [--seeds 0,1,2] [--precisions fp32,bf16] [--work /tmp/detect_precision]

Each (seed, precision) is one real `netdsl train SPEC --img I --epochs E --seed S --precision P`
on the embedded coins set (the command of docs/results.md's detection section), run one after
another, precisions alternating within a seed so machine noise hits both alike. From each run's
metrics.csv: the last epoch's and the best epoch's (highest mAP@0.5:0.95, what best.pt keeps)
mAP@0.5 and mAP@0.5:0.95 (val.py's) and its wall time. Printed: a row per run, then per precision
the mean and the standard deviation over seeds, and per measure the difference of the means
against the larger of the two standard deviations (within it: unchanged beyond the seed spread).
bf16 needs a CPU that runs it natively (AVX-512 BF16 or AMX) to be fast; elsewhere it is emulated
and only slow, and the figures still compare.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURES = ("last map50", "last map50_95", "best map50", "best map50_95")


def run(args: argparse.Namespace, seed: int, precision: str) -> dict[str, float]:
    out = args.work / f"seed{seed}-{precision}"
    cmd = [sys.executable, "-m", "netdsl.cli", "train", args.spec, "--img", str(args.img), "--epochs",
           str(args.epochs), "--seed", str(seed), "--precision", precision, "--device", "cpu", "--out", str(out),
           "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    best = max(rows, key=lambda r: float(r["map50_95"]))  # best.pt's rule: the highest mAP@0.5:0.95
    return {"last map50": float(rows[-1]["map50"]), "last map50_95": float(rows[-1]["map50_95"]),
            "best map50": float(best["map50"]), "best map50_95": float(best["map50_95"]),
            "best epoch": float(best["epoch"]), "wall s": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="specs/yolov3-tiny.net")
    ap.add_argument("--img", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--work", type=Path, default=Path("/tmp/detect_precision"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    precisions = args.precisions.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {p: [] for p in precisions}
    print(f"{args.spec} --img {args.img} --epochs {args.epochs}, embedded coins, seeds {seeds}", flush=True)
    for seed in seeds:
        for p in (precisions if seed % 2 == 0 else precisions[::-1]):
            r = run(args, seed, p)
            results[p].append(r)
            print(f"seed {seed} {p}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
    print("\n| precision | " + " | ".join(MEASURES) + " | wall s |")
    print("|---|" + "---:|" * (len(MEASURES) + 1))
    for p, rs in results.items():
        cells = []
        for k in (*MEASURES, "wall s"):
            v = [r[k] for r in rs]
            sd = statistics.stdev(v) if len(v) > 1 else float("nan")
            cells.append(f"{statistics.fmean(v):.3f} ± {sd:.3f}")
        print(f"| {p} | " + " | ".join(cells) + " |")
    if len(precisions) == 2 and len(seeds) > 1:
        a, b = precisions
        print(f"\n{b} - {a}, mean over seeds, against the larger standard deviation over seeds:")
        for k in MEASURES:
            va, vb = [r[k] for r in results[a]], [r[k] for r in results[b]]
            diff, spread = statistics.fmean(vb) - statistics.fmean(va), max(statistics.stdev(va), statistics.stdev(vb))
            print(f"  {k}: {diff:+.3f} (spread {spread:.3f}): {'within' if abs(diff) <= spread else 'OUTSIDE'} the seed spread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
