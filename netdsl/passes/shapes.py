"""Symbolic shape inference: every tensor and layer output as [C, H', W'] in SymPy.

Each size is checked at the values in use (a positive integer); merges and annotations are
checked symbolically where SymPy can decide them, and at the values in use otherwise (noted).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from netdsl import ir
from netdsl.errors import NetdslError, Span
from netdsl.passes.symbols import MAX_VALUE, SymEnv, make_env, safe_str

Shape = tuple[sp.Expr, sp.Expr, sp.Expr]


@dataclass(frozen=True)
class LayerShape:
    node: str
    qualname: str  # the module path in the compiled network, e.g. "sequence1.0"
    op: ir.Op
    in_shape: Shape
    out_shape: Shape
    args: dict[str, sp.Expr]  # integer arguments as internal expressions


@dataclass
class ShapeResult:
    env: SymEnv
    input_shape: Shape
    tensors: dict[str, Shape] = field(default_factory=dict)
    merged: dict[str, Shape] = field(default_factory=dict)  # each statement's shape after cat/add
    layers: list[LayerShape] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def output_shape(self) -> Shape:
        return self.tensors[self.env.graph.output]

    def show(self, s: Shape) -> list[sp.Expr]:
        return show_shape(self.env, s)

    def at(self, s: Shape) -> list[int]:
        return shape_at(self.env, s)


def show_shape(env: SymEnv, s: Shape) -> list[sp.Expr]:
    """A shape in the user's symbols."""
    return [env.show(x) for x in s]


def shape_at(env: SymEnv, s: Shape) -> list[int]:
    """A shape at the values in use."""
    return [int(env.at(x)) for x in s]


def _fmt(xs: list[sp.Expr] | list[int]) -> str:
    return "[" + ", ".join(str(x) for x in xs) + "]"


def _origin(span: Span) -> str:
    return f"line {span.line}"


