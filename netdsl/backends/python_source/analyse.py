"""Concrete graph -> the class models of `export --to python` (`model.py`), every argument a
formula checked against the values in use.

The spec is analysed again without its `where` conditions and annotations (so formulas hold for
every value, not only the admissible ones), and each graph-block call is analysed on its own, as
a net whose parameters are the block's. The ops' `module` is handed integers that carry their
formulas (`Tagged`), so the torch arguments come out as formulas.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sympy as sp

from netdsl import ir, ir_expr
from netdsl.backends.python_source.expr import Unprintable, python_expr
from netdsl.backends.python_source.model import (
    Call,
    ClassModel,
    IntVal,
    LearnedInit,
    Module,
    Stmt,
    Tagged,
    attrs,
    fits,
    plain_value,
    symbols_used,
    tag,
)
from netdsl.concrete import Block, ConcreteGraph, Layer, Statement
from netdsl.errors import NetdslError
from netdsl.ops import Args
from netdsl.ops.learned import BATCH_AXIS, PARAM
from netdsl.passes.lower import Lowerer
from netdsl.passes.shapes import ShapeInference
from netdsl.passes.shapes import analyse as analyse_spec

Shapes = tuple[tuple[sp.Expr, ...], tuple[int, ...]]  # a tensor's shape as formulas and as values


def analyse(cg: ConcreteGraph) -> list[ClassModel]:
    """The file's classes: the net's first, then the graph blocks' in the order first called."""
    return Analysis(cg).run()


Calls = list[tuple[int, str, dict[str, ir.Expr]]]


def _record_calls(spec: ir.Spec, values: dict[str, int]) -> tuple[Calls, list[str]]:
    """Lower the spec as `passes.lower` does, noting every graph-block call: how deep in graph
    blocks it sits, the block, and its arguments as formulas of the caller's names (pre-order);
    and the names that decided the structure."""
    calls: Calls = []
    depth = [0]

    class Recording(Lowerer):
        def graph_call(self, call: ir.LayerCall, block: ir.BlockDef, sc: Any) -> ir.BlockInstance:
            calls.append((depth[0], block.name, dict(sc.bound)))
            depth[0] += 1
            try:
                return super().graph_call(call, block, sc)
            finally:
                depth[0] -= 1

    graph = Recording(spec, values).run()
    return calls, graph.structural


def _reachable(blocks: list[ir.BlockDef], root: ir.BlockDef) -> list[ir.BlockDef]:
    """`root` and the blocks it calls, in the spec's order. The net made of a block for its class
    holds only these: another block's tensor named like one of `root`'s parameters is no clash
    in the spec, but would be one with that net's parameters."""
    by_name = {b.name: b for b in blocks}
    seen: set[str] = set()
    todo = [root.name]
    while todo:
        b = by_name.get(todo.pop())
        if b is None or b.name in seen:
            continue
        seen.add(b.name)
        todo += [c.op.name for c in [*b.body, *(c for a in b.assigns for c in a.chain)]]
    return [b for b in blocks if b.name in seen]


def _plain(spec: ir.Spec) -> ir.Spec:
    """The spec without what restricts values (conditions, annotations) or checks them (claims)."""
    def assigns(a: list[ir.Assign]) -> list[ir.Assign]:
        return [x.model_copy(update={"annotation": None}) for x in a]

    return spec.model_copy(update={
        "conditions": [], "claims": [],
        "params": [p.model_copy(update={"annotation": None}) for p in spec.params],
        "inputs": [i.model_copy(update={"conditions": []}) for i in spec.inputs],
        "assigns": assigns(spec.assigns),
        "blocks": [b.model_copy(update={"assigns": assigns(b.assigns)}) for b in spec.blocks],
    })


def _simplest(x: sp.Expr) -> sp.Expr:
    """`x` factored where that reads shorter (a product of sizes expanded by the shape rules)."""
    if not x.free_symbols or isinstance(x, sp.Symbol) or x.has(sp.Piecewise):
        return x
    try:
        f = sp.factor(x)
    except (sp.PolynomialError, TypeError, ValueError):  # Piecewise and the like: as it is
        return x
    return f if sp.count_ops(f) < sp.count_ops(x) else x


