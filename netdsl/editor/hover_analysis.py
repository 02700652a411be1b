"""Memory and receptive fields in hover, as `netdsl count --memory --rf` gives them per layer.

Their passes run on the whole network (a statement's live set depends on every statement around
it), so they run once per analysed version of the text, on the first hover that needs them (in the
server's worker thread, where hover runs), and are kept in `DocumentAnalysis.extras`; later hovers
only format the lines of their statement, and those too are kept. A partial graph (statements taken
out for errors) gets none: its bytes and fields would be of another network. A pass that raises
leaves its lines out: hover never fails for them.

Per statement (or block call, or layer): the bytes its layers save for backward, summed (count's
per-layer saved bytes are what each layer is the first to keep, so they add up); the peak bytes of
its largest layer at the values in use (count's per-layer peak is what is alive while that layer
runs); the receptive field of its output, that of its last layer. All for a batch of 1 in fp32,
count's defaults.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import sympy as sp

from netdsl.concrete import ConcreteGraph, Layer, Merge
from netdsl.editor.document import DocumentAnalysis
from netdsl.passes.counts import CountResult
from netdsl.passes.memory_model import human_bytes
from netdsl.passes.receptive import RF, RFResult

KEY = "hover_analysis"
LONG_FORMULA = 120  # a longer formula (a receptive field's phases after upsampling) is left to `count --json`
T = TypeVar("T")


@dataclass
class WholeNetwork:
    """The whole-network passes' results for one analysed text; None where a pass raised (why in `failed`)."""

    counts: CountResult              # formulas shown and valued as `netdsl count` does (batch 1)
    index: dict[int, int]            # id of a walk item -> its place in `cg.walk()`
    saved: list[sp.Expr] | None
    peak: list[sp.Expr] | None
    rf: RFResult | None
    failed: dict[str, str] = field(default_factory=dict)
    texts: dict[tuple[tuple[int, ...], str | None], str] = field(default_factory=dict)


def peak_layers(cg: ConcreteGraph, batch: sp.Symbol) -> list[sp.Expr]:
    """`passes.peak.peak_bytes(cg, batch).layers` (fp32) without its total: pruning the total's
    candidates (polynomial bounds) is most of that pass's time (2.9 s of 3.1 s on YOLOv8), and
    hover shows no total. The tracker is peak's own, so each layer's bytes are count's."""
    from netdsl.passes import peak

    class _LayersOnly(peak._Tracker):
        def candidate(self, e: sp.Expr) -> None:
            return None

    tracker = _LayersOnly(batch, None)
    env = {t.name: peak._Tensor(tracker.new(batch * sp.Mul(*t.shape) * 4), t.shape, t.at) for t in cg.inputs}
    tracker.statements(cg.statements, env, {t.storage for t in env.values()}, tuple(t.name for t in cg.outputs))
    return tracker.layers


