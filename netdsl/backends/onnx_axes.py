"""Which input sizes of an ONNX export may vary, and over which values (`size_axes`).

An input size (`H`, `W`) is dynamic where the spec allows any other value of it: the spec
declares how it divides (`where H % 32 == 0` makes it 32*H_q; no condition, any H) and no other
condition ties it (`H == 64` or `H == W` keep it fixed); no weight and no layer argument depends
on it; and the smallest size that keeps every tensor non-empty (and the spec's `H >= n` bounds)
is found from the concrete graph's formulas and confirmed by analysing the spec there.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sympy as sp

from netdsl import intexpr, ir, ir_expr
from netdsl.concrete import Block, ConcreteGraph, Statement
from netdsl.errors import NetdslError
from netdsl.passes.front import analyse_text
from netdsl.passes.symbols import conditions_of, mod_assumption

MAX_SEARCH = 64  # analyses tried upward from the formulas' smallest size before giving up on it
CHECK_MACS = 4 * 10**9  # the most a check at the spec's declared sizes may cost (one sample)


@dataclass
class SizeAxis:
    """One named input size (`H` of `input x: [3, H = 224, W = 224]`) as the export treats it.

    `value = step * q + offset` for q >= 0 is every size the spec admits (`where H % step == offset`);
    `low`/`high` bound it (None: no bound). `reason` says why a size stays fixed (empty: dynamic).
    """

    input: str
    axis: int                 # the axis in the batched tensor: 2 for H of [N, C, H, W]
    name: str
    value: int
    step: int = 1
    offset: int = 0
    low: int = 1
    high: int | None = None
    trace_low: int = 2        # the smallest value PyTorch traces for (see `size_axes`)
    reason: str = ""

    @property
    def dynamic(self) -> bool:
        return not self.reason

    def text(self) -> str:
        if not self.dynamic:
            return f"{self.name} = {self.value}: {self.reason}"
        form = f"multiple of {self.step}" if self.step > 1 and self.offset == 0 else \
            (f"{self.step}k + {self.offset}" if self.step > 1 else "any size")
        upper = f" to {self.high}" if self.high is not None else ""
        return f"{self.name} ({form}, from {self.low}{upper})"


def _free(v: Any) -> set[sp.Symbol]:
    if isinstance(v, sp.Basic):
        return set(v.free_symbols)
    if isinstance(v, (tuple, list)):
        return set().union(*(_free(x) for x in v)) if v else set()
    return set()


def _bound(c: ir.Condition, name: str) -> tuple[str, int] | None:
    """`H >= 64`, `128 > H` and the like as ("low"|"high", inclusive bound)."""
    flip = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
    for lhs, rhs, op in ((c.left, c.right, c.op), (c.right, c.left, flip.get(c.op, c.op))):
        if isinstance(lhs, ir.Name) and lhs.id == name:
            k = intexpr.const_int(rhs)
            if k is None:
                return None
            return {">=": ("low", k), ">": ("low", k + 1), "<=": ("high", k), "<": ("high", k - 1)}.get(op)
    return None


def size_axes(cg: ConcreteGraph) -> list[SizeAxis]:
    """Every named input size of the network, with whether and how it may vary.

    >>> from netdsl.api import shapes
    >>> cg = shapes("net T(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 4 == 0\\noutput = x |> conv(C, 3, padding=1)")
    >>> [a.text() for a in size_axes(cg)]
    ['H (multiple of 4, from 4)', 'W (any size, from 1)']
    """
    env, graph = cg.env, cg.graph
    assert graph is not None
    axes = [SizeAxis(inp.name, j + 1, a.dim.name, int(env.values[a.dim.name]))
            for inp in graph.inputs for j, a in enumerate(inp.axes) if a.dim is not None]
    if not axes:
        return axes
    # Symbols a size shows up as inside the graph: itself, or its quotient H_q.
    inner: dict[str, set[sp.Symbol]] = {}
    for a in axes:
        s = env.symbols[a.name]
        form = env.fwd.get(s, s)
        inner[a.name] = {s} | set(form.free_symbols)
        if form.is_Integer:
            a.reason = f"the spec fixes {a.name}"
        elif form != s:
            q = next(iter(form.free_symbols))
            a.step, a.offset = int(form.coeff(q)), int(form.subs(q, 0))
    _bound_by_conditions(cg, axes)
    _fixed_by_layers(cg, axes, inner)
    for a in axes:
        if a.dynamic:
            a.low = _smallest(cg, a, inner[a.name]) or a.value
            # PyTorch treats a size of 1 as special (broadcasting) and fixes any size it may take that
            # value: it traces the range where every size that varies with this one is at least 2.
            traced = _smallest(cg, a, inner[a.name], least=2)
            if traced is None:
                a.reason = "PyTorch fixes sizes that may be 1, and every admissible value makes one 1"
            else:
                a.trace_low = max(traced, a.low)
    return axes


def _bound_by_conditions(cg: ConcreteGraph, axes: list[SizeAxis]) -> None:
    """The spec's conditions on the sizes: `H >= n` and `H < n` bound one, any other ties it."""
    assert cg.graph is not None
    names = {a.name for a in axes}
    for c in conditions_of(cg.graph):
        used = {n.id for side in (c.left, c.right) for n in ir_expr.names_in(side)} & names
        if not used or mod_assumption(c) is not None:
            continue
        for n in used:
            b = _bound(c, n) if len(used) == 1 else None
            for a in (x for x in axes if x.name == n):
                if b is None:
                    a.reason = a.reason or f"the condition {ir_expr.condition_text(c)} ties it"
                elif b[0] == "low":
                    a.low = max(a.low, b[1])
                else:
                    a.high = b[1] if a.high is None else min(a.high, b[1])


