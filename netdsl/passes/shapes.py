"""Symbolic shape inference: the lowered graph to the concrete graph, every rule checked.

Each size is checked at the values in use (a positive integer); merges and annotations are
checked for every admissible value where that can be decided (`netdsl.symbolic`), and at the
values in use otherwise (noted). Ops are read from the registry: their rules, shapes, counts.
"""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl import ir
from netdsl.concrete import Block, ConcreteGraph, Layer, Merge, Shape, Statement, Tensor
from netdsl.errors import NetdslError, Span
from netdsl.freeze import NO_FREEZE, Freeze
from netdsl.limits import MAX_INT32
from netdsl.ops import REGISTRY, Args, OpDef, RuleError
from netdsl.ops.learned import LEARNED, PARAM
from netdsl.passes.lower import lower
from netdsl.passes.names import check_header
from netdsl.passes.symbols import MAX_VALUE, SymEnv, make_env, safe_str
from netdsl.symbolic import always_equal

AXES = {1: ("features",), 2: ("tokens", "features"), 3: ("channels", "height", "width")}
_COUNT_OF = {"channels": "channel count", "tokens": "token count", "features": "feature count"}
MAX_SIZE_DEPTH = 60
DEPTH_HINT = ("declare how the input sizes divide (e.g. `where H % 64 == 0`) so strides divide exactly and "
              "sizes stay simple, or use fewer size-changing layers in a row")


def depth(x: sp.Expr) -> int:
    """The height of an expression tree, without recursion."""
    best, stack = 0, [(x, 1)]
    while stack:
        e, d = stack.pop()
        best = max(best, d)
        stack.extend((a, d + 1) for a in e.args)
    return best


def axis_names(rank: int) -> tuple[str, ...]:
    return AXES.get(rank, tuple(f"axis {i}" for i in range(rank)))


def rank_text(rank: int) -> str:
    return {1: "features [F]", 2: "a sequence [T, D]", 3: "an image [C, H, W]"}.get(rank, f"a rank-{rank} tensor")


def rank_hint(have: int, want: tuple[int, ...]) -> str:
    """How to bring an op's input to a rank it takes."""
    if have == 3:
        if 1 in want:
            return "flatten it first: `-> flatten -> linear(...)`" + \
                (" (or `-> tokens` for a sequence [H*W, C])" if 2 in want else "")
        return "make the image a sequence first: `-> tokens` ([C, H, W] -> [H*W, C])"
    if have == 2:
        return "turn it back into an image first: `-> image(h, w)`, h*w its tokens" if 3 in want else \
            "pick one token first: `-> token(0)`"
    return "this op works on images; features come from flatten or linear" if 3 in want else \
        "a sequence comes from `-> tokens` on an image or from an input `[T, D]`"


def _fmt(xs: Any) -> str:
    return "[" + ", ".join(str(x) for x in xs) + "]"