class ShapeInference:
    """Walks a graph once, computing and checking every shape; `solve` reuses its per-layer rules."""

    def __init__(self, graph: ir.Graph, env: SymEnv) -> None:
        self.g = graph
        self.env = env
        self.origin: dict[str, Span] = {graph.input.name: graph.input.span}

    def int_arg(self, op: ir.Op, name: str) -> sp.Expr:
        v = op.args[name]
        if isinstance(v, ir.Hole):
            raise NetdslError(f"'{op.op}' argument '{name}' is left open ('?')", v.span,
                              "`netdsl solve` finds values for open arguments; build needs them filled in")
        x = self.env.sym(v)  # type: ignore[arg-type]
        val = self.env.at(x)
        if not val.is_Integer:
            raise NetdslError(f"'{op.op}' argument '{name}' is not an integer: {safe_str(self.env.show(x))} = "
                              f"{safe_str(val)}", v.span,
                              "use // for integer division")
        return x

    def layer(self, tnode: ir.TensorNode, op: ir.Op, s: Shape) -> LayerShape:
        node = tnode.name
        c, h, w = s
        kind = op.op
        args = {n: self.int_arg(op, n) for n, v in op.args.items() if not isinstance(v, (ir.Float, ir.Str, ir.Bool))}
        where = op.via[0] if op.via else op.span
        vals = {n: int(self.env.at(x)) for n, x in args.items()}
        for n, v in vals.items():
            low = 1 if n in ("out", "kernel", "stride", "dilation", "groups", "scale") else 0
            if v > MAX_VALUE:
                raise NetdslError(f"'{kind}' argument '{n}' is larger than 10**18", op.args[n].span,
                                  f"at the values in use {self.used(args[n])}")
            if v < low:
                raise NetdslError(f"'{kind}' argument '{n}' is {v}; it must be at least {low}",
                                  op.args[n].span, f"at the values in use {self.used(args[n])}")
        if kind in ("conv", "convT"):
            k, st, p, d, g = (args[n] for n in ("kernel", "stride", "padding", "dilation", "groups"))
            cin, cout = int(self.env.at(c)), vals["out"]
            if cin % vals["groups"] or cout % vals["groups"]:
                raise NetdslError(f"groups={vals['groups']} must divide the input channels ({cin}) and the output "
                                  f"channels ({cout})", op.args["groups"].span, "choose groups that divide both")
            if kind == "conv":
                fn = lambda x: sp.floor(sp.expand((x + 2 * p - d * (k - 1) - 1) / st)) + 1  # noqa: E731
            else:
                op_ = args["output_padding"]
                if vals["output_padding"] >= max(vals["stride"], vals["dilation"]):
                    raise NetdslError(f"output_padding={vals['output_padding']} must be smaller than stride "
                                      f"({vals['stride']}) or dilation ({vals['dilation']})", op.args["output_padding"].span,
                                      "PyTorch's rule for ConvTranspose2d")
                fn = lambda x: sp.expand((x - 1) * st - 2 * p + d * (k - 1) + op_ + 1)  # noqa: E731
            out = (args["out"], fn(h), fn(w))
        elif kind in ("maxpool", "avgpool"):
            k, st, p = args["kernel"], args["stride"], args["padding"]
            d = args.get("dilation", sp.Integer(1))
            eff = vals["kernel"] if kind == "avgpool" else (vals["kernel"] - 1) * vals.get("dilation", 1) + 1
            if 2 * vals["padding"] > eff:
                raise NetdslError(f"padding={vals['padding']} must be at most half the {kind} window ({eff})",
                                  op.args["padding"].span, "PyTorch's rule for pooling")
            fn = lambda x: sp.floor(sp.expand((x + 2 * p - d * (k - 1) - 1) / st)) + 1  # noqa: E731
            out = (c, fn(h), fn(w))
        elif kind == "upsample":
            out = (c, sp.expand(h * args["scale"]), sp.expand(w * args["scale"]))
        else:
            out = s
        span = op.span
        for axis, x in zip(("channels", "height", "width"), out):
            self.env.check_size(x, f"the {axis} after '{kind}'", span,
                                f"in tensor '{node}'" + (f", from the block called at line {where.line}" if op.via else "")
                                + f"; input was {_fmt(self.show(s))} = {_fmt(self.at(s))}")
        return LayerShape(node=node, qualname=tnode.module_path(op), op=op, in_shape=s, out_shape=out, args=args)

    def used(self, x: sp.Expr) -> str:
        names = sorted(str(s) for s in self.env.show(x).free_symbols)
        return ", ".join(f"{n}={self.env.values[n]}" for n in names) or "(constant)"

    def show(self, s: Shape) -> list[sp.Expr]:
        return show_shape(self.env, s)

    def at(self, s: Shape) -> list[int]:
        return shape_at(self.env, s)

    def equal(self, a: sp.Expr, b: sp.Expr) -> str:
        """'yes' (symbolically), 'here' (only at the values in use) or 'no'."""
        if sp.expand(a - b) == 0:
            return "yes"
        return "here" if self.env.at(a) == self.env.at(b) else "no"

    def merge(self, node: ir.TensorNode, result: ShapeResult) -> Shape:
        shapes = [result.tensors[i.name] for i in node.inputs]
        first, span0 = node.inputs[0], node.inputs[0].span
        last = node.inputs[-1].span
        start = max(1, span0.column - len(node.merge) - 1) if span0.line == last.line else span0.column
        span = Span(span0.line, start, last.end_line, last.end_column + 1)
        axes = (1, 2) if node.merge == "cat" else (0, 1, 2)
        for other, s in zip(node.inputs[1:], shapes[1:]):
            verdicts = [self.equal(shapes[0][i], s[i]) for i in axes]
            if "no" in verdicts:
                what = "spatial sizes" if node.merge == "cat" else "shapes"
                a, b = result.tensors[first.name], s
                raise NetdslError(
                    f"{node.merge}() of tensors whose {what} differ: '{first.name}' is {_fmt(self.show(a))} = "
                    f"{_fmt(self.at(a))} (from {_origin(self.origin[first.name])}), '{other.name}' is "
                    f"{_fmt(self.show(b))} = {_fmt(self.at(b))} (from {_origin(self.origin[other.name])})",
                    span, "check the strides, paddings and output_padding of the layers that made them"
                    + ("; cat joins channels, so heights and widths must match" if node.merge == "cat" else ""))
            if "here" in verdicts:
                result.notes.append(f"line {node.span.line}: {node.merge}({first.name}, {other.name}): sizes could not be "
                                    f"shown equal for all parameter values; they are equal at the values in use")
        if node.merge == "cat":
            return (sp.Add(*[s[0] for s in shapes]), shapes[0][1], shapes[0][2])
        return shapes[0]

    def run(self) -> ShapeResult:
        g, env = self.g, self.env
        cin = env.sym(g.input.channels)
        env.check_size(cin, "the input's channel count", g.input.channels.span, "it must be a positive integer")
        inp: Shape = (cin, env.fwd.get(env.symbols[g.input.dims[0].name], env.symbols[g.input.dims[0].name]),
                      env.fwd.get(env.symbols[g.input.dims[1].name], env.symbols[g.input.dims[1].name]))
        result = ShapeResult(env=env, input_shape=inp)
        result.tensors[g.input.name] = inp
        for node in g.nodes:
            s = result.tensors[node.inputs[0].name] if node.merge == "ref" else self.merge(node, result)
            result.merged[node.name] = s
            for op in node.layers:
                ls = self.layer(node, op, s)
                result.layers.append(ls)
                s = ls.out_shape
            result.tensors[node.name] = s
            self.origin[node.name] = node.span
            if node.annotation is not None:
                self.check_annotation(node, s, result)
        return result

    def check_annotation(self, node: ir.TensorNode, s: Shape, result: ShapeResult) -> None:
        assert node.annotation is not None
        want = tuple(self.env.sym(e) for e in node.annotation)
        for axis, e, a, b in zip(("channels", "height", "width"), node.annotation, s, want):
            verdict = self.equal(a, b)
            if verdict == "no":
                raise NetdslError(f"'{node.name}' is annotated {_fmt(self.show(want))} but its {axis} are "
                                  f"{self.env.show(a)} = {self.env.at(a)}", e.span,
                                  f"its shape is {_fmt(self.show(s))} = {_fmt(self.at(s))}")
            if verdict == "here":
                result.notes.append(f"line {node.span.line}: the {axis} of '{node.name}' match the annotation at the "
                                    "values in use only")


def infer_shapes(graph: ir.Graph, overrides: dict[str, int] | None = None) -> ShapeResult:
    """Shapes of every tensor and layer of `graph`, symbolic and at the values in use."""
    return ShapeInference(graph, make_env(graph, overrides)).run()