def _attempt(name: str, failed: dict[str, str], fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception as e:  # a network a pass does not handle (or a bug): its lines are left out of hover
        failed[name] = f"{type(e).__name__}: {e}"
        return None


def _run(cg: ConcreteGraph) -> WholeNetwork:
    from netdsl.passes.memory_model import MemoryOptions
    from netdsl.passes.receptive import receptive_fields
    from netdsl.passes.saved import saved_bytes

    counts = CountResult(shapes=cg, layers=[], batch_value=1)
    failed: dict[str, str] = {}
    batch = _attempt("batch", failed, lambda: counts.batch)
    saved = None if batch is None else _attempt("saved", failed, lambda: saved_bytes(cg, batch, MemoryOptions()))
    peak = None if batch is None else _attempt("peak", failed, lambda: peak_layers(cg, batch))
    rf = _attempt("rf", failed, lambda: receptive_fields(cg))
    index = {id(x): i for i, x in enumerate(cg.walk())}
    return WholeNetwork(counts, index, saved, peak, rf, failed)


def whole_network(an: DocumentAnalysis) -> WholeNetwork | None:
    """The passes' results for this analysis, run on the first call; None for no graph or a partial one."""
    if an.graph is None or an.partial:
        return None
    if KEY not in an.extras:
        an.extras[KEY] = _run(an.graph)
    found = an.extras[KEY]
    return found if isinstance(found, WholeNetwork) else None


def analysis_text(an: DocumentAnalysis, items: Sequence[Layer | Merge], output: str | None = None) -> str:
    """Hover's memory and receptive-field lines for these walk items (a statement's, a block call's,
    a layer's), starting with a blank line; '' where there are none. `output`: the top-level
    statement's name, whose per-level fields (a `detect` head's) are added."""
    whole = whole_network(an)
    if whole is None or not items or any(id(x) not in whole.index for x in items):
        return ""
    key = (tuple(whole.index[id(x)] for x in items), output)
    if key not in whole.texts:
        whole.texts[key] = _text(whole, items, key[0], output)
    return whole.texts[key]


def _formula(c: CountResult, x: sp.Expr) -> tuple[str, sp.Expr]:
    shown = c.show(x)
    return str(shown), c.value(shown)


def _number(formula: str, value: str) -> str:
    if formula == value:
        return formula
    return value if len(formula) > LONG_FORMULA else f"`{formula}` = {value}"


def size_text(n: int) -> str:
    """Bytes, exact, with a binary-prefixed size past a KiB (`69,632 bytes (68.00 KiB)`)."""
    return human_bytes(n, " bytes")


def _bytes(c: CountResult, x: sp.Expr) -> str:
    formula, value = _formula(c, x)
    n = int(value)
    return size_text(n) if formula == str(n) or len(formula) > LONG_FORMULA else f"`{formula}` = {size_text(n)}"


def rf_text(c: CountResult, rf: RF) -> str:
    """`size / jump / start` as count prints them: one entry per part when both axes agree, else height×width."""
    parts = []
    for axes in (rf.size, rf.jump, rf.start):
        shown = [_formula(c, x) for x in axes]
        cells = [_number(f, _rational(v)) for f, v in shown]
        parts.append(cells[0] if cells[0] == cells[1] else "×".join(cells))
    return " / ".join(parts)


def _rational(v: sp.Expr) -> str:
    r = sp.Rational(v)
    return str(int(r)) if r.q == 1 else f"{r.p}/{r.q}"


def _text(whole: WholeNetwork, items: Sequence[Layer | Merge], key: tuple[int, ...], output: str | None) -> str:
    c = whole.counts
    lines = []
    many = f"its {len(key)} layers"
    if whole.saved is not None:
        summed = f" ({many}, summed)" if len(key) > 1 else ""
        lines.append(f"- saved for backward{summed}: {_bytes(c, sp.Add(*[whole.saved[i] for i in key]))}")
    if whole.peak is not None:
        values = [int(c.value(c.show(whole.peak[i]))) for i in key]
        top = max(range(len(key)), key=lambda k: (values[k], k))  # the last of equals: the latest live set
        which = f" (the largest of {many} at the values in use)" if len(key) > 1 else ""
        lines.append(f"- peak in an eval forward: {_bytes(c, whole.peak[key[top]])}, while `{items[top].path}` runs{which}")
    out = [f"**memory** for a batch of {c.batch.name} = {c.batch_value}, fp32 (`netdsl count --memory`)\n\n"
           + "\n".join(lines)] if lines else []
    if whole.rf is not None:
        out += _rf_lines(c, whole.rf, key[-1], output)
    return "".join(f"\n\n{x}" for x in out)


def _rf_lines(c: CountResult, fields: RFResult, last: int, output: str | None) -> list[str]:
    rf = fields.layers[last]
    if rf is None:
        reached = any(x is not None for x in fields.layers)  # else the network has no image input
        return ["**receptive field**: none (no input pixel reaches its output)"] if reached else []
    head = "**receptive field** of its output (size / jump / start in input pixels): "
    text = head + rf_text(c, rf)
    if rf.tokens is not None:
        text += " (a sequence: the field of the grid its tokens lie on)"
    levels = {k: v for k, v in fields.outputs.items() if output is not None and k.startswith(f"{output}[")}
    if levels:
        text += " (the largest level's)\n\n" + "\n".join(f"- `{k}`: {rf_text(c, v)}" for k, v in levels.items())
    return [text]
