"""`peak_bytes`: the largest set of live activation storages in an eval forward under no_grad.

The pass runs the compiled module's plan (`last_uses`: a tensor leaves the plan once no later
statement reads it) over the concrete graph and tracks storages. While a layer runs, these are
alive: the network's inputs (the caller holds them), every tensor a later statement still reads,
the tensor each enclosing statement started from (a module's call holds its input until it
returns, so an nn.Sequential's input lives until its last layer returns), the layer's own input,
and what the layer allocates (`OpDef.allocates`, see `netdsl.ops.allocs`: its output and the
tensors alive beside it, such as max-pool's int64 indices). A view shares its base's storage;
parameters (and learned tensors, views of parameters) are never counted. The total is the Max
over the layers, with every candidate that another one bounds for all admissible values dropped.
Formulas are in the concrete graph's internal symbols and the batch symbol.

Under `--dtype bf16|fp16` the forward runs inside `torch.autocast("cpu", dtype)`: each tensor has
a width (the network's inputs float32), an op's output width is the one the saved pass's rule
gives (conv, convT, linear, channel_linear and detect compute in 16 bits; layer_scale and a mul
by a float32 tensor give float32; every other op keeps its widest input's), a 16-bit op holds a
16-bit copy of a float32 input while it runs, and autocast caches the 16-bit copies of its weight
and bias (parameters are leaves that require grad, no_grad or not) until the forward ends
(`Alloc.cached`, alive from that op on); cat copies its narrower inputs to the widest width.
Autocast caches only the casts of leaf tensors that require grad: a frozen layer's (`@freeze`,
`--freeze`: requires_grad=False) copies are alive while it runs and not after.

>>> import netdsl
>>> from netdsl.passes.memory_model import batch_symbol
>>> cg = netdsl.shapes("net T()\\ninput x: [3, H = 8, W = 8]\\noutput y = x |> conv(4, 3, padding=1) -> relu\\n")
>>> N = batch_symbol(cg.env)
>>> r = peak_bytes(cg, N)
>>> r.layers  # the input and the conv's output; then the input, the conv's output and relu's
[28*H*N*W, 44*H*N*W]
>>> r.total, r.at({N: 2, **{s: 8 for s in r.total.free_symbols if s != N}})
(44*H*N*W, 5632)
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from netdsl.concrete import Block, ConcreteGraph, Layer, Merge, Statement
from netdsl.errors import NetdslError
from netdsl.ops import OpDef
from netdsl.ops.allocs import Alloc, Mem
from netdsl.ops.base import Args, Shape
from netdsl.ops.learned import PARAM
from netdsl.ops.saves import PARAM_WIDTH, Need
from netdsl.passes.memory_model import DTYPES, MemoryOptions

ZERO = sp.Integer(0)
_NOT_POLYNOMIAL = (sp.Max, sp.Min, sp.Piecewise)  # no polynomial ring takes them: `_bounds` proves nothing
FP32 = MemoryOptions()  # the default: float32 (the optimizer plays no part in an eval forward)


def last_uses(steps: list[tuple[str, tuple[str, ...]]], keep: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Per step (name, inputs), the inputs it reads for the last time, `keep` excepted: the
    compiled module drops them there, so an eval forward holds only the tensors still to be read.

    >>> last_uses([("a", ("x",)), ("b", ("a", "x")), ("output", ("b", "a"))], ("output",))
    [(), ('x',), ('b', 'a')]
    """
    last: dict[str, int] = {}
    for i, (_, inputs) in enumerate(steps):
        for name in inputs:
            last[name] = i
    return [tuple(dict.fromkeys(n for n in inputs if last[n] == i and n not in keep))
            for i, (_, inputs) in enumerate(steps)]


