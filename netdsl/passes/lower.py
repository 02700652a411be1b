"""Spec -> Graph: resolve names, check arguments, expand blocks and repetition, name layers."""
from __future__ import annotations

import difflib
from typing import Iterable

from netdsl import ir
from netdsl.errors import NetdslError, Span
from netdsl.ops import OPS, ArgSpec, OpSpec

MAX_LAYERS = 10_000
MAX_REPEAT = 1_000
_ANNOTATIONS = ("odd", "even", "positive", "nonnegative")
_RESERVED = frozenset({"cat", "add", "min", "max", "net", "input", "block", "where", "claim", "true", "false"})


def _did_you_mean(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def names_in(e: ir.Expr) -> Iterable[ir.Name]:
    """Every Name node in an expression, left to right."""
    stack = [e]
    while stack:
        n = stack.pop()
        if isinstance(n, ir.Name):
            yield n
        elif isinstance(n, ir.BinOp):
            stack += [n.right, n.left]
        elif isinstance(n, ir.Neg):
            stack.append(n.operand)
        elif isinstance(n, ir.Call):
            stack += reversed(n.args)


def substitute(e: ir.Expr, env: dict[str, ir.Expr]) -> ir.Expr:
    """Replace names bound by a block call with the caller's expressions."""
    if isinstance(e, ir.Name):
        return env.get(e.id, e)
    if isinstance(e, ir.BinOp):
        return e.model_copy(update={"left": substitute(e.left, env), "right": substitute(e.right, env)})
    if isinstance(e, ir.Neg):
        return e.model_copy(update={"operand": substitute(e.operand, env)})
    if isinstance(e, ir.Call):
        return e.model_copy(update={"args": [substitute(a, env) for a in e.args]})
    return e


def const_int(e: ir.Expr) -> int | None:
    """Value of an expression without names (used for repetition counts), else None."""
    if isinstance(e, ir.Int):
        return e.value
    if isinstance(e, ir.Neg):
        v = const_int(e.operand)
        return None if v is None else -v
    if isinstance(e, ir.BinOp):
        a, b = const_int(e.left), const_int(e.right)
        if a is None or b is None:
            return None
        if e.op == "+":
            return a + b
        if e.op == "-":
            return a - b
        if e.op == "*":
            return a * b
        if e.op in ("//", "%", "/") and b == 0:
            return None
        if e.op == "//":
            return a // b
        if e.op == "%":
            return a % b
        if e.op == "**" and 0 <= b <= 64 and abs(a) <= 2 ** 16:
            return a ** b
        return None
    if isinstance(e, ir.Call):
        vals = [const_int(a) for a in e.args]
        if any(v is None for v in vals):
            return None
        return min(vals) if e.func == "min" else max(vals)  # type: ignore[type-var]
    return None


class _Lowerer:
    def __init__(self, spec: ir.Spec) -> None:
        self.spec = spec
        self.params = {p.name: p for p in spec.params}
        self.dims = {d.name: d for d in spec.input.dims}
        self.blocks: dict[str, ir.BlockDef] = {}

    # --- names ----------------------------------------------------------------------------
    def check_header(self) -> None:
        seen: dict[str, Span] = {}
        for p in self.spec.params:
            self._fresh(p.name, p.span, seen, "parameter")
            if p.annotation is not None and p.annotation not in _ANNOTATIONS:
                raise NetdslError(f"unknown parameter annotation '{p.annotation}'", p.span,
                                  f"use one of: {', '.join(_ANNOTATIONS)}, or a `where` condition")
            # Defaults may use parameters declared before them, never after.
            self.check_expr(p.default, set(seen) - {p.name}, "parameter default")
        for d in self.spec.input.dims:
            self._fresh(d.name, d.span, seen, "size")
            if d.default is not None:
                self.check_expr(d.default, set(self.params), "input size default")
        self.check_expr(self.spec.input.channels, set(self.params), "input channels")
        for c in [*self.spec.conditions, *self.spec.input.conditions]:
            for side in (c.left, c.right):
                self.check_expr(side, set(self.params) | set(self.dims), "condition")

    def _fresh(self, name: str, span: Span, seen: dict[str, Span], what: str) -> None:
        if name in _RESERVED:
            raise NetdslError(f"'{name}' is a reserved word and cannot name a {what}", span, "pick another name")
        if name in seen:
            prev = seen[name]
            raise NetdslError(f"duplicate name '{name}'", span,
                              f"'{name}' is already defined at line {prev.line}, column {prev.column}; rename one of them")
        seen[name] = span

    def check_expr(self, e: ir.Expr, known: set[str], where: str) -> None:
        for n in names_in(e):
            if n.id not in known:
                raise NetdslError(f"unknown name '{n.id}' in {where}", n.span,
                                  _did_you_mean(n.id, known) + (f"known here: {', '.join(sorted(known))}" if known else "no names are defined here"))

    # --- layers ---------------------------------------------------------------------------
    def expand(self, calls: list[ir.LayerCall], env: dict[str, ir.Expr], known: set[str],
               via: list[Span], prefix: str) -> list[tuple[str | None, ir.Op]]:
        """Flatten a chain into (label, op) pairs; labels are None where the user wrote none."""
        out: list[tuple[str | None, ir.Op]] = []
        for call in calls:
            times = 1
            if call.repeat is not None:
                times = const_int(substitute(call.repeat, env)) if not list(names_in(call.repeat)) else None
                if times is None or times < 1 or times > MAX_REPEAT:
                    raise NetdslError("a repetition count must be a constant integer between 1 and "
                                      f"{MAX_REPEAT}", call.repeat.span,
                                      "write e.g. `down(NF) * 3`; the count cannot depend on parameters")
            label = (prefix + call.label.name) if call.label else None
            for i in range(times):
                lab = label if times == 1 or label is None else f"{label}_{i}"
                if call.op.name in OPS:
                    out.append((lab, self.op(call, OPS[call.op.name], env, known, via)))
                elif call.op.name in self.blocks:
                    inner = self.block_call(call, env, known, via, f"{lab}_" if lab else prefix)
                    # A labelled call names every layer it expands to, so they read as one unit.
                    out += [(il if il is not None or lab is None else f"{lab}_{j}", op)
                            for j, (il, op) in enumerate(inner)]
                else:
                    raise NetdslError(f"unknown op or block '{call.op.name}'", call.op.span,
                                      _did_you_mean(call.op.name, [*OPS, *self.blocks])
                                      + f"builtins: {', '.join(OPS)}" + (f"; blocks: {', '.join(self.blocks)}" if self.blocks else ""))
                if len(out) > MAX_LAYERS:
                    raise NetdslError(f"the network expands to more than {MAX_LAYERS} layers", call.span,
                                      "lower the repetition counts")
        return out

    def block_call(self, call: ir.LayerCall, env: dict[str, ir.Expr], known: set[str], via: list[Span],
                   prefix: str) -> list[tuple[str | None, ir.Op]]:
        block = self.blocks[call.op.name]
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
                                  _did_you_mean(a.name, names) + f"its parameters: ({', '.join(names)})")
            else:
                key = a.name
            if key in bound:
                raise NetdslError(f"argument '{key}' given twice", a.span, "give each argument once")
            if a.value.kind not in ir.EXPR_KINDS:
                raise NetdslError(f"block arguments are integer expressions, not {a.value.kind} values", a.value.span,
                                  f"pass an integer to '{key}'")
            self.check_expr(a.value, known, "block argument")
            bound[key] = substitute(a.value, env)
        missing = [n for n in names if n not in bound]
        if missing:
            raise NetdslError(f"block '{block.name}' is missing argument(s): {', '.join(missing)}", call.span,
                              f"call it as {block.name}({', '.join(names)})")
        inner_known = set(self.params) | set(self.dims) | set(names)
        return self.expand(block.body, bound, inner_known, [*via, call.span], prefix)

    def op(self, call: ir.LayerCall, spec: OpSpec, env: dict[str, ir.Expr], known: set[str],
           via: list[Span]) -> ir.Op:
        given: dict[str, ir.Value] = {}
        for i, a in enumerate(call.args):
            if a.name is None:
                if i >= len(spec.args):
                    raise NetdslError(f"'{spec.name}' takes at most {len(spec.args)} argument(s)", a.span,
                                      f"{spec.name}: {spec.doc}")
                if given and any(prev.name is not None for prev in call.args[:i]):
                    raise NetdslError("a positional argument after a keyword argument", a.span,
                                      "put positional arguments first")
                arg = spec.args[i]
            else:
                found = spec.arg(a.name)
                if found is None:
                    raise NetdslError(f"'{spec.name}' has no argument '{a.name}'", a.span,
                                      _did_you_mean(a.name, [x.name for x in spec.args])
                                      + (f"its arguments: {', '.join(x.name for x in spec.args)}" if spec.args else f"'{spec.name}' takes no arguments"))
                arg = found
            if arg.name in given:
                raise NetdslError(f"argument '{arg.name}' given twice", a.span, "give each argument once")
            given[arg.name] = self.check_value(a.value, arg, spec, env, known)
        args: dict[str, ir.Value] = {}
        for arg in spec.args:
            if arg.name in given:
                args[arg.name] = given[arg.name]
            elif arg.default_from is not None:
                args[arg.name] = args[arg.default_from]
            elif arg.required:
                raise NetdslError(f"'{spec.name}' needs its argument '{arg.name}'", call.span,
                                  f"{spec.name}: {spec.doc}")
            else:
                args[arg.name] = _literal(arg.default, call.op.span)
        return ir.Op(span=call.span, op=spec.name, name="", args=args, via=via)

    def check_value(self, v: ir.Value, arg: ArgSpec, spec: OpSpec, env: dict[str, ir.Expr],
                    known: set[str]) -> ir.Value:
        want = {"int": "an integer expression", "float": "a number", "bool": "true or false",
                "str": "a string"}[arg.type]
        if arg.type == "int":
            if isinstance(v, ir.Hole):
                return v
            if v.kind in ir.EXPR_KINDS:
                self.check_expr(v, known, f"argument '{arg.name}'")
                return substitute(v, env)
        elif arg.type == "float":
            f: ir.Float | None = None
            if isinstance(v, ir.Float):
                f = v
            elif v.kind in ir.EXPR_KINDS and const_int(v) is not None:
                f = ir.Float(span=v.span, value=float(const_int(v)))
            if f is not None:
                if (arg.fmin is not None and f.value < arg.fmin) or (arg.fmax is not None and f.value > arg.fmax):
                    bounds = f"from {arg.fmin} to {arg.fmax}" if arg.fmax is not None else f"at least {arg.fmin}"
                    raise NetdslError(f"'{spec.name}' argument '{arg.name}' must be {bounds}, not {f.value}", v.span,
                                      f"{spec.name}: {spec.doc}")
                return f
        elif arg.type == "bool" and isinstance(v, ir.Bool):
            return v
        elif arg.type == "str" and isinstance(v, ir.Str):
            if arg.choices and v.value not in arg.choices:
                raise NetdslError(f"'{spec.name}' argument '{arg.name}' must be one of "
                                  f"{', '.join(repr(c) for c in arg.choices)}, not {v.value!r}", v.span,
                                  _did_you_mean(v.value, arg.choices) or f'write {arg.name}="{arg.choices[0]}"')
            return v
        raise NetdslError(f"'{spec.name}' argument '{arg.name}' wants {want}", v.span,
                          f"{spec.name}: {spec.doc}")

    # --- the whole spec -------------------------------------------------------------------
    def run(self) -> ir.Graph:
        self.check_header()
        top_known = set(self.params) | set(self.dims)
        for b in self.spec.blocks:
            if b.name in OPS:
                raise NetdslError(f"block '{b.name}' shadows the builtin op of that name", b.span, "rename the block")
            if b.name in self.blocks:
                prev = self.blocks[b.name].span
                raise NetdslError(f"duplicate block '{b.name}'", b.span,
                                  f"'{b.name}' is already defined at line {prev.line}, column {prev.column}")
            seen: dict[str, Span] = {}
            for p in b.params:
                self._fresh(p.name, p.span, seen, "block parameter")
            # Blocks see earlier blocks only, so recursion cannot be written.
            self.expand(b.body, {}, top_known | {p.name for p in b.params}, [b.span], "")
            self.blocks[b.name] = b
        defined: dict[str, Span] = {self.spec.input.name: self.spec.input.span}
        nodes: list[ir.TensorNode] = []
        total = 0
        for a in self.spec.assigns:
            for ref in a.inputs:
                if ref.name not in defined:
                    later = next((x for x in self.spec.assigns if x.name == ref.name), None)
                    hint = (f"'{ref.name}' is defined later, at line {later.span.line}; move that statement up"
                            if later is not None else _did_you_mean(ref.name, defined) + f"tensors defined so far: {', '.join(defined)}")
                    raise NetdslError(f"'{ref.name}' is used before it is defined" if later else f"unknown tensor '{ref.name}'",
                                      ref.span, hint)
            if a.name in defined or a.name in self.params or a.name in _RESERVED:
                if a.name in _RESERVED:
                    raise NetdslError(f"'{a.name}' is a reserved word", a.span, "pick another tensor name")
                prev = defined.get(a.name) or self.params[a.name].span
                raise NetdslError(f"duplicate name '{a.name}'", a.span,
                                  f"'{a.name}' is already defined at line {prev.line}, column {prev.column}; rename one of them")
            if a.annotation is not None:
                for e in a.annotation:
                    self.check_expr(e, top_known, "shape annotation")
            pairs = self.expand(a.chain, {}, top_known, [], "")
            total += len(pairs)
            if total > MAX_LAYERS:
                raise NetdslError(f"the network has more than {MAX_LAYERS} layers", a.span, "split or shrink it")
            nodes.append(ir.TensorNode(span=a.span, name=a.name, merge=a.merge, inputs=a.inputs,
                                       layers=_name_layers(pairs), annotation=a.annotation))
            defined[a.name] = a.span
        out = next((n for n in nodes if n.name == "output"), None)
        if out is None:
            raise NetdslError("the spec has no output", self.spec.span if not nodes else nodes[-1].span,
                              "name the network's result `output`, e.g. `output = h |> conv(NC, 3, padding=1)`")
        return ir.Graph(span=self.spec.span, name=self.spec.name, params=self.spec.params,
                        conditions=self.spec.conditions, input=self.spec.input, nodes=nodes,
                        output="output", claims=self.spec.claims)


def _literal(v: int | float | bool | str | None, span: Span) -> ir.Value:
    if isinstance(v, bool):
        return ir.Bool(span=span, value=v)
    if isinstance(v, int):
        return ir.Int(span=span, value=v)
    if isinstance(v, float):
        return ir.Float(span=span, value=v)
    return ir.Str(span=span, value=str(v))


def _name_layers(pairs: list[tuple[str | None, ir.Op]]) -> list[ir.Op]:
    """Labelled layers keep their label; the others get their position, as in nn.Sequential."""
    seen: dict[str, Span] = {}
    out = []
    for i, (label, op) in enumerate(pairs):
        name = label if label is not None else str(i)
        if name in seen:
            raise NetdslError(f"duplicate layer name '{name}' in this statement", op.span,
                              f"the first '{name}' is at line {seen[name].line}, column {seen[name].column}; "
                              "label the block calls differently")
        seen[name] = op.span
        out.append(op.model_copy(update={"name": name}))
    return out


def lower(spec: ir.Spec) -> ir.Graph:
    """Check names and arguments and flatten blocks; the result holds builtin ops only."""
    return _Lowerer(spec).run()
