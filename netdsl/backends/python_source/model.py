"""What `export --to python` writes, before it is text: classes, statements, module constructions,
and whether a class made for one graph-block call serves another.

`analyse` fills these from the concrete graph; `write` prints them. Integer arguments are
`IntVal`s: a SymPy formula in the class's constructor arguments and the value in use. `key()`s
identify a class by everything it writes, so equal block classes are written once. `fits` says
whether a class made for one call makes, given another call's arguments, exactly that call's
modules (its formulas evaluated at that call's values): then the class serves that call too.
`Tagged` integers carry their formula through an op's `module`, so the torch arguments come out
as formulas; `plain_value` compares them with the concrete arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from netdsl.concrete import Block, Statement
from netdsl.ops import OpDef
from netdsl.ops.learned import BATCH_AXIS, PARAM


@dataclass(frozen=True)
class IntVal:
    """An integer argument: its formula in the class's symbols and its value in use."""

    expr: sp.Expr
    value: int
    baked: bool = False  # the formula has no exact Python form here: the value is written

    def key(self) -> str:
        return f"{sp.srepr(self.expr)}={self.value}" if self.baked else sp.srepr(self.expr)


@dataclass
class Call:
    """A module construction: a torch.nn class, a helper class of the file, or a block's class."""

    cls: str | ClassModel
    args: list[tuple[str | None, Any]]  # (keyword, or None for the first argument of a block class; value)
    line: int | None = None             # where the layer is written, when that is not its statement's line
    frozen: bool = False                # `@freeze`: wrapped in `frozen(...)`

    def key(self) -> str:
        cls = self.cls if isinstance(self.cls, str) else f"<class {id(self.cls)}>"
        args = ", ".join(f"{k}={value_key(v)}" for k, v in self.args)
        return f"{cls}({args}){' frozen' if self.frozen else ''} @{self.line}"


@dataclass(frozen=True)
class LearnedInit:
    """A learned tensor (`param`): its dims as formulas, how it starts, whether it is frozen."""

    dims: tuple[IntVal, ...]
    init: str                # "constant" or "normal"
    value: float             # the constant, or the standard deviation
    frozen: bool = False
    batch_axis: bool = False  # stored as [1, *dims]

    def key(self) -> str:
        dims = ", ".join(d.key() for d in self.dims)
        return f"param[{'1; ' if self.batch_axis else ''}{dims}] {self.init}={self.value!r}" \
            f"{' frozen' if self.frozen else ''}"

    def fits(self, scope: dict[str, int], st: Statement) -> bool:
        """Whether, given these constructor arguments, it makes `st`'s learned tensor."""
        return st.source == PARAM and st.merge is not None and [evaluate(d, scope) for d in self.dims] == list(st.at) \
            and st.merge.args["init"] == self.init and st.merge.args["value"] == self.value \
            and self.frozen == ("freeze" in st.attrs) and self.batch_axis == (BATCH_AXIS in st.attrs)


# One module, a Sequential's (name, module) pairs, or nothing (a bare merge or reference).
Module = Call | list[tuple[str, Call]] | None


@dataclass
class Stmt:
    """One tensor statement: its child module (registered under `name`) and how forward runs it."""

    name: str
    lines: tuple[int, int]   # first and last line of the statement in the spec
    module: Module
    source: str              # "ref", or the name of the op that starts it (as the concrete graph's)
    inputs: tuple[str, ...]
    op: OpDef | None = None  # the op that starts it: its `source` joins the inputs for the module
    whole: bool = False      # the module is that op's own and takes every input (detect)
    learned: LearnedInit | None = None  # a learned tensor: a parameter of the class, no module

    @property
    def calls(self) -> list[Call]:
        if isinstance(self.module, Call):
            return [self.module]
        return [c for _, c in self.module or []]

    def key(self) -> str:
        mod = "-" if self.module is None else self.module.key() if isinstance(self.module, Call) else \
            "[" + ", ".join(f"{n}: {c.key()}" for n, c in self.module) + "]"
        how = "call" if self.whole else self.source
        return f"{self.name} {self.lines} = {how}{self.inputs} {mod}" + (f" {self.learned.key()}" if self.learned else "")


@dataclass
class ClassModel:
    """One class of the file: the net's, or a graph block's (one per distinct body)."""

    kind: str                          # "net" or "block"
    name: str                          # the net's or the block's name in the spec
    line: int
    params: list[tuple[str, int | None]] = field(default_factory=list)  # constructor (name, default)
    baked: dict[str, int] = field(default_factory=dict)                 # names written at their values
    reads: list[str] = field(default_factory=list)                      # blocks: net parameters taken as arguments
    notes: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    statements: list[Stmt] = field(default_factory=list)
    frozen_bn: list[str] = field(default_factory=list)  # `--freeze-bn eval`: module paths kept in eval mode
    final: bool = False                # forward returns what an op such as detect returns (a tuple)
    fresh: list[str] = field(default_factory=list)      # blocks: the names of the input's sizes
    pyname: str = ""                   # set by the writer: the class's name in the file
    variant: str = ""                  # set by the writer: what tells it from other classes of its block
    names: dict[str, str] = field(default_factory=dict)  # set by the writer: constructor argument -> Python name

    def key(self) -> str:
        return repr((self.kind, self.name, self.params, sorted(self.baked.items()), self.notes, self.inputs,
                     self.outputs, [s.key() for s in self.statements], self.frozen_bn))

    @property
    def frozen(self) -> bool:
        return any(c.frozen for st in self.statements for c in st.calls)


def value_key(v: Any) -> str:
    if isinstance(v, IntVal):
        return v.key()
    if isinstance(v, tuple):
        return "(" + "".join(value_key(x) + ", " for x in v) + ")"
    if isinstance(v, list):
        return "[" + "".join(value_key(x) + ", " for x in v) + "]"
    return repr(v)


def symbols_used(cls: ClassModel) -> set[str]:
    """The names of the symbols the class's written formulas read."""
    found: set[str] = set()

    def visit(v: Any) -> None:
        if isinstance(v, IntVal):
            if not v.baked:
                found.update(s.name for s in v.expr.free_symbols)
        elif isinstance(v, (tuple, list)):
            for x in v:
                visit(x)

    for st in cls.statements:
        for c in st.calls:
            for _, v in c.args:
                visit(v)
        if st.learned is not None:
            visit(st.learned.dims)
    return found


class Tagged(int):
    """An integer that carries its formula through an op's `module`. Equal to another only if the
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
        if st.learned is not None:
            if not st.learned.fits(scope, cst):
                return False
            continue
        if st.whole:
            assert isinstance(st.module, Call) and cst.merge is not None
            want = cst.merge.module_spec()
            if want is None or not same_call(st.module, want, scope, "freeze" in cst.attrs):
                return False
            continue
        if st.source != cst.source:
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
            elif not same_call(call, it.module_spec(), scope, "freeze" in it.attrs):
                return False
    return True


def same_call(call: Call, want: tuple[str, dict[str, Any]] | None, scope: dict[str, int], frozen: bool) -> bool:
    if want is None:
        return False
    got = {k: evaluate(v, scope) for k, v in call.args}
    return call.cls == want[0] and call.frozen == frozen and plain_value(got) == plain_value(want[1])
