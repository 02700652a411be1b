"""YAML read with `safe_load`'s semantics, every value keeping its place in the file.

`yaml.compose` with PyYAML's SafeLoader gives the node tree with start marks; each scalar is then
built by PyYAML's SafeConstructor (the same one `yaml.safe_load` uses: plain data, never Python
objects). Aliases are followed with a bound on nodes and depth, so a YAML bomb or a recursive
alias is an error, not a hang.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from netdsl.importers.spec_writer import Loc, Source
from netdsl.limits import MAX_INT32

MAX_NODES = 200_000
MAX_DEPTH = 64
_PLAIN_TAGS = ("tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")


@dataclass
class Y:
    """A YAML value: `kind` scalar (`value` its Python value), seq (a list of Y) or map (key -> (key Y, value Y))."""

    kind: str
    value: Any
    loc: Loc

    def is_int(self) -> bool:
        return self.kind == "scalar" and type(self.value) is int

    def is_number(self) -> bool:
        return self.kind == "scalar" and type(self.value) in (int, float)

    def show(self) -> str:
        if self.kind == "seq":
            return "[" + ", ".join(v.show() for v in self.value) + "]"
        if self.kind == "map":
            return "{" + ", ".join(f"{k}: {v.show()}" for k, (_, v) in self.value.items()) + "}"
        v = self.value
        text = "null" if v is None else str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, str) \
            else str(v)
        return text if len(text) <= 40 else text[:37] + "..."


def _loc(node: yaml.Node) -> Loc:
    s, e = node.start_mark, node.end_mark
    end = e.column + 1 if e.line == s.line and e.column > s.column else 0
    return Loc(s.line + 1, s.column + 1, end)


class _Reader:
    def __init__(self, src: Source) -> None:
        self.src = src
        self.count = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def convert(self, node: yaml.Node, depth: int) -> Y:
        self.count += 1
        if self.count > MAX_NODES or depth > MAX_DEPTH:
            why = "nests too deeply" if depth > MAX_DEPTH else f"has more than {MAX_NODES} values (aliases included)"
            raise self.src.error(_loc(node), f"the YAML {why}", "a model YAML is a short list of rows")
        loc = _loc(node)
        if isinstance(node, yaml.ScalarNode):
            try:
                value = self.constructor.construct_object(node)
            except Exception as e:  # noqa: BLE001 - PyYAML's constructors raise several kinds
                raise self.src.error(loc, f"cannot read this value: {str(e).splitlines()[0] if str(e) else e!r}",
                                     "write a plain number, string, true/false or null") from None
            return Y("scalar", value, loc)
        if node.tag not in _PLAIN_TAGS:  # safe_load refuses Python tags (and we build no other collection)
            raise self.src.error(loc, f"the tag {node.tag} is not allowed", "write plain lists and mappings")
        if isinstance(node, yaml.SequenceNode):
            return Y("seq", [self.convert(v, depth + 1) for v in node.value], loc)
        out: dict[Any, tuple[Y, Y]] = {}
        for knode, vnode in node.value:
            key = self.convert(knode, depth + 1)
            if key.kind != "scalar" or not isinstance(key.value, (str, int)) or isinstance(key.value, bool):
                raise self.src.error(key.loc, "a mapping key must be a name", "write e.g. nc: 80")
            if key.value in out:
                raise self.src.error(key.loc, f"'{key.value}' is given twice (first on line "
                                     f"{out[key.value][0].loc.line})", "keep one of them")
            out[key.value] = (key, self.convert(vnode, depth + 1))
        return Y("map", out, loc)


def read_yaml(src: Source) -> Y:
    """The document as a Y tree, or a NetdslError at the place PyYAML or the bounds object to."""
    try:
        node = yaml.compose(src.text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = Loc(mark.line + 1, mark.column + 1) if mark is not None else None
        raise src.error(loc, f"not valid YAML: {e.problem or e.context or 'unreadable'}",
                        "check the indentation, brackets and quotes here") from None
    except yaml.YAMLError as e:
        raise src.error(None, f"not valid YAML: {str(e).splitlines()[0] if str(e) else 'unreadable'}",
                        "save the file as plain UTF-8 YAML") from None
    except RecursionError:
        raise src.error(None, "the YAML nests too deeply", "a model YAML is a short list of rows") from None
    if node is None:
        raise src.error(None, "the file holds no YAML document", "give an Ultralytics model YAML")
    try:
        return _Reader(src).convert(node, 0)
    except RecursionError:
        raise src.error(None, "the YAML nests too deeply", "a model YAML is a short list of rows") from None


class Values:
    """A model YAML's values as ultralytics reads them: whole numbers and numbers checked at their
    place, and the names its `eval` knows (`nc`, `anchors`, once read; `None`, `True`, `False`)."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.names: dict[str, Any] = {"None": None, "True": True, "False": False}

    def whole(self, y: Y, lo: int, hi: int, what: str) -> int:
        if not y.is_int():
            raise self.src.error(y.loc, f"{what} is {y.show()}; expected a whole number",
                                 "netdsl does not evaluate expressions: write the number itself")
        if not lo <= y.value <= hi:
            raise self.src.error(y.loc, f"{what} = {y.value} is out of range", f"use a value from {lo} to {hi}")
        return int(y.value)

    def number(self, y: Y, what: str) -> float:
        if not y.is_number() or not 0 < y.value <= 1000 or y.value != y.value:
            raise self.src.error(y.loc, f"{what} is {y.show()}; expected a positive number", f"write e.g. {what}: 1.0")
        return float(y.value)

    def value(self, y: Y) -> Any:
        """An argument as ultralytics reads it: the known names resolved, anything else as written."""
        if y.kind == "scalar" and isinstance(y.value, str):
            return self.names.get(y.value, y.value)
        return y if y.kind != "scalar" else y.value

    def ints(self, y: Y, n: int | None, lo: int, what: str) -> tuple[int, ...]:
        """An int (repeated n times) or a list of n ints (any length when n is None)."""
        v = self.value(y)
        if isinstance(v, Y) and v.kind == "seq" and (n is None or len(v.value) == n) and v.value:
            return tuple(self.whole(e, lo, MAX_INT32, what) for e in v.value)
        if type(v) is int and n is not None:
            return (self.whole(y, lo, MAX_INT32, what),) * n
        shape = "a whole number" + (f" or a list of {n}" if n else "") if n else "a list of whole numbers"
        raise self.src.error(y.loc, f"{what} is {y.show()}; expected {shape}", "write the value itself")

    def flag(self, y: Y | None, default: bool, what: str) -> bool:
        if y is None:
            return default
        v = self.value(y)
        if v is True or v is False or (type(v) is int and v in (0, 1)):
            return bool(v)
        raise self.src.error(y.loc, f"{what} is {y.show()}; expected true or false", f"write {what} as True or False")
