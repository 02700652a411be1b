"""The grammar and its LALR parser (`lalr_parser`), whose tables are built once and shipped as
JSON, so a process loads them instead of building them (building costs ~0.2 s of every
`netdsl count`; loading ~0.03 s). `netdsl.parsing` turns what it parses into the IR.

The file records the SHA-256 of the grammar text and Lark's version it was built with; on any
mismatch (an edited grammar, another Lark) the tables are ignored and Lark builds the parser as
before. JSON, not Lark's own pickle cache: the file is data, and loading it runs no code.
`tests/lang/test_language.py` checks the shipped file is current; regenerate it with

    python -m netdsl.parse_tables
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import lark
import lark.lexer
from lark import Token
from lark.grammar import Rule
from lark.lexer import TerminalDef

TABLES_NAME = "parse_tables.json"
FORMAT = 1


def _encode(x: Any) -> Any:
    # JSON has neither tuples nor non-string keys; Lark's tables use both, so tag them.
    if isinstance(x, dict):
        if all(isinstance(k, str) for k in x):
            return {k: _encode(v) for k, v in x.items()}
        return {"__items__": [[_encode(k), _encode(v)] for k, v in x.items()]}
    if isinstance(x, tuple):
        return {"__tuple__": [_encode(v) for v in x]}
    if isinstance(x, list):
        return [_encode(v) for v in x]
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    raise TypeError(f"cannot store {type(x).__name__} in the parse tables")


def _decode(x: Any) -> Any:
    if isinstance(x, list):
        return [_decode(v) for v in x]
    if isinstance(x, dict):
        if set(x) == {"__items__"}:
            return {_decode(k): _decode(v) for k, v in x["__items__"]}
        if set(x) == {"__tuple__"}:
            return tuple(_decode(v) for v in x["__tuple__"])
        return {k: _decode(v) for k, v in x.items()}
    return x


def fingerprint(grammar: str) -> dict[str, Any]:
    return {"format": FORMAT, "grammar_sha256": hashlib.sha256(grammar.encode("utf-8")).hexdigest(),
            "lark": lark.__version__}


def dump(parser: lark.Lark, grammar: str) -> str:
    """The tables of a built parser as JSON text (its post-lexer is supplied again at load)."""
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data = dict(data, options=dict(data["options"], postlex=None))
    return json.dumps({"key": fingerprint(grammar), "data": _encode(data), "memo": _encode(memo)},
                      separators=(",", ":"), sort_keys=True) + "\n"


def load(grammar: str, postlex: Any) -> lark.Lark | None:
    """The shipped parser for this grammar and Lark, or None when the file is missing or stale."""
    path = resources.files("netdsl").joinpath(TABLES_NAME)
    if not path.is_file():
        return None
    stored = json.loads(path.read_text(encoding="utf-8"))
    if stored.get("key") != fingerprint(grammar):
        return None
    tables = {"data": _decode(stored["data"]), "memo": _decode(stored["memo"])}
    return lark.Lark.__new__(lark.Lark)._load(tables, postlex=postlex)


def grammar_text() -> str:
    # Installed wheels carry the grammar inside the package; a checkout keeps it at the top.
    packaged = resources.files("netdsl").joinpath("grammar/netdsl.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "grammar" / "netdsl.lark").read_text(encoding="utf-8")


class NewlineFilter:
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
def lalr_parser() -> lark.Lark:
    """The one LALR parser per process, for both start symbols: specs and claims files. Its
    tables ship with the package; they are built here only when stale or missing."""
    grammar = grammar_text()
    try:
        shipped = load(grammar, NewlineFilter())
    except Exception:  # noqa: BLE001 - a private Lark loader: any failure means "build instead"
        shipped = None
    return shipped if shipped is not None else build_parser()


def build_parser() -> lark.Lark:
    # Lark checks terminals for collisions with interegular whenever it is installed; that check
    # costs ~0.25 s per process, and the grammar is fixed, so tests/lang/test_language.py runs it once
    # (strict=True) and the run-time build skips it.
    saved = lark.lexer.has_interegular
    lark.lexer.has_interegular = False
    try:
        return lark.Lark(grammar_text(), parser="lalr", lexer="basic", start=["start", "claims_file"],
                         propagate_positions=True, postlex=NewlineFilter(), maybe_placeholders=True)
    finally:
        lark.lexer.has_interegular = saved


def main() -> None:
    out = Path(__file__).with_name(TABLES_NAME)
    out.write_text(dump(build_parser(), grammar_text()), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
