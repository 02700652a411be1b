"""Training-step time of each compiled seed spec against the write-up's hand-written class.

Forward + backward + Adam step, batch 100, 32x32, interleaved round by round so machine noise
hits both sides alike; prints the median per-step times and their ratio (target <= 1.02).

    python bench/bench_build.py [--rounds 15] [--steps 5] [--compile]

`--compile` also runs both through torch.compile (slow to warm up on CPU) and checks the
compiled module's output against eager mode.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import netdsl  # noqa: E402
from netdsl.weights import load_in_order  # noqa: E402
from seed_models import SEED  # noqa: E402


def _stepper(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return step


def _time(step, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(100, 1, 32, 32)
    y = torch.randint(0, 24, (100, 32, 32))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.rounds} rounds x {args.steps} steps")
    print(f"{'network':<18}{'hand-written ms':>16}{'netdsl ms':>12}{'ratio':>8}")
    worst = 0.0
    for name, cls in SEED.items():
        ref = cls()
        ours = netdsl.build(ROOT / "specs" / f"{name}.net")
        load_in_order(ours, ref.state_dict())
        steps = {"ref": _stepper(ref, x, y), "ours": _stepper(ours, x, y)}
        for s in steps.values():  # warm-up
            _time(s, 2)
        times: dict[str, list[float]] = {"ref": [], "ours": []}
        for r in range(args.rounds):
            order = ("ref", "ours") if r % 2 == 0 else ("ours", "ref")
            for k in order:
                times[k].append(_time(steps[k], args.steps))
        a, b = statistics.median(times["ref"]), statistics.median(times["ours"])
        worst = max(worst, b / a)
        print(f"{cls.__name__:<18}{a * 1e3:>16.2f}{b * 1e3:>12.2f}{b / a:>8.3f}")
        if args.compile:
            ours.eval()
            ref.eval()
            eager = ours(x)
            compiled = torch.compile(ours)
            t0 = time.perf_counter()
            out = compiled(x)
            warm = time.perf_counter() - t0
            ok = torch.allclose(out, eager, atol=1e-5)
            print(f"  torch.compile: warm-up {warm:.1f} s, output matches eager: {ok}")
            if not ok:
                raise SystemExit("torch.compile output differs from eager mode")
    print(f"worst ratio {worst:.3f} (target <= 1.02)")


if __name__ == "__main__":
    main()
