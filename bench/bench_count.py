"""Whole-process time of `netdsl count specs/unet.net` against `python -c "import torch"`.

Both run as fresh processes, interleaved round by round so machine noise hits both alike; prints
the medians and their ratio (target <= 0.5), and the time of `count` on a generated 200-layer
spec (target < 2 s). `count` never imports torch: this measures what a user waits for.

    python bench/bench_count.py [--rounds 9] [--spec specs/unet.net]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def deep_spec(blocks: int = 50) -> str:
    """A 4*blocks + 1 layer spec: conv -> batchnorm -> relu -> dropout, repeated."""
    lines = ["net Deep(NIC = 3, NF = 16, k: odd = 3)",
             "input x: [NIC, H = 64, W = 64] where H % 8 == 0, W % 8 == 0",
             "block unit(c) = conv(c, k, padding=k//2) -> batchnorm -> relu -> dropout(0.1)"]
    prev = "x"
    for i in range(blocks):
        lines.append(f"t{i} = {prev} |> unit(NF + {i % 3})")
        prev = f"t{i}"
    lines.append(f"output = {prev} |> conv(NF, 1)")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--spec", default="specs/unet.net")
    args = ap.parse_args()
    py = sys.executable
    count = [py, str(ROOT / "cli.py"), "count", args.spec]
    torch_cmd = [py, "-c", "import torch"]
    # One untimed run each: fills the OS file cache and netdsl's grammar cache.
    _time(count)
    _time(torch_cmd)
    t_count, t_torch = [], []
    for _ in range(args.rounds):
        t_count.append(_time(count))
        t_torch.append(_time(torch_cmd))
    mc, mt = statistics.median(t_count), statistics.median(t_torch)
    print(f"{args.rounds} rounds, medians of fresh processes")
    print(f"{'netdsl count ' + args.spec:<40}{mc:8.3f} s")
    label = 'python -c "import torch"'
    print(f"{label:<40}{mt:8.3f} s")
    print(f"{'ratio (target <= 0.5)':<40}{mc / mt:8.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        deep = Path(tmp) / "deep.net"
        deep.write_text(deep_spec())
        cmd = [py, str(ROOT / "cli.py"), "count", str(deep), "--double-resolution"]
        _time(cmd)
        t_deep = statistics.median(_time(cmd) for _ in range(3))
    print(f"{'netdsl count (201-layer spec, doubled)':<40}{t_deep:8.3f} s   (target < 2 s)")


if __name__ == "__main__":
    main()