@dataclass(frozen=True)
class PeakResult:
    """`layers`: per walk item (`list(cg.walk())`), the bytes alive while it runs; `total`: their
    Max, as one expression or a `sp.Max` of the candidates no other one bounds everywhere."""

    layers: list[sp.Expr]
    total: sp.Expr

    def at(self, values: Mapping[sp.Symbol, int]) -> int:
        """The total at these values of the internal symbols and the batch symbol."""
        parts = self.total.args if isinstance(self.total, sp.Max) else (self.total,)
        return max(int(p.xreplace(dict(values))) for p in parts)


def _lowest(cg: ConcreteGraph) -> dict[sp.Symbol, int]:
    """Each internal symbol's smallest value where it is above 0: a multiple of 32 is at least
    32, so `H = 32*H_q` has `H_q >= 1` (`k = 2*k_q + 1` has k_q >= 0, left out)."""
    out: dict[sp.Symbol, int] = {}
    for q, user in cg.env.back.items():
        names = list(user.free_symbols)
        if len(names) == 1 and names[0].is_positive:
            low = sp.ceiling(user.subs(names[0], 1))
            if low.is_number and low > 0:
                out[q] = int(low)
    for x in cg.env.internal_values:
        if getattr(x, "is_positive", False) and x not in out:
            out[x] = 1
    return out


def _bounds(hi: sp.Expr, lo: sp.Expr, lowest: Mapping[sp.Symbol, int] | None = None) -> bool:
    """hi >= lo for every admissible value: every coefficient of the difference, as a polynomial
    in the symbols (each counted from its lowest value, `lowest`) and its floors, is >= 0. A floor
    in a shape is its size less one (or the size), so it is >= 0 wherever the network is defined.
    False where that cannot be seen (Max, Min, Piecewise, a symbol that may be negative, a
    negative coefficient)."""
    # Each side with its floors taken out (once per expression: a candidate meets many others),
    # then the difference: the same as taking them out of `hi - lo`, as the stand-ins are the
    # same at every call and a replacement maps each side's terms as it would the difference's.
    d = _floorless(hi) - _floorless(lo)  # both are expanded sums: their difference collects like terms itself
    if d.is_number:
        return bool(d >= 0)
    syms = sorted(d.free_symbols, key=str)
    if not all(x.is_nonnegative for x in syms):
        return False
    if d.has(*_NOT_POLYNOMIAL):  # `from_expr` would fail too, after printing `d` into its message (slow)
        return False
    ring, *gens = sp.ring(syms, sp.QQ)
    try:
        poly = ring.from_expr(d)
    except ValueError:  # not a polynomial: anything else a shape may hold
        return False
    if all(c >= 0 for c in poly.coeffs()):
        return True
    at_least_one = tuple(bool(lowest and lowest.get(x, 0) >= 1) for x in syms)
    if _covered(dict(poly.terms()), at_least_one):
        return True
    moved = [(g, g + lowest[x]) for g, x in zip(gens, syms) if lowest and lowest.get(x)]
    return bool(moved) and all(c >= 0 for c in poly.compose(moved).coeffs())


@functools.cache  # never evicted within a pass (`_floorless` keeps results that must agree); `peak_bytes` clears it
def _floor_symbol(f: sp.floor) -> sp.Dummy:
    """One nonnegative stand-in per floor, the same at every call (a floor in a shape is >= 0)."""
    return sp.Dummy(nonnegative=True)


@functools.lru_cache(maxsize=4096)
def _opened(x: sp.Expr) -> sp.Expr:
    """A Max, Min or Piecewise with its floors replaced, built once: rebuilding it compares its
    arguments again (a YOLOv8 head's width, Max(64, floor(P3/4)), in every candidate)."""
    return x.xreplace({f: _floor_symbol(f) for f in x.atoms(sp.floor)})


@functools.lru_cache(maxsize=4096)
def _floorless(e: sp.Expr) -> sp.Expr:
    """`e` with every floor replaced by its stand-in (outermost floors first: a floor inside a
    floor disappears with it)."""
    return e.xreplace(_without_floors(e))


