"""Whole-process time of `netdsl count` against `python -c "import torch"`, and its growth.

Each command runs as a fresh process, interleaved round by round so machine noise hits all alike;
prints the medians and their ratios: `count specs/unet.net` (target <= 0.5) and
`count specs/zoo/resnet50.net` (target <= 1.0: counting ResNet-50 symbolically costs less than
importing torch). Then the time of `count` on generated specs of 100, 400 and 1600 layers, and
the growth from each to the next (4x the layers: close to 4x the time is linear), and a
201-layer spec with --double-resolution (target < 2 s). `count` never imports torch: this
measures what a user waits for.

netdsl's bytecode is compiled first, as `pip install` does for an installed package and as
torch's is: a checkout run with PYTHONDONTWRITEBYTECODE (these machines set it) would otherwise
compile netdsl's modules from source in every process (~0.1 s) while torch's come compiled.

    python bench/bench_count.py [--rounds 9]
"""
from __future__ import annotations

import argparse
import compileall
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


def _medians(cmds: dict[str, list[str]], rounds: int) -> dict[str, float]:
    for cmd in cmds.values():  # one untimed run each: fills the OS file cache
        _time(cmd)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(rounds):
        for k, cmd in cmds.items():
            times[k].append(_time(cmd))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    compileall.compile_dir(str(ROOT / "netdsl"), quiet=1)
    py = sys.executable
    count = [py, str(ROOT / "cli.py"), "count"]
    m = _medians({"unet": [*count, "specs/unet.net"], "resnet50": [*count, "specs/zoo/resnet50.net"],
                  "torch": [py, "-c", "import torch"]}, args.rounds)
    print(f"{args.rounds} rounds, medians of fresh processes")
    for key, label in (("unet", "netdsl count specs/unet.net"), ("resnet50", "netdsl count specs/zoo/resnet50.net"),
                       ("torch", 'python -c "import torch"')):
        print(f"{label:<44}{m[key]:8.3f} s")
    print(f"{'ratio unet / torch (target <= 0.5)':<44}{m['unet'] / m['torch']:8.2f}")
    print(f"{'ratio resnet50 / torch (target <= 1.0)':<44}{m['resnet50'] / m['torch']:8.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        cmds = {}
        for layers in (100, 400, 1600):
            path = Path(tmp) / f"deep{layers}.net"
            path.write_text(deep_spec((layers - 1) // 4))
            cmds[layers] = [*count, str(path)]
        deep = Path(tmp) / "deep201.net"
        deep.write_text(deep_spec())
        cmds["doubled"] = [*count, str(deep), "--double-resolution"]
        g = _medians(cmds, max(3, args.rounds // 3))
    prev = None
    for layers in (100, 400, 1600):
        growth = f"   x{g[layers] / g[prev]:.2f} for x4 layers" if prev else ""
        print(f"{f'netdsl count, {layers}-layer spec':<44}{g[layers]:8.3f} s{growth}")
        prev = layers
    print(f"{'netdsl count (201-layer spec, doubled)':<44}{g['doubled']:8.3f} s   (target < 2 s)")


if __name__ == "__main__":
    main()
