"""`netdsl train`'s loop against the course's own loop (CSC413 2022 a2-code.ipynb `train()`).

The course loop is re-implemented from its description (the notebook is not copied): the data are
numpy arrays shuffled once, each batch is sliced from them and turned into tensors with
`torch.from_numpy(...).float()` / `.long()`, the loss goes through
`outputs.transpose(1, 3).contiguous().view(-1, K)` into `nn.CrossEntropyLoss`, `loss.data.item()`
is taken every step, Adam at lr 0.001. Its validation is the notebook's `run_validation_step`:
eval mode, batches of the training batch size, loss and accuracy read back per batch, no
`torch.no_grad()`.

netdsl's side is its real code path: `netdsl.tasks.colourize.loop.Trainer` (what `netdsl train` runs), in
several configurations (`Hyper` fields): `pre-issue` (the loop before its speed levers: contiguous
layout, Adam's for-loop step), `default` (channels_last, fused Adam, inference-mode
validation, and `--precision auto`'s choice for this CPU: bf16 with AVX-512 BF16 or AMX, else
fp32), `bf16` (`--precision bf16`), `compile` (`--compile`) and `bf16+compile`. All train
the same compiled model from the same initial weights on the same data and batch size, one
epoch each in turn (the order rotates every round), so machine noise hits all alike.

Reported per network and configuration:
- samples/s of the training phase, median over rounds, and from the 20th percentile and the
  minimum of the per-step times (estimates of the unloaded speed on a shared machine), each as a
  ratio to the course loop measured side by side; on an idle machine the three agree;
- full-epoch samples/s (training plus validation);
- achieved FLOP/s = samples/s x 3 x forward MACs x 2 (MACs per sample from `netdsl.api.count`,
  exact), as a fraction of the machine's fp32 (or bf16) `torch.mm` peak measured here;
- for `--compile`: the compile time (first step) and after how many epochs it has paid for itself.

`--quality E` then trains UNet (or each of `--quality-spec a,b,c`) for E epochs per seed in
`--quality-seeds` with the course loop, `fp32` (`--precision fp32`) and `bf16` (and any
`--quality-configs`), and prints each final validation loss and accuracy, their means and
standard deviations over seeds, and each mean's distance from fp32's in fp32's standard
deviations: a configuration's results are unchanged when that lies within about one.

The ResNet-18 of the zoo cannot be trained on colourization (its head is a classifier: a vector
of NCLS scores, not a score map): it runs as a 24-way classifier at 32x32 on the embedded
patches' RGB pixels, its label the palette colour nearest the patch's mean colour, through the
same `Trainer` (whose loss and accuracy work on `[N, K]` scores too); the course loop for it
skips the transpose (there are no pixels to flatten).

    python bench/bench_course.py                          # all four networks, no compile
    python bench/bench_course.py --specs unet --configs default,bf16,compile,bf16+compile
    python bench/bench_course.py --specs unet --rounds 0 --quality 10 --quality-seeds 0,1,2
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netdsl  # noqa: E402
from netdsl import api  # noqa: E402
from netdsl.tasks.colourize import palette as pal  # noqa: E402
from netdsl.tasks.colourize.data import DataSpec, Tensors, load_data, to_tensors  # noqa: E402
from netdsl.tasks.colourize.loop import Hyper, Trainer  # noqa: E402
from netdsl.tasks.precision import resolve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPECS = {"pool_upsample": ("specs/pool_upsample.net", {}), "conv_transpose": ("specs/conv_transpose.net", {}),
         "unet": ("specs/unet.net", {}), "resnet18": ("specs/zoo/resnet18.net", {"H": 32, "W": 32, "NCLS": 24})}
CONFIGS = {
    "pre-issue": dict(channels_last=False, fused=False),
    # what `netdsl train` does by default here: --precision auto (bf16 only where the CPU runs it natively)
    "default": dict(precision=resolve("auto", "cpu").used),
    "fp32": dict(precision="fp32"),
    "bf16": dict(precision="bf16"),
    "compile": dict(compile=True),
    "bf16+compile": dict(precision="bf16", compile=True),
}


# --- the machine's peak ----------------------------------------------------------------------
def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best FLOP/s of a large square torch.mm (2 n^3 per product)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(3):
            torch.mm(a, b)
        best = max(best, 3 * 2 * n ** 3 / (time.perf_counter() - t0))
    return best


# --- the course's loop -----------------------------------------------------------------------
class CourseLoop:
    """a2-code.ipynb's `train()` epoch and `run_validation_step`, from their description."""

    def __init__(self, model: nn.Module, t: Tensors, bs: int, seed: int, classify: bool) -> None:
        self.model, self.bs, self.classify = model, bs, classify
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
        rng = np.random.RandomState(seed)
        perm = rng.permutation(len(t.x_train))  # shuffled once, as the course does
        # numpy arrays, as the notebook holds them: greyscale as float64 (np.mean's type), labels int
        self.x_train = t.x_train.numpy().astype(np.float64)[perm]
        self.y_train = t.y_train.numpy()[perm]
        self.x_val, self.y_val = t.x_val.numpy().astype(np.float64), t.y_val.numpy()
        if not classify:  # the course keeps a channel axis on the labels: [N, 1, 32, 32]
            self.y_train, self.y_val = self.y_train[:, None], self.y_val[:, None]
        self.num_colours = 0

    def compute_loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.classify:
            return self.criterion(outputs, labels)
        k = outputs.shape[1]
        loss_out = outputs.transpose(1, 3).contiguous().view(-1, k)
        loss_lab = labels.transpose(1, 3).contiguous().view(-1)
        return self.criterion(loss_out, loss_lab)

    def batches(self, x: np.ndarray, y: np.ndarray):  # type: ignore[no-untyped-def]
        for i in range(0, len(x), self.bs):
            yield x[i:i + self.bs], y[i:i + self.bs]

    def train_epoch(self, on_batch: Callable[[int], None] | None = None) -> tuple[float, float]:
        self.model.train()
        losses = []
        t0 = time.perf_counter()
        for i, (xs, ys) in enumerate(self.batches(self.x_train, self.y_train)):
            images, labels = torch.from_numpy(xs).float(), torch.from_numpy(ys).long()
            self.optimizer.zero_grad()
            outputs = self.model(images)
            loss = self.compute_loss(outputs, labels)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.data.item())
            if on_batch is not None:
                on_batch(i)
        return float(np.mean(losses)), len(self.x_train) / (time.perf_counter() - t0)

    def evaluate(self) -> tuple[float, float]:
        self.model.eval()
        losses, correct, total = [], 0, 0
        for xs, ys in self.batches(self.x_val, self.y_val):
            images, labels = torch.from_numpy(xs).float(), torch.from_numpy(ys).long()
            outputs = self.model(images)
            val_loss = self.compute_loss(outputs, labels)
            losses.append(val_loss.data.item())
            _, predicted = torch.max(outputs.data, 1, keepdim=not self.classify)
            total += labels.numel()
            correct += (predicted == labels.data).sum().item()
        return float(np.mean(losses)), correct / total