def _without_floors(d: sp.Expr) -> dict[sp.Expr, sp.Expr]:
    """The replacements that take every floor out of `d`: the floors' stand-ins, and the functions
    that hold floors already rebuilt with theirs (`xreplace` replaces the outermost match)."""
    parts = d.atoms(sp.floor, *_NOT_POLYNOMIAL)  # one walk over `d` (a long sum) for both kinds
    rule: dict[sp.Expr, sp.Expr] = {f: _floor_symbol(f) for f in parts if isinstance(f, sp.floor)}
    rule.update({m: _opened(m) for m in parts if not isinstance(m, sp.floor) and m.has(sp.floor)})
    return rule


def _covered(terms: dict[tuple[int, ...], Any], at_least_one: tuple[bool, ...]) -> bool:
    """A quick proof that the polynomial is >= 0: each negative term is paid for by positive
    terms whose monomial is its monomial times symbols that are at least 1 (so at least as
    large). False proves nothing: the caller expands the polynomial from the lowest values."""
    left = {m: c for m, c in terms.items() if c > 0}
    for m, c in sorted(terms.items()):
        if c >= 0:
            continue
        need = -c
        for big in sorted(left, reverse=True):
            if all(b == s or (b > s and one) for b, s, one in zip(big, m, at_least_one)):
                take = min(need, left[big])
                left[big] -= take
                need -= take
                if need == 0:
                    break
        if need > 0:
            return False
    return True


@dataclass(frozen=True)
class _Tensor:
    storage: int | None  # None: a parameter's (a learned tensor), never counted
    shape: Shape
    at: tuple[int, ...]
    layout: str = "nchw"
    width: int = 4  # bytes per value


