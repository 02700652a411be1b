"""Exact per-sample counts of a network: weights, biases, BatchNorm parameters and buffers,
outputs and connections (multiply-accumulates), per layer and in total, as SymPy expressions.

Everything is derived from the symbolic shapes of `passes.shapes`, so the counts are exact for
every admissible parameter value and input size, not just for one forward pass; torch is never
imported (the tests use torch as the oracle instead).

Counting rules, per sample (`units` = C*H*W of a tensor):
  conv       weights C_out*C_in/g*k*k, biases C_out, connections = output units * k*k*C_in/g
  convT      weights C_in*C_out/g*k*k, biases C_out, connections = input units * k*k*C_out/g
  pooling    connections = output units * window (k*k)
  upsample   connections = output units (nearest) or 4 per output unit (bilinear)
  batchnorm  norm_params 2*C (affine), buffers 2*C + 1 (running mean/var, num_batches_tracked),
             connections 1 per unit
  relu, ...  connections 1 per unit (dropout is counted with the activations)
  cat        connections 0; add: one per unit per extra input
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import sympy as sp

from netdsl import ir
from netdsl.passes.shapes import Shape, ShapeResult

METRICS = ("weights", "biases", "norm_params", "parameters", "buffers", "outputs", "connections")

# Which layer categories each total includes under the course convention of the seed's Question 3,
# and which convention switches apply to which metric.
CATEGORY_OF = {
    "conv": "conv", "convT": "conv", "maxpool": "pool", "avgpool": "pool", "upsample": "upsample",
    "batchnorm": "batchnorm", "relu": "activation", "leaky_relu": "activation", "sigmoid": "activation",
    "tanh": "activation", "dropout": "activation", "cat": "merge", "add": "merge",
}
SWITCHES: dict[str, tuple[str, ...]] = {
    "weights": ("biases", "batchnorm"),
    "outputs": ("batchnorm", "activations", "merges"),
    "connections": ("batchnorm", "activations", "merges"),
}
CONVENTION_TEXT = ("course convention (seed, Part A Question 3): weights exclude biases and BatchNorm; "
                   "outputs count every layer except activations and cat; connections count conv, convT, "
                   "pooling and upsampling")


@dataclass(frozen=True)
class Convention:
    """What the totals include. `None` means the metric's default under the course convention."""

    biases: bool = False          # weights: + conv/convT biases
    batchnorm: bool | None = None  # weights: + BN affine params (default no); outputs: BN (default yes);
    #                                connections: BN, one per unit (default no)
    activations: bool = False     # outputs/connections: activation and dropout layers
    merges: bool = False          # outputs/connections: cat/add

    def with_options(self, **opts: bool | None) -> "Convention":
        return replace(self, **{k: v for k, v in opts.items() if v is not None})

    def categories(self, metric: str) -> frozenset[str]:
        """The layer categories whose per-layer value enters the total of `metric`."""
        if metric == "outputs":
            cats = {"conv", "pool", "upsample"}
            if self.batchnorm is not False:
                cats.add("batchnorm")
        else:  # connections
            cats = {"conv", "pool", "upsample"}
            if self.batchnorm:
                cats.add("batchnorm")
        if self.activations:
            cats.add("activation")
        if self.merges:
            cats.add("merge")
        return frozenset(cats)

    def describe(self, metric: str) -> str:
        """The switches that differ from the course convention, for headers and claim reports."""
        on = []
        if metric == "weights":
            on += ["+biases"] if self.biases else []
            on += ["+batchnorm"] if self.batchnorm else []
        elif metric in ("outputs", "connections"):
            if metric == "outputs" and self.batchnorm is False:
                on.append("-batchnorm")
            if metric == "connections" and self.batchnorm:
                on.append("+batchnorm")
            on += ["+activations"] if self.activations else []
            on += ["+merges"] if self.merges else []
        return " ".join(on)


@dataclass(frozen=True)
class LayerCount:
    """One layer (or cat/add merge) with its counts as internal SymPy expressions."""

    name: str   # module path in the compiled network, or "<tensor>(cat)" for a merge
    op: str
    line: int   # the statement that produced it (the block call, for layers from blocks)
    category: str
    out_shape: Shape
    weights: sp.Expr
    biases: sp.Expr
    norm_params: sp.Expr
    buffers: sp.Expr
    outputs: sp.Expr
    connections: sp.Expr

    def metric(self, name: str) -> sp.Expr:
        if name == "parameters":
            return self.weights + self.biases + self.norm_params
        return getattr(self, name)


