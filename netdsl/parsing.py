"""Text to `ir.Spec`. The only module that touches Lark: its trees and exceptions stop here."""
from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import lark
from lark import Token, Tree

from netdsl import ir
from netdsl.errors import NetdslError, Span, source_lines

MAX_SPEC_BYTES = 1_000_000
MAX_EXPR_DEPTH = 100
MAX_INT_DIGITS = 30

# Human names for the terminals Lark reports as expected.
_TERMINAL_NAMES = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": 'a string ("...")',
    "COMPARE": "a comparison (==, <, ...)", "PIPE": "'|>'", "ARROW": "'->'", "_NL": "end of line",
    "$END": "end of file", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "COMMA": "','", "EQUAL": "'='", "COLON": "':'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'",
    "SLASH": "'/'", "PERCENT": "'%'", "QMARK": "'?'", "LBRACE": "'{'", "RBRACE": "'}'", "AT": "'@'",
    "OUTPUT": "'output'", "__ANON_0": "'//'", "__ANON_1": "'**'",
}


def _grammar_text() -> str:
    # Installed wheels carry the grammar inside the package; a checkout keeps it at the top.
    packaged = resources.files("netdsl").joinpath("grammar/netdsl.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "grammar" / "netdsl.lark").read_text(encoding="utf-8")


class _NewlineFilter:
    """Drop newlines inside brackets and around `->`/`|>`/`,`/`=` so statements can wrap."""

    always_accept: tuple[str, ...] = ()
    _OPEN = {"LPAR", "LSQB"}
    _CLOSE = {"RPAR", "RSQB"}
    _JOINERS = {"ARROW", "PIPE", "COMMA", "EQUAL", "LBRACE"}
    _CONTINUERS = {"ARROW", "PIPE", "RBRACE"}  # a newline before these does not end the statement

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        held: Token | None = None
        prev: str | None = None
        for tok in stream:
            if tok.type == "_NL":
                if depth > 0 or prev in self._JOINERS:
                    continue
                held = held or tok
                continue
            if held is not None:
                if tok.type not in self._CONTINUERS:
                    yield held
                held = None
            if tok.type in self._OPEN:
                depth += 1
            elif tok.type in self._CLOSE:
                depth = max(0, depth - 1)
            prev = tok.type
            yield tok
        if held is not None:
            yield held


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    # One LALR parser per process serves both start symbols: specs and claims files. Its tables
    # ship with the package (parse_tables.py); they are built here only when stale or missing.
    from netdsl import parse_tables

    grammar = _grammar_text()
    try:
        shipped = parse_tables.load(grammar, _NewlineFilter())
    except Exception:  # noqa: BLE001 - a private Lark loader: any failure means "build instead"
        shipped = None
    return shipped if shipped is not None else _build_parser()


def _build_parser() -> lark.Lark:
    # Lark checks terminals for collisions with interegular whenever it is installed; that check
    # costs ~0.25 s per process, and the grammar is fixed, so tests/test_language.py runs it once
    # (strict=True) and the run-time build skips it.
    import lark.lexer

    saved = lark.lexer.has_interegular
    lark.lexer.has_interegular = False
    try:
        return lark.Lark(_grammar_text(), parser="lalr", lexer="basic", start=["start", "claims_file"],
                         propagate_positions=True, postlex=_NewlineFilter(), maybe_placeholders=True)
    finally:
        lark.lexer.has_interegular = saved


def _span(x: Tree | Token) -> Span:
    if isinstance(x, Token):
        return Span(x.line or 1, x.column or 1, x.end_line or x.line or 1, x.end_column or (x.column or 1) + 1)
    m = x.meta
    if getattr(m, "empty", True):
        return Span(1, 1, 1, 2)
    return Span(m.line, m.column, m.end_line, m.end_column)


def _syntax_error(err: lark.exceptions.UnexpectedInput, text: str) -> NetdslError:
    lines = source_lines(text) or [""]  # as Lark counts them: at "\n" only
    # Control and other unprintable characters are never echoed raw (a NUL or an escape sequence
    # would garble the terminal): the quoted source line shows each as one visible stand-in, so the
    # carets stay in place, and the message names it escaped ('\x00').
    visible = {c: (chr(0x2400 + ord(c)) if ord(c) < 0x20 else "\u2421" if c == "\x7f" else "\ufffd")
               for c in set(text) if not c.isprintable() and c not in "\t\n\r"}
    source = text.translate(str.maketrans(visible)) if visible else None
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        ch = text[err.pos_in_stream] if 0 <= err.pos_in_stream < len(text) else "?"
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
            return NetdslError(f"a fractional number ({tok}) is not allowed here", _span(tok),
                               "sizes, channels and parameters are integers", source=source)
        what = "end of line" if tok.type == "_NL" else f"{str(tok)!r}"
        span = _span(tok)
        if tok.type == "_NL":
            line = tok.line or 1
            col = len(lines[line - 1]) + 1 if line <= len(lines) else 1
            span = Span(line, col, line, col + 1)
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
            return _Builder().spec(tree)
        except RecursionError:
            raise NetdslError("an expression nests too deeply", Span(1, 1, 1, 2), "flatten the expression") from None
    except NetdslError as e:
        raise e.with_source(path, text) from None


class _Builder:
    """Lark tree -> ir.Spec. Structural checks only; names are resolved in passes.lower."""

    def spec(self, tree: Tree) -> ir.Spec:
        header, *stmts = [c for c in tree.children if isinstance(c, Tree)]
        name_tok, params, where = self._header(header)
        inputs: list[ir.InputDecl] = []
        blocks: list[ir.BlockDef] = []
        assigns: list[ir.Assign] = []
        claims: list[ir.Claim] = []
        for st in stmts:
            kind = st.data
            if kind == "input_decl":
                inputs.append(self._input(st))
            elif kind in ("linear_block", "graph_block"):
                blocks.append(self._block(st))
            elif kind in ("assign", "out_assign"):
                assigns.append(self._assign(st))
            elif kind == "claim":
                claims.append(self._claim(st))
        if not inputs:
            raise NetdslError("the spec declares no input", _span(header),
                              "add a line such as `input x: [NIC, H = 32, W = 32]` after the header")
        return ir.Spec(span=_span(tree), name=str(name_tok), params=params, conditions=where,
                       inputs=inputs, blocks=blocks, assigns=assigns, claims=claims)

    def _header(self, t: Tree) -> tuple[Token, list[ir.Param], list[ir.Condition]]:
        # maybe_placeholders: the optional `where` is always the last child (a tree or None).
        name, *rest, where = t.children
        params = [self._param(p) for p in rest if p is not None]
        return name, params, self._where(where)

    def _param(self, t: Tree) -> ir.Param:
        name, ann, default = t.children
        return ir.Param(span=_span(t), name=str(name), annotation=str(ann) if ann is not None else None,
                        default=self.expr(default))

    def _where(self, t: Tree | None) -> list[ir.Condition]:
        return [self._condition(c) for c in t.children] if t is not None else []

    def _condition(self, c: Tree) -> ir.Condition:
        left, op, right = c.children
        return ir.Condition(span=_span(c), op=str(op), left=self.expr(left), right=self.expr(right))

    def _input(self, t: Tree) -> ir.InputDecl:
        name, channels, *dims, where = t.children
        out = [ir.Dim(span=_span(d), name=str(d.children[0]),
                      default=self.expr(d.children[1]) if d.children[1] is not None else None)
               for d in dims if d is not None]
        return ir.InputDecl(span=_span(t), name=str(name), channels=self.expr(channels), dims=out,
                            conditions=self._where(where))

    def _block(self, t: Tree) -> ir.BlockDef:
        name, *rest = t.children
        params = [ir.BlockParam(span=_span(p), name=str(p.children[0]),
                                default=self.expr(p.children[1]) if p.children[1] is not None else None)
                  for p in rest if isinstance(p, Tree) and p.data == "bparam"]
        if t.data == "linear_block":
            return ir.BlockDef(span=_span(t), name=str(name), params=params, body=self._chain(rest[-1]))
        tok = next(c for c in rest if isinstance(c, Token))
        assigns = [self._assign(c) for c in rest if isinstance(c, Tree) and c.data in ("assign", "out_assign")]
        return ir.BlockDef(span=_span(t), name=str(name), params=params,
                           input=ir.Ident(span=_span(tok), name=str(tok)), assigns=assigns)

    def _assign(self, t: Tree) -> ir.Assign:
        attrs = [self._attr(c) for c in t.children if isinstance(c, Tree) and c.data == "attr"]
        rest = [c for c in t.children if not (isinstance(c, Tree) and c.data == "attr")]
        output = t.data == "out_assign"
        if output:
            kw, name, shape, source, _pipe, chain = rest
            name = name if name is not None else kw
        else:
            name, shape, source, _pipe, chain = rest
        ann = [self.expr(e) for e in shape.children] if shape is not None else None
        args: list[ir.Arg] = []
        if source.data == "ref":
            merge, names = "ref", source.children
        else:
            fn, *rest = source.children
            names = [n for n in rest if isinstance(n, Token)]
            args = [ir.Arg(span=_span(n), name=str(n.children[0]), value=self.value(n.children[1]))
                    for n in rest if isinstance(n, Tree)]
            merge = str(fn)
        return ir.Assign(span=_span(t), name=str(name), annotation=ann, merge=merge, source_span=_span(source), args=args,
                         inputs=[ir.Ident(span=_span(n), name=str(n)) for n in names],
                         chain=self._chain(chain) if chain is not None else [], output=output, attrs=attrs)

    def _chain(self, t: Tree) -> list[ir.LayerCall]:
        return [self._layer(c) for c in t.children if isinstance(c, Tree)]

    def _layer(self, t: Tree) -> ir.LayerCall:
        label, op, *rest = t.children
        attrs = [self._attr(c) for c in rest if isinstance(c, Tree) and c.data == "attr"]
        repeat = next((c for c in rest if isinstance(c, Tree) and c.data == "repeat"), None)
        args = [self._arg(a) for a in rest if isinstance(a, Tree) and a.data in ("arg", "kwarg")]
        count = index = None
        if repeat is not None:
            count = self.expr(repeat.children[0])
            if repeat.children[1] is not None:
                index = ir.Ident(span=_span(repeat.children[1]), name=str(repeat.children[1]))
        return ir.LayerCall(span=_span(t), label=ir.Ident(span=_span(label), name=str(label)) if label is not None else None,
                            op=ir.Ident(span=_span(op), name=str(op)), args=args, repeat=count, index=index,
                            attrs=attrs)

    def _attr(self, t: Tree) -> ir.Attr:
        name, *args = t.children
        return ir.Attr(span=_span(t), name=str(name), args=[self._arg(a) for a in args if a is not None])

    def _arg(self, t: Tree) -> ir.Arg:
        if t.data == "kwarg":
            name, value = t.children
            return ir.Arg(span=_span(t), name=str(name), value=self.value(value))
        return ir.Arg(span=_span(t), value=self.value(t.children[0]))

    def _claim(self, t: Tree) -> ir.Claim:
        metric, *args, op, expr = t.children
        return ir.Claim(span=_span(t), metric=ir.Ident(span=_span(metric), name=str(metric)),
                        options=[self._arg(a) for a in args if a is not None], op=str(op), expr=self.expr(expr))

    def value(self, t: Tree | Token) -> ir.Value:
        if isinstance(t, Tree):
            sp = _span(t)
            if t.data in ("float", "negfloat"):
                v = float(t.children[0])
                return ir.Float(span=sp, value=-v if t.data == "negfloat" else v)
            if t.data in ("inf", "neginf"):
                return ir.Float(span=sp, value=float("-inf") if t.data == "neginf" else float("inf"))
            if t.data == "string":
                return ir.Str(span=sp, value=str(t.children[0])[1:-1])
            if t.data in ("true", "false"):
                return ir.Bool(span=sp, value=t.data == "true")
            if t.data == "hole":
                return ir.Hole(span=sp)
            if t.data == "pair":
                return ir.Pair(span=sp, items=(self.expr(t.children[0]), self.expr(t.children[1])))
            if t.data == "list":
                return ir.ListValue(span=sp, items=[self.value(c) for c in t.children if c is not None])
        return self.expr(t)

    _BINOPS = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "mod": "%", "truediv": "/", "pow": "**"}

    def expr(self, t: Tree | Token, depth: int = 0) -> ir.Expr:
        if isinstance(t, Token):  # pragma: no cover - every expression token is wrapped in a rule
            raise NetdslError(f"unexpected {t!s}", _span(t))
        sp = _span(t)
        # Every later pass recurses over expressions too: cap the depth once, here.
        if depth > MAX_EXPR_DEPTH:
            raise NetdslError(f"this expression nests more than {MAX_EXPR_DEPTH} levels deep", sp,
                              "write it flatter, or compute part of it in a parameter default")
        sub = lambda x: self.expr(x, depth + 1)  # noqa: E731
        kind = t.data
        if kind == "int":
            digits = str(t.children[0])
            if len(digits) > MAX_INT_DIGITS:
                raise NetdslError(f"the integer {digits[:12]}... has {len(digits)} digits", sp,
                                  f"integers are limited to {MAX_INT_DIGITS} digits")
            return ir.Int(span=sp, value=int(digits))
        if kind == "name":
            return ir.Name(span=sp, id=str(t.children[0]))
        if kind == "neg":
            return ir.Neg(span=sp, operand=sub(t.children[0]))
        if kind == "call":
            fn, *args = t.children
            if str(fn) not in ("min", "max"):
                raise NetdslError(f"unknown function '{fn}'", _span(fn), "expressions may call min(...) and max(...)")
            return ir.Call(span=sp, func=str(fn), args=[sub(a) for a in args])
        if kind == "ifexpr":
            then, test, orelse = t.children
            left, op, right = test.children
            cond = ir.Condition(span=_span(test), op=str(op), left=sub(left), right=sub(right))
            return ir.IfExpr(span=sp, test=cond, then=sub(then), orelse=sub(orelse))
        if kind in self._BINOPS:
            left, right = t.children
            return ir.BinOp(span=sp, op=self._BINOPS[kind], left=sub(left), right=sub(right))
        if kind in ("float", "negfloat", "inf", "neginf", "string", "true", "false", "hole", "pair", "list"):
            what = {"float": "a fractional number", "negfloat": "a fractional number", "inf": "inf",
                    "neginf": "-inf", "string": "a string", "hole": "'?'", "pair": "a pair",
                    "list": "a list"}.get(kind, "a boolean")
            raise NetdslError(f"{what} is not allowed here", sp, "this place takes an integer expression")
        raise NetdslError(f"unexpected {kind}", sp)  # pragma: no cover


# --- claims files (`netdsl count`): `claim` lines only, parsed by the same grammar -----------

def _tree(text: str, start: str) -> Tree:
    try:
        return _parser().parse(text, start=start)
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
            b = _Builder()
            return [b._claim(t) for t in tree.children if isinstance(t, Tree)]
        except RecursionError:
            raise NetdslError("a claim nests too deeply", Span(1, 1, 1, 2), "flatten the expression") from None
    except NetdslError as e:
        raise e.with_source(path, text) from None
