"""What the importers share: places in the source file and errors there, sizes as exact affine
functions of the input size, and the writer that lays out the spec, checks it with netdsl's own
passes (no torch) and maps any refusal back to the line of the source it came from.

Sizes. Every height (and width) is tracked as `a*H + b` with `a` a fraction and `b` an integer,
assuming `H % S == 0` where `S` is the least common multiple of every `a`'s denominator: under
that assumption a window `floor((a*H + b + pad - k) / s) + 1` is `(a/s)*H + floor((b + pad - k)/s)
+ 1`, exactly, for every admissible H. The spec gets `where H % S == 0, W % S == 0`, which is what
lets netdsl's symbolic passes drop the floors, and equal sizes are equal for every H, not just at
the default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from netdsl.errors import LineBreaks, NetdslError, Span, source_lines
from netdsl.parsing import read_text_file
from netdsl.passes.front import analyse_text

MAX_SOURCE_BYTES = 1_000_000
COMMENT_COLUMN = 44


@dataclass(frozen=True)
class Loc:
    """A place in the source: 1-based line and column; `end_column` exclusive (0: to the line's end)."""

    line: int
    column: int = 1
    end_column: int = 0


class Source:
    """The file being imported: its name (for messages) and text (for carets); `breaks` says how its
    lines are counted (netdsl.errors.source_lines): "nl" as darknet does, "yaml" as PyYAML does."""

    def __init__(self, path: str, text: str, breaks: LineBreaks = "nl") -> None:
        self.path, self.text, self.breaks = path, text, breaks
        self.lines = source_lines(text, breaks)

    def error(self, loc: Loc | None, message: str, hint: str | None = None,
              notes: tuple[str, ...] = ()) -> NetdslError:
        loc = loc or Loc(1)
        end = loc.end_column if loc.end_column > loc.column else loc.column + 1
        return NetdslError(message, Span(loc.line, loc.column, loc.line, end), hint, path=self.path,
                           source=self.text, notes=notes, breaks=self.breaks)


def read_source(path: str, what: str) -> str:
    """A file's text as UTF-8 (a BOM dropped), or a NetdslError naming the file."""
    return read_text_file(path, what, what, MAX_SOURCE_BYTES)


def check_text(src: Source) -> None:
    """Refuse binary-looking text (a NUL byte) at its place."""
    if len(src.text) > MAX_SOURCE_BYTES:
        raise src.error(None, f"the file is {len(src.text)} characters; imports are limited to {MAX_SOURCE_BYTES}")
    at = src.text.find("\x00")
    if at >= 0:
        before = source_lines(src.text[:at] + "\x00", src.breaks)  # the lines up to the NUL, as src counts them
        line, col = len(before), len(before[-1])
        raise src.error(Loc(line, col, col + 1), "the file holds a NUL byte: it looks binary",
                        "give the text file itself")


# -- sizes ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Size:
    """`a*H + b` (or in W): see the module's doc."""

    a: Fraction
    b: int

    def at(self, value: int) -> Fraction:
        return self.a * value + self.b

    def window(self, k: int, s: int, pad: int) -> Size:
        """A sliding window of size k, stride s, `pad` added in all (both sides together):
        `netdsl.ops.base.window_out` (floor mode, dilation 1) of `a*H + b` wherever H % S == 0, kept
        exact and affine here, without SymPy (tests/importers/test_importer_classes.py holds the two equal)."""
        return Size(self.a / s, (self.b + pad - k) // s + 1)

    def scaled(self, s: int) -> Size:
        return Size(self.a * s, self.b * s)

    def padded(self, n: int) -> Size:
        return Size(self.a, self.b + n)

    def show(self, sym: str) -> str:
        head = sym if self.a == 1 else "" if self.a == 0 else f"{sym}*{self.a}" if self.a.denominator == 1 \
            else f"{sym}/{self.a.denominator}" if self.a.numerator == 1 else f"{sym}*{self.a}"
        if not head:
            return str(self.b)
        return head if self.b == 0 else f"{head} {'+' if self.b > 0 else '-'} {abs(self.b)}"


@dataclass(frozen=True)
class Shape:
    c: int
    h: Size
    w: Size

    def show(self) -> str:
        return f"[{self.c}, {self.h.show('H')}, {self.w.show('W')}]"

    def same_size(self, other: Shape) -> bool:
        return (self.h, self.w) == (other.h, other.w)

    def window(self, c: int, k: tuple[int, ...], s: tuple[int, ...], pad: tuple[int, ...]) -> Shape:
        """`c` channels from a sliding window over this map: (height, width) windows `k`, strides `s`,
        padding `pad` in all (both sides together)."""
        return Shape(c, self.h.window(k[0], s[0], pad[0]), self.w.window(k[1], s[1], pad[1]))

    def scaled(self, k: int) -> Shape:
        return Shape(self.c, self.h.scaled(k), self.w.scaled(k))


INPUT_SIZE = Size(Fraction(1), 0)  # H (or W) itself
ONE = Size(Fraction(0), 1)  # a size of 1 for every input size


@dataclass
class Tensor:
    """A statement's output as the importers track it: the spec's name for it, its shape, and (darknet)
    the last cfg convolution its statement runs."""

    name: str
    shape: Shape
    last_conv: int | None = None


@dataclass
class Sizes:
    """The input's default size and every shape made, checked at that size once it is known."""

    H: int = 0
    W: int = 0
    seen: list[tuple[Shape, Loc | None, str]] = field(default_factory=list)

    def check(self, shape: Shape, loc: Loc | None, what: str) -> Shape:
        """Record `shape` (made at `loc`), to be checked by `validate`."""
        self.seen.append((shape, loc, what))
        return shape

    @property
    def multiple(self) -> int:
        """S: the least common multiple of every size's denominator."""
        s = 1
        for shape, _, _ in self.seen:
            for a in (shape.h.a, shape.w.a):
                s = s * a.denominator // math.gcd(s, a.denominator)
        return s

    def validate(self, src: Source) -> None:
        """An error at the first shape without rows, columns or channels at the default size."""
        for shape, loc, what in self.seen:
            h, w = shape.h.at(self.H), shape.w.at(self.W)
            if h < 1 or w < 1 or shape.c < 1:
                raise src.error(loc, f"{what} would be {shape.c}x{h}x{w} for a {self.H}x{self.W} input",
                                "a larger input size, or smaller strides and windows")


def stride_of(shape: Shape) -> int | None:
    """The stride of a feature map that is exactly H/s x W/s, else None."""
    h, w = shape.h, shape.w
    if h.b or w.b or h.a != w.a or h.a <= 0 or h.a.numerator != 1:
        return None
    return h.a.denominator


def net_name(stem: str) -> str:
    """`yolov3-tiny` -> `Yolov3Tiny`: a valid, readable `net` name."""
    parts = "".join(ch if ch.isascii() and ch.isalnum() else " " for ch in stem).split()
    name = "".join(p[:1].upper() + p[1:] for p in parts)
    return name if name[:1].isalpha() else "Net" + name


# -- the writer -------------------------------------------------------------------------------------

@dataclass
class Stmt:
    """One statement: `name = source |> chain  # comment`; `merge` is None for a plain reference."""

    name: str
    inputs: list[str]
    chain: list[str]
    comment: str
    loc: Loc | None
    merge: str | None = None
    extra: str = ""        # keyword arguments of a merge (detect's)


@dataclass
class Note:
    """Comment lines naming tensors: `texts` around `names` (one more text than names), joined when the
    spec is written, so that a tensor renamed later is named as the spec names it."""

    texts: list[str]
    names: list[str]

    def show(self) -> str:
        return "".join(t + n for t, n in zip(self.texts, self.names)) + self.texts[-1]


class Writer:
    def __init__(self, src: Source, name: str, header: list[str]) -> None:
        self.src, self.name, self.header = src, name, header
        self.params: list[tuple[str, int]] = []
        self.input: tuple[int, Sizes] | None = None
        self.blocks: dict[str, tuple[str, Loc | None]] = {}
        self.items: list[Stmt | Note | str] = []  # statements and comment lines, in order
        self.last: Stmt | None = None  # the statement added last

    def block(self, name: str, text: str, loc: Loc | None) -> str:
        """Define a block (its comment lines and definition) once, where it is first used."""
        if name not in self.blocks:
            self.blocks[name] = (text, loc)
        return name

    def add(self, stmt: Stmt) -> Stmt:
        self.items.append(stmt)
        self.last = stmt
        return stmt

    def note(self, comment: str | Note) -> None:
        self.items.append(comment)

    def rename(self, old: str, new: str) -> None:
        for it in self.items:
            if isinstance(it, Stmt):
                it.name = new if it.name == old else it.name
                it.inputs = [new if n == old else n for n in it.inputs]
            elif isinstance(it, Note):
                it.names = [new if n == old else n for n in it.names]

    def names(self) -> set[str]:
        return {it.name for it in self.items if isinstance(it, Stmt)}

    def render(self) -> tuple[str, dict[int, Loc | None]]:
        """The spec's text and, per line, the source place it came from."""
        assert self.input is not None
        lines: list[str] = [*self.header]
        where: dict[int, Loc | None] = {}
        params = ", ".join(f"{n} = {v}" for n, v in self.params)
        lines.append(f"net {self.name}({params})")
        channels, sizes = self.input
        s = sizes.multiple
        cond = f" where H % {s} == 0, W % {s} == 0" if s > 1 else ""
        lines.append(f"input x: [{channels}, H = {sizes.H}, W = {sizes.W}]{cond}")
        for text, loc in self.blocks.values():
            lines.append("")
            for ln in text.split("\n"):
                lines.append(ln)
                where[len(lines)] = loc
        lines.append("")
        for it in self.items:
            if not isinstance(it, Stmt):
                lines.extend((it if isinstance(it, str) else it.show()).split("\n"))
                continue
            src = it.inputs[0] if it.merge is None else f"{it.merge}({', '.join(it.inputs)}{it.extra})"
            code = f"{it.name} = {src}" + (f" |> {' -> '.join(it.chain)}" if it.chain else "")
            first = len(lines) + 1
            if it.comment and "\n" in code:  # a statement over several lines: its comment above it
                lines.append(f"# {it.comment}")
            lines.extend(code.split("\n"))
            if it.comment and "\n" not in code:
                lines[-1] = f"{lines[-1]:<{COMMENT_COLUMN - 1}} # {it.comment}"
            for n in range(first, len(lines) + 1):
                where[n] = it.loc
        return "\n".join(lines) + "\n", where

    def finish(self) -> str:
        """Render, then check the spec with netdsl's passes; a refusal is an error at the source's line."""
        text, where = self.render()
        try:
            analyse_text(text, None)
        except NetdslError as e:
            line = e.span.line if e.span else 0
            generated = source_lines(text)[line - 1].strip() if 1 <= line <= text.count("\n") else ""
            raise self.src.error(where.get(line), f"netdsl refuses the imported network here: {e.message}",
                                 e.hint, notes=(f"the imported spec's line {line}: {generated}",) if generated
                                 else ()) from None
        return text
