"""The memory metrics and receptive fields of a count: what `count`, claims, `fit` and `diff` read.

The passes themselves live in `passes.saved`, `passes.peak`, `passes.train_memory` and
`passes.receptive`; this module runs them on a concrete graph once, keeps their expressions in the
graph's internal symbols plus the batch symbol, and takes the batch size out of the `--set`
values (the batch is not a parameter of the spec: `N`, or `batch` when the spec has its own `N`).
They are imported when a memory metric is first asked for, so a count that never needs them
does not pay for them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import cast

import sympy as sp

from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError
from netdsl.limits import BYTES_PER_VALUE
from netdsl.passes.memory_model import BATCH_NAMES, DTYPES, OPTIMIZERS, Dtype, MemoryOptions, Optimizer, batch_symbol
from netdsl.passes.symbols import SymEnv

MEMORY_METRICS = ("saved_bytes", "peak_bytes", "param_bytes", "buffer_bytes", "train_bytes")
LAYER_MEMORY_METRICS = ("saved_bytes", "peak_bytes", "param_bytes")
MAX_BATCH = 10**12  # far above any real batch; keeps the byte counts printable


@dataclass(frozen=True)
class MemoryCounts:
    """The memory metrics of one graph for one `MemoryOptions`, in internal symbols and `batch`.

    `layers[metric]` is aligned with `list(cg.walk())`; `totals[metric]` is the network's total
    (for `peak_bytes` the largest live set, a `Max` when no layer dominates everywhere).
    `missing[metric]` says why a pass does not model a metric under these options (peak bytes
    under autocast): such a metric is in neither `layers` nor `totals`, and `get` raises.
    """

    batch: sp.Symbol
    options: MemoryOptions
    layers: dict[str, list[sp.Expr]]
    totals: dict[str, sp.Expr]
    missing: dict[str, str] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)  # what to do, per missing metric

    def get(self, metric: str, index: int | None = None) -> sp.Expr:
        """The total of `metric`, or its value for the walk item `index`; an error where the
        metric is not modelled under these options, never a stand-in number."""
        if metric in self.missing:
            raise NetdslError(self.missing[metric], hint=self.hints.get(metric, "use --dtype fp32 for this metric"))
        return self.totals[metric] if index is None else self.layers[metric][index]


def memory_counts(cg: ConcreteGraph, options: MemoryOptions, parameters: list[sp.Expr]) -> MemoryCounts:
    """Run the memory passes on `cg`; `parameters` are the layers' parameter counts (walk order),
    charged at 4 bytes each: autocast computes in 16 bits but keeps the parameters in fp32."""
    from netdsl.passes.peak import peak_bytes
    from netdsl.passes.saved import MemoryGap, saved_bytes
    from netdsl.passes.train_memory import buffer_bytes, grad_bytes, optimizer_bytes, param_bytes

    batch = batch_symbol(cg.env)
    layers: dict[str, list[sp.Expr]] = {"param_bytes": [BYTES_PER_VALUE * p for p in parameters]}
    totals = {"param_bytes": param_bytes(cg, options), "buffer_bytes": buffer_bytes(cg)}
    missing: dict[str, str] = {}
    hints: dict[str, str] = {}
    try:
        layers["saved_bytes"] = saved_bytes(cg, batch, options)
        totals["saved_bytes"] = sp.Add(*layers["saved_bytes"])
        # train_memory.train_bytes's sum, from the saved bytes already in hand (it would run saved_bytes again)
        totals["train_bytes"] = sp.expand(totals["param_bytes"] + totals["buffer_bytes"] + grad_bytes(cg)
                                          + optimizer_bytes(cg, options) + totals["saved_bytes"])
    except MemoryGap as e:  # a case the rules do not model (attention with dropout): say so, keep the rest
        where = f"{e.path}:{e.span.line}:{e.span.column}: " if e.path and e.span else ""
        for metric in ("saved_bytes", "train_bytes"):
            missing[metric], hints[metric] = where + e.message, e.hint or ""
    try:
        peak = peak_bytes(cg, batch, options)
        layers["peak_bytes"], totals["peak_bytes"] = list(peak.layers), peak.total
    except NetdslError as e:
        if options.dtype == "fp32":  # an op without a rule, or a bug: not a gap of the model
            raise
        missing["peak_bytes"] = e.message  # the rest of the report still stands
    return MemoryCounts(batch=batch, options=options, layers=layers, totals=totals, missing=missing, hints=hints)


def memory_options(dtype: object = "fp32", optimizer: object = "adam") -> MemoryOptions:
    """Checked `MemoryOptions`: a dtype of `DTYPES` and an optimizer of `OPTIMIZERS`.

    >>> memory_options("bf16", "sgd")
    MemoryOptions(dtype='bf16', optimizer='sgd')
    >>> memory_options("fp64")
    Traceback (most recent call last):
      ...
    netdsl.errors.NetdslError: netdsl: error: unknown dtype 'fp64'
      hint: the dtypes: fp32, bf16, fp16
    """
    if dtype not in DTYPES:
        raise NetdslError(f"unknown dtype {dtype!r}", hint=f"the dtypes: {', '.join(DTYPES)}")
    if optimizer not in OPTIMIZERS:
        raise NetdslError(f"unknown optimizer {optimizer!r}", hint=f"the optimizers: {', '.join(OPTIMIZERS)}")
    return MemoryOptions(dtype=cast(Dtype, dtype), optimizer=cast(Optimizer, optimizer))


def check_batch(name: str, value: int) -> int:
    """A batch size: a positive integer (the values themselves are integers already)."""
    if not 1 <= value <= MAX_BATCH:
        raise NetdslError(f"--set {name}={value}: the batch size must be a positive integer"
                          + (f" of at most {MAX_BATCH:,}" if value > 0 else ""),
                          hint=f"e.g. --set {name}=8 (the memory metrics are for a batch of {name}; default 1)")
    return value


def analyse_with_batch(text: str, path: str | None, overrides: dict[str, int]) -> tuple[ConcreteGraph, int]:
    """The concrete graph at `overrides` and the batch size they set (default 1).

    `N` (or `batch`, `batch_size`) is the batch unless the spec has a parameter of that name; the
    spec's own parameter wins and the batch takes the next free name (`memory_model.batch_symbol`).

    >>> cg, n = analyse_with_batch("net T()\\ninput x: [1, H = 8, W = 8]\\noutput = x", None, {"N": 4, "H": 16})
    >>> n, cg.env.values["H"]
    (4, 16)
    """
    from netdsl.passes.front import analyse_text

    asked = {k: v for k, v in overrides.items() if k in BATCH_NAMES}
    rest = {k: v for k, v in overrides.items() if k not in BATCH_NAMES}
    cg = analyse_text(text, path, rest)
    own = {k: v for k, v in asked.items() if k in cg.env.symbols}
    if own:  # the spec's own parameter of that name: re-run with it set
        cg = analyse_text(text, path, {**rest, **own})
    try:
        batch = batch_symbol(cg.env).name
    except NetdslError as e:  # after analysis: the error learns the spec's file here
        raise e.with_source(path, text) from None
    value = 1
    for k, v in asked.items():
        if k in own:
            continue
        if k != batch:
            raise NetdslError(f"--set {k}=...: the spec has no parameter or size '{k}', and its batch is '{batch}'",
                              hint=f"settable names: {', '.join([*cg.env.symbols, batch])}")
        value = check_batch(k, v)
    return cg, value


def rational_value(x: sp.Expr) -> int | str:
    """A number for JSON: an int, or "a/b" for a fraction (receptive-field jumps after upsampling)."""
    r = sp.Rational(x)
    return int(r) if r.q == 1 else f"{r.p}/{r.q}"


def with_batch(env: SymEnv, batch: sp.Symbol, value: int) -> SymEnv:
    """`env` with the batch as one more symbol, at `value` (claims on the memory metrics name it)."""
    return replace(env, symbols={**env.symbols, batch.name: batch}, values={**env.values, batch.name: value},
                   internal_values={**env.internal_values, batch: sp.Integer(value)})