def _fixed_by_layers(cg: ConcreteGraph, axes: list[SizeAxis], inner: dict[str, set[sp.Symbol]]) -> None:
    """Sizes one model cannot vary: those weights or layer arguments depend on, those adaptive
    pooling reads, and all where a shape check holds at the values in use only."""
    for item in cg.walk():
        c = item.counts
        used_syms = _free((c.weights, c.biases, c.norm_params, c.buffers)) | \
            _free(tuple(getattr(item, "sym", item.args).values()))
        for a in axes:
            if a.dynamic and used_syms & inner[a.name]:
                a.reason = f"'{item.path}' depends on it"
    # Adaptive pooling to more than 1x1 picks its windows from the input size; PyTorch's ONNX
    # decomposition fixes them at the traced size without a guard (found wrong at other sizes).
    for layer in cg.layers:
        if (layer.module_spec() or ("",))[0].startswith("Adaptive") and any(v != 1 for v in layer.out_at[1:]):
            for a in axes:
                if a.dynamic and _free(layer.in_shape) & inner[a.name]:
                    a.reason = (f"'{layer.path}' ({layer.op.name} to {'x'.join(map(str, layer.out_at[1:]))}) "
                                "exports for one input size only")
    for note in cg.notes:  # a merge or annotation shown to hold at the values in use only
        if "values in use only" in note or "could not be shown equal" in note:
            for a in axes:
                a.reason = a.reason or "a shape check holds at the values in use only"


