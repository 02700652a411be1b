"""Two networks side by side: every total of each as a formula, their difference B - A expanded
(so that what both share cancels), and the layers matched by module path.

Each spec keeps its own symbols; a name both use is one symbol (so `NCLS` of ResNet-18 and of
ResNet-34 cancel), and a name only one uses stays in the difference, which is then a formula in
the union of both specs' symbols. The memory metrics are in one batch symbol shared by both (`N`,
or `batch` when either spec has an `N` of its own). Differences are B - A. No torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

import sympy as sp

from netdsl import ir
from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError, located
from netdsl.parsing import parse_text
from netdsl.passes.count_memory import MAX_BATCH
from netdsl.passes.counts import METRICS, Convention, CountResult, count_layers
from netdsl.passes.diff_metrics import MEMORY_METRICS, RF_PARTS, Pair, SideMetrics, side_metrics
from netdsl.passes.memory_model import MemoryOptions, batch_name
from netdsl.passes.shapes import analyse

Number: TypeAlias = int | sp.Rational


@dataclass(frozen=True)
class Compared:
    """One quantity of A and of B: formulas (None where that side lacks it), values in use, B - A."""

    a: sp.Expr | None
    b: sp.Expr | None
    difference: sp.Expr | None
    a_value: Number | None
    b_value: Number | None

    @property
    def value_difference(self) -> Number | None:
        return None if self.a_value is None or self.b_value is None else self.b_value - self.a_value

    @property
    def differs(self) -> bool:
        return self.difference != 0 or self.a_value != self.b_value


@dataclass(frozen=True)
class LayerDiff:
    """A module path both networks have: its op on each side and each metric compared."""

    name: str
    op_a: str
    op_b: str
    metrics: dict[str, Compared]

    @property
    def changed(self) -> list[str]:
        """The metrics whose formula or value differs (and "op" when the ops do)."""
        return (["op"] if self.op_a != self.op_b else []) + [m for m, c in self.metrics.items() if c.differs]


@dataclass(frozen=True)
class LayerRef:
    """A layer only one network has."""

    name: str
    op: str
    line: int


@dataclass
class Side:
    """One spec, analysed: its counts, metrics and how its symbols map onto the diff's."""

    cg: ConcreteGraph
    counts: CountResult
    metrics: SideMetrics
    values: dict[sp.Symbol, sp.Integer]  # the diff's symbols (and the batch) -> values in use
    batch_value: int

    def value(self, x: sp.Expr) -> Number:
        v = x.xreplace(self.values)
        if not (v.is_Integer or v.is_Rational):
            raise NetdslError(f"a formula of {self.cg.name} has no value at the values in use: {v}")
        return int(v) if v.is_Integer else sp.Rational(v)


@dataclass
class DiffResult:
    a: Side
    b: Side
    batch: sp.Symbol
    totals: dict[str, Compared]
    rf: dict[str, dict[str, tuple[Compared, Compared]]]  # output -> size/jump/start -> (h, w)
    matched: list[LayerDiff]
    only_a: list[LayerRef]
    only_b: list[LayerRef]
    convention: Convention
    options: MemoryOptions
    notes: list[str] = field(default_factory=list)

    @property
    def symbols(self) -> list[str]:
        """The diff's symbols: A's, then those only B has."""
        return list(dict.fromkeys([*self.a.cg.env.symbols, *self.b.cg.env.symbols]))


