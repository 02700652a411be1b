"""What `diff` compares of one network: the totals and per-layer counts of `count`, the memory
metrics and the receptive fields of the outputs, all as formulas in the user's symbols and the
batch symbol. No torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from netdsl.passes.count_memory import LAYER_MEMORY_METRICS, MEMORY_METRICS
from netdsl.passes.counts import METRICS, Convention, CountResult
from netdsl.passes.memory_model import MemoryOptions

RF_PARTS = ("size", "jump", "start")
Pair = tuple[sp.Expr, sp.Expr]


@dataclass(frozen=True)
class SideMetrics:
    """Totals (metric -> formula), per-layer formulas aligned with the counts' layers, and each
    output's receptive field (output -> size/jump/start -> (h, w))."""

    totals: dict[str, sp.Expr]
    layers: list[dict[str, sp.Expr]]
    rf: dict[str, dict[str, Pair]]

    def renamed(self, rename: dict[sp.Symbol, sp.Symbol]) -> SideMetrics:
        """The same formulas with symbols replaced (a name the other spec declares differently)."""
        if not rename:
            return self

        def r(x: sp.Expr) -> sp.Expr:
            return x.xreplace(rename)

        return SideMetrics({m: r(e) for m, e in self.totals.items()},
                           [{m: r(e) for m, e in row.items()} for row in self.layers],
                           {o: {p: (r(h), r(w)) for p, (h, w) in parts.items()} for o, parts in self.rf.items()})


def side_metrics(counts: CountResult, batch: sp.Symbol, convention: Convention | None = None,
                 options: MemoryOptions | None = None, memory: bool = True) -> SideMetrics:
    """Every metric `diff` compares, for one network, in the user's symbols and `batch`;
    `memory=False` leaves out the memory metrics and the receptive fields.

    >>> from netdsl.passes.counts import count_layers
    >>> from netdsl.passes.front import analyse_text
    >>> c = count_layers(analyse_text("net T(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3)", None))
    >>> m = side_metrics(c, c.batch)
    >>> m.totals["weights"], m.totals["param_bytes"]
    (9*C, 40*C)
    """
    convention, options = convention or Convention(), options or MemoryOptions()
    totals = {m: counts.total(m, convention) for m in METRICS}
    layers = [{m: counts.layer_metric(row, m) for m in METRICS} for row in counts.layers]
    if memory:
        _add_memory(counts, batch, options, totals, layers)
    rf = _output_fields(counts) if memory else {}
    return SideMetrics(totals, layers, rf)


def _add_memory(counts: CountResult, batch: sp.Symbol, options: MemoryOptions, totals: dict[str, sp.Expr],
                layers: list[dict[str, sp.Expr]]) -> None:
    """The memory metrics, in `batch` rather than the spec's own batch symbol (the two specs of a
    diff share one, named apart from both specs' symbols)."""
    own = {counts.batch: batch} if counts.batch != batch else {}
    missing = counts.memory(options).missing  # not modelled under these options: left out, with a note
    for m in MEMORY_METRICS:
        if m not in missing:
            totals[m] = counts.total(m, options=options).xreplace(own)
    for i, row in enumerate(layers):
        for m in LAYER_MEMORY_METRICS:
            if m in missing:
                continue
            row[m] = counts.layer_memory(i, m, options).xreplace(own)


def _output_fields(counts: CountResult) -> dict[str, dict[str, Pair]]:
    """Each output's receptive field (size, jump, start; (h, w) each) in the user's symbols."""
    out: dict[str, dict[str, Pair]] = {}
    for name, rf in counts.receptive().outputs.items():
        if rf is None:
            continue
        out[name] = {p: (counts.show(getattr(rf, p)[0]), counts.show(getattr(rf, p)[1])) for p in RF_PARTS}
    return out
