"""Run many fuzz cases against the front end and report how many escaped as non-netdsl errors.

    python bench/fuzz.py [--cases 100000] [--seed 0] [--build] [--limit 10] [--show 5] [--save DIR]
                         [--replay DIR] [--max-memory-gb 6] [--corpus specs|import]

Cases are `tests/robustness/test_fuzz.py`'s `fuzz_case`: the mutators of tests/robustness/test_fuzz.py applied to the seed
specs, the zoo and the core v2 and v3 corpus, generated structures (deep block chains, floor-form
annotations, repetition counts) and random bytes. By default each case goes through parse,
lowering and symbolic shapes (no torch); `--build` also compiles and runs the small ones, as the
test suite does. A case still running after `--limit` seconds is stopped and counted as an
escape (a hang). Escapes are counted all the same, and grouped: the known ones (reported, pinned
by xfail tests in tests/robustness/test_fuzz.py) by name, the others by exception type and innermost netdsl
frame.

`--corpus import` fuzzes `netdsl import` instead: mutated darknet .cfg and Ultralytics YAML files
(`tests/importers/test_import.py`'s `import_fuzz_case`: small files written there, and the reference files of
../shared/reference when present), each ending in a spec netdsl accepts or a NetdslError located
in the imported file; `--build` also compiles the accepted ones at 64x64 and compares parameters.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
# The test modules import each other across tests/<folder>/, as tests/conftest.py arranges for pytest.
sys.path[1:1] = [str(d) for d in sorted((ROOT / "tests").iterdir()) if d.is_dir() and any(d.glob("test_*.py"))]

from test_fuzz import Hang, check_one, fuzz_case, known_escape, shapes_only, time_limit  # noqa: E402

SUFFIXES = {"specs": ("net",), "import": ("cfg", "yaml")}


def import_cases(build: bool):  # type: ignore[no-untyped-def]
    """(make a case, run a case) for `--corpus import`; a case is (text, format)."""
    from test_import import import_check, import_fuzz_case

    return import_fuzz_case, lambda case: import_check(case[0], case[1], build=build)


def where(e: BaseException) -> str:
    """The innermost frame inside the netdsl package, as file:line (function)."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/netdsl/" in f.filename.replace("\\", "/")]
    if not frames:
        return "(outside netdsl)"
    f = frames[-1]
    return f"{f.filename.replace(chr(92), '/').split('/netdsl/', 1)[1]}:{f.lineno} ({f.name})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build", action="store_true", help="also compile and run what fits")
    ap.add_argument("--limit", type=float, default=10.0, help="seconds before a case counts as a hang")
    ap.add_argument("--show", type=int, default=5, help="print the first N escapes of each kind")
    ap.add_argument("--save", type=Path, help="write every escaping case to DIR/escape-<case>.net")
    ap.add_argument("--replay", type=Path, help="run the cases saved in DIR by --save instead of new ones")
    ap.add_argument("--corpus", choices=sorted(SUFFIXES), default="specs",
                    help="specs: .net files (the default); import: darknet .cfg and Ultralytics YAML for netdsl import")
    ap.add_argument("--max-memory-gb", type=float, default=6.0,
                    help="address-space limit of this process (so a runaway case is a MemoryError, not the OOM killer)")
    args = ap.parse_args()
    if args.max_memory_gb > 0:
        import resource

        limit = int(args.max_memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    rng = random.Random(args.seed)
    if args.corpus == "import":
        make, run = import_cases(args.build)
    else:
        make, run = fuzz_case, (check_one if args.build else shapes_only)
    counts = {"ok": 0, "error": 0, "escaped": 0}
    kinds: Counter[str] = Counter()
    slowest = (0.0, "", -1)
    suffixes = SUFFIXES[args.corpus]
    saved = sorted(p for s in suffixes for p in args.replay.glob(f"*.{s}")) if args.replay else []
    if args.replay:
        args.cases = len(saved)
    start = time.perf_counter()
    for i in range(args.cases):
        if saved:
            print(f"{saved[i].name}: ", end="", flush=True)
            text = saved[i].read_text(encoding="utf-8", errors="surrogatepass")
            case = (text, saved[i].suffix[1:]) if args.corpus == "import" else text
        else:
            case = make(rng)
            text = case[0] if args.corpus == "import" else case
        t = time.perf_counter()
        try:
            with time_limit(args.limit):
                outcome = run(case)
            counts[outcome] += 1
        except (Exception, Hang) as e:  # noqa: BLE001 - counting escapes is the point
            counts["escaped"] += 1
            # Known (reported, pinned in tests/robustness/test_fuzz.py) escapes by name; others by where they happen.
            known = known_escape(e)
            outcome = f"known escape '{known}'" if known else f"{type(e).__name__} at {where(e)}"
            kinds[outcome] += 1
            if kinds[outcome] <= args.show:
                print(f"--- escaped (case {i}): {outcome} ---\n{text[:600]!r}\n"
                      f"{''.join(traceback.format_exception(e, limit=-4))}", flush=True)
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                suffix = case[1] if args.corpus == "import" else "net"
                (args.save / f"escape-{i}.{suffix}").write_text(text, encoding="utf-8", errors="surrogatepass")
        dt = time.perf_counter() - t
        if saved:
            print(f"{dt * 1e3:.0f} ms, {outcome}", flush=True)
        if dt > slowest[0] and outcome in counts:  # the slowest case that did not escape
            slowest = (dt, text, i)
        if (i + 1) % 10_000 == 0:
            print(f"... {i + 1} cases, {counts}, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - start
    print(f"cases {args.cases} (corpus {args.corpus}, seed {args.seed}{', --build' if args.build else ''}): "
          f"ok {counts['ok']}, "
          f"netdsl errors {counts['error']}, escaped {counts['escaped']} (target 0); {total:.1f} s, "
          f"{args.cases / total:.0f} cases/s; slowest case that did not escape {slowest[0] * 1e3:.0f} ms "
          f"(case {slowest[2]})")
    for kind, n in kinds.most_common():
        print(f"  {n:6d} x {kind}")
    print(f"slowest case (first 300 characters): {slowest[1][:300]!r}")
    return 1 if counts["escaped"] else 0


if __name__ == "__main__":
    sys.exit(main())
