"""Run many fuzz cases against the front end and report how many escaped as non-netdsl errors.

    python bench/fuzz.py [--cases 100000] [--seed 0] [--build]

Cases are the mutators of tests/test_fuzz.py applied to the shipped specs (plus random bytes).
By default each case goes through parse, lowering and symbolic shapes (no torch); `--build`
also compiles and runs the small ones, as the test suite does.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import netdsl  # noqa: E402
from netdsl.errors import NetdslError  # noqa: E402
from test_fuzz import SHIPPED, check_one, mutate  # noqa: E402


def shapes_only(text: str) -> str:
    try:
        netdsl.shapes(text + "\n")  # the newline: always spec text, never a file name
    except NetdslError as e:
        assert e.span is not None, f"error without a position: {e.message!r}"
        return "error"
    return "ok"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build", action="store_true", help="also compile and run what fits")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    run = check_one if args.build else shapes_only
    counts = {"ok": 0, "error": 0, "escaped": 0}
    slowest = (0.0, "")
    start = time.perf_counter()
    for i in range(args.cases):
        if i % 10 == 9:
            text = bytes(rng.randrange(256) for _ in range(rng.randrange(200))).decode("utf-8", "replace")
        else:
            text = mutate(rng.choice(SHIPPED), rng, rng.randrange(1, 5))
        t = time.perf_counter()
        try:
            counts[run(text)] += 1
        except Exception:  # noqa: BLE001 - counting escapes is the point
            counts["escaped"] += 1
            if counts["escaped"] <= 5:
                print(f"--- escaped (case {i}) ---\n{text[:500]!r}\n{traceback.format_exc(limit=3)}")
        dt = time.perf_counter() - t
        if dt > slowest[0]:
            slowest = (dt, text[:200])
    total = time.perf_counter() - start
    print(f"cases {args.cases}: ok {counts['ok']}, netdsl errors {counts['error']}, escaped {counts['escaped']} "
          f"(target 0); {total:.1f} s, {args.cases / total:.0f} cases/s; slowest case {slowest[0] * 1e3:.0f} ms")
    print(f"slowest case (first 200 characters): {slowest[1]!r}")
    return 1 if counts["escaped"] else 0


if __name__ == "__main__":
    sys.exit(main())
