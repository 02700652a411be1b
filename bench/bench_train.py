"""Training overhead of `netdsl train` against a bare hand-written loop.

Both train the same compiled model (from the same initial weights) on the same in-memory tensors,
epoch by epoch, interleaved (ABBA order per round) so machine noise hits both alike. Two ratios:

- train phase: `Trainer.train_epoch` vs the bare loop's training pass (samples/s);
- full epoch: `Trainer.run_epoch` + the run directory's per-epoch writes (best.pt, last.pt,
  metrics.csv) vs the bare loop's training pass plus a validation pass.

    python bench/bench_train.py [--spec specs/unet.net] [--rounds 4] [--max-train 5000]
"""
from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netdsl  # noqa: E402
from netdsl.tasks.colourize.data import DataSpec, load_data, to_tensors  # noqa: E402
from netdsl.tasks.colourize.loop import Hyper, Trainer  # noqa: E402
from netdsl.tasks.colourize.rundir import RunDir  # noqa: E402


def bare_train(model, opt, x, y, bs, gen):  # type: ignore[no-untyped-def]
    """The loop a student writes: shuffle, slice, forward, loss, backward, step."""
    model.train()
    n = len(x)
    perm = torch.randperm(n, generator=gen)
    t0 = time.perf_counter()
    for i in range(0, n, bs):
        idx = perm[i:i + bs]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return n / (time.perf_counter() - t0), time.perf_counter() - t0


@torch.no_grad()
def bare_eval(model, x, y):  # type: ignore[no-untyped-def]
    model.eval()
    losses, correct = [], 0
    for i in range(0, len(x), 500):
        out = model(x[i:i + 500])
        losses.append(F.cross_entropy(out, y[i:i + 500]).item())
        correct += (out.argmax(1) == y[i:i + 500]).sum().item()
    return sum(losses) / len(losses), correct / y.numel()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="specs/unet.net")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--max-train", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=100)
    args = ap.parse_args()

    data = load_data(DataSpec(max_train=args.max_train, patches="fixed"))
    t = to_tensors(data)
    torch.manual_seed(0)
    base = netdsl.build(args.spec)
    hyper = Hyper(epochs=10**6, batch_size=args.batch_size)
    trainer = Trainer(copy.deepcopy(base), t, hyper)
    bare = copy.deepcopy(base)
    opt = torch.optim.Adam(bare.parameters(), lr=hyper.lr)
    gen = torch.Generator().manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    rundir = RunDir(tmp, "bench")
    fp = data.fingerprint()

    def ours() -> tuple[float, float]:
        t0 = time.perf_counter()
        trainer.run_epoch()
        rundir.save_epoch(trainer, fp)
        row = trainer.history.rows[-1]
        return row.samples_per_s, len(t.x_train) / (time.perf_counter() - t0)

    def theirs() -> tuple[float, float]:
        t0 = time.perf_counter()
        rate, _ = bare_train(bare, opt, t.x_train, t.y_train, args.batch_size, gen)
        bare_eval(bare, t.x_val, t.y_val)
        return rate, len(t.x_train) / (time.perf_counter() - t0)

    print(f"{args.spec}: {len(t.x_train)} training patches, batch {args.batch_size}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    ours()  # warm-up (allocator, kernels) for both, not timed
    theirs()
    a_train, a_full, b_train, b_full = [], [], [], []
    for r in range(args.rounds):
        order = (ours, theirs) if r % 2 == 0 else (theirs, ours)
        for fn in order:
            tr, full = fn()
            (a_train if fn is ours else b_train).append(tr)
            (a_full if fn is ours else b_full).append(full)
        print(f"round {r + 1}: netdsl {a_train[-1]:.0f} / {a_full[-1]:.0f}  bare {b_train[-1]:.0f} / {b_full[-1]:.0f} "
              "samples/s (train phase / full epoch)")
    med = statistics.median
    r_train, r_full = med(a_train) / med(b_train), med(a_full) / med(b_full)
    print(f"median samples/s, train phase: netdsl {med(a_train):.0f}, bare {med(b_train):.0f}, ratio {r_train:.3f}")
    print(f"median samples/s, full epoch:  netdsl {med(a_full):.0f}, bare {med(b_full):.0f}, ratio {r_full:.3f}")
    shutil.rmtree(tmp, ignore_errors=True)
    ok = r_train >= 0.95 and r_full >= 0.95
    print("PASS" if ok else "FAIL", "(target: ratio >= 0.95)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
