"""Spec -> Graph: resolve names, check arguments, expand blocks, repetition and conditionals.

Lowering happens at the values in use: a repetition count or a conditional may use parameters,
and the names that decided the structure are recorded in `Graph.structural` so the symbolic
passes hold them at their values (another value would be another network).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from netdsl import intexpr, ir
from netdsl.errors import NetdslError, Span
from netdsl.freeze import NO_FREEZE, Freeze
from netdsl.intexpr import MAX_FRACTION_BITS
from netdsl.limits import MAX_EXPONENT
from netdsl.ops import OpDef, layers, merges
from netdsl.ops.learned import BATCH_AXIS
from netdsl.passes.desugar import SPLIT, SPLIT_FORMS, Desugar, check_reads, needs_desugar
from netdsl.passes.learned import before, lower_learned
from netdsl.passes.names import RESERVED, check_header, check_names, did_you_mean, fresh, name_list
from netdsl.passes.op_args import ArgumentReader

MAX_LAYERS = 10_000
MAX_REPEAT = 1_000
MAX_BLOCK_DEPTH = 64
ATTRIBUTES = {"freeze": "the layer's parameters are not trained (requires_grad=False)",
              "batch_axis": "a learned tensor stored as [1, *dims] (torchvision's class token), on `param` only"}
Layer = ir.Op | ir.BlockInstance


@dataclass
class _Scope:
    """What names mean where a chain is expanded: block parameters and indices are bound to
    expressions; `known` lists every name an expression may use there."""

    bound: dict[str, ir.Expr]
    known: set[str]
    via: list[Span]
    attrs: tuple[str, ...] = ()
    depth: int = 0
    dry: bool = False  # checking a block's definition: names only, nothing evaluated

    def child(self, **kw: object) -> _Scope:
        return _Scope(**{**self.__dict__, **kw})


@dataclass
class Lowerer:
    spec: ir.Spec
    values: dict[str, int]
    freeze: Freeze = NO_FREEZE
    frozen_names: set[str] = field(default_factory=set)  # the names of `freeze` that matched something
    blocks: dict[str, ir.BlockDef] = field(default_factory=dict)
    structural: set[str] = field(default_factory=set)
    count: int = 0

    # --- expressions -------------------------------------------------------------------------
    def resolve(self, e: ir.Expr, sc: _Scope) -> ir.Expr:
        """Substitute bound names, and choose each `if` branch at the values in use."""
        if isinstance(e, ir.Name):
            return sc.bound.get(e.id, e)
        if isinstance(e, (ir.Int, ir.Float)):
            return e
        if isinstance(e, ir.BinOp):
            return e.model_copy(update={"left": self.resolve(e.left, sc), "right": self.resolve(e.right, sc)})
        if isinstance(e, ir.Neg):
            return e.model_copy(update={"operand": self.resolve(e.operand, sc)})
        if isinstance(e, ir.Call):
            return e.model_copy(update={"args": [self.resolve(a, sc) for a in e.args]})
        if sc.dry:
            return e
        t = e.test
        a, b = self.evaluate(self.resolve(t.left, sc), "condition"), self.evaluate(self.resolve(t.right, sc), "condition")
        ok = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[t.op]
        return self.resolve(e.then if ok else e.orelse, sc)

    def evaluate(self, e: ir.Expr, what: str) -> int:
        """An integer at the values in use; the parameters it reads become structural."""
        def leaf(n: ir.Int | ir.Name) -> int:
            if isinstance(n, ir.Int):
                return n.value
            self.structural.add(n.id)
            return self.values[n.id]

        try:
            return intexpr.evaluate(e, leaf, intexpr.INTEGERS)
        except intexpr.Refused as r:
            raise intexpr.refusal_error(r, f"in a {what}", f"exponents must be constant integers from 0 to "
                                        f"{MAX_EXPONENT}") from None

    def number(self, e: ir.Expr, what: str) -> float:
        """A float argument's value at the values in use: exact arithmetic (`/` a fraction, `**` any
        whole exponent from -MAX_EXPONENT to MAX_EXPONENT), rounded once at the end."""
        try:
            # a number with a fraction is read from its shortest decimal text: 0.2 is 1/5 exactly
            value = intexpr.evaluate(e, lambda n: Fraction(self.evaluate(n, what)), intexpr.FRACTIONS,
                                     real=lambda f: Fraction(repr(f.value)))
        except intexpr.Refused as r:
            raise intexpr.refusal_error(r, f"in {what}", f"exponents must be whole numbers from -{MAX_EXPONENT} "
                                        f"to {MAX_EXPONENT}, and a power's value of at most {MAX_FRACTION_BITS} bits") from None
        try:
            return float(value)
        except OverflowError:
            raise NetdslError(f"{what} is too large for a float", e.span, "write a smaller number") from None

    # --- layers ------------------------------------------------------------------------------
    def expand(self, calls: list[ir.LayerCall], sc: _Scope, prefix: str) -> list[tuple[str | None, Layer]]:
        """Flatten a chain into (label, layer) pairs; labels are None where the user wrote none."""
        out: list[tuple[str | None, Layer]] = []
        for call in calls:
            times = self.times(call, sc)
            attrs = tuple(sorted({*sc.attrs, *self.attrs(call.attrs), *self.requested(call, sc)}))
            label = (prefix + call.label.name) if call.label else None
            if call.index is not None and (call.index.name in sc.known or call.index.name in RESERVED):
                raise NetdslError(f"the index name '{call.index.name}' is already a name here", call.index.span,
                                  "pick a fresh name for the index, e.g. `* 3 as i`")
            for i in range(times):
                inner_sc = sc.child(attrs=attrs)
                if call.index is not None:
                    inner_sc = inner_sc.child(bound={**sc.bound, call.index.name: ir.Int(span=call.index.span, value=i)},
                                              known=sc.known | {call.index.name})
                lab = label if times == 1 or label is None else f"{label}_{i}"
                out += self.one(call, inner_sc, lab, prefix)
                if self.count > MAX_LAYERS:
                    raise NetdslError(f"the network expands to more than {MAX_LAYERS} layers", call.span,
                                      "lower the repetition counts")
        return out

    def times(self, call: ir.LayerCall, sc: _Scope) -> int:
        if call.repeat is None:
            return 1
        check_names(call.repeat, sc.known, "repetition count")
        if sc.dry:
            return 1
        n = self.evaluate(self.resolve(call.repeat, sc), "repetition count")
        if not 0 <= n <= MAX_REPEAT:
            raise NetdslError(f"a repetition count must be an integer from 0 to {MAX_REPEAT}; this one is {n}",
                              call.repeat.span, "write e.g. `down(NF) * 3`; `* 0` leaves the layer out")
        return n

    def one(self, call: ir.LayerCall, sc: _Scope, lab: str | None, prefix: str) -> list[tuple[str | None, Layer]]:
        name = call.op.name
        ops = layers()
        if name in ops:
            self.count += 1
            return [(lab, self.op(call, ops[name], sc))]
        block = self.blocks.get(name)
        if block is None and name in (SPLIT, "chunk"):  # `chunk` as torch names it
            raise NetdslError("split makes several tensors, so it ends a statement that names them" if name == SPLIT
                              else f"unknown op '{name}': channels are split by a statement that names the parts",
                              call.span, f"write {SPLIT_FORMS}")
        if block is None:
            raise NetdslError(f"unknown op or block '{name}'", call.op.span,
                              did_you_mean(name, [*ops, *self.blocks]) + f"builtins: {', '.join(ops)}"
                              + (f"; blocks: {', '.join(self.blocks)}" if self.blocks else ""))
        if sc.depth >= MAX_BLOCK_DEPTH:
            raise NetdslError(f"blocks nest more than {MAX_BLOCK_DEPTH} deep here", call.span,
                              "call fewer blocks inside blocks")
        bound = self.bind(call, block, sc)
        if sc.dry:  # checking a definition: the block called was checked when it was defined
            return []
        inner = sc.child(bound=bound, known=self.block_known(block), via=[*sc.via, call.span], depth=sc.depth + 1)
        if block.is_graph:
            self.count += 1  # a call of a block without layers still costs: count it against the limit
            return [(lab, self.graph_call(call, block, inner))]
        pairs = self.expand(block.body, inner, f"{lab}_" if lab else prefix)
        # A labelled call names every layer it expands to, so they read as one unit.
        return [(il if il is not None or lab is None else f"{lab}_{j}", op) for j, (il, op) in enumerate(pairs)]

    def block_known(self, block: ir.BlockDef) -> set[str]:
        return {p.name for p in self.spec.params} | {d.name for i in self.spec.inputs for d in i.dims} \
            | {p.name for p in block.params}

    def requested(self, call: ir.LayerCall, sc: _Scope) -> list[str]:
        """`freeze` where the build asks for this call's label or block to be frozen."""
        names = [call.label.name] if call.label else []
        names += [call.op.name] if call.op.name in self.blocks else []
        hits = [n for n in names if n in self.freeze.names]
        if sc.dry or not hits:
            return []
        self.frozen_names.update(hits)
        return ["freeze"]

    def attrs(self, attrs: list[ir.Attr], learned: bool = False) -> list[str]:
        for a in attrs:
            if a.name == BATCH_AXIS and not learned:
                raise NetdslError("'@batch_axis' belongs on a learned tensor", a.span,
                                  "write it before `param`: `@batch_axis param cls: [1, D] = 0`")
            if a.name not in ATTRIBUTES:
                raise NetdslError(f"unknown attribute '@{a.name}'", a.span, did_you_mean(a.name, ATTRIBUTES)
                                  + "attributes: " + ", ".join(f"@{k} ({v})" for k, v in ATTRIBUTES.items()))
            if a.args:
                raise NetdslError(f"'@{a.name}' takes no arguments", a.args[0].span, f"write @{a.name}")
        return [a.name for a in attrs]

    def bind(self, call: ir.LayerCall, block: ir.BlockDef, sc: _Scope) -> dict[str, ir.Expr]:
        names = [p.name for p in block.params]
        bound: dict[str, ir.Expr] = {}
        for i, a in enumerate(call.args):
            if a.name is None:
                if i >= len(names):
                    raise NetdslError(f"block '{block.name}' takes {len(names)} argument(s), got more", a.span,
                                      f"its parameters: ({', '.join(names)}), defined at line {block.span.line}")
                key = names[i]
            elif a.name not in names:
                raise NetdslError(f"block '{block.name}' has no parameter '{a.name}'", a.span,
                                  did_you_mean(a.name, names) + f"its parameters: ({', '.join(names)})")
            else:
                key = a.name
            if key in bound:
                raise NetdslError(f"argument '{key}' given twice", a.span, "give each argument once")
            value = a.value
            if not isinstance(value, (*ir.EXPR_TYPES, ir.Float)):  # a number with a fraction: for float arguments
                raise NetdslError(f"block arguments are integer expressions, not {value.kind} values", value.span,
                                  f"pass an integer to '{key}'")
            check_names(value, sc.known, "block argument")
            bound[key] = self.resolve(value, sc)
        for p in block.params:
            if p.name not in bound:
                if p.default is None:
                    missing = [n for n in names if n not in bound]
                    raise NetdslError(f"block '{block.name}' is missing argument(s): {', '.join(missing)}", call.span,
                                      f"call it as {block.name}({', '.join(names)})")
                # Defaults see the block's earlier parameters as the caller bound them.
                bound[p.name] = self.resolve(p.default, sc.child(bound={**sc.bound, **bound}))
        return bound

    def graph_call(self, call: ir.LayerCall, block: ir.BlockDef, sc: _Scope) -> ir.BlockInstance:
        assert block.input is not None
        nodes = self.statements(block.assigns, {block.input.name: block.input.span}, sc, graph_block=block)
        return ir.BlockInstance(span=call.span, block=block.name, name="", input=block.input.name, nodes=nodes,
                                via=sc.via[:-1], attrs=list(sc.attrs))

    def op(self, call: ir.LayerCall, spec: OpDef, sc: _Scope) -> ir.Op:
        args = self.arguments(call.args, spec, call.span, call.op.span, sc)
        return ir.Op(span=call.span, op=spec.name, name="", args=args, via=sc.via, attrs=list(sc.attrs))

    def arguments(self, given: list[ir.Arg], spec: OpDef, span: Span, default_span: Span,
                  sc: _Scope) -> dict[str, ir.Value]:
        """An op's arguments checked, resolved in this scope and completed with its defaults."""
        reader = ArgumentReader(spec, sc.known, lambda e: self.resolve(e, sc), self.number, sc.dry)
        return reader.read(given, span, default_span)


    # --- statements --------------------------------------------------------------------------
    def statements(self, assigns: list[ir.Assign], defined: dict[str, Span], sc: _Scope,
                   graph_block: ir.BlockDef | None = None) -> list[ir.TensorNode]:
        nodes: list[ir.TensorNode] = []
        finals: set[str] = set()  # results of ops such as detect: outputs, not tensors to go on with
        pending = list(graph_block.learned if graph_block is not None else self.spec.learned)
        if needs_desugar(assigns):
            taken = set(defined) | set(sc.known) | {d.name for d in pending}
            assigns = Desugar(assigns, taken, lambda e: self.split_parts(e, sc)).run()
        for a in [*assigns, None]:
            while pending and (a is None or before(pending[0].span, a.span)):
                nodes.append(self.learned(pending.pop(0), defined, sc, len(nodes) if graph_block is None else None))
                defined[nodes[-1].name] = nodes[-1].span
            if a is None:
                break
            refs = [i for i in a.inputs if isinstance(i, ir.Ident)]  # every one, once desugared
            check_reads(refs, defined, finals, assigns)
            if a.name in RESERVED - {"output"} or (a.name == "output" and not a.output):
                raise NetdslError(f"'{a.name}' is a reserved word", a.span, "pick another tensor name")
            if a.name in defined or a.name in sc.known:
                prev = defined.get(a.name) or next((p.span for p in self.spec.params if p.name == a.name), a.span)
                raise NetdslError(f"duplicate name '{a.name}'", a.span,
                                  f"'{a.name}' is already defined at line {prev.line}, column {prev.column}; rename one of them")
            if graph_block is not None and a.output and a.name != "output":
                raise NetdslError("a graph block has one result, the statement named `output`", a.span,
                                  f"write `output = ...` in block '{graph_block.name}'")
            for e in a.annotation or ():
                check_names(e, sc.known, "shape annotation")
            asked = []
            if graph_block is None and not sc.dry and (len(nodes) < self.freeze.first or a.name in self.freeze.names):
                asked = ["freeze"]
                self.frozen_names.update({a.name} & set(self.freeze.names))
            stmt_sc = sc.child(attrs=tuple(sorted({*sc.attrs, *self.attrs(a.attrs), *asked})))
            margs = self.merge_args(a, stmt_sc)
            pairs = self.expand(a.chain, stmt_sc, "")
            nodes.append(ir.TensorNode(span=a.span, name=a.name, merge=a.merge, inputs=refs, args=margs,
                                       attrs=list(stmt_sc.attrs),
                                       source_span=a.source_span, layers=name_layers(pairs),
                                       annotation=[self.resolve(e, sc) for e in a.annotation] if a.annotation else None))
            defined[a.name] = a.span
            if a.merge in merges() and merges()[a.merge].final:
                finals.add(a.name)
                if not a.output:
                    raise NetdslError(f"{a.merge}() makes one of the network's outputs", a.span,
                                      f"write `output = {a.merge}(...)` or `output {a.name} = {a.merge}(...)`")
        if graph_block is not None and not any(n.name == "output" for n in nodes):
            raise NetdslError(f"graph block '{graph_block.name}' has no result", graph_block.span,
                              "name the block's result `output`, e.g. `output = add(x, y) |> relu`")
        return nodes

    def learned(self, d: ir.Learned, defined: dict[str, Span], sc: _Scope, index: int | None) -> ir.TensorNode:
        """A `param` declaration; `index`: its place among the top-level statements (for --freeze)."""
        asked = index is not None and not sc.dry and (index < self.freeze.first or d.name in self.freeze.names)
        self.frozen_names.update({d.name} & set(self.freeze.names) if asked else set())
        attrs = sorted({*sc.attrs, *self.attrs(d.attrs, learned=True), *(["freeze"] if asked else [])})
        return lower_learned(d, defined, sc.known, lambda e: self.resolve(e, sc), None if sc.dry else self.number, attrs)

    def split_parts(self, e: ir.Expr, sc: _Scope) -> int | None:
        """The number of parts of `split(n)` at the values in use (it decides the structure)."""
        check_names(e, sc.known, "split")
        return None if sc.dry else self.evaluate(self.resolve(e, sc), "split")

    def merge_args(self, a: ir.Assign, sc: _Scope) -> dict[str, ir.Value]:
        if a.merge == "ref":
            return {}
        starts = merges()
        m = starts.get(a.merge)
        if m is None:
            raise NetdslError(f"unknown merge '{a.merge}'", a.source_span,
                              did_you_mean(a.merge, starts) + "a statement starts from a tensor name or "
                              + ", ".join(f"{k}(a, b, ...)" for k in starts) + f"; to split channels write {SPLIT_FORMS}")
        if len(a.inputs) < m.min_inputs:
            raise NetdslError(f"{m.name}() needs at least {m.min_inputs} tensors", a.source_span, f"{m.name}: {m.doc}")
        if m.max_inputs is not None and len(a.inputs) > m.max_inputs:
            raise NetdslError(f"{m.name}() takes at most {m.max_inputs} tensors", a.source_span, f"{m.name}: {m.doc}")
        if m.final and a.chain:
            raise NetdslError(f"{m.name}() makes the network's result; no layers may follow it", a.chain[0].span,
                              f"write `output = {m.name}(...)` on its own")
        if m.alone and a.chain:
            raise NetdslError(f"{m.name}() has weights of its own, kept under the statement's name; no layers "
                              "may follow it", a.chain[0].span, f"start a new statement from it: `y = {a.name} |> ...`")
        return self.arguments(a.args, m, a.source_span, a.source_span, sc)

    def run(self) -> ir.Graph:
        check_header(self.spec)
        params_dims = {p.name for p in self.spec.params} | {d.name for i in self.spec.inputs for d in i.dims}
        for b in self.spec.blocks:
            self.define(b)
        defined = {i.name: i.span for i in self.spec.inputs}
        nodes = self.statements(self.spec.assigns, defined, _Scope(bound={}, known=params_dims, via=[]))
        self.check_freeze(nodes)
        outputs = [a.name for a in self.spec.assigns if a.output]
        if not outputs:
            raise NetdslError("the spec has no output", self.spec.span if not nodes else nodes[-1].span,
                              "name the network's result `output`, e.g. `output = h |> conv(NC, 3, padding=1)`, "
                              "or mark results with `output NAME = ...`")
        return ir.Graph(span=self.spec.span, name=self.spec.name, params=self.spec.params,
                        conditions=self.spec.conditions, inputs=self.spec.inputs, nodes=nodes, outputs=outputs,
                        claims=self.spec.claims, structural=sorted(self.structural))

    def check_freeze(self, nodes: list[ir.TensorNode]) -> None:
        if self.freeze.first > len(nodes):
            raise NetdslError(f"--freeze {self.freeze.first}: the spec has {len(nodes)} top-level statements",
                              hint=f"freeze at most {len(nodes)}")
        missing = [n for n in self.freeze.names if n not in self.frozen_names]
        if missing:
            known = {n.name for n in nodes} | set(self.blocks) | {c.label.name for c in self._calls() if c.label}
            raise NetdslError(f"--freeze {missing[0]}: no statement, label or block of the spec is named '{missing[0]}'",
                              hint=did_you_mean(missing[0], known) + "names: " + name_list(known))

    def _calls(self) -> Iterable[ir.LayerCall]:
        for a in self.spec.assigns:
            yield from a.chain
        for b in self.spec.blocks:
            yield from b.body
            for a in b.assigns:
                yield from a.chain

    def define(self, b: ir.BlockDef) -> None:
        if b.name in layers() or b.name == SPLIT:
            raise NetdslError(f"block '{b.name}' shadows the builtin op of that name", b.span, "rename the block")
        if b.name in self.blocks:
            prev = self.blocks[b.name].span
            raise NetdslError(f"duplicate block '{b.name}'", b.span,
                              f"'{b.name}' is already defined at line {prev.line}, column {prev.column}")
        seen: dict[str, Span] = {}
        for i, p in enumerate(b.params):
            fresh(p.name, p.span, seen, "block parameter")
            if p.default is not None:
                check_names(p.default, self.block_known(b) - {q.name for q in b.params[i:]}, "parameter default")
        # Blocks see earlier blocks only, so recursion cannot be written; check names now.
        sc = _Scope(bound={}, known=self.block_known(b), via=[b.span], dry=True)
        saved = self.count
        if b.is_graph:
            assert b.input is not None
            self.statements(b.assigns, {b.input.name: b.input.span}, sc, graph_block=b)
        else:
            self.expand(b.body, sc, "")
        self.count = saved
        self.blocks[b.name] = b


def name_layers(pairs: list[tuple[str | None, Layer]]) -> list[Layer]:
    """Labelled layers keep their label; the others get their position, as in nn.Sequential."""
    seen: dict[str, Span] = {}
    out: list[Layer] = []
    for i, (label, op) in enumerate(pairs):
        name = label if label is not None else str(i)
        if name in seen:
            raise NetdslError(f"duplicate layer name '{name}' in this statement", op.span,
                              f"the first '{name}' is at line {seen[name].line}, column {seen[name].column}; "
                              "label the block calls differently")
        seen[name] = op.span
        out.append(op.model_copy(update={"name": name}))
    return out


def lower(spec: ir.Spec, values: dict[str, int], freeze: Freeze = NO_FREEZE) -> ir.Graph:
    """Check names and arguments and expand blocks at `values` (every parameter and size in use);
    `freeze` adds the `freeze` attribute to the statements, labels and blocks it names."""
    graph = Lowerer(spec, values, freeze).run()
    return graph.model_copy(update={"freeze_bn": freeze.bn}) if freeze.bn != "train" else graph
