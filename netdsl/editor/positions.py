"""Positions between netdsl and LSP: netdsl's spans are 1-based with columns counted in code points
(Python's str indices) and an exclusive end; LSP's are 0-based with columns in UTF-16 code units."""
from __future__ import annotations

from netdsl.errors import Span, source_lines

Position = tuple[int, int]            # 0-based line, UTF-16 column
Range = tuple[Position, Position]


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def to_utf16(line: str, column: int) -> int:
    """A 1-based code-point column of `line` as an LSP (0-based, UTF-16) character offset.

    >>> to_utf16("a = 1", 3), to_utf16("# 😀 x", 5)
    (2, 5)
    """
    return _utf16_len(line[: max(column - 1, 0)])


def from_utf16(line: str, character: int) -> int:
    """An LSP character offset in `line` as a 1-based code-point column (clamped to the line's end + 1).

    >>> from_utf16("# 😀 x", 5)
    5
    """
    units = 0
    for i, c in enumerate(line):
        if units >= character:
            return i + 1
        units += 2 if ord(c) > 0xFFFF else 1
    return len(line) + 1


def span_range(lines: list[str], span: Span) -> Range:
    """A netdsl span as an LSP range over `lines` (the text's lines as `source_lines` gives them)."""
    def pos(line: int, column: int) -> Position:
        text = lines[line - 1] if 1 <= line <= len(lines) else ""
        return max(line - 1, 0), to_utf16(text, column)
    return pos(span.line, span.column), pos(span.end_line, span.end_column)


def lsp_position(lines: list[str], line: int, character: int) -> tuple[int, int]:
    """An LSP position as netdsl's 1-based (line, column)."""
    text = lines[line] if 0 <= line < len(lines) else ""
    return line + 1, from_utf16(text, character)


def text_lines(text: str) -> list[str]:
    """The lines netdsl's spans count (a line ends at "\\n" only)."""
    return source_lines(text)
