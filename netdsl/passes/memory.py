"""Memory limits, checked from the exact counts before torch allocates anything.

The limit's default lives in `netdsl.limits` with netdsl's other limits; this pass needs SymPy (the
counts), so the top layer imports it when a check runs, which keeps `import netdsl` without it.
"""
from __future__ import annotations

from dataclasses import dataclass

from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError
from netdsl.limits import BYTES_PER_VALUE, DEFAULT_MAX_BYTES
from netdsl.ops import Category
from netdsl.passes.counts import count_layers

__all__ = ["BYTES_PER_VALUE", "DEFAULT_MAX_BYTES", "MemoryEstimate", "check_memory"]


@dataclass(frozen=True)
class MemoryEstimate:
    parameter_bytes: int   # parameters and buffers
    activation_bytes: int  # every layer's output for one sample, as a forward pass keeps them for backward

    @property
    def total(self) -> int:
        return self.parameter_bytes + self.activation_bytes


def gib(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB" if n >= 2**28 else f"{n / 2**20:,.1f} MiB"


def check_memory(shapes: ConcreteGraph, max_bytes: int | None = DEFAULT_MAX_BYTES) -> MemoryEstimate:
    """Estimate the memory a compiled network needs; refuse above `max_bytes` (None: no limit)."""
    counts = count_layers(shapes)
    env = shapes.env
    spans = {item.path: item.node.origin for item in shapes.layers}
    params = acts = 0
    largest: tuple[int, str | None] = (0, None)
    for layer in counts.layers:
        p = int(env.at(layer.weights + layer.biases + layer.norm_params + layer.buffers)) * BYTES_PER_VALUE
        a = int(env.at(layer.outputs)) * BYTES_PER_VALUE if layer.category != Category.MERGE else 0
        params += p
        acts += a
        if p + a > largest[0] and layer.name in spans:
            largest = (p + a, layer.name)
    est = MemoryEstimate(parameter_bytes=params, activation_bytes=acts)
    if max_bytes is not None and est.total > max_bytes:
        size, name = largest
        raise NetdslError(
            f"the network needs about {gib(est.total)} (parameters and buffers {gib(params)}, activations "
            f"per sample {gib(acts)}); the limit is {gib(max_bytes)}",
            spans.get(name or ""),
            f"the largest layer, '{name}', needs {gib(size)} at {', '.join(f'{k}={v}' for k, v in env.values.items())}; "
            "lower the sizes, or raise the limit with --max-memory GIB (netdsl.build(..., max_bytes=N))")
    return est
