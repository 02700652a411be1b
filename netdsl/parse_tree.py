"""Lark's parse tree to `ir.Spec`: structural checks only (names are resolved in passes.lower).

Each grammar rule becomes its IR node with the span it covers; expressions are capped in depth and
integers in digits here, once, so no later pass recurses or computes without bound.
"""
from __future__ import annotations

import math
from typing import Literal

from lark import Token, Tree

from netdsl import ir
from netdsl.errors import NetdslError, Span

MAX_EXPR_DEPTH = 100
MAX_INT_DIGITS = 30

BinOpSymbol = Literal["+", "-", "*", "//", "%", "/", "**"]  # as ir.BinOp.op
_COMPARE: dict[str, ir.Compare] = {c: c for c in ("==", "!=", "<", "<=", ">", ">=")}


def _compare(op: Tree | Token) -> ir.Compare:
    """A comparison token as the IR's operator (the grammar's COMPARE admits only these)."""
    try:
        return _COMPARE[str(op)]
    except KeyError:  # pragma: no cover - the grammar admits no other
        raise NetdslError(f"unknown comparison {str(op)!r}", span_of(op)) from None


def span_of(x: Tree | Token) -> Span:
    """The source span of a token or a rule's tree (a rule that matched nothing: 1:1)."""
    if isinstance(x, Token):
        return Span(x.line or 1, x.column or 1, x.end_line or x.line or 1, x.end_column or (x.column or 1) + 1)
    m = x.meta
    if getattr(m, "empty", True):
        return Span(1, 1, 1, 2)
    return Span(m.line, m.column, m.end_line, m.end_column)


