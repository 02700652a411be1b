"""Checks of `python_source`'s classes against the concrete graph, the values netdsl uses.

`Tagged` integers carry their formula through `OpDef.torch`, so the torch arguments come out as
formulas; `plain_value` compares them with the concrete arguments. `fits` says whether a class
made for one graph-block call makes, given another call's arguments, exactly that call's modules
(its formulas evaluated at that call's values): then the class serves that call too.
"""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.backends.python_source_model import Call, ClassModel, IntVal
from netdsl.concrete import Block, Statement


class Tagged(int):
    """An integer that carries its formula through `OpDef.torch`. Equal to another only if the
    formulas are equal too, so `scalar((k, 3))` stays a pair even where k is 3."""

    expr: sp.Expr

    def __new__(cls, value: int, expr: sp.Expr) -> Tagged:
        obj = super().__new__(cls, value)
        obj.expr = expr
        return obj

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Tagged):
            return int(self) == int(other) and bool(self.expr == other.expr)
        return int(self) == other

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = int.__hash__


def tag(values: tuple[int, ...], exprs: tuple[sp.Expr, ...]) -> tuple[Tagged, ...]:
    return tuple(Tagged(v, e) for v, e in zip(values, exprs))


def plain_value(v: Any) -> Any:
    """For comparison with the concrete graph: tagged ints as ints, a pair of equal ints as one."""
    if isinstance(v, dict):
        return {k: plain_value(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        items = [plain_value(x) for x in v]
        if isinstance(v, tuple) and len(items) == 2 and items[0] == items[1] and isinstance(items[0], int):
            return items[0]
        return items
    return int(v) if isinstance(v, Tagged) else v


def attrs(statements: list[Statement]) -> tuple:
    """Every layer's attributes (`freeze`), blocks opened: part of what a block class writes."""
    out: list = []
    for st in statements:
        out.append(tuple(sorted(st.attrs)))
        for it in st.items:
            out.append(attrs(it.statements) if isinstance(it, Block) else tuple(sorted(it.attrs)))
    return tuple(out)


def evaluate(v: Any, scope: dict[str, int]) -> Any:
    """An argument at these values of the class's constructor arguments (None: it cannot be)."""
    if isinstance(v, IntVal):
        if v.baked:
            return v.value
        if any(s.name not in scope for s in v.expr.free_symbols):
            return None
        x = v.expr.xreplace({s: sp.Integer(scope[s.name]) for s in v.expr.free_symbols})
        return int(x) if x.is_Integer else None
    if isinstance(v, (tuple, list)):
        return type(v)(evaluate(x, scope) for x in v)
    return v


def fits(cls: ClassModel, scope: dict[str, int], statements: list[Statement]) -> bool:
    """Whether `cls`, given these constructor arguments, makes exactly these statements' modules."""
    if len(cls.statements) != len(statements):
        return False
    for st, cst in zip(cls.statements, statements):
        if st.name != cst.name or st.inputs != cst.inputs:
            return False
        if st.how == "call":
            assert isinstance(st.module, Call) and cst.merge is not None
            want = cst.merge.merge.module(cst.merge.args, cst.merge.in_at)
            if want is None or not same_call(st.module, want, scope, "freeze" in cst.attrs):
                return False
            continue
        if st.how != cst.source:
            return False
        mods = [] if st.module is None else [("0", st.module)] if isinstance(st.module, Call) else st.module
        if len(mods) != len(cst.items):
            return False
        for (name, call), it in zip(mods, cst.items):
            if name != it.name:
                return False
            if isinstance(it, Block):
                inner = call.cls
                if not isinstance(inner, ClassModel) or inner.name != it.block:
                    return False
                values = [evaluate(v, scope) for _, v in call.args]
                if None in values or not fits(inner, {n: v for (n, _), v in zip(inner.params, values)},
                                               it.statements):
                    return False
            elif not same_call(call, it.op.torch(it.args, it.in_at), scope, "freeze" in it.attrs):
                return False
    return True


def same_call(call: Call, want: tuple[str, dict[str, Any]], scope: dict[str, int], frozen: bool) -> bool:
    got = {k: evaluate(v, scope) for k, v in call.args}
    return call.cls == want[0] and call.frozen == frozen and plain_value(got) == plain_value(want[1])
