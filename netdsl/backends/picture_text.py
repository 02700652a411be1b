"""The text of the picture's labels: layers as the spec writes them, counts, escaped for Graphviz."""
from __future__ import annotations

import html
from typing import Any

from netdsl.ops import Args, ArgSpec, OpDef

# Arguments the compact (one-line) form keeps besides the required ones: those that change shapes.
SHAPE_ARGS = ("stride", "dilation", "groups")
CHAIN_LINE = 6  # layers per line in a one-line box or under a sequence-block call


def esc(text: object) -> str:
    """Text for an HTML-like Graphviz label: every character that means something there escaped.

    >>> esc('cat(a, b) <"x"> & y')
    'cat(a, b) &lt;&quot;x&quot;&gt; &amp; y'
    """
    return html.escape(str(text), quote=True).replace("\n", "<br/>")


def quote(text: str) -> str:
    """A double-quoted DOT string (for attributes such as tooltips)."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def count_text(n: int) -> str:
    """A parameter count, short: 928, 9.4k, 11.7M.

    >>> [count_text(n) for n in (0, 928, 9408, 11689512, 61949149)]
    ['0', '928', '9.4k', '11.7M', '61.9M']
    """
    if n < 1000:
        return str(n)
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            v = n / size
            return f"{v:.1f}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return str(n)


def value_text(v: Any, listed: bool = False) -> str:
    """An argument's value as the spec writes it: pairs in parentheses, lists (`listed`) in brackets."""
    if listed and isinstance(v, tuple):
        return "[" + ", ".join(value_text(x, True) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float):
        return "inf" if v == float("inf") else "-inf" if v == float("-inf") else f"{v:g}"
    if isinstance(v, tuple):
        if len(v) == 2 and v[0] == v[1] and not isinstance(v[0], tuple):
            return value_text(v[0])
        return "(" + ", ".join(value_text(x) for x in v) + ")" if not any(isinstance(x, tuple) for x in v) \
            else "[" + ", ".join(value_text(x) for x in v) + "]"
    return str(v)


def differs(spec: ArgSpec, a: Args, v: Any) -> bool:
    """Whether the argument's value is not its default."""
    if spec.default_from is not None:
        return v != a.get(spec.default_from)
    d: Any = spec.default
    if spec.pair and not isinstance(d, tuple):
        d = (d, d)
    if spec.type == "floats" and not isinstance(d, tuple):  # one number stands for a list of one
        d = (d,)
    return v != d


def layer_text(op: OpDef, args: Args, compact: bool = False) -> str:
    """A layer as the spec would write it at the values in use: required arguments in order, then
    those that differ from their defaults; `compact` keeps only the ones that change shapes.

    >>> from netdsl.api import shapes
    >>> cg = shapes("net T()\\ninput x: [3, H = 8, W = 8]\\noutput = x |> conv(16, 3, stride=2, padding=1, bias=false)")
    >>> layer_text(cg.layers[0].op, cg.layers[0].args), layer_text(cg.layers[0].op, cg.layers[0].args, compact=True)
    ('conv(16, 3, stride=2, padding=1, bias=false)', 'conv(16, 3, stride=2)')
    """
    parts = []
    for spec in op.args:
        v = args.get(spec.name)
        listed = spec.type in ("ints", "intlists", "floats")
        if spec.required and not listed:
            parts.append(value_text(v))
        elif (spec.required or differs(spec, args, v)) and (not compact or spec.name in SHAPE_ARGS):
            parts.append(f"{spec.name}={value_text(v, listed)}")
    return f"{op.name}({', '.join(parts)})" if parts else op.name


def chain(parts: list[str], per_line: int = CHAIN_LINE) -> str:
    """Layers in a row, `a → b → c`, escaped for a label, a new line every `per_line` layers.

    >>> chain(["conv(8, 3)", "relu", "maxpool(2)"], per_line=2)
    'conv(8, 3) → relu<br align="left"/>→ maxpool(2)'
    """
    lines = [" → ".join(esc(p) for p in parts[i:i + per_line]) for i in range(0, len(parts), per_line)]
    return "<br align=\"left\"/>→ ".join(lines)
