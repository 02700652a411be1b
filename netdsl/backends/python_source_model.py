"""What `export --to python` writes, before it is text: classes, statements, module constructions.

`python_source` fills these from the concrete graph; `python_source_write` prints them. Integer
arguments are `IntVal`s: a SymPy formula in the class's constructor arguments and the value in
use. `key()`s identify a class by everything it writes, so equal block classes are written once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import sympy as sp


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


# One module, a Sequential's (name, module) pairs, or nothing (a bare merge or reference).
Module = Union[Call, list[tuple[str, Call]], None]


@dataclass
class Stmt:
    """One tensor statement: its child module (registered under `name`) and how forward runs it."""

    name: str
    lines: tuple[int, int]   # first and last line of the statement in the spec
    module: Module
    how: str                 # "ref", "cat", "add" (merge, then the module) or "call" (the module takes all inputs)
    inputs: tuple[str, ...]

    @property
    def calls(self) -> list[Call]:
        if isinstance(self.module, Call):
            return [self.module]
        return [c for _, c in self.module or []]

    def key(self) -> str:
        mod = "-" if self.module is None else self.module.key() if isinstance(self.module, Call) else \
            "[" + ", ".join(f"{n}: {c.key()}" for n, c in self.module) + "]"
        return f"{self.name} {self.lines} = {self.how}{self.inputs} {mod}"


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
    return found
