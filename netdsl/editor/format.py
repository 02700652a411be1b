"""`format_text`: one canonical layout for a spec, built from the lexer's tokens (never from the tree,
which drops comments and punctuation). The rules are those of docs/commands/fmt.md; the shipped
specs are written in them. Lines the user broke inside a statement stay broken, and no two lines are
ever joined, so a formatted spec keeps its line numbers unless a chain longer than `LIMIT` is wrapped.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field

from lark import Token
from lark.lexer import BasicLexer, LexerThread

from netdsl.parse_tables import lalr_parser
from netdsl.parsing import parse_text

LIMIT = 120          # the longest line of the shipped specs; a longer chain is wrapped before `->`
ALIGN_SPREAD = 16    # a run's left sides differ by at most this much, else a new run starts
_OPEN = {"LPAR": "RPAR", "LSQB": "RSQB"}
_OPERAND_END = {"NAME", "INT", "FLOAT", "STRING", "RPAR", "RSQB", "OUTPUT", "INF", "TRUE", "FALSE", "QMARK"}
_JOINERS = {"ARROW", "PIPE", "COMMA", "EQUAL"}  # a line ending in one of these goes on (NewlineFilter)
_CONTINUERS = {"ARROW", "PIPE"}


@dataclass
class _Line:
    """One physical line: its code tokens, its comment, and where the formatter puts them."""

    toks: list[Token]
    comment: str | None = None
    comment_col: int = 0             # the comment's 0-based column in the input
    blank: bool = False
    indent: int = 0
    text: str = ""                   # the code as laid out, without indent
    one_liner: bool = False          # a whole statement on one line (may join an alignment run)
    kind: str = ""                   # "tensor" or "block": runs are of one kind
    left: str = ""                   # text before the statement's `=`, and after it
    right: str = ""
    source: str | None = None        # a plain tensor name before `|>`, which runs align too
    extra: list[str] = field(default_factory=list)  # continuation pieces when a long chain is wrapped


def _raw_tokens(text: str) -> Iterator[Token]:
    conf = copy.copy(lalr_parser().lexer_conf)
    conf.ignore = ()  # keep WS and COMMENT: Lark's own `Lark.lex(dont_ignore=True)` runs the post-lexer too
    yield from LexerThread.from_text(BasicLexer(conf), text).lex(None)


def _lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    cur = _Line([])
    col = 0
    for tok in _raw_tokens(text):
        if tok.type == "_NL":
            lines.append(cur)
            lines.extend(_Line([], blank=True) for _ in range(tok.count("\n") - 1))
            cur, col = _Line([]), 0
            continue
        if tok.type == "COMMENT":
            cur.comment, cur.comment_col = tok.rstrip(), col
        elif tok.type != "WS":
            cur.toks.append(tok)
        col += len(tok)
    lines.append(cur)
    for ln in lines:
        ln.blank = not ln.toks and ln.comment is None
    return lines


def _conditional_value(toks: list[Token], i: int) -> bool:
    """Whether the value after the `=` at toks[i] is `a if c else b` (at its own bracket level)."""
    depth = 0
    for t in toks[i + 1:]:
        if t.type in _OPEN:
            depth += 1
        elif t.type in ("RPAR", "RSQB"):
            depth -= 1
            if depth < 0:
                return False
        elif depth == 0 and t.type == "COMMA":
            return False
        elif depth == 0 and t.type == "IF":
            return True
    return False


def _spaced(toks: list[Token]) -> list[str]:
    """The space before each token of one statement (the first gets "")."""
    out = [""]
    stack: list[str] = []  # per open bracket: "call" (`name=value` inside) or "other"
    unary = False
    for i in range(1, len(toks) + 1):
        a = toks[i - 1]
        if a.type in _OPEN:
            call = a.type == "LPAR" and i >= 2 and toks[i - 2].type == "NAME" and not (
                i >= 3 and toks[i - 3].type in ("NET", "BLOCK"))
            stack.append("call" if call else "other")
        elif a.type in ("RPAR", "RSQB") and stack:
            stack.pop()
        if a.type == "MINUS":
            unary = i < 2 or toks[i - 2].type not in _OPERAND_END
        if i == len(toks):
            break
        b = toks[i]
        tight_eq = stack[-1:] == ["call"] and ((b.type == "EQUAL" and not _conditional_value(toks, i))
                                              or (a.type == "EQUAL" and not _conditional_value(toks, i - 1)))
        if (b.type in ("RPAR", "RSQB", "COMMA", "COLON") or a.type in ("LPAR", "LSQB", "AT") or tight_eq
                or (a.type == "MINUS" and unary) or (b.type == "LPAR" and a.type == "NAME")):
            out.append("")
        else:
            out.append(" ")
    return out


def _statements(lines: list[_Line]) -> list[list[int]]:
    """The code lines grouped into statements (a `{` or `}` line is a statement of its own kind)."""
    groups: list[list[int]] = []
    depth = 0
    last: Token | None = None
    for n, ln in enumerate(lines):
        if not ln.toks:
            continue
        goes_on = groups and (depth > 0 or (last is not None and last.type in _JOINERS) or ln.toks[0].type in _CONTINUERS)
        if goes_on:
            groups[-1].append(n)
        else:
            groups.append([n])
        for t in ln.toks:
            depth += 1 if t.type in _OPEN else -1 if t.type in ("RPAR", "RSQB") else 0
            depth = max(depth, 0)
        last = ln.toks[-1]
    return groups


def _find(toks: list[Token], kind: str) -> int | None:
    """The index of the first `kind` token outside brackets, or None."""
    depth = 0
    for i, t in enumerate(toks):
        depth += 1 if t.type in _OPEN else -1 if t.type in ("RPAR", "RSQB") else 0
        if depth == 0 and t.type == kind:
            return i
    return None


def _col(tok: Token) -> int:
    return (tok.column or 1) - 1  # 0-based, in the input


def _wrap(text: str, cuts: list[int], indent: int, cont: int) -> list[str]:
    """`text` (at `indent`) cut before some of the `->` at offsets `cuts` so that pieces fit in LIMIT."""
    pieces: list[str] = []
    start = 0
    while (cont if pieces else indent) + len(text) - start > LIMIT:
        width = cont if pieces else indent
        later = [c for c in cuts if c > start]
        if not later:
            break
        fits = [c for c in later if width + c - start <= LIMIT]
        cut = fits[-1] if fits else later[0]
        pieces.append(text[start:cut].rstrip())
        start = cut
    pieces.append(text[start:])
    return pieces


def _row(toks: list[Token], cont: bool) -> tuple[int, int] | None:
    """Where the one call on a table row's line opens and closes: `-> name(args) tail` on a continuation
    line, `... = name(args) tail` or `... |> name(args) tail` on a one-line statement (no `->` in it)."""
    depth, last = 0, None
    for i, t in enumerate(toks):
        if depth == 0 and t.type in ("ARROW", "PIPE", "EQUAL"):
            last = i
        depth += 1 if t.type in _OPEN else -1 if t.type in ("RPAR", "RSQB") else 0
    if last is None or (cont and last != 0) or (not cont and _find(toks[:last], "ARROW") is not None):
        return None
    if last + 2 >= len(toks) or toks[last + 1].type != "NAME" or toks[last + 2].type != "LPAR":
        return None
    depth = 0
    for r in range(last + 2, len(toks)):
        depth += 1 if toks[r].type in _OPEN else -1 if toks[r].type in ("RPAR", "RSQB") else 0
        if depth == 0:
            tail = toks[r + 1:]
            calls = any(a.type == "NAME" and b.type == "LPAR" for a, b in zip(tail, tail[1:]))
            return None if calls else (last + 2, r)
    return None


def _cells(toks: list[Token], spaces: list[str], lpar: int, rpar: int) -> tuple[list[tuple[str, Token | None]], bool]:
    """A call's top-level arguments as laid out, each with its comma (None for the last), and whether
    the user aligned them (more than one space after one of those commas)."""
    cells: list[tuple[str, Token | None]] = []
    cur, depth, aligned = "", 0, False
    for j in range(lpar + 1, rpar):
        t = toks[j]
        if depth == 0 and t.type == "COMMA":
            cells.append((cur + ",", t))
            nxt = toks[j + 1]
            aligned = aligned or (nxt.line == t.line and (nxt.column or 0) - (t.column or 0) > 2)
            cur = ""
            continue
        cur += (spaces[j] if cur else "") + t
        depth += 1 if t.type in _OPEN else -1 if t.type in ("RPAR", "RSQB") else 0
    return [*cells, (cur, None)], aligned


def _tables(lines: list[_Line], groups: list[list[int]]) -> dict[int, int]:
    """Extra spaces after some commas (by id of the comma token): in a run of consecutive lines that
    each hold one call of the same op, the arguments in left-aligned columns, if the user aligned one
    row (more than one space after one of its commas); so a table, once aligned, stays exact."""
    rows: dict[int, tuple[str, list[tuple[str, Token | None]], bool]] = {}
    for group in groups:
        spaces = _spaced([t for n in group for t in lines[n].toks])
        k = 0
        for pos, n in enumerate(group):
            toks = lines[n].toks
            cont = pos > 0 and toks[0].type in _CONTINUERS
            found = _row(toks, cont) if cont or len(group) == 1 else None
            if found is not None:
                cells, aligned = _cells(toks, spaces[k:k + len(toks)], *found)
                # rows of one table: the same op, and all continuation lines, or all statements of one kind
                rows[n] = (f"{cont}:{toks[0].type == 'BLOCK'}:{toks[found[0] - 1]}", cells, aligned)
            k += len(toks)
    pad: dict[int, int] = {}
    n = 0
    while n < len(lines):
        run = [n] if n in rows else []
        while run and run[-1] + 1 in rows and rows[run[-1] + 1][0] == rows[n][0]:
            run.append(run[-1] + 1)
        if len(run) > 1 and any(rows[m][2] for m in run):
            widths: dict[int, int] = {}
            for m in run:
                for i, (cell, comma) in enumerate(rows[m][1]):
                    if comma is not None:
                        widths[i] = max(widths.get(i, 0), len(cell))
            for m in run:
                for i, (cell, comma) in enumerate(rows[m][1]):
                    if comma is not None:
                        pad[id(comma)] = widths[i] - len(cell)
        n = run[-1] + 1 if run else n + 1
    return pad


def _layout(lines: list[_Line], group: list[int], indent: int, pad: dict[int, int]) -> None:
    """Lay out one statement's lines: spacing, indentation of its continuation lines, wrapping."""
    toks = [t for n in group for t in lines[n].toks]
    spaces = _spaced(toks)
    for k in range(1, len(toks)):
        spaces[k] += " " * pad.get(id(toks[k - 1]), 0)
    first = lines[group[0]]
    kind = {"BLOCK": "block", "NAME": "tensor", "OUTPUT": "tensor", "AT": "tensor"}.get(first.toks[0].type, "")
    eq = _find(first.toks, "EQUAL")
    start = eq if kind == "block" else _find(first.toks, "PIPE")
    layer = start + 1 if start is not None and start + 1 < len(first.toks) and first.toks[start + 1].type != "LBRACE" else None
    cont = indent + 2
    opened: list[int] = []  # output column after each open bracket
    k = 0
    for pos, n in enumerate(group):
        ln = lines[n]
        if pos == 0:
            ln.indent = indent
        elif opened:
            ln.indent = opened[-1]
        elif ln.toks[0].type in _CONTINUERS:
            ln.indent = cont
        else:
            ln.indent = indent + 2
        col, parts, cuts = ln.indent, [], []
        for j, t in enumerate(ln.toks):
            sp = spaces[k] if j else ""
            col += len(sp)
            if t.type == "ARROW" and not opened and j:
                cuts.append(col - ln.indent)
            if pos == 0 and j == layer:
                # a user's `->` lines deeper than the `=` stay under the first layer; others get a fixed indent
                user = next((_col(lines[m].toks[0]) for m in group[1:] if lines[m].toks[0].type in _CONTINUERS), None)
                first_eq = _col(first.toks[eq]) if eq is not None else 0
                if (user is None and col <= LIMIT // 2) or (user is not None and user > first_eq):
                    cont = col
            parts.append(sp + t)
            col += len(t)
            if t.type in _OPEN:
                opened.append(col)
            elif t.type in ("RPAR", "RSQB") and opened:
                opened.pop()
            k += 1
        ln.text = "".join(parts)
        pieces = _wrap(ln.text, cuts, ln.indent, cont) if ln.indent + len(ln.text) > LIMIT else [ln.text]
        ln.text, ln.extra = pieces[0], [" " * cont + p for p in pieces[1:]]
    if len(group) == 1 and not first.extra and kind and eq is not None and _find(first.toks, "LBRACE") is None:
        first.one_liner, first.kind = True, kind
        cut = sum(len(spaces[j]) + len(first.toks[j]) for j in range(eq))
        first.left, first.right = first.text[:cut], first.text[cut + 3:]
        pipe = _find(first.toks, "PIPE")
        if kind == "tensor" and pipe == eq + 2 and first.toks[eq + 1].type in ("NAME", "OUTPUT"):
            first.source = str(first.toks[eq + 1])


def _align(lines: list[_Line]) -> None:
    """Pad the left sides of each run of one-line statements so their `=` line up, and the plain
    sources before `|>` so those line up too."""
    run: list[_Line] = []

    def flush() -> None:
        width = max((len(ln.left) for ln in run), default=0)
        src = max((len(ln.source) for ln in run if ln.source), default=0)
        for ln in run:
            right = ln.source.ljust(src) + ln.right[len(ln.source):] if ln.source else ln.right
            ln.text = f"{ln.left.ljust(width)} = {right}"
        run.clear()

    for ln in lines:
        both = [*run, ln]
        width = max(len(r.left) for r in both)
        src = max((len(r.source) for r in both if r.source), default=0)
        fits = run and ln.one_liner and ln.kind == run[0].kind and ln.indent == run[0].indent and (
            width - min(len(r.left) for r in both) <= ALIGN_SPREAD
            and all(r.indent + width + 3 + len(r.right) + (src - len(r.source) if r.source else 0) <= LIMIT for r in both))
        if not fits:
            flush()
        if ln.one_liner:
            run.append(ln)
    flush()


def _place_comments(lines: list[_Line]) -> list[str]:
    """The output lines: an end-of-line comment stays at its column in the input, unless the code
    now reaches it (then two spaces after the code); an own-line comment takes the next code line's
    indent (inside a block when that line is its `}`)."""
    out: list[str] = []
    for n, ln in enumerate(lines):
        code = " " * ln.indent + ln.text if ln.toks else ""
        if ln.comment and ln.toks:
            code = code.ljust(max(len(code) + 2, ln.comment_col)) + ln.comment
        elif ln.comment:
            nxt = next((m for m in lines[n + 1:] if m.toks), None)
            code = " " * (0 if nxt is None else nxt.indent + 2 * (nxt.toks[0].type == "RBRACE")) + ln.comment
        out.append(code)
        out.extend(ln.extra)
    return out


def format_text(text: str) -> str:
    """`text` in the canonical layout; a spec that does not parse raises its NetdslError.

    >>> format_text("net N( a=1 )\\ninput x:[3,H=8,W=8]\\ny=x|>conv(8,3,padding=1)->relu   # one\\noutput=y\\n")
    'net N(a = 1)\\ninput x: [3, H = 8, W = 8]\\ny      = x |> conv(8, 3, padding=1) -> relu  # one\\noutput = y\\n'
    """
    parse_text(text)
    lines = _lines(text)
    depth = 0
    groups = _statements(lines)
    pad = _tables(lines, groups)
    for group in groups:
        first = lines[group[0]].toks[0]
        _layout(lines, group, 2 * max(depth - (first.type == "RBRACE"), 0), pad)
        depth = max(0, depth + sum((t.type == "LBRACE") - (t.type == "RBRACE") for n in group for t in lines[n].toks))
    _align(lines)
    out: list[str] = []
    for line in (s.rstrip() for s in _place_comments(lines)):
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""
