"""Diagnostics latency of `netdsl lsp`: the time from a didChange to its publishDiagnostics.

Drives the server over stdio as an editor does (pygls's client, as tests/editor/test_server.py) on
specs/zoo/resnet50.net: opens it, then makes ROUNDS edits (a statement's channel count changed, so
every analysis is new work, none answered from a cache), each waited for. Prints the median and the
maximum against the 1 s target of issue 24; the debounce delay is included in those figures and
printed apart.

    python bench/bench_lsp.py [--rounds 10] [--spec specs/zoo/resnet50.net]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "editor"))

from lsp_client import started, uri_of  # noqa: E402
from netdsl.editor.server import DEBOUNCE_S  # noqa: E402

TARGET_S = 1.0


async def measure(spec: str, rounds: int) -> list[float]:
    """Seconds from each didChange to the diagnostics of that version."""
    text = (ROOT / spec).read_text()
    if "linear(NCLS)" not in text:
        raise SystemExit(f"{spec}: the edit this bench makes needs a `linear(NCLS)` layer")
    uri = uri_of(spec)
    out = []
    async with started() as client:
        client.open(uri, text)
        await client.published(uri, 1, timeout=60)
        for i in range(rounds):
            version = i + 2
            edited = text.replace("linear(NCLS)", f"linear(NCLS + {i + 1})")
            sent = time.perf_counter()
            client.change(uri, edited, version)
            arrived, diagnostics = await client.published(uri, version, timeout=60)
            errors = [d for d in diagnostics if d.severity == 1]
            if errors:
                raise SystemExit(f"unexpected error after the edit: {errors[0].message}")
            out.append(arrived - sent)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--spec", default="specs/zoo/resnet50.net")
    args = p.parse_args()
    times = asyncio.run(measure(args.spec, args.rounds))
    median, worst = statistics.median(times), max(times)
    print(f"{args.spec}: didChange -> publishDiagnostics over {len(times)} edits")
    print(f"  median {median * 1000:.0f} ms, max {worst * 1000:.0f} ms (target {TARGET_S * 1000:.0f} ms): "
          f"{'met' if worst <= TARGET_S else 'NOT met'}")
    print(f"  of which the debounce delay: {DEBOUNCE_S * 1000:.0f} ms; analysis and transport: "
          f"median {(median - DEBOUNCE_S) * 1000:.0f} ms, max {(worst - DEBOUNCE_S) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