# --- netdsl's loop ---------------------------------------------------------------------------
class Ours:
    def __init__(self, model: nn.Module, t: Tensors, bs: int, seed: int, levers: dict[str, Any]) -> None:
        self.trainer = Trainer(model, t, replace(Hyper(batch_size=bs, seed=seed), **levers))

    def train_epoch(self, on_batch: Callable[[int], None] | None = None) -> tuple[float, float]:
        return self.trainer.train_epoch(on_batch)

    def evaluate(self) -> tuple[float, float]:
        return self.trainer.evaluate()


# --- data ------------------------------------------------------------------------------------
def colour_tensors(max_train: int | None) -> tuple[Tensors, Any]:
    data = load_data(DataSpec(max_train=max_train, patches="fixed"))  # the course trained on a fixed set
    return to_tensors(data), data


def classify_tensors(data: Any) -> Tensors:
    """RGB patches, labelled with the palette colour nearest each patch's mean colour."""
    def part(rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2).astype(np.float32) / pal.MAX_PIXEL))
        mean = rgb.reshape(len(rgb), -1, 3).mean(1, keepdims=True)[:, :, None, :].astype(np.uint8)  # [N,1,1,3]
        y = torch.from_numpy(pal.labels(mean, data.palette).reshape(-1))
        return x, y

    xt, yt = part(data.train_rgb)
    xv, yv = part(data.val_rgb)
    return Tensors(xt, yt, xv, yv)