@dataclass
class _Tracker:
    batch: sp.Symbol
    autocast: int | None  # the bytes per value of a 16-bit autocast in force, or None
    sizes: list[sp.Expr] = field(default_factory=list)
    layers: list[sp.Expr] = field(default_factory=list)
    value: Callable[[sp.Expr], int] = int  # an expression at the values in use
    lowest: dict[sp.Symbol, int] = field(default_factory=dict)  # a symbol's smallest admissible value
    frontier: list[tuple[sp.Expr, int]] = field(default_factory=list)
    cached: sp.Expr = ZERO  # autocast's cached 16-bit weight copies so far: alive to the end

    def new(self, nbytes: sp.Expr) -> int:
        self.sizes.append(sp.expand(nbytes))
        return len(self.sizes) - 1

    def live(self, storages: Iterable[int | None]) -> sp.Expr:
        return sp.Add(*(self.sizes[s] for s in set(storages) if s is not None))

    def record(self, around: set[int | None], peak: sp.Expr) -> None:
        base = self.live(around) + self.cached  # sums of expanded terms: adding them collects like terms
        self.layers.append(base + peak)
        for part in peak.args if isinstance(peak, sp.Max) else (peak,):
            self.candidate(base + part)

    def candidate(self, e: sp.Expr) -> None:
        # Only a candidate at least as large at the values in use can bound another everywhere:
        # the number rules out most pairs before any polynomial is built.
        v = self.value(e)
        if any(cv >= v and _bounds(c, e, self.lowest) for c, cv in self.frontier):
            return
        self.frontier = [(c, cv) for c, cv in self.frontier if not (v >= cv and _bounds(e, c, self.lowest))] + [(e, v)]

    # --- statements ----------------------------------------------------------------------------

    def statements(self, stmts: list[Statement], env: dict[str, _Tensor], held: set[int | None],
                   keep: tuple[str, ...]) -> None:
        drops = last_uses([(st.name, st.inputs) for st in stmts], keep)
        for st, drop in zip(stmts, drops):
            if st.source == PARAM:  # an expand of the parameter: allocates nothing
                self.record(held | {t.storage for t in env.values()}, ZERO)
                env[st.name] = _Tensor(None, st.shape, st.at, width=PARAM_WIDTH)
                continue
            xs = [env[i] for i in st.inputs]
            for i in drop:
                del env[i]
            outer = held | {t.storage for t in env.values()}
            if st.merge is not None:  # a merge's `@freeze` is its statement's
                t = self.apply(st.merge, st.merge.args, xs, st.merge.out_shape, st.merge.out_at,
                               outer | {x.storage for x in xs}, "freeze" in st.attrs)
            else:
                t = xs[0]
            held_by_call = outer | {t.storage}  # the statement's module holds its input until it returns
            for it in st.items:
                if isinstance(it, Block):
                    inner = {it.input: t}
                    self.statements(it.statements, inner, held_by_call | {t.storage}, ("output",))
                    t = inner["output"]
                else:
                    t = self.apply(it, it.sym, [t], it.out_shape, it.out_at, held_by_call | {t.storage},
                                   "freeze" in it.attrs)
            env[st.name] = t

    def apply(self, item: Layer | Merge, a: Args, ins: list[_Tensor], out: Shape, out_at: tuple[int, ...],
              around: set[int | None], frozen: bool = False) -> _Tensor:
        shapes = [t.shape for t in ins]
        widths = tuple(t.width for t in ins)
        layouts = tuple(t.layout for t in ins)
        at = tuple(t.at for t in ins)
        width = max(widths)  # torch's type promotion
        if self.autocast is not None:  # the op's output width, as the saved pass's rule says
            need = Need(grads=(False,) * len(ins), params=True, batch=self.batch, width=width,
                        autocast=self.autocast, widths=widths, layouts=layouts, at=at)
            width = item.op.saved(a, shapes, out, need).width or width
        m = Mem(batch=self.batch, width=width, layouts=layouts, at=at, autocast=self.autocast, widths=widths)
        al = self.rule(item.op, item, a, shapes, out, m)
        self.record(around, al.peak)
        if not frozen:  # a frozen layer's 16-bit copies are made while it runs and freed with it
            self.cached = sp.expand(self.cached + al.cached)
        layout = ins[0].layout if al.layout == "same" else al.layout
        if al.alias:
            return _Tensor(ins[0].storage, out, out_at, layout, ins[0].width)
        return _Tensor(self.new(al.output), out, out_at, layout, width)

    @staticmethod
    def rule(op: OpDef, item: Layer | Merge, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        try:
            return op.allocates(a, ins, out, m)
        except NotImplementedError as e:
            raise NetdslError(f"{e}: the peak memory of an eval forward cannot be computed for this network",
                              item.span, "every op must state what it allocates (OpDef.allocates)") from None


def peak_bytes(cg: ConcreteGraph, batch: sp.Symbol, options: MemoryOptions = FP32) -> PeakResult:
    """The bytes of live activation storages while each walk item runs in an eval forward of a
    batch of `batch` under no_grad (the inputs included, parameters excluded; under a 16-bit
    `options.dtype`, autocast's cached 16-bit weight copies included), and their Max."""
    for cache in (_floor_symbol, _opened, _floorless):  # one pass's stand-ins: a long-running server does not pile them up
        cache.cache_clear()
    one = {batch: sp.Integer(1)}
    autocast = DTYPES[options.dtype] if options.dtype != "fp32" else None
    tracker = _Tracker(batch, autocast, value=lambda e: int(cg.env.at(e).xreplace(one)),
                       lowest={**_lowest(cg), batch: 1})
    env = {t.name: _Tensor(tracker.new(batch * sp.Mul(*t.shape) * 4), t.shape, t.at) for t in cg.inputs}
    inputs = {t.storage for t in env.values()}  # the caller holds them throughout
    tracker.statements(cg.statements, env, set(inputs), tuple(t.name for t in cg.outputs))
    front = [c for c, _ in tracker.frontier]
    total = front[0] if len(front) == 1 else sp.Max(*front, evaluate=False)
    return PeakResult(tracker.layers, total)