def _with_numbers(bdef: ir.BlockDef, bound: dict[str, ir.Expr], values: dict[str, int]) -> ir.BlockDef:
    """`bdef` with each parameter bound to a number with a fraction (`blk(0.1 * i / 17)`) written
    in as that constant expression: a class's constructor takes integers only."""
    numbers = {p.name for p in bdef.params if any(isinstance(n, ir.Float) for n in ir_expr.walk(bound[p.name]))}
    if not numbers:
        return bdef

    def const(x: object, subst: Mapping[str, object]) -> object:
        if isinstance(x, dict):
            if x.get("kind") == "name" and x.get("id") in subst:
                return subst[x["id"]]
            return {k: const(v, subst) for k, v in x.items()}
        return [const(v, subst) for v in x] if isinstance(x, list) else x

    names = {n.id: {"kind": "int", "value": values[n.id], "span": n.model_dump()["span"]}
             for p in numbers for n in ir_expr.names_in(bound[p])}
    subst = {p: const(bound[p].model_dump(), names) for p in numbers}
    dump = const(bdef.model_dump(), subst)
    assert isinstance(dump, dict)
    dump["params"] = [p for p in dump["params"] if p["name"] not in numbers]
    return ir.BlockDef.model_validate(dump)


def _mismatch(owner: str, what: str) -> NetdslError:
    return NetdslError(f"export to Python went wrong in '{owner}' ({what})",
                       hint="this is a bug in netdsl's Python export; please report it with the spec")


