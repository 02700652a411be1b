"""netdsl's one error type: every failure a user can cause ends up here, with a place and a hint."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# How the lines of a file are counted by whatever located an error in it: netdsl's grammar (Lark) and
# darknet's cfg reader end a line at "\n" only ("nl"); PyYAML also at "\r", "\x85", "\u2028" and
# "\u2029" ("yaml"); Python's str.splitlines, as label readers use it, at those and more ("python").
LineBreaks = str
_YAML_BREAK = re.compile("\r\n?|[\x85\u2028\u2029]")


def source_lines(text: str, breaks: LineBreaks = "nl") -> list[str]:
    """`text`'s lines as `breaks` counts them (see above), without their line ends."""
    if breaks == "python":
        return text.splitlines()
    if breaks == "yaml":
        text = _YAML_BREAK.sub("\n", text)
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    if lines and lines[-1] == "" and text.endswith("\n") or text == "":
        lines.pop()
    return lines


def _shown(line: str) -> str:
    """A source line as it can be printed: control and other unprintable characters (a form feed, a
    line separator) as one stand-in each, so that the carets stay under their columns."""
    return "".join(c if c.isprintable() or c == "\t" else chr(0x2400 + ord(c)) if ord(c) < 0x20 else "\ufffd"
                   for c in line)


@dataclass(frozen=True)
class Span:
    """A 1-based source range; `end_column` is exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int


class NetdslError(Exception):
    """An error in a user's input (spec, flag, data file, checkpoint).

    `span` locates it in the spec file `path` when it comes from spec text; `hint` says what to do.
    The CLI renders it as ``file:line:col: error: message``, the source line and carets.
    """

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        hint: str | None = None,
        *,
        path: str | None = None,
        source: str | None = None,
        notes: tuple[str, ...] = (),
        breaks: LineBreaks = "nl",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.path = path
        self.source = source
        self.notes = notes
        self.breaks = breaks  # how `span`'s line was counted in `source`

    def with_source(self, path: str | None, source: str | None) -> NetdslError:
        """Attach the file this error's span points into, unless one is attached already."""
        if self.path is None:
            self.path = path
        if self.source is None:
            self.source = source
        return self

    def render(self) -> str:
        """`file:line:col: error: …`, then the source line with carets, notes and the hint."""
        out: list[str] = []
        if self.span is not None:
            where = self.path or "<input>"
            out.append(f"{where}:{self.span.line}:{self.span.column}: error: {self.message}")
            lines = source_lines(self.source or "", self.breaks)
            if 1 <= self.span.line <= len(lines):
                text = _shown(lines[self.span.line - 1].expandtabs(1))
                out.append(f"  {self.span.line:>4} | {text}")
                if self.span.end_line == self.span.line:
                    width = max(1, self.span.end_column - self.span.column)
                else:
                    width = max(1, len(text) - self.span.column + 1)
                out.append("       | " + " " * (self.span.column - 1) + "^" * width)
        else:  # a flag or a whole file is at fault, not a place in a spec
            out.append(f"{self.path or 'netdsl'}: error: {self.message}")
        out.extend(f"  note: {n}" for n in self.notes)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


@contextmanager
def located(path: str | None, text: str) -> Iterator[None]:
    """Attach the spec's path and text to any NetdslError raised inside, for rendering."""
    try:
        yield
    except NetdslError as e:
        raise e.with_source(path, text) from None


def source_text(text: str, span: Span) -> str:
    """The source text a span covers (lines counted as netdsl's grammar counts them), joined onto one
    line with single spaces."""
    lines = source_lines(text)
    if not 1 <= span.line <= len(lines):
        return ""
    if span.line == span.end_line:
        part = lines[span.line - 1][span.column - 1: span.end_column - 1]
    else:
        part = " ".join([lines[span.line - 1][span.column - 1:], *lines[span.line: span.end_line - 1],
                         lines[span.end_line - 1][: span.end_column - 1]])
    return " ".join(part.split())