def difference(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    """B - A, expanded: terms both share cancel. Maxima (peaks) and floors are left as they are:
    `sp.simplify` of a difference of two peaks costs seconds and rarely gets shorter.

    >>> H = sp.Symbol("H", integer=True, positive=True)
    >>> difference(9 * H**2 + 3, 9 * H**2 + 5 * H)
    5*H - 3
    """
    return sp.expand(b - a)


def _unify(a: ConcreteGraph, b: ConcreteGraph) -> tuple[dict[sp.Symbol, sp.Symbol], dict[sp.Symbol, sp.Symbol]]:
    """Each side's user symbols -> the diff's. A name with other assumptions on each side (a
    parameter in one, an input size in the other) becomes one integer symbol >= 0 on both."""
    ra: dict[sp.Symbol, sp.Symbol] = {}
    rb: dict[sp.Symbol, sp.Symbol] = {}
    for name, sa in a.env.symbols.items():
        sb = b.env.symbols.get(name)
        if sb is not None and sb != sa:
            ra[sa] = rb[sb] = sp.Symbol(name, integer=True, nonnegative=True)
    return ra, rb


def _side(cg: ConcreteGraph, rename: dict[sp.Symbol, sp.Symbol], batch: sp.Symbol, batch_value: int,
          convention: Convention, options: MemoryOptions) -> Side:
    counts = count_layers(cg)
    metrics = side_metrics(counts, batch, convention, options).renamed(rename)
    values = {rename.get(s, s): sp.Integer(cg.env.values[n]) for n, s in cg.env.symbols.items()}
    values[batch] = sp.Integer(batch_value)
    return Side(cg, counts, metrics, values, batch_value)


def _compare(a: sp.Expr | None, b: sp.Expr | None, sa: Side, sb: Side) -> Compared:
    d = difference(a, b) if a is not None and b is not None else None
    return Compared(a, b, d, None if a is None else sa.value(a), None if b is None else sb.value(b))


def diff_graphs(a: ConcreteGraph, b: ConcreteGraph, batch_values: tuple[int, int] = (1, 1),
                convention: Convention | None = None, options: MemoryOptions | None = None) -> DiffResult:
    """Compare two concrete graphs: totals, output receptive fields and layers matched by path.

    >>> from netdsl.passes.front import analyse_text
    >>> t = "net T(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, {k}, padding={p}) -> relu"
    >>> d = diff_graphs(analyse_text(t.format(k=3, p=1), None), analyse_text(t.format(k=5, p=2), None))
    >>> d.totals["weights"].difference, [x.name for x in d.matched if x.changed], d.only_b
    (16*C, ['output.0'], [])
    """
    convention, options = convention or Convention(), options or MemoryOptions()
    batch = sp.Symbol(batch_name(set(a.env.symbols) | set(b.env.symbols)), integer=True, positive=True)
    ra, rb = _unify(a, b)
    sa = _side(a, ra, batch, batch_values[0], convention, options)
    sb = _side(b, rb, batch, batch_values[1], convention, options)
    names = [*METRICS, *(m for m in MEMORY_METRICS if m in sa.metrics.totals)]
    totals = {m: _compare(sa.metrics.totals[m], sb.metrics.totals[m], sa, sb) for m in names}
    matched, only_a, only_b = _match_layers(sa, sb)
    return DiffResult(sa, sb, batch, totals, _fields(sa, sb), matched, only_a, only_b, convention, options,
                      _notes(sa, sb, batch) + _unmodelled(sa, options))


def _unmodelled(side: Side, options: MemoryOptions) -> list[str]:
    """The metrics a memory pass does not model under these options (both sides alike), and why."""
    return [f"{m} left out: {why}" for m, why in side.counts.memory(options).missing.items()]


def _fields(sa: Side, sb: Side) -> dict[str, dict[str, tuple[Compared, Compared]]]:
    """The receptive fields of the outputs, matched by output name (None on a side without it)."""
    def axis(f: dict[str, Pair] | None, part: str, i: int) -> sp.Expr | None:
        return f[part][i] if f else None

    out = {}
    for name in dict.fromkeys([*sa.metrics.rf, *sb.metrics.rf]):
        fa, fb = sa.metrics.rf.get(name), sb.metrics.rf.get(name)
        out[name] = {p: (_compare(axis(fa, p, 0), axis(fb, p, 0), sa, sb), _compare(axis(fa, p, 1), axis(fb, p, 1), sa, sb))
                     for p in RF_PARTS}
    return out


def _match_layers(sa: Side, sb: Side) -> tuple[list[LayerDiff], list[LayerRef], list[LayerRef]]:
    """Layers (and merges) matched by module path; the others listed, each in its network's order."""
    rows_b = {row.name: (row, m) for row, m in zip(sb.counts.layers, sb.metrics.layers)}
    names_a = {row.name for row in sa.counts.layers}
    matched = []
    for row, ma in zip(sa.counts.layers, sa.metrics.layers):
        if row.name not in rows_b:
            continue
        other, mb = rows_b[row.name]
        metrics = {m: _compare(ma[m], mb[m], sa, sb) for m in ma if m in mb}
        matched.append(LayerDiff(row.name, row.op, other.op, metrics))
    only_a = [LayerRef(r.name, r.op, r.line) for r in sa.counts.layers if r.name not in rows_b]
    only_b = [LayerRef(r.name, r.op, r.line) for r in sb.counts.layers if r.name not in names_a]
    return matched, only_a, only_b


def _notes(sa: Side, sb: Side, batch: sp.Symbol) -> list[str]:
    ea, eb = sa.cg.env, sb.cg.env
    notes = []
    for mine, other, side in ((ea, eb, "A"), (eb, ea, "B")):
        own = [n for n in mine.symbols if n not in other.symbols]
        if own:
            notes.append(f"only {side} has {', '.join(own)}: the differences are formulas in both specs' symbols, "
                         f"and hold {', '.join(own)} as a symbol of {side}")
    moved = [f"{n} = {ea.values[n]} in A, {eb.values[n]} in B" for n in ea.symbols
             if n in eb.symbols and ea.values[n] != eb.values[n]]
    if sa.batch_value != sb.batch_value:
        moved.append(f"{batch} = {sa.batch_value} in A, {sb.batch_value} in B")
    if moved:
        notes.append(f"the values in use differ ({'; '.join(moved)}): a formula's difference takes each name as one "
                     "symbol, the values' difference is B's value minus A's")
    if sa.metrics.rf or sb.metrics.rf:  # what the receptive-field pass says of each side
        notes += [f"{label}: {n}" for label, side in (("A", sa), ("B", sb)) for n in side.counts.receptive().notes]
    return notes


@dataclass(frozen=True)
class Source:
    """One spec to compare: its text, its path (None for text) and its own `--set` values."""

    text: str
    path: str | None
    sets: dict[str, int] = field(default_factory=dict)


def _parsed(src: Source) -> tuple[ir.Spec, list[str]]:
    """The spec and the names `--set` may set in it."""
    with located(src.path, src.text):
        spec = parse_text(src.text, src.path)
    return spec, [p.name for p in spec.params] + [d.name for d in spec.dims]


def _batch_value(name: str, value: int, flag: str) -> int:
    if not 1 <= value <= MAX_BATCH:
        raise NetdslError(f"{flag} {name}={value}: the batch must be a positive integer of at most {MAX_BATCH:,}",
                          hint=f"pass e.g. {flag} {name}=8 (the memory metrics are for a batch of {name}; default 1)")
    return value


def split_sets(both: dict[str, int], a: Source, b: Source, names_a: list[str], names_b: list[str],
               ) -> tuple[dict[str, int], dict[str, int], tuple[int, int]]:
    """Each spec's overrides and both batch values, from `--set` (both specs) and each side's own
    values. A name that only one spec has is an error in `--set` (unless it is the batch)."""
    batch = batch_name(set(names_a) | set(names_b))
    ov_a: dict[str, int] = {}
    ov_b: dict[str, int] = {}
    batches = [1, 1]
    for name, value in both.items():
        if name == batch:
            batches = [_batch_value(name, value, "--set")] * 2
            continue
        missing = [f"{label} ({src.path or '<text>'})" for label, src, names in (("A", a, names_a), ("B", b, names_b))
                   if name not in names]
        if missing:
            own = "neither spec" if len(missing) == 2 else f"{missing[0]}"
            raise NetdslError(f"--set {name}=...: {own} has no parameter or size '{name}'; --set applies to both",
                              hint=f"set a name of one spec with --set-a or --set-b; the batch is {batch}")
        ov_a[name] = ov_b[name] = value
    for i, (src, ov, flag) in enumerate(((a, ov_a, "--set-a"), (b, ov_b, "--set-b"))):
        for name, value in src.sets.items():
            if name == batch:
                batches[i] = _batch_value(name, value, flag)
            else:
                ov[name] = value
    return ov_a, ov_b, (batches[0], batches[1])


def diff_sources(a: Source, b: Source, both: dict[str, int] | None = None, convention: Convention | None = None,
                 options: MemoryOptions | None = None) -> DiffResult:
    """Analyse both specs at their values in use (`both` sets names of both) and compare them."""
    (spec_a, names_a), (spec_b, names_b) = _parsed(a), _parsed(b)
    ov_a, ov_b, batches = split_sets(dict(both or {}), a, b, names_a, names_b)
    return diff_graphs(_analysed(a, spec_a, ov_a), _analysed(b, spec_b, ov_b), batches, convention, options)


def _analysed(src: Source, spec: ir.Spec, overrides: dict[str, int]) -> ConcreteGraph:
    """`front.analyse_text` on a spec parsed already (a diff reads each spec's names first)."""
    with located(src.path, src.text):
        cg = analyse(spec, overrides)
    cg.source = (src.path, src.text)
    return cg
