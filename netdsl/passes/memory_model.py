"""What the memory metrics are measured in: the batch symbol, the dtypes and the optimizers.

Shared by the memory passes (`passes.saved`, `passes.peak`, `passes.train_memory`), `count`,
`fit` and `diff`. Per-layer counts are per sample; the memory metrics are in a batch symbol `N`
as well, because some of what autograd saves does not grow with the batch (BatchNorm's
per-channel statistics), so bytes are not "per sample times N".
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import sympy as sp

from netdsl.errors import NetdslError, Span
from netdsl.passes.symbols import SymEnv

Dtype = Literal["fp32", "bf16", "fp16"]
Optimizer = Literal["adam", "sgd", "sgd-momentum", "none"]
DTYPES: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2}  # bytes per value
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "sgd-momentum", "none")
BATCH_NAMES = ("N", "batch", "batch_size")


def batch_name(used: Iterable[str], span: Span | None = None) -> str:
    """The batch size's name: `N`, or the first of `batch`, `batch_size` not in `used` (the names of
    the spec, or of both specs of a diff: a spec may call a parameter N)."""
    taken = set(used)
    name = next((n for n in BATCH_NAMES if n not in taken), None)
    if name is None:
        raise NetdslError(f"the spec(s) use every name the batch could have ({', '.join(BATCH_NAMES)})",
                          span, "rename one of those parameters")
    return name


def batch_symbol(env: SymEnv) -> sp.Symbol:
    """The batch size's symbol, named by `batch_name` from the spec's own symbols."""
    return sp.Symbol(batch_name(env.symbols, env.graph.span), integer=True, positive=True)


@dataclass(frozen=True)
class MemoryOptions:
    """How the memory metrics are taken: the autocast dtype and the optimizer whose state counts."""

    dtype: Dtype = "fp32"
    optimizer: Optimizer = "adam"


def human_bytes(n: int, unit: str = "") -> str:
    """`73,355,264 (69.96 MiB)`: the exact count and a binary-prefixed size past a KiB; `unit` follows
    the count (`count`'s table has a bytes column; the editor's hover says " bytes").

    >>> human_bytes(73_355_264), human_bytes(512), human_bytes(69_632, " bytes")
    ('73,355,264 (69.96 MiB)', '512', '69,632 bytes (68.00 KiB)')
    """
    for prefix, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n:,}{unit} ({n / size:,.2f} {prefix})"
    return f"{n:,}{unit}"