# --- measurement -----------------------------------------------------------------------------
def timed_epoch(loop: Any, n: int, bs: int) -> tuple[float, list[float], float]:
    """(train samples/s, per-step seconds, full-epoch samples/s incl. validation)."""
    stamps: list[float] = []
    t0 = time.perf_counter()
    stamps.append(t0)
    _, _ = loop.train_epoch(lambda _i: stamps.append(time.perf_counter()))
    t1 = time.perf_counter()
    loop.evaluate()
    t2 = time.perf_counter()
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    return n / (t1 - t0), steps, n / (t2 - t0)


def bench_network(name: str, args: argparse.Namespace, peaks: dict[str, float], colour: Tensors, data: Any) -> list[str]:
    spec, params = SPECS[name]
    classify = name == "resnet18"
    t = classify_tensors(data) if classify else colour
    counted = api.count(str(ROOT / spec), **params)
    macs = int(counted.value(counted.total("macs")))
    flops_per_sample = 3 * macs * 2
    torch.manual_seed(0)
    base = netdsl.build(str(ROOT / spec), **params)
    n, bs = len(t.x_train), args.batch_size
    loops: dict[str, Any] = {"course": CourseLoop(copy.deepcopy(base), t, bs, 0, classify)}
    for c in args.configs:
        loops[c] = Ours(copy.deepcopy(base), t, bs, 0, CONFIGS[c])
    print(f"\n## {name}: {spec} {params or ''}, {macs:,} forward MACs per sample "
          f"({flops_per_sample / 1e6:.1f} MFLOP per training sample), {n} training samples, batch {bs}", flush=True)
    warm: dict[str, float] = {}
    steady_first: dict[str, float] = {}
    for k, loop in loops.items():  # warm-up epoch (allocator, oneDNN kernels, the compile): not timed
        t0 = time.perf_counter()
        loop.train_epoch()
        warm[k] = time.perf_counter() - t0
        ct = getattr(getattr(loop, "trainer", None), "compile_seconds", None)
        if ct is not None:
            steady_first[k] = ct
        print(f"  warm-up epoch {k}: {warm[k]:.1f} s" + (f" (first, compiling step {ct:.1f} s)" if ct else ""), flush=True)
    rate: dict[str, list[float]] = {k: [] for k in loops}
    full: dict[str, list[float]] = {k: [] for k in loops}
    steps: dict[str, list[float]] = {k: [] for k in loops}
    keys = list(loops)
    for r in range(args.rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            tr, st, fu = timed_epoch(loops[k], n, bs)
            rate[k].append(tr)
            full[k].append(fu)
            steps[k] += st
        print(f"  round {r + 1}: " + "  ".join(f"{k} {rate[k][-1]:.0f}" for k in keys) + " samples/s", flush=True)
    if not args.rounds:
        return []
    med = statistics.median
    p20 = {k: bs / sorted(v)[len(v) // 5] for k, v in steps.items()}
    best = {k: bs / min(v) for k, v in steps.items()}
    c_med, c_p20, c_full, c_best = med(rate["course"]), p20["course"], med(full["course"]), best["course"]
    lines = ["| network | loop | train samples/s (median) | ratio | samples/s (p20 step) | ratio | samples/s (best step) "
             "| ratio | full epoch samples/s | ratio | GFLOP/s (median) | of fp32 peak | of bf16 peak | GFLOP/s (best step) "
             "| of fp32 peak | of bf16 peak |", "|---|---|" + "---:|" * 14]
    for k in keys:
        m, p, f, b = med(rate[k]), p20[k], med(full[k]), best[k]
        gf, gb = m * flops_per_sample, b * flops_per_sample
        lines.append(f"| {name} | {k} | {m:.0f} | {m / c_med:.2f} | {p:.0f} | {p / c_p20:.2f} | {b:.0f} | {b / c_best:.2f} "
                     f"| {f:.0f} | {f / c_full:.2f} | {gf / 1e9:.1f} | {gf / peaks['fp32']:.1%} | {gf / peaks['bf16']:.1%} "
                     f"| {gb / 1e9:.1f} | {gb / peaks['fp32']:.1%} | {gb / peaks['bf16']:.1%} |")
    for k, ct in steady_first.items():
        plain = "default" if "bf16" not in k else "bf16"
        if plain in rate:
            per_epoch_saved = n / med(rate[plain]) - n / med(rate[k])
            pays = f"pays for itself after {ct / per_epoch_saved:.1f} epochs" if per_epoch_saved > 0 else "never pays for itself"
            lines.append(f"\n{name} {k}: compile (first step) {ct:.1f} s; saves {per_epoch_saved:.2f} s per epoch "
                         f"against {plain}: {pays}")
    print("\n" + "\n".join(lines), flush=True)
    return lines


QUALITY_LOOPS = ("course", "fp32", "bf16")


def quality(args: argparse.Namespace, colour: Tensors) -> None:
    """Per network of `--quality-spec`: each loop's final validation loss and accuracy per seed,
    the mean and standard deviation over seeds, and each loop's mean against fp32's as a
    multiple of the seed-to-seed standard deviation."""
    kinds = [*QUALITY_LOOPS, *(c for c in args.quality_configs if c not in QUALITY_LOOPS)]
    for name in args.quality_spec.split(","):
        spec, params = SPECS[name]
        print(f"\n## after {args.quality} epochs: {spec}, seeds {args.quality_seeds}", flush=True)
        finals: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        for seed in args.quality_seeds:
            for k in kinds:
                torch.manual_seed(seed)
                model = netdsl.build(str(ROOT / spec), **params)
                loop = CourseLoop(model, colour, args.batch_size, seed, False) if k == "course" else \
                    Ours(model, colour, args.batch_size, seed, CONFIGS[k])
                t0 = time.perf_counter()
                for _ in range(args.quality):
                    loop.train_epoch()
                vl, va = loop.evaluate()
                finals[k].append((vl, 100 * va))
                print(f"  seed {seed} {k}: val loss {vl:.4f}, acc {100 * va:.2f}% ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
        print(f"\n{name}, {args.quality} epochs: | loop | " + " | ".join(f"seed {s}" for s in args.quality_seeds)
              + " | mean | std over seeds | mean - fp32's, in fp32's stds |")
        print("|---|" + "---:|" * (len(args.quality_seeds) + 3))
        for what, i, fmt in (("val loss", 0, ".4f"), ("val acc %", 1, ".2f")):
            ref = [v[i] for v in finals["fp32"]]
            ref_sd = statistics.stdev(ref) if len(ref) > 1 else float("nan")
            for k, vs in finals.items():
                v = [x[i] for x in vs]
                sd = statistics.stdev(v) if len(v) > 1 else float("nan")
                shift = (statistics.fmean(v) - statistics.fmean(ref)) / ref_sd if ref_sd else float("nan")
                print(f"| {k} {what} | " + " | ".join(f"{x:{fmt}}" for x in v)
                      + f" | {statistics.fmean(v):{fmt}} | {sd:{fmt}} | {shift:+.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", default="pool_upsample,conv_transpose,unet,resnet18")
    ap.add_argument("--configs", default="pre-issue,default,bf16",
                    help=f"netdsl configurations among {', '.join(CONFIGS)} (compile ones take minutes to compile)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--quality", type=int, default=0, metavar="EPOCHS")
    ap.add_argument("--quality-spec", default="unet", help="networks for --quality, comma-separated")
    ap.add_argument("--quality-seeds", default="0,1,2")
    ap.add_argument("--quality-configs", default="", help="extra configurations for --quality (e.g. compile)")
    args = ap.parse_args()
    args.configs = [c for c in args.configs.split(",") if c]
    args.quality_seeds = [int(s) for s in args.quality_seeds.split(",")]
    args.quality_configs = [c for c in args.quality_configs.split(",") if c]
    for c in args.configs + args.quality_configs:
        if c not in CONFIGS:
            ap.error(f"unknown configuration {c}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"torch.mm 2048x2048 peak: fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")
    colour, data = colour_tensors(args.max_train)
    tables: list[str] = []
    if args.rounds:
        for i, name in enumerate(args.specs.split(",")):
            if i:  # the peak, measured again: the highest seen is the machine's (load only lowers it)
                peaks = {k: max(v, matmul_peak(torch.float32 if k == "fp32" else torch.bfloat16)) for k, v in peaks.items()}
            tables += bench_network(name, args, peaks, colour, data) + [""]
        again = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
        print(f"\ntorch.mm peak again after the runs: fp32 {again['fp32'] / 1e9:.1f}, bf16 {again['bf16'] / 1e9:.1f} GFLOP/s "
              "(fractions above use the highest measured before each network)")
        print("\n# all networks\n\n" + "\n".join(t for t in tables if t.startswith("|") or t.startswith("\n") or not t))
    if args.quality:
        q, _ = colour_tensors(None)
        quality(args, q)
    return 0


if __name__ == "__main__":
    sys.exit(main())