class Analysis:
    """The analysis of one concrete graph: its classes, made once each (see the module's docstring)."""

    def __init__(self, cg: ConcreteGraph) -> None:
        if cg.spec is None:
            raise NetdslError("this concrete graph carries no spec to export", hint="make it with netdsl.api.shapes")
        self.cg = cg
        self.spec = _plain(cg.spec)
        self.blocks = {b.name: b for b in self.spec.blocks}
        self.values = dict(cg.env.values)
        self.net_names = [p.name for p in self.spec.params] + [d.name for d in self.spec.dims]
        self.words = set(re.findall(r"[A-Za-z_]\w*", cg.spec.model_dump_json()))  # every name, and more
        self.classes: dict[str, ClassModel] = {}  # block classes by key, in the order first made
        self.by_structure: dict[tuple, list[ClassModel]] = {}  # block classes by structural values
        self.cache: dict[tuple, tuple[ConcreteGraph, Calls]] = {}

    def run(self) -> list[ClassModel]:
        """The net's class first, then the block classes in the order they were first called."""
        try:
            scg, calls = self.analyse("net", self.spec, self.values)
        except NetdslError:  # e.g. sizes that nest too deeply without the spec's `where`: keep it, then
            assert self.cg.spec is not None  # the formulas hold where the spec's conditions do
            scg, calls = self.analyse("net", self.cg.spec, self.values)
        top = ClassModel("net", self.cg.name, _header_line(self.cg))
        top.inputs, top.outputs = [t.name for t in scg.inputs], [t.name for t in scg.outputs]
        structural = set(scg.graph.structural) if scg.graph is not None else set()
        top.baked = {n: self.values[n] for n in self.net_names if n in structural}
        top.statements = self.statements(scg, self.cg.statements, calls, top)
        used = symbols_used(top)
        params = {p.name for p in self.spec.params}
        top.params = [(n, self.values[n]) for n in self.net_names if n not in structural and (n in params or n in used)]
        if self.cg.graph is not None and self.cg.graph.freeze_bn == "eval":
            top.frozen_bn = [x.path for x in self.cg.layers if "freeze" in x.attrs and x.op.running_stats]
        top.final = any(st.op is not None and st.op.final for st in top.statements if st.name in top.outputs)
        return [top, *self.classes.values()]

    def analyse(self, kind: str, spec: ir.Spec, values: dict[str, int], tag: str = "") -> tuple[ConcreteGraph, Calls]:
        """The concrete graph of a (made-up) spec at these values, and its graph-block calls."""
        key = (kind, spec.name, tuple(sorted(values.items())), tag)
        if key not in self.cache:
            with _cannot(kind, spec.name):
                self.cache[key] = analyse_spec(spec, values), _record_calls(spec, values)[0]
        return self.cache[key]

    # --- statements ------------------------------------------------------------------------------
    def statements(self, scg: ConcreteGraph, concrete: list[Statement], calls: list, owner: ClassModel) -> list[Stmt]:
        """The class's statements, from `scg` (formulas), checked against `concrete` (values in use)."""
        direct = iter([(name, bound) for depth, name, bound in calls if depth == 0])
        nodes = scg.graph.nodes if scg.graph is not None else []
        tensors: dict[str, Shapes] = {t.name: (t.shape, t.at) for t in scg.inputs}
        if len(scg.statements) != len(concrete) or len(nodes) != len(concrete):
            raise _mismatch(owner.name, "statements")
        out = []
        for st, cst, node in zip(scg.statements, concrete, nodes):
            if st.name != cst.name or len(st.items) != len(cst.items):
                raise _mismatch(owner.name, st.name)
            if st.source == PARAM:
                out.append(self.learned(scg, st, cst, owner))
                tensors[st.name] = (st.shape, st.at)
                continue
            module: Module = None
            whole = False
            shape = tensors[st.inputs[0]]
            if st.merge is not None:
                shape = st.merge.out_shape, st.merge.out_at
                made = self.merge_module(scg, st, node, [tensors[i] for i in st.inputs], owner)
                if made is not None:
                    made.frozen = "freeze" in cst.attrs
                    module, whole = made, True
            mods: list[tuple[str, Call]] = []
            for it, cit in zip(st.items, cst.items):
                if it.name != cit.name or type(it) is not type(cit):
                    raise _mismatch(owner.name, f"{st.name}.{it.name}")
                if isinstance(it, Block):
                    name, bound = next(direct, (None, {}))
                    if name != it.block:
                        raise _mismatch(owner.name, f"{st.name}.{it.name}: block {it.block}")
                    mods.append((it.name, self.block_call(scg, it, cit, bound, shape, owner)))  # type: ignore[arg-type]
                else:
                    mods.append((it.name, self.layer_call(scg, it, cit, st.span.line, owner)))  # type: ignore[arg-type]
                shape = it.out_shape, it.out_at
            if mods:
                module = mods[0][1] if len(mods) == 1 and mods[0][0] == "0" else mods
            tensors[st.name] = (st.shape, st.at)
            out.append(Stmt(st.name, (st.span.line, st.span.end_line), module, st.source, st.inputs,
                            st.merge.op if st.merge is not None else None, whole))
        return out

    def learned(self, scg: ConcreteGraph, st: Statement, cst: Statement, owner: ClassModel) -> Stmt:
        """A learned tensor: a parameter of the class, its dims as formulas."""
        assert st.merge is not None
        dims = tuple(self.value(scg, x, v, f"dim {i + 1} of the learned tensor '{st.name}'", owner)
                     for i, (x, v) in enumerate(zip(st.shape, cst.at)))
        init = LearnedInit(dims, st.merge.args["init"], st.merge.args["value"], frozen="freeze" in cst.attrs,
                           batch_axis=BATCH_AXIS in cst.attrs)
        return Stmt(st.name, (st.span.line, st.span.end_line), None, st.source, (), learned=init)

    def value(self, scg: ConcreteGraph, expr: sp.Expr, want: int, what: str, owner: ClassModel) -> IntVal:
        """An integer argument as written: its formula, checked to give `want` at the values in use."""
        expr = sp.Integer(expr) if isinstance(expr, int) else expr
        got = scg.env.at(expr)
        if not (got.is_Integer and int(got) == int(want)):
            raise _mismatch(owner.name, f"{what}: {expr} = {got}, not {want}")
        shown = _simplest(scg.env.show(expr))
        try:
            python_expr(shown, {})
        except Unprintable:
            owner.notes.append(f"{what} is written at its value {int(want)}: its formula {shown} has no exact "
                               "Python form here.")
            return IntVal(shown, int(want), baked=True)
        return IntVal(shown, int(want))

    def untag(self, scg: ConcreteGraph, v: Any, what: str, owner: ClassModel) -> Any:
        if isinstance(v, Tagged):
            return self.value(scg, v.expr, int(v), what, owner)
        if isinstance(v, (tuple, list)):
            return type(v)(self.untag(scg, x, what, owner) for x in v)
        return v

    def layer_call(self, scg: ConcreteGraph, layer: Layer, concrete: Layer, line: int, owner: ClassModel) -> Call:
        tagged = Args()
        for a in layer.op.args:
            v, s = layer.args[a.name], layer.sym[a.name]
            tagged[a.name] = (tag(v, s) if a.pair else Tagged(v, s)) if a.type == "int" else v
        made, wanted = layer.op.module(tagged, [tag(layer.in_at, layer.in_shape)]), concrete.module_spec()
        assert made is not None and wanted is not None  # a layer always has its module
        (cls, kwargs), (want_cls, want) = made, wanted
        if cls != want_cls or plain_value(kwargs) != plain_value(want):
            raise _mismatch(owner.name, f"{layer.path}: {cls}{plain_value(kwargs)} is not {want_cls}{want}")
        where = layer.node.span.line
        args: list[tuple[str | None, Any]] = [
            (k, self.untag(scg, v, f"the {k} of the {layer.op.name} at line {where}", owner))
                for k, v in kwargs.items()]
        return Call(cls, args, where if where != line else None, frozen="freeze" in concrete.attrs)

    def merge_module(self, scg: ConcreteGraph, st: Statement, node: ir.TensorNode, shapes: list[Shapes],
                     owner: ClassModel) -> Call | None:
        """The module of an op over several tensors that has weights (detect), else None."""
        assert st.merge is not None and scg.graph is not None
        m = st.merge.op
        sym, val = ShapeInference(scg.graph, scg.env).args(node, m)
        tagged = Args({k: Tagged(val[k], sym[k]) if getattr(m.arg(k), "type", None) == "int" else val[k]
                       for k in val})
        made = m.module(tagged, [tag(at, s) for s, at in shapes])
        want = st.merge.module_spec()
        if made is None or want is None:
            if (made is None) != (want is None):
                raise _mismatch(owner.name, f"{st.name}: {m.name}")
            return None
        if made[0] != want[0] or plain_value(made[1]) != plain_value(want[1]):
            raise _mismatch(owner.name, f"{st.name}: {made} is not {want}")
        return Call(made[0], [(k, self.untag(scg, v, f"the {k} of {m.name}", owner)) for k, v in made[1].items()])

    # --- graph blocks ----------------------------------------------------------------------------
    def block_call(self, scg: ConcreteGraph, it: Block, concrete: Block, bound: dict[str, ir.Expr],
                   shape: Shapes, owner: ClassModel) -> Call:
        """A graph-block call: its class (made or found), with the caller's formulas as arguments."""
        bdef = _with_numbers(self.blocks[it.block], bound, scg.env.values)
        s, at = shape
        bound_sym = {p.name: scg.env.sym(bound[p.name]) for p in bdef.params}
        param_values = {n: int(scg.env.at(e)) for n, e in bound_sym.items()}
        cls = self.block_class(bdef, param_values, concrete, at)
        args: list[tuple[str | None, Any]] = []
        for name, _ in cls.params:
            if name in cls.fresh:  # the input's channels (first, positional) and sizes
                i = cls.fresh.index(name)
                what = f"the input of {bdef.name}"
                args.append((None if i == 0 else name, self.value(scg, s[i], at[i], what, owner)))
            elif name in param_values:
                args.append((name, self.value(scg, bound_sym[name], param_values[name],
                                              f"{bdef.name}'s argument {name}", owner)))
            else:  # a name of the net the block reads: the caller's own
                if name not in scg.env.symbols:
                    raise NetdslError(f"export to Python cannot pass '{name}' to block '{bdef.name}': a block "
                                      "parameter of its caller has that name", bdef.span, "rename that block parameter")
                expr = scg.env.sym(ir.Name(span=bdef.span, id=name))
                args.append((name, self.value(scg, expr, self.values[name], name, owner)))
        return Call(cls, args)

    def block_class(self, bdef: ir.BlockDef, param_values: dict[str, int], concrete: Block,
                    at: tuple[int, ...]) -> ClassModel:
        """The class of one call: the block analysed as a net whose parameters are the net's names
        it can read, its input's sizes and its own parameters; equal classes are made once."""
        assert bdef.input is not None
        own = [p.name for p in bdef.params]
        sizes = ["in_channels", "in_height", "in_width"] if len(at) == 3 else \
            ["in_features"] if len(at) == 1 else ["in_tokens", "in_features"] if len(at) == 2 else \
            ["in_channels", *(f"in_size{i}" for i in range(1, len(at)))]
        fresh = [self.fresh(n) for n in sizes]
        outer = [n for n in self.net_names if n not in own]
        span = bdef.span
        values = {n: self.values[n] for n in outer} | {fresh[0]: at[0]} | param_values
        params = [ir.Param(span=span, name=n, default=ir.Int(span=span, value=v)) for n, v in values.items()]
        dims = [ir.Dim(span=span, name=n, default=ir.Int(span=span, value=v)) for n, v in zip(fresh[1:], at[1:])]
        values |= dict(zip(fresh[1:], at[1:]))
        spec = ir.Spec(span=span, name=bdef.name, params=params, blocks=_reachable(self.spec.blocks, bdef),
                       assigns=bdef.assigns, learned=bdef.learned,
                       inputs=[ir.InputDecl(span=bdef.input.span, name=bdef.input.name,
                                            axes=[ir.InputAxis(span=span, size=ir.Name(span=span, id=fresh[0])),
                                                  *(ir.InputAxis(span=span, dim=d) for d in dims)])])
        # A class made for an earlier call with the same structure serves this one too where its
        # formulas give this call's layers (checked); else the call is analysed (SymPy: slower).
        with _cannot("block", bdef.name):
            structural_names = _record_calls(spec, values)[1]
        same = (bdef.name, len(at), tuple((n, values[n]) for n in structural_names), attrs(concrete.statements))
        for cls in self.by_structure.get(same, []):
            if fits(cls, {n: values[n] for n, _ in cls.params}, concrete.statements):
                return cls
        # a block with numbers written in (`_with_numbers`) is another body for each of them
        tag = "" if bdef is self.blocks[bdef.name] else bdef.model_dump_json()
        scg, calls = self.analyse("block", spec, values, tag)
        cls = ClassModel("block", bdef.name, bdef.span.line, fresh=fresh)
        cls.inputs, cls.outputs = [bdef.input.name], ["output"]
        structural = set(scg.graph.structural) if scg.graph is not None else set()
        cls.baked = {n: values[n] for n in [*own, *outer] if n in structural}
        cls.statements = self.statements(scg, concrete.statements, calls, cls)
        used = symbols_used(cls)
        cls.reads = [n for n in outer if n in used and n not in structural]
        cls.params = [(n, None) for n in [*fresh, *own, *outer] if n not in structural
                      and (n == fresh[0] or n in used or n in own)]
        cls = self.classes.setdefault(cls.key(), cls)
        if cls not in self.by_structure.setdefault(same, []):
            self.by_structure[same].append(cls)
        return cls

    def fresh(self, name: str) -> str:
        """A name no spec name takes."""
        while name in self.words:
            name += "_"
        return name


@contextmanager
def _cannot(kind: str, name: str) -> Iterator[None]:
    try:
        yield
    except NetdslError as e:
        raise NetdslError(f"export to Python cannot write {kind} '{name}': {e.message}", e.span,
                          "please report this spec: export should take every spec that builds") from e


def _header_line(cg: ConcreteGraph) -> int:
    """The line of `net NAME(...)` in the spec."""
    for i, line in enumerate((cg.source[1] or "").splitlines(), 1):
        if re.match(rf"\s*net\s+{re.escape(cg.name)}\b", line):
            return i
    return 1
