"""Completion: what may be written at the cursor, read from the current line's text up to the
cursor (the text may not parse while the user types) and the names of the last analysis that had
them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from netdsl.editor.document import Definition, DocumentAnalysis
from netdsl.editor.hover import op_hover, signature
from netdsl.ops import REGISTRY, OpDef, layers, merges

ItemKind = Literal["op", "block", "tensor", "param", "attribute", "argument"]
TENSOR_KINDS = ("tensor", "input", "learned", "block_input")
VALUE_KINDS = ("param", "dim", "block_param", "index")

_AFTER_CHAIN = re.compile(r"(\|>|->)\s*\w*$")
_AFTER_AT = re.compile(r"@\s*\w*$")
_SOURCE = re.compile(r"^\s*(output\s+)?[\w\s,]*=\s*\w*$")
_PARTIAL = re.compile(r"\w*$")


@dataclass(frozen=True)
class Item:
    label: str
    kind: ItemKind
    detail: str = ""
    documentation: str = ""   # Markdown
    snippet: str | None = None  # LSP snippet syntax: `conv(${1:out}, ${2:kernel})`


def _attributes() -> dict[str, str]:
    from netdsl.passes.lower import ATTRIBUTES
    return ATTRIBUTES


def op_item(op: OpDef) -> Item:
    """An op with its required arguments as snippet placeholders.

    >>> op_item(REGISTRY["conv"]).snippet
    'conv(${1:out}, ${2:kernel})'
    """
    required = [a.name for a in op.args if a.required]
    snippet = f"{op.name}({', '.join(f'${{{i}:{n}}}' for i, n in enumerate(required, 1))})" if required else op.name
    return Item(op.name, "op", signature(op), op_hover(op), snippet)


def _open_call(prefix: str) -> str | None:
    """The name before the innermost parenthesis still open in `prefix`, if any."""
    depth = 0
    for i in range(len(prefix) - 1, -1, -1):
        c = prefix[i]
        if c in ")]":
            depth += 1
        elif c in "([":
            if depth == 0:
                m = re.search(r"(\w+)\s*$", prefix[:i]) if c == "(" else None
                return m.group(1) if m else ""
            depth -= 1
    return None


def _names(an: DocumentAnalysis | None, line: int, kinds: tuple[str, ...], above: bool) -> list[Definition]:
    if an is None:
        return []
    seen: dict[str, Definition] = {}
    for d in an.visible(line):
        if d.kind in kinds and (not above or d.statement.end_line < line) and d.name not in seen:
            seen[d.name] = d
    return list(seen.values())


def _blocks(an: DocumentAnalysis | None) -> list[Item]:
    if an is None or an.spec is None:
        return []
    return [Item(b.name, "block", f"block {b.name}({', '.join(p.name for p in b.params)})") for b in an.spec.blocks]


def _value_items(an: DocumentAnalysis | None, line: int) -> list[Item]:
    return [Item(d.name, "param", d.kind.replace("_", " ")) for d in _names(an, line, VALUE_KINDS, False)]


def _tensor_items(an: DocumentAnalysis | None, line: int) -> list[Item]:
    return [Item(d.name, "tensor", d.kind) for d in _names(an, line, TENSOR_KINDS, True)]


def _call_items(an: DocumentAnalysis | None, line: int, callee: str) -> list[Item]:
    """Inside `callee(...)`: its keyword arguments, then what a value may name."""
    out: list[Item] = []
    op = REGISTRY.get(callee)
    if op is not None:
        out = [Item(f"{a.name}=", "argument", f"{a.name}: {a.type}" + ("" if a.required else f" = {a.default_from or a.default}"),
                    snippet=f"{a.name}=") for a in op.args]
        if op.starts_statement:  # cat(a, b): its operands are tensors
            out += _tensor_items(an, line)
    elif an is not None and an.spec is not None:
        block = next((b for b in an.spec.blocks if b.name == callee), None)
        if block is not None:
            out = [Item(f"{p.name}=", "argument", f"parameter of {callee}", snippet=f"{p.name}=") for p in block.params]
    return out + _value_items(an, line)


def complete(an: DocumentAnalysis | None, line_text: str, line: int, column: int) -> list[Item]:
    """The completions at a 1-based (line, column) of a line whose text is `line_text`.

    >>> [i.label for i in complete(None, "y = x |> ", 1, 10)][:3]
    ['conv', 'convT', 'maxpool']
    """
    prefix = line_text[: column - 1]
    if _AFTER_AT.search(prefix):
        return [Item(n, "attribute", doc) for n, doc in _attributes().items()]
    if _AFTER_CHAIN.search(prefix):
        return [op_item(op) for op in layers().values()] + _blocks(an)
    callee = _open_call(prefix)
    if callee:
        return _call_items(an, line, callee)
    if _SOURCE.match(prefix) and "=" in prefix:
        return _tensor_items(an, line) + [op_item(op) for op in merges().values()]
    return _value_items(an, line)


def partial_word(line_text: str, column: int) -> str:
    """The part of a name typed before the cursor (what the client filters by).

    >>> partial_word("y = x |> co", 12)
    'co'
    """
    m = _PARTIAL.search(line_text[: column - 1])
    return m.group(0) if m else ""
