"""Lowering a learned tensor's declaration (`param NAME: [dims] = INIT`) to its tensor node.

Its dims are integer expressions of the scope (checked positive by the shape pass, at each dim);
INIT is a number expression, computed exactly at the values in use (`Lowerer.number`).
"""
from __future__ import annotations

from collections.abc import Callable

from netdsl import ir
from netdsl.errors import NetdslError, Span
from netdsl.ops.learned import PARAM
from netdsl.passes.names import RESERVED, check_names


def lower_learned(d: ir.Learned, defined: dict[str, Span], known: set[str] | dict,
                  resolve: Callable[[ir.Expr], ir.Expr], number: Callable[[ir.Expr, str], float] | None,
                  attrs: list[str]) -> ir.TensorNode:
    """The node of `d`; `number` is None while a block's definition is checked (names only)."""
    if d.name in RESERVED:
        raise NetdslError(f"'{d.name}' is a reserved word", d.span, "pick another name for the learned tensor")
    if d.name in defined or d.name in known:
        prev = defined.get(d.name)
        where = f"at line {prev.line}, column {prev.column}" if prev is not None else "as a parameter or size"
        raise NetdslError(f"duplicate name '{d.name}'", d.span, f"'{d.name}' is already defined {where}; rename one of them")
    for e in d.dims:
        check_names(e, known, "the shape of a learned tensor")
    what = "a standard deviation" if d.init == "normal" else "an initial value"
    check_names(d.value, known, what)
    value = 0.0 if number is None else number(resolve(d.value), what)
    if d.init == "normal" and value < 0:
        raise NetdslError(f"{what} is at least 0, not {value}", d.value.span, "write e.g. normal(0.02)")
    dims = ir.ListValue(span=d.span, items=[resolve(e) for e in d.dims])
    args: dict[str, ir.Value] = {"dims": dims, "init": ir.Str(span=d.value.span, value=d.init),
                                 "value": ir.Float(span=d.value.span, value=value)}
    return ir.TensorNode(span=d.span, name=d.name, merge=PARAM, inputs=[], source_span=d.span, args=args,
                         layers=[], attrs=attrs)


def before(a: Span, b: Span) -> bool:
    """`a` starts before `b` in the spec."""
    return (a.line, a.column) < (b.line, b.column)
