"""Text to `ir.Spec`: reading spec files, parsing with Lark, syntax errors located and explained.

With `netdsl.parse_tree` (Lark's tree to the IR), the only code that touches Lark: its trees and
exceptions stop here.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import lark
from lark import Tree

from netdsl import ir
from netdsl.errors import NetdslError, Span, source_lines
from netdsl.parse_tree import TreeToIR, span_of

MAX_SPEC_BYTES = 1_000_000

# Human names for the terminals Lark reports as expected.
_TERMINAL_NAMES = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": 'a string ("...")',
    "COMPARE": "a comparison (==, <, ...)", "PIPE": "'|>'", "ARROW": "'->'", "_NL": "end of line",
    "$END": "end of file", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "COMMA": "','", "EQUAL": "'='", "COLON": "':'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'",
    "SLASH": "'/'", "PERCENT": "'%'", "QMARK": "'?'", "LBRACE": "'{'", "RBRACE": "'}'", "AT": "'@'",
    "OUTPUT": "'output'", "__ANON_0": "'//'", "__ANON_1": "'**'",
}

SOURCE_HINT = ("a source is a tensor name or a merge of tensors: cat(a, b), add(a, b), mul(a, b), nested as in "
               "add(x, cat(a, b)); a merge's keyword arguments follow its tensors; to split channels write "
               "`a, b = x |> split(2)`")


def _syntax_error(err: lark.exceptions.UnexpectedInput, text: str) -> NetdslError:
    lines = source_lines(text) or [""]  # as Lark counts them: at "\n" only
    # Control and other unprintable characters are never echoed raw (a NUL or an escape sequence
    # would garble the terminal): the quoted source line shows each as one visible stand-in, so the
    # carets stay in place, and the message names it escaped ('\x00').
    visible: dict[str, str | int | None] = {c: (chr(0x2400 + ord(c)) if ord(c) < 0x20 else "\u2421" if c == "\x7f" else "\ufffd")
               for c in set(text) if not c.isprintable() and c not in "\t\n\r"}
    source = text.translate(str.maketrans(visible)) if visible else None
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        pos = err.pos_in_stream
        ch = text[pos] if pos is not None and 0 <= pos < len(text) else "?"
        span = Span(err.line, err.column, err.line, err.column + 1)
        if ch == "\x00":
            return NetdslError("unexpected NUL byte '\\x00': the file looks binary, not a netdsl spec", span,
                               "name a .net text file", source=source)
        hint = "netdsl accepts names, integers, numbers like 0.5, \"strings\", operators and # comments"
        if not ch.isprintable():
            return NetdslError(f"unexpected unprintable character {ascii(ch)} (U+{ord(ch):04X})", span,
                               hint + "; remove it", source=source)
        return NetdslError(f"unexpected character {ch!r}", span, hint, source=source)
    if isinstance(err, lark.exceptions.UnexpectedToken):
        tok = err.token
        expected = sorted({_TERMINAL_NAMES.get(t, f"'{t.lower()}'" if t.isalpha() else t) for t in err.expected})
        exp = ", ".join(expected[:8]) + (", ..." if len(expected) > 8 else "")
        if tok.type == "$END":
            line = len(lines)
            col = len(lines[-1]) + 1
            return NetdslError("unexpected end of file", Span(line, max(col, 1), line, col + 1),
                               f"the spec stops in the middle of a statement; expected {exp}", source=source)
        if tok.type == "FLOAT":
            return NetdslError(f"a fractional number ({tok}) is not allowed here", span_of(tok),
                               "sizes, channels and parameters are integers", source=source)
        what = "end of line" if tok.type == "_NL" else f"{str(tok)!r}"
        span = span_of(tok)
        if tok.type == "_NL":
            line = tok.line or 1
            col = len(lines[line - 1]) + 1 if line <= len(lines) else 1
            span = Span(line, col, line, col + 1)
        if "OUTPUT" in err.expected and set(err.expected) <= {"NAME", "OUTPUT", "RPAR"}:
            # where a statement's source or a merge's operand goes: `y = 2`, `chunk(x, 2)`
            return NetdslError(f"unexpected {what}: a tensor is expected here", span, SOURCE_HINT, source=source)
        return NetdslError(f"unexpected {what}", span, f"expected {exp}", source=source)
    return NetdslError(f"syntax error: {err}", Span(getattr(err, "line", 1) or 1, getattr(err, "column", 1) or 1, 1, 2),
                       source=source)


def read_spec_file(path: str | Path) -> str:
    """Read a spec as UTF-8, turning OS and encoding failures into NetdslError."""
    return read_text_file(path, "spec", ".net file", MAX_SPEC_BYTES)


def _kind(mode: int) -> str:
    return ("a directory" if stat.S_ISDIR(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file")


@contextmanager
def open_input(path: str | Path, what: str, name_a: str, max_bytes: int,
               too_large_hint: str | None = None) -> Iterator[BinaryIO]:
    """`path` opened to read, after refusing what cannot be a `what` before a byte is read: a
    missing file, a folder, a device (a link to /dev/zero would never end), a regular file of more
    than `max_bytes`. A FIFO (a pipe, `<(...)`) is let through: read it with `read_limited`."""
    p = Path(path)
    try:
        _check_input(p, os.stat(p), what, name_a, max_bytes, too_large_hint)  # opening a device may act
        fh = open(p, "rb")
    except FileNotFoundError:
        raise NetdslError(f"no such file: {p}", hint=f"check the path to the {what}", path=str(p)) from None
    except OSError as e:
        raise NetdslError(f"cannot read {p}: {e.strerror}", hint="check the file's permissions", path=str(p)) from None
    with fh:
        # again on the file opened, should the name have been pointed elsewhere meanwhile
        _check_input(p, os.fstat(fh.fileno()), what, name_a, max_bytes, too_large_hint)
        yield fh


def _check_input(p: Path, st: os.stat_result, what: str, name_a: str, max_bytes: int,
                 too_large_hint: str | None) -> None:
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise NetdslError(f"{p} is {_kind(st.st_mode)}, not a {what}", hint=f"name a {name_a}", path=str(p))
    if st.st_size > max_bytes:
        raise NetdslError(f"{p} is {st.st_size:,} bytes; a {what} is limited to {max_bytes:,}", path=str(p),
                          hint=too_large_hint or f"a file this large is almost certainly not a {what}")


def read_limited(fh: BinaryIO, path: str | Path, what: str, max_bytes: int, too_large_hint: str | None = None) -> bytes:
    """All of an `open_input` file, reading no more than `max_bytes` + 1 whatever it turns out to be."""
    try:
        data = fh.read(max_bytes + 1)
    except OSError as e:
        raise NetdslError(f"cannot read {path}: {e.strerror}", hint="check the file", path=str(path)) from None
    if len(data) > max_bytes:
        raise NetdslError(f"{path} holds more than {max_bytes:,} bytes; a {what} is limited to that", path=str(path),
                          hint=too_large_hint or f"a file this large is almost certainly not a {what}")
    return data


def read_text_file(path: str | Path, what: str, name_a: str, max_bytes: int) -> str:
    """Read a source file (a spec, a .cfg, a YAML) as UTF-8 of at most `max_bytes`; every OS and
    encoding failure is a NetdslError naming the file (`what`: "spec"; `name_a`: ".net file").
    The size is checked before reading and the read is bounded: a 5 GB file or a link to
    /dev/zero is refused without being read into memory."""
    p = Path(path)
    with open_input(p, what, name_a, max_bytes) as fh:
        data = read_limited(fh, p, what, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise NetdslError(f"the file is not valid UTF-8 (byte 0x{data[e.start]:02x})", Span(line, col, line, col + 1),
                          f"save the {what} as UTF-8", path=str(p),
                          source=data.decode("utf-8", errors="replace")) from None
    # Editors on Windows may start a UTF-8 file with a byte-order mark; it is not part of the text
    # (dropped here, before parsing, so every column the parser reports is still right).
    return text[1:] if text.startswith("\ufeff") else text


def parse_text(text: str, path: str | None = None) -> ir.Spec:
    """Parse spec text into the IR; every error carries `path` and the source for rendering."""
    try:
        if len(text) > MAX_SPEC_BYTES:
            raise NetdslError(f"the spec is {len(text)} characters; the limit is {MAX_SPEC_BYTES}", Span(1, 1, 1, 2))
        tree = _tree(text, "start")
        try:
            return TreeToIR().spec(tree)
        except RecursionError:
            raise NetdslError("an expression nests too deeply", Span(1, 1, 1, 2), "flatten the expression") from None
    except NetdslError as e:
        raise e.with_source(path, text) from None


# --- claims files (`netdsl count`): `claim` lines only, parsed by the same grammar -----------

def _tree(text: str, start: str) -> Tree:
    # On first use, not at import: `python -m netdsl.parse_tables` (rebuilding the tables) runs
    # that module as __main__, and runpy warns when `import netdsl` has imported it already.
    from netdsl.parse_tables import lalr_parser

    try:
        return lalr_parser().parse(text, start=start)
    except lark.exceptions.UnexpectedInput as e:
        raise _syntax_error(e, text) from None
    except RecursionError:
        raise NetdslError("the input nests too deeply", Span(1, 1, 1, 2), "flatten the expression") from None


def parse_claims_text(text: str, path: str | None = None) -> list[ir.Claim]:
    """Parse a claims file (only `claim ...` statements and comments) into IR claims."""
    try:
        if len(text) > MAX_SPEC_BYTES:
            raise NetdslError(f"the claims file is {len(text)} characters; the limit is {MAX_SPEC_BYTES}", Span(1, 1, 1, 2))
        tree = _tree(text, "claims_file")
        try:
            b = TreeToIR()
            return [b.claim(t) for t in tree.children if isinstance(t, Tree)]
        except RecursionError:
            raise NetdslError("a claim nests too deeply", Span(1, 1, 1, 2), "flatten the expression") from None
    except NetdslError as e:
        raise e.with_source(path, text) from None
