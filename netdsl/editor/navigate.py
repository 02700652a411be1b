"""Go to definition, find references and rename, on the names the analysis indexed."""
from __future__ import annotations

import re

from netdsl.editor.document import Definition, DocumentAnalysis, Reference
from netdsl.errors import NetdslError, Span
from netdsl.ops import REGISTRY
from netdsl.passes.names import RESERVED

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def definition_at(an: DocumentAnalysis, line: int, column: int) -> Definition | None:
    """The definition of the name under a 1-based position (itself, when on a definition)."""
    found = an.name_at(line, column)
    return found.target if isinstance(found, Reference) else found


def references(an: DocumentAnalysis, d: Definition, include_declaration: bool) -> list[Span]:
    """Every use of `d`, and its definition first when asked."""
    return ([d.span] if include_declaration else []) + an.uses(d)


def check_new_name(an: DocumentAnalysis, d: Definition, new: str) -> None:
    """Raise NetdslError (at the definition) when `new` cannot replace `d`'s name.

    >>> from netdsl.editor.checked import check
    >>> an = check("net N()\\ninput x: [3, H = 8, W = 8]\\ny = x |> relu\\n", None).analysis
    >>> check_new_name(an, definition_at(an, 3, 1), "x")
    Traceback (most recent call last):
    netdsl.errors.NetdslError: <input>:3:1: error: 'x' is already defined at line 2
      hint: pick a name not in use here
    """
    if d.name == "output" and d.kind == "tensor":
        raise NetdslError("`output` names the result (of the network or of a graph block): it cannot be renamed", d.span,
                          "to keep this tensor under another name, write `output NAME = ...`")
    if not _NAME.fullmatch(new):
        raise NetdslError(f"'{new}' is not a name", d.span, "a name is a letter or _, then letters, digits or _")
    if new in RESERVED or new in REGISTRY:
        raise NetdslError(f"'{new}' is a reserved word or an op's name", d.span, "pick another name")
    for other in an.definitions:
        if other.name == new and other != d and (other.scope == d.scope or None in (other.scope, d.scope)):
            raise NetdslError(f"'{new}' is already defined at line {other.span.line}", d.span, "pick a name not in use here")


def rename_spans(an: DocumentAnalysis, line: int, column: int, new: str) -> list[Span]:
    """Every place to rewrite as `new` to rename the name under the position; NetdslError when it
    is no name (an op, a keyword) or `new` is not acceptable there."""
    d = definition_at(an, line, column)
    if d is None:
        raise NetdslError("only a name defined in this spec can be renamed (not an op or a keyword)",
                          Span(line, column, line, column + 1), "put the cursor on a tensor, block or parameter name")
    check_new_name(an, d, new)
    return references(an, d, True)
