"""One visitor over the IR's integer expressions, and their text: every pass that reads an
expression goes through `fold` (or `walk`), so a new expression node is handled in one place.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from netdsl.errors import NetdslError
from netdsl.ir import BinOp, Call, Condition, Expr, Float, IfExpr, Int, Name, Neg, Node

T = TypeVar("T")


def fold(e: Expr, leaf: Callable[[Int | Name], T], binop: Callable[[BinOp, T, T], T],
         neg: Callable[[Neg, T], T], call: Callable[[Call, list[T]], T],
         cond: Callable[[IfExpr], T] | None = None, real: Callable[[Float], T] | None = None) -> T:
    """Evaluate an expression bottom-up; every pass that reads expressions goes through here.
    A number with a fraction goes to `real`; without one, the expression must be an integer."""
    def go(n: Expr) -> T:
        if isinstance(n, (Int, Name)):
            return leaf(n)
        if isinstance(n, Float):
            if real is None:
                raise NetdslError(f"an integer is expected here: {n.value!r} has a fraction", n.span,
                                  "numbers with a fraction are taken by float arguments (dropout(0.1 * k), eps=...)")
            return real(n)
        if isinstance(n, BinOp):
            return binop(n, go(n.left), go(n.right))
        if isinstance(n, Neg):
            return neg(n, go(n.operand))
        if isinstance(n, Call):
            return call(n, [go(a) for a in n.args])
        if cond is None:
            raise ValueError("conditional expressions are resolved before this pass")
        return cond(n)
    return go(e)


def walk(e: Expr) -> Iterable[Node]:
    """Every node of an expression, parents before children, left to right."""
    stack: list[Node] = [e]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, BinOp):
            stack += [n.right, n.left]
        elif isinstance(n, Neg):
            stack.append(n.operand)
        elif isinstance(n, Call):
            stack += reversed(n.args)
        elif isinstance(n, IfExpr):
            stack += [n.orelse, n.then, n.test.right, n.test.left]


def names_in(e: Expr) -> Iterable[Name]:
    """Every Name node in an expression, left to right."""
    return (n for n in walk(e) if isinstance(n, Name))


def to_text(e: Expr) -> str:
    """An expression as the user wrote it, near enough (nested operations get parentheses)."""
    if isinstance(e, Int):
        return str(e.value)
    if isinstance(e, Name):
        return e.id
    if isinstance(e, Float):
        return repr(e.value)
    if isinstance(e, Neg):
        return "-" + _wrapped(e.operand)
    if isinstance(e, Call):
        return f"{e.func}({', '.join(to_text(a) for a in e.args)})"
    if isinstance(e, IfExpr):
        return f"{to_text(e.then)} if {condition_text(e.test)} else {to_text(e.orelse)}"
    if e.op in ("*", "/", "//", "**"):
        return f"{_wrapped(e.left)}{e.op}{_wrapped(e.right)}"
    return f"{to_text(e.left)} {e.op} {_wrapped(e.right)}"


def condition_text(c: Condition) -> str:
    return f"{to_text(c.left)} {c.op} {to_text(c.right)}"


def _wrapped(e: Expr) -> str:
    needs = isinstance(e, IfExpr) or (isinstance(e, BinOp) and e.op in ("+", "-", "%"))
    return f"({to_text(e)})" if needs else to_text(e)