def _first(step: int, offset: int, at_least: int) -> int:
    """The smallest step*q + offset (q >= 0) that is >= at_least."""
    q = max(0, -(-(at_least - offset) // step))
    return step * q + offset


def _smallest(cg: ConcreteGraph, a: SizeAxis, syms: set[sp.Symbol], least: int = 1) -> int | None:
    """The smallest admissible value of the size at which every tensor size that depends on it is
    at least `least` (binary search on the formulas, the other sizes at their values in use);
    None if there is none up to its bound."""
    env = cg.env
    exprs: set[sp.Expr] = set()
    for st in _statements(cg.statements):
        exprs.update(x for x in st.shape if x.free_symbols & syms)
        for it in st.items:
            exprs.update(x for x in it.out_shape if x.free_symbols & syms)
        if st.merge is not None:
            exprs.update(x for x in st.merge.out_shape if x.free_symbols & syms)
    s = env.symbols[a.name]
    form = env.fwd.get(s, s)
    q = s if form == s else next(iter(form.free_symbols))

    def value(k: int) -> int:
        return a.step * k + a.offset

    def ok(k: int) -> bool:
        values = {**env.internal_values, q: sp.Integer(k if q is not s else value(k)), s: sp.Integer(value(k))}
        return value(k) >= least and all(bool(x.xreplace(values) >= least) for x in exprs)

    lo = (_first(a.step, a.offset, max(a.low, 1)) - a.offset) // a.step
    hi = max(lo, (a.value - a.offset) // a.step)
    for _ in range(MAX_SEARCH):
        if ok(hi):
            break
        hi = 2 * hi + 1
        if a.high is not None and value(hi) > a.high:
            return None
    else:
        return None
    while lo < hi:  # sizes grow with the input: the first good one
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return value(hi)


def _statements(stmts: list[Statement]) -> Iterator[Statement]:
    for st in stmts:
        yield st
        for it in st.items:
            if isinstance(it, Block):
                yield from _statements(it.statements)


def reanalysed(cg: ConcreteGraph, values: dict[str, int]) -> ConcreteGraph | None:
    """The spec analysed again at these values (every rule of every layer); None where it fails."""
    path, text = cg.source
    if text is None:
        return None
    try:
        return analyse_text(text, path, values)
    except NetdslError:
        return None


def analyses(cg: ConcreteGraph, sizes: dict[str, int]) -> bool:
    """Whether the spec analyses cleanly with these input sizes (every rule of every layer)."""
    return cg.source[1] is None or reanalysed(cg, {**cg.env.values, **sizes}) is not None


def confirm_low(cg: ConcreteGraph, axes: list[SizeAxis]) -> None:
    """Raise each dynamic size's smallest value until the spec analyses there (rules the
    formulas do not show: a kernel larger than its padded input, a reflection pad)."""
    dyn = [a for a in axes if a.dynamic]
    for _ in range(MAX_SEARCH):
        if not dyn or analyses(cg, {a.name: a.low for a in dyn}):
            return
        for a in dyn:
            if a.low < a.value:
                a.low = _first(a.step, a.offset, a.low + 1)
    for a in dyn:
        a.low = a.value


def second_sizes(axes: list[SizeAxis]) -> dict[str, int] | None:
    """Other valid values of the dynamic sizes for the check at a second size: a step or more up
    (down where a bound forbids it), each different from the others so that swapped axes show."""
    out: dict[str, int] = {}
    for a in axes:
        if not a.dynamic or a.name in out:
            continue
        for k in range(1, 2 + 2 * len(axes)):
            v = a.value + k * a.step
            if a.high is not None and v > a.high:
                v = a.value - k * a.step
                if v < a.low:
                    break
            if v not in out.values():
                out[a.name] = v
                break
    return out or None


def declared_sizes(cg: ConcreteGraph, axes: list[SizeAxis]) -> dict[str, int] | None:
    """The spec's own default values of the dynamic sizes (the size it is meant for: 224 for the
    zoo), for one more check, when they differ from those in use and one sample there costs at
    most CHECK_MACS multiply-accumulates."""
    dyn = {a.name for a in axes if a.dynamic}
    d = reanalysed(cg, {k: v for k, v in cg.env.values.items() if k not in dyn}) if dyn else None
    if d is None:
        return None
    sizes = {n: int(d.env.values[n]) for n in dyn}
    if all(sizes[a.name] == a.value for a in axes if a.dynamic):
        return None
    macs = sum(int(d.env.at(item.counts.macs)) for item in d.walk())
    return sizes if macs <= CHECK_MACS else None