class TreeToIR:
    """Lark tree -> ir.Spec. Structural checks only; names are resolved in passes.lower."""

    def spec(self, tree: Tree) -> ir.Spec:
        header, *stmts = [c for c in tree.children if isinstance(c, Tree)]
        name_tok, params, where = self._header(header)
        inputs: list[ir.InputDecl] = []
        blocks: list[ir.BlockDef] = []
        assigns: list[ir.Assign] = []
        claims: list[ir.Claim] = []
        learned: list[ir.Learned] = []
        for st in stmts:
            kind = st.data
            if kind == "input_decl":
                inputs.append(self._input(st, {p.name for p in params}))
            elif kind in ("linear_block", "graph_block"):
                blocks.append(self._block(st))
            elif kind in ("assign", "out_assign"):
                assigns.append(self._assign(st))
            elif kind == "claim":
                claims.append(self.claim(st))
            elif kind == "learned_decl":
                learned.append(self.learned(st))
        if not inputs:
            raise NetdslError("the spec declares no input", span_of(header),
                              "add a line such as `input x: [NIC, H = 32, W = 32]` after the header")
        return ir.Spec(span=span_of(tree), name=str(name_tok), params=params, conditions=where,
                       inputs=inputs, blocks=blocks, assigns=assigns, claims=claims, learned=learned)

    def _header(self, t: Tree) -> tuple[str, list[ir.Param], list[ir.Condition]]:
        # maybe_placeholders: the optional `where` is always the last child (a tree or None).
        name, *rest, where = t.children
        params = [self._param(p) for p in rest if p is not None]
        return str(name), params, self._where(where)

    def _param(self, t: Tree) -> ir.Param:
        name, ann, default = t.children
        return ir.Param(span=span_of(t), name=str(name), annotation=str(ann) if ann is not None else None,
                        default=self.expr(default))

    def _where(self, t: Tree | None) -> list[ir.Condition]:
        return [self._condition(c) for c in t.children] if t is not None else []

    def _condition(self, c: Tree) -> ir.Condition:
        left, op, right = c.children
        return ir.Condition(span=span_of(c), op=_compare(op), left=self.expr(left), right=self.expr(right))

    _RANKS = "an input is features [F], a sequence [T, D] or an image [C, H, W]"

    def _input(self, t: Tree, params: set[str]) -> ir.InputDecl:
        """One rule for every axis: `NAME = expr` declares a size, a bare NAME that is no parameter
        declares one (or reuses an earlier input's), anything else (a number, a parameter, an
        expression) is a fixed size."""
        name, *axes, where = t.children
        if len(axes) > 3:
            raise NetdslError(f"input '{name}' has {len(axes)} axes; at most 3", span_of(axes[3]), self._RANKS)
        out: list[ir.InputAxis] = []
        for a in axes:
            if a.data == "dim":
                dim = ir.Dim(span=span_of(a), name=str(a.children[0]), default=self.expr(a.children[1]))
                out.append(ir.InputAxis(span=dim.span, dim=dim))
                continue
            e = self.expr(a.children[0])
            if isinstance(e, ir.Name) and e.id not in params:
                out.append(ir.InputAxis(span=e.span, dim=ir.Dim(span=e.span, name=e.id)))
            else:
                out.append(ir.InputAxis(span=e.span, size=e))
        return ir.InputDecl(span=span_of(t), name=str(name), axes=out, conditions=self._where(where))

    def _block(self, t: Tree) -> ir.BlockDef:
        name, *rest = t.children
        params = [ir.BlockParam(span=span_of(p), name=str(p.children[0]),
                                default=self.expr(p.children[1]) if p.children[1] is not None else None)
                  for p in rest if isinstance(p, Tree) and p.data == "bparam"]
        if t.data == "linear_block":
            return ir.BlockDef(span=span_of(t), name=str(name), params=params, body=self._chain(rest[-1]))
        tok = next(c for c in rest if isinstance(c, Token))
        assigns = [self._assign(c) for c in rest if isinstance(c, Tree) and c.data in ("assign", "out_assign")]
        learned = [self.learned(c) for c in rest if isinstance(c, Tree) and c.data == "learned_decl"]
        return ir.BlockDef(span=span_of(t), name=str(name), params=params,
                           input=ir.Ident(span=span_of(tok), name=str(tok)), assigns=assigns, learned=learned)

    def _assign(self, t: Tree) -> ir.Assign:
        attrs = [self._attr(c) for c in t.children if isinstance(c, Tree) and c.data == "attr"]
        rest = [c for c in t.children if not (isinstance(c, Tree) and c.data == "attr")]
        output = t.data == "out_assign"
        targets: list[ir.Ident] = []
        if output:
            kw, name, shape, source, _pipe, chain = rest
            name = name if name is not None else kw
        else:
            name, more, shape, source, _pipe, chain = rest
            if more is not None:
                targets = [ir.Ident(span=span_of(n), name=str(n)) for n in (name, *more.children)]
                if shape is not None:
                    raise NetdslError("the parts of a split cannot be annotated with a shape", span_of(shape),
                                      "annotate a part where it is used, e.g. `y: [C, H, W] = a`")
        ann = [self.expr(e) for e in shape.children] if shape is not None else None
        merge, inputs, args = ("ref", [ir.Ident(span=span_of(source.children[0]), name=str(source.children[0]))], []) \
            if source.data == "ref" else self._merge(source)
        return ir.Assign(span=span_of(t), name=str(name), annotation=ann, merge=merge, source_span=span_of(source), args=args,
                         inputs=inputs, chain=self._chain(chain) if chain is not None else [], output=output,
                         attrs=attrs, targets=targets)

    def _merge(self, t: Tree, depth: int = 0) -> tuple[str, list[ir.Ident | ir.MergeCall], list[ir.Arg]]:
        """A merge's op name, operands (tensor names, or merges nested in it) and keyword arguments."""
        if depth > MAX_EXPR_DEPTH:
            raise NetdslError(f"merges nest more than {MAX_EXPR_DEPTH} levels deep here", span_of(t),
                              "name some of the inner merges in statements of their own")
        fn, *rest = t.children
        inputs: list[ir.Ident | ir.MergeCall] = []
        args: list[ir.Arg] = []
        for n in rest:
            if isinstance(n, Token):
                inputs.append(ir.Ident(span=span_of(n), name=str(n)))
            elif n.data == "merge":
                op, sub, sub_args = self._merge(n, depth + 1)
                inputs.append(ir.MergeCall(span=span_of(n), op=ir.Ident(span=span_of(n.children[0]), name=op),
                                           inputs=sub, args=sub_args))
            elif n is not None:
                args.append(ir.Arg(span=span_of(n), name=str(n.children[0]), value=self.value(n.children[1])))
        return str(fn), inputs, args

    def _chain(self, t: Tree) -> list[ir.LayerCall]:
        return [self._layer(c) for c in t.children if isinstance(c, Tree)]

    def _layer(self, t: Tree) -> ir.LayerCall:
        label, op, *rest = t.children
        attrs = [self._attr(c) for c in rest if isinstance(c, Tree) and c.data == "attr"]
        repeat = next((c for c in rest if isinstance(c, Tree) and c.data == "repeat"), None)
        args = [self._arg(a) for a in rest if isinstance(a, Tree) and a.data in ("arg", "kwarg")]
        count = index = None
        if repeat is not None:
            count = self.expr(repeat.children[0])
            if repeat.children[1] is not None:
                index = ir.Ident(span=span_of(repeat.children[1]), name=str(repeat.children[1]))
        return ir.LayerCall(span=span_of(t), label=ir.Ident(span=span_of(label), name=str(label)) if label is not None else None,
                            op=ir.Ident(span=span_of(op), name=str(op)), args=args, repeat=count, index=index,
                            attrs=attrs)

    def _attr(self, t: Tree) -> ir.Attr:
        name, *args = t.children
        return ir.Attr(span=span_of(t), name=str(name), args=[self._arg(a) for a in args if a is not None])

    def _arg(self, t: Tree) -> ir.Arg:
        if t.data == "kwarg":
            name, value = t.children
            return ir.Arg(span=span_of(t), name=str(name), value=self.value(value))
        return ir.Arg(span=span_of(t), value=self.value(t.children[0]))

    def claim(self, t: Tree) -> ir.Claim:
        metric, *args, op, expr = t.children
        return ir.Claim(span=span_of(t), metric=ir.Ident(span=span_of(metric), name=str(metric)),
                        options=[self._arg(a) for a in args if a is not None], op=_compare(op), expr=self.expr(expr))

    _INITS = "a learned tensor starts as a number (`= 0`, `= 1e-6`, `= 1 / 16`) or as `normal(std)`"

    def learned(self, t: Tree) -> ir.Learned:
        """`param NAME: [dims] = INIT`: INIT a number expression or `normal(std)`."""
        *attrs, name, shape, init = t.children
        kind: Literal["constant", "normal"] = "constant"
        if isinstance(init, Tree) and init.data == "call":
            fn, *args = init.children
            if str(fn) != "normal":
                raise NetdslError(f"unknown initial value '{fn}(...)'", span_of(fn), self._INITS)
            if len(args) != 1:
                raise NetdslError(f"normal(std) takes one argument, got {len(args)}", span_of(init), self._INITS)
            kind, init = "normal", args[0]
        elif isinstance(init, Tree) and init.data in ("inf", "neginf", "string", "true", "false", "hole", "pair", "list"):
            raise NetdslError("this is not an initial value", span_of(init), self._INITS)
        return ir.Learned(span=span_of(t), name=str(name), dims=[self.expr(e) for e in shape.children],
                          init=kind, value=self.expr(init, floats=True), attrs=[self._attr(a) for a in attrs])

    def value(self, t: Tree | Token) -> ir.Value:
        if isinstance(t, Tree):
            sp = span_of(t)
            if t.data in ("inf", "neginf"):
                return ir.Float(span=sp, value=float("-inf") if t.data == "neginf" else float("inf"))
            if t.data == "string":
                return ir.Str(span=sp, value=str(t.children[0])[1:-1])
            if t.data in ("true", "false"):
                return ir.Bool(span=sp, value=t.data == "true")
            if t.data == "hole":
                return ir.Hole(span=sp)
            if t.data == "pair":
                return ir.Pair(span=sp, items=(self.expr(t.children[0]), self.expr(t.children[1])))
            if t.data == "list":
                return ir.ListValue(span=sp, items=[self.value(c) for c in t.children if c is not None])
        # A value may mix numbers with a fraction into its expression (`0.2 * i / 16`); where an
        # integer is needed, lowering says so at the number.
        e = self.expr(t, floats=True)
        if isinstance(e, ir.Neg) and isinstance(e.operand, ir.Float):  # `-0.5` is one number, as it always was
            return ir.Float(span=e.span, value=-e.operand.value)
        return e

    _BINOPS: dict[str, BinOpSymbol] = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "mod": "%", "truediv": "/",
                                       "pow": "**"}

    def expr(self, t: Tree | Token, depth: int = 0, floats: bool = False) -> ir.Expr:
        if isinstance(t, Token):  # pragma: no cover - every expression token is wrapped in a rule
            raise NetdslError(f"unexpected {t!s}", span_of(t))
        sp = span_of(t)
        # Every later pass recurses over expressions too: cap the depth once, here.
        if depth > MAX_EXPR_DEPTH:
            raise NetdslError(f"this expression nests more than {MAX_EXPR_DEPTH} levels deep", sp,
                              "write it flatter, or compute part of it in a parameter default")
        sub = lambda x: self.expr(x, depth + 1, floats)  # noqa: E731
        kind = t.data
        if kind == "int":
            digits = str(t.children[0])
            if len(digits) > MAX_INT_DIGITS:
                raise NetdslError(f"the integer {digits[:12]}... has {len(digits)} digits", sp,
                                  f"integers are limited to {MAX_INT_DIGITS} digits")
            return ir.Int(span=sp, value=int(digits))
        if kind == "name":
            return ir.Name(span=sp, id=str(t.children[0]))
        if kind == "float" and floats:
            v = float(str(t.children[0]))
            if not math.isfinite(v):
                raise NetdslError(f"the number {str(t.children[0])[:12]} is too large for a float", sp,
                                  "write a smaller number")
            return ir.Float(span=sp, value=v)
        if kind == "neg":
            return ir.Neg(span=sp, operand=sub(t.children[0]))
        if kind == "call":
            fn, *args = t.children
            if str(fn) not in ("min", "max"):
                raise NetdslError(f"unknown function '{fn}'", span_of(fn), "expressions may call min(...) and max(...)")
            func: Literal["min", "max"] = "min" if str(fn) == "min" else "max"
            return ir.Call(span=sp, func=func, args=[sub(a) for a in args])
        if kind == "ifexpr":
            then, test, orelse = t.children
            left, op, right = test.children
            cond = ir.Condition(span=span_of(test), op=_compare(op), left=sub(left), right=sub(right))
            return ir.IfExpr(span=sp, test=cond, then=sub(then), orelse=sub(orelse))
        if kind in self._BINOPS:
            left, right = t.children
            return ir.BinOp(span=sp, op=self._BINOPS[kind], left=sub(left), right=sub(right))
        if kind in ("float", "negfloat", "inf", "neginf", "string", "true", "false", "hole", "pair", "list"):
            what = {"float": "a fractional number", "negfloat": "a fractional number", "inf": "inf",
                    "neginf": "-inf", "string": "a string", "hole": "'?'", "pair": "a pair",
                    "list": "a list"}.get(kind, "a boolean")
            raise NetdslError(f"{what} is not allowed here", sp, "this place takes an integer expression")
        raise NetdslError(f"unexpected {kind}", sp)  # pragma: no cover