class ShapeInference:
    """Walks a graph once, computing and checking every shape; `solve` reuses its per-layer rules.

    `dim_scale` multiplies every input size (2: the network at 2H x 2W, for `--double-resolution`).
    """

    def __init__(self, graph: ir.Graph, env: SymEnv, dim_scale: int = 1) -> None:
        self.g = graph
        self.env = env
        self.dim_scale = dim_scale
        self.origin: dict[str, Span] = {i.name: i.span for i in graph.inputs}
        self.notes: list[str] = []
        self.image: tuple[int, ...] | None = None  # the first image input at the values in use

    # --- values ------------------------------------------------------------------------------
    def int_value(self, op: str, name: str, v: ir.Value, low: int) -> tuple[sp.Expr, int]:
        if isinstance(v, ir.Hole):
            raise NetdslError(f"'{op}' argument '{name}' is left open ('?')", v.span,
                              "`netdsl solve` finds values for open arguments; build needs them filled in")
        x = self.env.sym(v)  # type: ignore[arg-type]
        val = self.env.at(x)
        if not val.is_Integer:
            raise NetdslError(f"'{op}' argument '{name}' is not an integer: {safe_str(self.env.show(x))} = "
                              f"{safe_str(val)}", v.span, "use // for integer division")
        if val > MAX_INT32:
            raise NetdslError(f"'{op}' argument '{name}' is larger than {MAX_INT32:,}, the most PyTorch's kernels "
                              "take", v.span, f"at the values in use {self.used(x)}")
        if val < low:
            raise NetdslError(f"'{op}' argument '{name}' is {val}; it must be at least {low}", v.span,
                              f"at the values in use {self.used(x)}")
        return x, int(val)

    def args(self, op: ir.Op | ir.TensorNode, spec: OpDef) -> tuple[Args, Args]:
        """The op's arguments as SymPy expressions and as plain values (pairs for pair arguments,
        tuples for lists; list items are plain integers in both)."""
        sym, val = Args(), Args()
        given = op.args
        for a in spec.args:
            v = given[a.name]
            if a.type in ("float", "bool", "str"):
                sym[a.name] = val[a.name] = v.value  # type: ignore[union-attr]
                continue
            if a.type == "floats":  # a number or a list of numbers: a tuple either way
                floats = v.items if isinstance(v, ir.ListValue) else [v]
                sym[a.name] = val[a.name] = tuple(float(x.value) for x in floats)  # type: ignore[union-attr]
                continue
            if a.type in ("ints", "intlists"):
                sym[a.name] = val[a.name] = self.int_list(spec.name, a.name, v)  # type: ignore[arg-type]
                continue
            low = a.minimum if a.minimum is not None else -MAX_VALUE
            items = v.items if isinstance(v, ir.Pair) else ((v, v) if a.pair else (v,))
            got = [self.int_value(spec.name, a.name, x, low) for x in items]
            sym[a.name] = tuple(g[0] for g in got) if a.pair else got[0][0]
            val[a.name] = tuple(g[1] for g in got) if a.pair else got[0][1]
        return sym, val

    def int_list(self, op: str, name: str, v: ir.ListValue) -> tuple:
        return tuple(self.int_list(op, name, x) if isinstance(x, ir.ListValue)
                     else self.int_value(op, name, x, -MAX_VALUE)[1] for x in v.items)

    def used(self, x: sp.Expr) -> str:
        names = sorted(str(s) for s in self.env.show(x).free_symbols)
        return ", ".join(f"{n}={self.env.values[n]}" for n in names) or "(constant)"

    # --- layers ------------------------------------------------------------------------------
    def layer(self, tnode: ir.TensorNode, op: ir.Op, s: Shape, path: str) -> Layer:
        spec, sym, val, in_at, out = self.layer_shape(tnode, op, s)
        try:
            counts = spec.counts(sym, [s], out)
        except RecursionError:
            raise NetdslError(f"the sizes after this '{op.op}' nest too deeply to compute", op.span, DEPTH_HINT) from None
        return Layer(path=path, name=op.name, op=spec, args=val, sym=sym, in_shape=s, out_shape=out, in_at=in_at,
                     out_at=tuple(self.at(out)), counts=counts, connections=spec.connections(sym, [s], out, counts),
                     attrs=frozenset(op.attrs), node=op, line=op.origin.line)

    def layer_shape(self, tnode: ir.TensorNode, op: ir.Op, s: Shape) -> tuple[OpDef, Args, Args, tuple[int, ...], Shape]:
        """A layer's checked output shape without its counts (`solve` needs only the shape)."""
        spec = REGISTRY.get(op.op)
        if spec is None or spec.starts_statement:
            raise NetdslError(f"no op '{op.op}' in the registry", op.span, "this netdsl does not know the op")
        if spec.ranks is not None and len(s) not in spec.ranks:
            want = " or ".join(rank_text(r) for r in spec.ranks)
            hint = spec.rank_hint or rank_hint(len(s), spec.ranks)
            raise NetdslError(f"'{op.op}' takes {want}, but its input is {rank_text(len(s)).split(' [')[0]}: "
                              f"{_fmt(self.show(s))} = {_fmt(self.at(s))}", op.span, hint)
        sym, val = self.args(op, spec)
        in_at = tuple(self.at(s))
        try:
            spec.check(val, [in_at], self.image)
        except RuleError as e:
            where = op.args[e.arg].span if e.arg in op.args else op.span
            raise NetdslError(e.message, where, e.hint) from None
        try:
            out = tuple(spec.shape(sym, [s]))
            for x, y, what in spec.same_sizes(sym, [s]):
                if self.equal(x, y) == "here":
                    self.notes.append(f"line {op.span.line}: {op.op}: {what} could not be shown equal for all "
                                      "parameter values; they are equal at the values in use")
            self.check_depth(op, out)
            self.check_sizes(tnode, op, s, out)
        except RecursionError:
            raise NetdslError(f"the sizes after this '{op.op}' nest too deeply to compute", op.span, DEPTH_HINT) from None
        return spec, sym, val, in_at, out

    def check_depth(self, op: ir.Op, out: Shape) -> None:
        """Sizes SymPy cannot simplify grow a level per layer; past a limit every later pass would
        recurse too deeply, so stop here, at the layer."""
        for x in out:
            if depth(x) > MAX_SIZE_DEPTH:
                raise NetdslError(f"the sizes after this '{op.op}' nest more than {MAX_SIZE_DEPTH} operations deep",
                                  op.span, DEPTH_HINT)

    def check_sizes(self, tnode: ir.TensorNode, op: ir.Op, s: Shape, out: Shape) -> None:
        where = op.origin
        for axis, x in zip(axis_names(len(out)), out):
            self.env.check_size(x, f"the {axis} after '{op.op}'", op.span,
                                lambda: f"in tensor '{tnode.name}'" + (f", from the block called at line {where.line}"
                                                                      if op.via else "")
                                + f"; input was {_fmt(self.show(s))} = {_fmt(self.at(s))}")

    def block(self, inst: ir.BlockInstance, s: Shape, path: str) -> Block:
        tensors = {inst.input: s}
        saved = dict(self.origin)
        self.origin[inst.input] = inst.span
        statements = self.statements(inst.nodes, tensors, path + ".")
        self.origin = saved
        out = tensors["output"]
        return Block(name=inst.name, path=path, block=inst.block, input=inst.input, statements=statements,
                     out_shape=out, out_at=tuple(self.at(out)), attrs=frozenset(inst.attrs), span=inst.span)

    # --- statements --------------------------------------------------------------------------
    def statements(self, nodes: list[ir.TensorNode], tensors: dict[str, Shape], prefix: str) -> list[Statement]:
        out = []
        for node in nodes:
            s, merge = self.source(node, tensors, prefix)
            items: list[Layer | Block] = []
            for layer in node.layers:
                path = prefix + node.module_path(layer)
                item = self.layer(node, layer, s, path) if isinstance(layer, ir.Op) else self.block(layer, s, path)
                items.append(item)
                s = item.out_shape
            tensors[node.name] = s
            self.origin[node.name] = node.span
            if node.annotation is not None:
                self.check_annotation(node, s)
            out.append(Statement(name=node.name, path=prefix + node.name, source=node.merge,
                                 inputs=tuple(i.name for i in node.inputs), merge=merge, items=items, shape=s,
                                 at=tuple(self.at(s)), span=node.span, attrs=frozenset(node.attrs)))
        return out

    def source(self, node: ir.TensorNode, tensors: dict[str, Shape], prefix: str = "") -> tuple[Shape, Merge | None]:
        if node.merge == "ref":
            return tensors[node.inputs[0].name], None
        if node.merge == PARAM:
            return self.learned(node, prefix)
        shapes = [tensors[i.name] for i in node.inputs]
        sym, val = self.args(node, REGISTRY[node.merge])
        m = REGISTRY[node.merge].bind(val, shapes)
        first = node.inputs[0]
        for other, s in zip(node.inputs[1:], shapes[1:]):
            a = shapes[0]
            if len(s) != len(a):
                raise NetdslError(f"{m.name}() of tensors of different ranks: '{first.name}' is {rank_text(len(a))}, "
                                  f"'{other.name}' is {rank_text(len(s))}", node.source_span,
                                  "merge tensors of one kind: images with images, sequences with sequences, features with "
                                  "features (`-> tokens` makes an image a sequence, `-> image(h, w)` the reverse)")
            verdicts = [self.equal(a[i], s[i]) for i in m.match_axes(len(a)) if not m.stretches(a[i], s[i])]
            if "no" in verdicts:
                what, why = m.mismatch_text
                raise NetdslError(
                    f"{m.name}() of {'sequences' if len(a) == 2 else 'tensors'} whose {what} differ: "
                    f"'{first.name}' is {_fmt(self.show(a))} = "
                    f"{_fmt(self.at(a))} (from line {self.origin[first.name].line}), '{other.name}' is "
                    f"{_fmt(self.show(s))} = {_fmt(self.at(s))} (from line {self.origin[other.name].line})",
                    node.source_span, why)
            if "here" in verdicts:
                self.notes.append(f"line {node.span.line}: {m.name}({first.name}, {other.name}): sizes could not be "
                                  f"shown equal for all parameter values; they are equal at the values in use")
        try:
            m.check(val, [tuple(self.at(x)) for x in shapes], self.image)
        except RuleError as e:
            raise NetdslError(e.message, node.args[e.arg].span if e.arg in node.args else node.source_span,
                              e.hint) from None
        out = tuple(m.shape(sym, shapes))
        counts = m.counts(sym, shapes, out)
        merge = Merge(path=m.node_path(prefix + node.name), op=m, inputs=tuple(i.name for i in node.inputs),
                      out_shape=out, out_at=tuple(self.at(out)), connections=m.connections(sym, shapes, out, counts),
                      span=node.source_span, line=node.span.line, args=val, counts=counts,
                      in_at=[tuple(self.at(x)) for x in shapes])
        return out, merge

    def learned(self, node: ir.TensorNode, prefix: str) -> tuple[Shape, Merge]:
        """A learned tensor: exactly its dims, each a positive integer at the values in use."""
        dims = node.args["dims"]
        assert isinstance(dims, ir.ListValue)
        out = []
        for e in dims.items:
            x = self.env.sym(e)  # type: ignore[arg-type]
            self.env.check_size(x, f"a dim of the learned tensor '{node.name}'", e.span,
                                "every dim of a learned tensor is a positive integer")
            out.append(x)
        shape = tuple(out)
        val = Args(init=node.args["init"].value, value=node.args["value"].value)  # type: ignore[union-attr]
        sym = Args(val, dims=shape)
        counts = LEARNED.counts(sym, [], shape)
        merge = Merge(path=LEARNED.node_path(prefix + node.name), op=LEARNED, inputs=(), out_shape=shape,
                      out_at=tuple(self.at(shape)), connections=LEARNED.connections(sym, [], shape, counts),
                      span=node.span, line=node.span.line, args=val, counts=counts, in_at=[])
        return shape, merge

    def equal(self, a: sp.Expr, b: sp.Expr) -> str:
        """'yes' (for every admissible value), 'here' (only at the values in use) or 'no'."""
        if always_equal(a, b):
            return "yes"
        return "here" if self.env.at(a) == self.env.at(b) else "no"

    def check_annotation(self, node: ir.TensorNode, s: Shape) -> None:
        assert node.annotation is not None
        want = tuple(self.env.sym(e) for e in node.annotation)
        if len(want) != len(s):
            raise NetdslError(f"'{node.name}' is annotated with {len(want)} sizes but is {rank_text(len(s))} "
                              f"{_fmt(self.show(s))}", node.annotation[0].span, "annotate every axis")
        for axis, e, a, b in zip(axis_names(len(s)), node.annotation, s, want):
            verdict = self.equal(a, b)
            if verdict == "no":
                raise NetdslError(f"'{node.name}' is annotated {_fmt(self.show(want))} but its {axis} are "
                                  f"{self.env.show(a)} = {self.env.at(a)}", e.span,
                                  f"its shape is {_fmt(self.show(s))} = {_fmt(self.at(s))}")
            if verdict == "here":
                self.notes.append(f"line {node.span.line}: the {axis} of '{node.name}' match the annotation at the "
                                  "values in use only")

    def show(self, s: Shape) -> list[sp.Expr]:
        return [self.env.show(x) for x in s]

    def at(self, s: Shape) -> list[int]:
        return [int(self.env.at(x)) for x in s]

    # --- the whole graph ---------------------------------------------------------------------
    def input_shape(self, inp: ir.InputDecl) -> Shape:
        """Its axes: a size's symbol (as the symbols pass rewrote it) or a fixed size, checked. Only an
        image's height and width follow `dim_scale`: a sequence's tokens and features stay as declared."""
        env, out = self.env, []
        for j, (axis, a) in enumerate(zip(axis_names(inp.rank), inp.axes)):
            if a.dim is not None:
                x = env.fwd.get(env.symbols[a.dim.name], env.symbols[a.dim.name])
            else:
                assert a.size is not None
                x = env.sym(a.size)
                env.check_size(x, f"the {_COUNT_OF.get(axis, axis)} of input '{inp.name}'", a.span,
                               "a fixed size is a positive integer: a number, a parameter or an expression of them")
            out.append(self.dim_scale * x if inp.rank == 3 and j > 0 else x)
        return tuple(out)

    def run(self) -> ConcreteGraph:
        tensors: dict[str, Shape] = {}
        inputs = []
        for inp in self.g.inputs:
            s = self.input_shape(inp)
            tensors[inp.name] = s
            if len(s) == 3 and self.image is None:
                self.image = tuple(self.at(s))
            inputs.append(Tensor(inp.name, s, tuple(self.at(s)), inp.span))
        statements = self.statements(self.g.nodes, tensors, "")
        spans = {st.name: st.span for st in statements}
        outputs = [Tensor(n, tensors[n], tuple(self.at(tensors[n])), spans[n]) for n in self.g.outputs]
        return ConcreteGraph(name=self.g.name, env=self.env, inputs=inputs, outputs=outputs, statements=statements,
                             notes=self.notes)


def analyse(spec: ir.Spec, overrides: dict[str, int] | None = None, dim_scale: int = 1,
            freeze: Freeze = NO_FREEZE) -> ConcreteGraph:
    """Spec to concrete graph at the values in use: values and conditions, lowering, shapes.

    `dim_scale=2` gives the network at 2H x 2W; the spec's assumptions on its sizes must hold there.
    """
    check_header(spec)
    env = make_env(spec, overrides)
    graph = lower(spec, env.values, freeze)
    env.graph = graph
    notes = env.pin(graph.structural)
    result = ShapeInference(graph, env, dim_scale).run()
    result.notes[:0] = notes
    result.spec, result.graph = spec, graph
    return result
