"""Time `netdsl import` of generated darknet cfgs of many sections (it was once quadratic in the number of sections).

    python bench/bench_import_cfg.py                 # 5k, 10k, 20k [convolutional] sections, and a
                                                     # 994 KB file of bare [conv] sections
    python bench/bench_import_cfg.py 1000 2000       # other section counts

Each cfg is timed twice: the importer's own work (reading the cfg, finding residual units, writing
the spec) and the whole import, which then checks the spec with netdsl's passes. netdsl builds at
most 10,000 layers, so the larger cfgs end in a refusal: what is timed is how long that takes.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable

from netdsl.errors import NetdslError
from netdsl.importers import import_text, spec_writer
from netdsl.passes import lower

NET = "[net]\nwidth=32\nheight=32\nchannels=3\n"
# conv, batchnorm, sigmoid (darknet's default activation): three netdsl layers.
CONV = "[convolutional]\nbatch_normalize=1\nfilters=4\n"


def timed(run: Callable[[], object]) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        run()
        end = "written"
    except NetdslError as err:
        end = "refused: " + err.message[:60]
    return time.perf_counter() - start, end


def importer_only(text: str) -> object:
    """The import without netdsl's check of the written spec (Writer.finish renders only) and without
    its early refusal of networks over netdsl's layer limit: all of the importer's own work."""
    finish, limit = spec_writer.Writer.finish, lower.MAX_LAYERS
    spec_writer.Writer.finish = lambda self: self.render()[0]  # type: ignore[method-assign]
    lower.MAX_LAYERS = 10**9
    try:
        return import_text(text, "big.cfg", "cfg")
    finally:
        spec_writer.Writer.finish, lower.MAX_LAYERS = finish, limit  # type: ignore[method-assign]


def report(label: str, text: str) -> None:
    own, own_end = timed(lambda: importer_only(text))
    whole, end = timed(lambda: import_text(text, "big.cfg", "cfg"))
    print(f"{label:<34} {len(text) / 1000:5.0f} KB  importer {own:7.2f} s ({own_end[:8]})  "
          f"whole import {whole:7.2f} s  {end}", flush=True)


def main(argv: list[str]) -> None:
    for n in [int(a) for a in argv] or [5000, 10000, 20000]:
        report(f"{n} [convolutional] sections", NET + CONV * n)
    if not argv:
        bare = (994_000 - len(NET)) // len("[conv]\n")
        report(f"{bare} bare [conv] sections", NET + "[conv]\n" * bare)


if __name__ == "__main__":
    main(sys.argv[1:])
