"""What the memory metrics and receptive fields cost `netdsl count`: whole-process time without
and with them, side by side in one run, and the ratio (target <= 1.5 for ResNet-50; other specs
given are shown, not judged).

Each variant is a fresh process that imports netdsl, builds the report of `count --json` with
`count_report(..., analysis=False)` (the report before the memory metrics and receptive fields)
or `analysis=True` (what `netdsl count` builds now), and writes it out; the variants run
interleaved round by round, so machine noise hits both alike, and the medians are compared.
Also times `netdsl count SPEC` itself (text, the console script) for reference.

netdsl's bytecode is compiled first, as `pip install` does (see bench_count.py).

    python bench/count_analysis.py [--rounds 5] [SPEC ...]
"""
from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5
TARGET_SPEC = "specs/zoo/resnet50.net"  # the spec the target is set for; other specs are shown
REPORT = ("import json, sys\n"
          "from netdsl.api import load\n"
          "from netdsl.commands.count import count_report\n"
          "text, path = load(sys.argv[1])\n"
          "report, _, _ = count_report(text, path, {}, analysis=sys.argv[2] == 'with')\n"
          "sys.stdout.write(json.dumps(report, indent=2))\n")
CLI = "import sys\nfrom netdsl.cli import run\nsys.argv[0] = 'netdsl'\nrun()\n"  # the console script's entry


def _time(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode not in (0, 1):  # 1: a claim fails, still a full count
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return time.perf_counter() - t


def measure(spec: str, rounds: int) -> dict[str, float]:
    """Median seconds of each variant over `rounds` interleaved rounds."""
    cmds = {"without": [sys.executable, "-c", REPORT, spec, "without"],
            "with": [sys.executable, "-c", REPORT, spec, "with"],
            "netdsl count (text)": [sys.executable, "-c", CLI, "count", spec]}
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(rounds):
        for k, cmd in cmds.items():
            times[k].append(_time(cmd))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="*", default=["specs/zoo/resnet50.net"])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    compileall.compile_dir(str(ROOT / "netdsl"), quiet=1)
    print("| spec | count --json without (s) | with (s) | ratio | netdsl count, text (s) |")
    print("|---|---|---|---|---|")
    target = None
    for spec in args.specs:
        t = measure(spec, args.rounds)
        ratio = t["with"] / t["without"]
        target = ratio if spec == TARGET_SPEC else target
        print(f"| {spec} | {t['without']:.2f} | {t['with']:.2f} | {ratio:.2f} | {t['netdsl count (text)']:.2f} |")
    if target is None:
        return 0
    print(f"\n{TARGET_SPEC}: ratio {target:.2f} (target <= {TARGET})")
    return 0 if target <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
