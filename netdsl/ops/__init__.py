"""The builtin ops, one family per file; `REGISTRY` maps each op's name to its definition.

Adding an op: write a subclass of `netdsl.ops.base.OpDef` (arguments, arity, category, PyTorch's
rules, shape rule, counts, module or combine) in a file here, list it in that file's `OPS`, add the
file to `_FAMILIES` below, and add its tests. `build_registry` checks each op as the package loads.
Every pass reads the op from here; none knows ops by name. `layers()` and `merges()` are views of the
one registry: the ops written in a chain (`-> conv(...)`) and those that start a statement
(`x = cat(a, b)`).
"""
from __future__ import annotations

from netdsl.ops import (
    activation,
    attention,
    channels,
    conv,
    darknet,
    detect,
    detect_v8,
    linear,
    merge,
    norm,
    pool,
    psa,
    reshape,
    sequence,
    upsample,
)
from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, RuleError, build_registry

_FAMILIES = (conv, pool, norm, activation, upsample, linear, reshape, sequence, channels, merge, detect, darknet,
             attention, detect_v8, psa)

REGISTRY: dict[str, OpDef] = build_registry(op for mod in _FAMILIES for op in mod.OPS)


def layers() -> dict[str, OpDef]:
    """The ops written in a chain, `-> op(...)`, in registry order."""
    return {n: op for n, op in REGISTRY.items() if not op.starts_statement}


def merges() -> dict[str, OpDef]:
    """The ops that start a statement, `x = op(a, b, ...)`, in registry order."""
    return {n: op for n, op in REGISTRY.items() if op.starts_statement}


__all__ = ["REGISTRY", "layers", "merges", "OpDef", "Category", "ArgSpec", "Args", "Counts", "RuleError",
           "build_registry"]