@dataclass
class CountResult:
    """Counts of a network; expressions are returned in the user's symbols (expanded)."""

    shapes: ShapeResult
    layers: list[LayerCount]
    claims: list = field(default_factory=list)  # ClaimResults, filled in by api.count / `netdsl count`
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def env(self):  # noqa: ANN201 - SymEnv
        return self.shapes.env

    @cached_property
    def dims(self) -> tuple[sp.Symbol, sp.Symbol]:
        g = self.env.graph
        return self.env.symbols[g.input.dims[0].name], self.env.symbols[g.input.dims[1].name]

    @cached_property
    def user_values(self) -> dict[sp.Symbol, sp.Integer]:
        return {self.env.symbols[n]: sp.Integer(v) for n, v in self.env.values.items()}

    def layer_metric(self, layer: LayerCount, metric: str) -> sp.Expr:
        return self.show(layer.metric(metric))

    def show(self, x: sp.Expr) -> sp.Expr:
        """`env.show`, memoised: deep networks repeat the same per-layer expressions many times."""
        key = ("show", x)
        if key not in self._cache:
            self._cache[key] = self.env.show(x)
        return self._cache[key]

    def total(self, metric: str, convention: Convention = Convention(), doubled: bool = False) -> sp.Expr:
        """The total of `metric` in user symbols; `doubled`: at input size 2H x 2W."""
        key = (metric, convention, doubled)
        if key not in self._cache:
            if doubled:
                h, w = self.dims
                value = sp.expand(self.total(metric, convention).xreplace({h: 2 * h, w: 2 * w}))
            else:
                value = self.env.show(sp.Add(*[l.metric(metric) for l in self.included(metric, convention)]))
            self._cache[key] = value
        return self._cache[key]

    def included(self, metric: str, convention: Convention) -> list[LayerCount]:
        if metric == "weights":
            # Kernel weights come from conv/convT only; biases and BN parameters are switched in.
            out = []
            for l in self.layers:
                w = l.weights + (l.biases if convention.biases else 0) + (l.norm_params if convention.batchnorm else 0)
                if w != 0:
                    out.append(replace(l, weights=w))
            return out
        if metric in ("outputs", "connections"):
            cats = convention.categories(metric)
            return [l for l in self.layers if l.category in cats]
        return list(self.layers)

    def ratio(self, metric: str, convention: Convention = Convention()) -> sp.Expr | None:
        """doubled / undoubled, simplified; None where the total is 0."""
        base = self.total(metric, convention)
        if base == 0:
            return None
        return sp.factor(sp.cancel(self.total(metric, convention, doubled=True) / base))

    def value(self, x: sp.Expr) -> sp.Expr:
        """A user-symbol expression at the values in use."""
        return x.xreplace(self.user_values)


def _units(s: Shape) -> sp.Expr:
    return sp.expand(s[0] * s[1] * s[2])


def _layer_count(ls, line: int) -> LayerCount:  # noqa: ANN001 - LayerShape
    op: ir.Op = ls.op
    kind = op.op
    cat = CATEGORY_OF.get(kind, "activation")
    zero = sp.Integer(0)
    weights = biases = norm = buffers = zero
    out_units = _units(ls.out_shape)
    a = ls.args
    if kind in ("conv", "convT"):
        cin, cout, k, g = ls.in_shape[0], a["out"], a["kernel"], a["groups"]
        weights = sp.expand(cin * cout * k * k / g)
        has_bias = op.args.get("bias")
        biases = cout if not isinstance(has_bias, ir.Bool) or has_bias.value else zero
        if kind == "conv":
            connections = sp.expand(out_units * k * k * cin / g)
        else:  # every input unit is scattered to k*k*C_out/g outputs
            connections = sp.expand(_units(ls.in_shape) * k * k * cout / g)
    elif kind in ("maxpool", "avgpool"):
        connections = sp.expand(out_units * a["kernel"] ** 2)
    elif kind == "upsample":
        mode = op.args.get("mode")
        bilinear = isinstance(mode, ir.Str) and mode.value == "bilinear"
        connections = 4 * out_units if bilinear else out_units
    elif kind == "batchnorm":
        affine = op.args.get("affine")
        c = ls.out_shape[0]
        norm = 2 * c if not isinstance(affine, ir.Bool) or affine.value else zero
        buffers = 2 * c + 1
        connections = out_units
    else:
        connections = out_units
    return LayerCount(name=ls.qualname, op=kind, line=line, category=cat, out_shape=ls.out_shape,
                      weights=weights, biases=biases, norm_params=norm, buffers=buffers,
                      outputs=out_units, connections=connections)


def count_layers(result: ShapeResult) -> CountResult:
    """Counts for every layer (and cat/add merge) of a shape-inferred graph."""
    layers: list[LayerCount] = []
    by_node: dict[str, list] = {}
    for ls in result.layers:
        by_node.setdefault(ls.node, []).append(ls)
    zero = sp.Integer(0)
    for node in result.env.graph.nodes:
        if node.merge != "ref":
            s = result.merged[node.name]
            units = _units(s)
            conns = zero if node.merge == "cat" else sp.expand(units * (len(node.inputs) - 1))
            layers.append(LayerCount(name=f"{node.name}({node.merge})", op=node.merge, line=node.span.line,
                                     category="merge", out_shape=s, weights=zero, biases=zero, norm_params=zero,
                                     buffers=zero, outputs=units, connections=conns))
        for ls in by_node.get(node.name, []):
            layers.append(_layer_count(ls, ls.op.origin.line))
    return CountResult(shapes=result, layers=layers)
