"""The builtin ops, one family per file; `REGISTRY` maps each op's name to its definition.

Adding an op: write a subclass of `netdsl.ops.base.OpDef` (arguments, PyTorch's rules, shape
rule, counts, torch class) in a file here, list it in that file's `OPS`, import the file below,
add its tests and a README row. Every pass reads the op from here; none knows ops by name.
"""
from __future__ import annotations

from netdsl.ops import activation, conv, linear, norm, pool, reshape, upsample
from netdsl.ops.base import Args, ArgSpec, Counts, OpDef, RuleError
from netdsl.ops.merge import MERGES, MergeDef

REGISTRY: dict[str, OpDef] = {op.name: op for mod in (conv, pool, norm, activation, upsample, linear, reshape)
                              for op in mod.OPS}

__all__ = ["REGISTRY", "MERGES", "OpDef", "MergeDef", "ArgSpec", "Args", "Counts", "RuleError"]
