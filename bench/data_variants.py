"""Does other embedded data steady the validation loss or separate the seed networks?

Trains each spec at the defaults (25 epochs, EMA on) on variants of the embedded photographs and
prints, per run, the validation loss over the last 10 epochs (mean and sample standard
deviation), the mean change from one of those epochs to the next, the last epoch's and the
training loss. Variants:

- `fixed`: the default, one fixed set of 5000 training and 1000 validation patches;
- `val2500`: 2500 validation patches instead of 1000 (is the swing the validation sample's?);
- `more`: scikit-image's two other colour photographs-of-sorts (retina.jpg, ihc.png) added;
- `fresh`: `--fresh-patches`, 5000 training patches drawn anew each epoch from all 21,773.

`val2500` and `more` change module constants for the run (their caches get their own names);
`fresh` is the command-line option. Each run is a fresh process, as `netdsl train` would be.

    python bench/data_variants.py --variants fixed,val2500,more,fresh --specs unet,conv_transpose --seeds 0,1
"""
from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("fixed", "val2500", "more", "fresh")

# What one run does, in its own process: patch the data constants, then the real command.
CHILD = """
import sys
sys.path.insert(0, {root!r})
from netdsl.tasks.colourize import data, patches
variant, spec, seed, out = sys.argv[1:5]
if variant == "val2500":
    data.N_VAL = 2500
    patches.RECIPE += "-val2500"
if variant == "more":
    patches.EMBEDDED_IMAGES += (("retina.jpg", 0.5), ("ihc.png", 0.25))
    patches.RECIPE += "-more"
from netdsl.cli import main
extra = ["--fresh-patches"] if variant == "fresh" else []
sys.exit(main(["train", spec, "--seed", seed, "--out", out, "--quiet", *extra]))
"""


def summary(metrics: Path) -> str:
    rows = list(csv.DictReader(metrics.open()))
    val = [float(r["val_loss"]) for r in rows]
    last = val[-10:]
    steps = [abs(a - b) for a, b in zip(last[1:], last[:-1])]
    return (f"{statistics.fmean(last):.3f} ± {statistics.stdev(last):.3f} | {statistics.fmean(steps):.3f} | "
            f"{val[-1]:.3f} | {float(rows[-1]['train_loss']):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--specs", default="unet,conv_transpose")
    ap.add_argument("--seeds", default="0,1")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r}; choose among {', '.join(VARIANTS)}")
    print("| variant | spec | seed | val loss, last 10 epochs (mean ± std) | mean change per epoch | "
          "last epoch | train loss |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for v in variants:
            for spec in args.specs.split(","):
                for seed in args.seeds.split(","):
                    out = Path(tmp) / f"{v}-{spec}-{seed}"
                    code = CHILD.format(root=str(ROOT))
                    r = subprocess.run([sys.executable, "-c", code, v, str(ROOT / "specs" / f"{spec}.net"), seed,
                                        str(out)], cwd=ROOT)
                    result = summary(out / "metrics.csv") if r.returncode == 0 else f"failed ({r.returncode})"
                    print(f"| {v} | {spec} | {seed} | {result} |", flush=True)


if __name__ == "__main__":
    main()
