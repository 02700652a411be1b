"""`netdsl export SPEC --to dot|svg|png`: the network as a picture, drawn by Graphviz.

netdsl writes Graphviz's `dot` language itself (no Python package needed) from the concrete graph:

* a top-level statement is one box with a row per layer: the layer as the spec would write it
  (at the values in use), its output shape in the spec's symbols (`[64, H/2, W/2]`) and at the
  values in use (`64×112×112`), and its parameter count. A call of a sequence block (`cba(32, 3)`)
  is one row, the call as written, its layers listed under it;
* a graph-block call (`basic(64)`, `res(256)`) is a frame around its own statements, each a
  compact box with its layers on one line; identical repeats (`res(256) * 8`) share one frame
  marked `× 8`, so a ResNet fits on a page. `--expand` draws every layer and every repeat;
* `cat`, `add` and the other merges are small round nodes; their inputs other than the main
  path (the one produced last) are skip connections, drawn as coloured edges labelled with the
  tensor's name. Inputs are ovals; output boxes have a heavy border.

`svg` and `png` run Graphviz's `dot` program (a system package: `apt-get install graphviz`,
`brew install graphviz`, `conda install graphviz`); without it the `.dot` text is written next to
the requested file and the message says how to render it. Every file is written through a
temporary file and renamed.
"""
from __future__ import annotations

import html
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import sympy as sp

from netdsl.errors import NetdslError, source_text

if TYPE_CHECKING:
    from netdsl.concrete import Block, ConcreteGraph, Layer, Statement

FONT = "Helvetica"
INSTALL = ("Graphviz is a system package: `apt-get install graphviz` (Debian, Ubuntu), "
           "`brew install graphviz` (macOS), `conda install graphviz`, or https://graphviz.org/download/")
RENDER_TIMEOUT = 300  # seconds; a network of thousands of layers takes dot a while
# Row colours by op category (the op cell of each row), and the frames' colours.
CATEGORY_FILL = {"conv": "#dbeafe", "linear": "#fde2e2", "norm": "#eeeeee", "activation": "#dcfce7",
                 "pool": "#ffedd5", "upsample": "#ede9fe", "shape": "#f5f5f4", "merge": "#fef9c3"}
HEADER_FILL = "#e5e7eb"
INPUT_FILL = "#fef3c7"
BLOCK_FILL = "#f8fafc"
SKIP_COLOR = "#2563eb"
HEAD_COLOR = "#b45309"
MERGE_SYMBOL = {"add": "+", "cat": "cat"}
# Arguments the compact (one-line) form keeps besides the required ones: those that change shapes.
SHAPE_ARGS = ("stride", "dilation", "groups")
MAX_SHAPE_TEXT = 48
CHAIN_LINE = 6  # layers per line in a one-line box or under a sequence-block call


def find_dot() -> str | None:
    """Graphviz's `dot` program, if it is installed (tests replace this to pretend it is not)."""
    return shutil.which("dot")


# --- text ----------------------------------------------------------------------------------------

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


def _value(v: Any, listed: bool = False) -> str:
    """An argument's value as the spec writes it: pairs in parentheses, lists (`listed`) in brackets."""
    if listed and isinstance(v, tuple):
        return "[" + ", ".join(_value(x, True) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float):
        return "inf" if v == float("inf") else "-inf" if v == float("-inf") else f"{v:g}"
    if isinstance(v, tuple):
        if len(v) == 2 and v[0] == v[1] and not isinstance(v[0], tuple):
            return _value(v[0])
        return "(" + ", ".join(_value(x) for x in v) + ")" if not any(isinstance(x, tuple) for x in v) \
            else "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _differs(spec: Any, a: Any, v: Any) -> bool:
    if spec.default_from is not None:
        return v != a.get(spec.default_from)
    d = spec.default
    if spec.pair and not isinstance(d, tuple):
        d = (d, d)
    return v != d


def layer_text(op: Any, args: Any, compact: bool = False) -> str:
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
        listed = spec.type in ("ints", "intlists")
        if spec.required and not listed:
            parts.append(_value(v))
        elif (spec.required or _differs(spec, args, v)) and (not compact or spec.name in SHAPE_ARGS):
            parts.append(f"{spec.name}={_value(v, listed)}")
    return f"{op.name}({', '.join(parts)})" if parts else op.name


# --- the drawing ---------------------------------------------------------------------------------

Item = Union["Layer", "Block"]


@dataclass
class _Run:
    """Consecutive layers of one statement: one box."""

    layers: list[Layer]


@dataclass
class _Calls:
    """One graph-block call, or several identical repeats of it from the same place."""

    blocks: list[Block]
    in_at: tuple[int, ...]


class _Picture:
    def __init__(self, cg: ConcreteGraph, expand: bool) -> None:
        self.cg, self.expand = cg, expand
        self.text = cg.source[1] or ""
        self.lines: list[str] = []
        self.edges: list[str] = []
        self.ancestors: dict[str, set[str]] = {}
        self.count = 0
        self.outputs = {t.name for t in cg.outputs}

    # --- primitives ----------------------------------------------------------------------------
    def new(self, prefix: str = "n") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def node(self, depth: int, label: str, **attrs: str) -> str:
        nid = self.new()
        extra = "".join(f", {k}={v}" for k, v in attrs.items())
        self.lines.append(f"{'  ' * depth}{nid} [label=<{label}>{extra}];")
        return nid

    def edge(self, depth: int, a: str, b: str, **attrs: str) -> None:
        # Edges go at the top level: an edge written inside a cluster pulls both its ends into it.
        extra = ", ".join(f"{k}={v}" for k, v in attrs.items())
        self.edges.append(f"  {a} -> {b}" + (f" [{extra}]" if extra else "") + ";")
        self.ancestors.setdefault(b, set()).update({a} | self.ancestors.get(a, set()))

    def skips(self, producers: list[str]) -> set[str]:
        """The merge inputs that are skip connections: those another input was computed from."""
        return {p for p in producers if any(p in self.ancestors.get(q, ()) for q in producers if q != p)}

    # --- numbers -------------------------------------------------------------------------------
    def shape_cells(self, shape: tuple[sp.Expr, ...], at: tuple[int, ...]) -> tuple[str, str]:
        sym = "[" + ", ".join(str(x) for x in self.cg.show(shape)) + "]"
        if len(sym) > MAX_SHAPE_TEXT:
            sym = sym[: MAX_SHAPE_TEXT - 2] + "…]"
        value = "×".join(str(v) for v in at)
        return sym, value

    def params(self, items: list[Any]) -> int:
        total = 0
        for it in items:
            c = it.counts
            total += int(self.cg.env.at(c.weights + c.biases + c.norm_params))
        return total

    def block_params(self, block: Block) -> int:
        return self.params(list(_walk(block.statements)))

    def call_text(self, span: Any) -> str:
        return source_text(self.text, span) if self.text else ""

    # --- the graph -----------------------------------------------------------------------------
    def draw(self) -> str:
        cg = self.cg
        total = self.params(list(cg.walk()))
        values = ", ".join(f"{k}={v}" for k, v in cg.env.values.items())
        title = (f"<b>{esc(cg.name)}</b>   {esc(count_text(total))} parameters ({total:,})"
                 f"<br/><font point-size=\"10\" color=\"#555555\">{esc(values)}</font>")
        producers: dict[str, str] = {}
        for t in cg.inputs:
            sym, value = self.shape_cells(t.shape, t.at)
            label = (f"<b>{esc(t.name)}</b><br/>{esc(sym)}<br/><font point-size=\"10\">{esc(value)}</font>")
            producers[t.name] = self.node(1, label, shape="oval", style="filled", fillcolor=quote(INPUT_FILL),
                                          tooltip=quote(f"input {t.name}"))
        self.statements(cg.statements, producers, 1, top=True)
        head = [
            f"digraph {quote(cg.name)} {{",
            f"  graph [rankdir=TB, nodesep=0.2, ranksep=0.22, fontname={quote(FONT)}, labelloc=t, "
            f"label=<{title}>, newrank=true, ordering=out];",
            f"  node [fontname={quote(FONT)}, fontsize=11, shape=plain];",
            f"  edge [fontname={quote(FONT)}, fontsize=9, arrowsize=0.7, color=\"#444444\"];",
        ]
        return "\n".join(head + self.lines + self.edges + ["}"]) + "\n"

    def statements(self, stmts: list[Statement], producers: dict[str, str], depth: int, top: bool) -> None:
        for st in stmts:
            prev = self.source(st, producers, depth, top)
            segments = self.segments(st)
            for k, seg in enumerate(segments):
                if isinstance(seg, _Run):
                    last = k == len(segments) - 1
                    nid = self.run_box(st, seg.layers, depth, header=(k == 0), output=top and last
                                       and st.name in self.outputs)
                    self.edge(depth, prev, nid)
                    prev = nid
                else:
                    prev = self.calls(seg, prev, depth)
            producers[st.name] = prev

    def source(self, st: Statement, producers: dict[str, str], depth: int, top: bool) -> str:
        """The node the statement's layers start from: its input's producer, or its merge node."""
        if st.merge is None:
            return producers[st.inputs[0]]
        m = st.merge
        if m.merge.final:  # detect: a head with weights, one box
            sym, value = self.shape_cells(m.out_shape, m.out_at)
            args = ", ".join(f"{a.name}={_value(m.args[a.name], a.type in ('ints', 'intlists'))}"
                             for a in m.merge.args if a.name in m.args and a.name != "anchors"
                             and (a.required or _differs(a, m.args, m.args[a.name])))
            per = len(m.args["anchors"][0]) // 2 if "anchors" in m.args else 0
            rows = [self.row(esc(f"{m.merge.name}({args})") + (f"<br align=\"left\"/><font point-size=\"9\" "
                             f"color=\"#555555\">{per} anchors per level</font><br align=\"left\"/>" if per else ""),
                             sym, value,
                             self.params([m]), "conv", raw=True)]
            label = self.table(st.name, rows, output=st.name in self.outputs)
            nid = self.node(depth, label, tooltip=quote(m.path))
            for name in st.inputs:
                self.edge(depth, producers[name], nid, color=quote(HEAD_COLOR), fontcolor=quote(HEAD_COLOR),
                          label=quote(name))
            return nid
        sym, value = self.shape_cells(m.out_shape, m.out_at)
        symbol = MERGE_SYMBOL.get(m.merge.name, m.merge.name)
        if st.items:
            label = f"<b>{esc(symbol)}</b>"
            nid = self.node(depth, label, shape="circle", style="filled", fillcolor=quote(CATEGORY_FILL["merge"]),
                            width="0.3", height="0.3", fixedsize="false", margin="0.02",
                            tooltip=quote(f"{st.name} = {m.merge.name}({', '.join(st.inputs)}): {sym}"))
        else:
            label = (f"<b>{esc(st.name)}</b> = {esc(m.merge.name)}<br/>{esc(sym)}<br/>"
                     f"<font point-size=\"10\">{esc(value)}</font>")
            nid = self.node(depth, label, shape="box", style=quote("rounded,filled"),
                            fillcolor=quote(CATEGORY_FILL["merge"]), margin=quote("0.08,0.03"),
                            penwidth="2" if top and st.name in self.outputs else "1",
                            tooltip=quote(f"{st.name} = {m.merge.name}({', '.join(st.inputs)})"))
        self.merge_edges(st, producers, nid, depth)
        return nid

    def merge_edges(self, st: Statement, producers: dict[str, str], nid: str, depth: int) -> None:
        skips = self.skips([producers[n] for n in st.inputs])
        for name in st.inputs:
            if producers[name] not in skips:
                self.edge(depth, producers[name], nid)
            else:
                self.edge(depth, producers[name], nid, color=quote(SKIP_COLOR), fontcolor=quote(SKIP_COLOR),
                          penwidth="1.6", label=quote(name))

    # --- statements' items ---------------------------------------------------------------------
    def segments(self, st: Statement) -> list[_Run | _Calls]:
        from netdsl.concrete import Block

        out: list[_Run | _Calls] = []
        at = st.merge.out_at if st.merge is not None else None
        for it in st.items:
            if isinstance(it, Block):
                last = out[-1] if out else None
                if (not self.expand and isinstance(last, _Calls) and self.same(last, it)):
                    last.blocks.append(it)
                else:
                    out.append(_Calls([it], at if at is not None else it.out_at))
            elif out and isinstance(out[-1], _Run):
                out[-1].layers.append(it)
            else:
                out.append(_Run([it]))
            at = it.out_at
        return out

    def same(self, calls: _Calls, b: Block) -> bool:
        """A repeat of the frame's block from the same place that changes nothing the picture shows."""
        first = calls.blocks[0]
        return (b.block == first.block and b.span == first.span and first.out_at == calls.in_at
                and b.out_at == first.out_at and self.block_params(b) == self.block_params(first))

    def groups(self, layers: list[Layer]) -> Iterator[list[Layer]]:
        """Rows: a layer each (expanded, or written in place), or one per sequence-block call."""
        group: list[Layer] = []
        for layer in layers:
            key = layer.node.via[0] if layer.node.via and not self.expand else None
            if group and key != group[0].node.via[0]:
                yield group
                group = []
            if key is None:
                yield [layer]
            else:
                group.append(layer)
        if group:
            yield group

    def row(self, what: str, sym: str, value: str, params: int, category: str, raw: bool = False,
            tooltip: str = "") -> str:
        fill = CATEGORY_FILL.get(category, "#ffffff")
        cell = what if raw else esc(what)
        return (f"<tr><td align=\"left\" bgcolor=\"{fill}\">{cell}</td>"
                f"<td align=\"left\">{esc(sym)}</td>"
                f"<td align=\"right\">{esc(value)}</td>"
                f"<td align=\"right\">{_gray(count_text(params)) if params else ''}</td></tr>")

    def table(self, header: str, rows: list[str], output: bool = False) -> str:
        border = "2" if output else "1"
        head = f"<tr><td align=\"left\" colspan=\"4\" bgcolor=\"{HEADER_FILL}\"><b>{esc(header)}</b></td></tr>"
        return (f"<table border=\"{border}\" cellborder=\"0\" cellspacing=\"0\" cellpadding=\"3\" "
                f"color=\"#555555\" bgcolor=\"white\" style=\"rounded\">{head}{''.join(rows)}</table>")

    def run_box(self, st: Statement, layers: list[Layer], depth: int, header: bool,
                output: bool) -> str:
        rows = []
        for group in self.groups(layers):
            last = group[-1]
            sym, value = self.shape_cells(last.out_shape, last.out_at)
            category = next((g.op.category for g in group if g.op.category in ("conv", "linear")), group[0].op.category)
            if len(group) == 1 and not (group[0].node.via and not self.expand):
                what = esc(layer_text(group[0].op, group[0].args))
            else:
                call = self.call_text(group[0].node.via[0]) or group[0].op.name
                inner = chain([layer_text(g.op, g.args, compact=True) for g in group])
                what = (f"{esc(call)}<br align=\"left\"/><font point-size=\"9\" color=\"#555555\">{inner}</font>"
                        "<br align=\"left\"/>")
            rows.append(self.row(what, sym, value, self.params(group), category, raw=True))
        label = self.table(st.name if header else f"{st.name} (continued)", rows, output=output)
        return self.node(depth, label, tooltip=quote(layers[0].path.rsplit(".", 1)[0] if len(layers) > 1 or
                                                      "." in layers[0].path else layers[0].path))

    def calls(self, calls: _Calls, prev: str, depth: int) -> str:
        """A frame (cluster) around a graph-block call's statements; returns its output's node."""
        first = calls.blocks[0]
        n = len(calls.blocks)
        call = self.call_text(first.span)
        sym, value = self.shape_cells(first.out_shape, calls.blocks[-1].out_at)
        params = sum(self.block_params(b) for b in calls.blocks)
        where = first.path if n == 1 else f"{first.path} … {calls.blocks[-1].path}"
        title = (f"<b>{esc(first.block)}</b>" + (f" <b>× {n}</b>" if n > 1 else "")
                 + f"  <font color=\"#555555\">{esc(where)}</font>"
                 + f"  <font point-size=\"10\">→ {esc(sym)}  {esc(value)}"
                 + (f"  · {esc(count_text(params))} params" if params else "") + "</font>"
                 + f"<br align=\"left\"/><font point-size=\"9\" color=\"#555555\">{esc(call)}</font><br align=\"left\"/>")
        cid = self.new("cluster_")
        pad = "  " * depth
        self.lines.append(f"{pad}subgraph {cid} {{")
        self.lines.append(f"{pad}  graph [label=<{title}>, labeljust=l, style=\"rounded,filled\", "
                          f"fillcolor={quote(BLOCK_FILL)}, color=\"#94a3b8\", penwidth=1.2, margin=6];")
        producers = {first.input: prev}
        if self.expand:
            self.statements(first.statements, producers, depth + 1, top=False)
        else:
            self.compact(first.statements, producers, depth + 1)
        self.lines.append(f"{pad}}}")
        return producers["output"]

    def small_box(self, name: str, parts: list[str], layers: list[Any], fill: str, depth: int) -> str:
        sym, value = self.shape_cells(layers[-1].out_shape, layers[-1].out_at)
        label = _small_label(name, chain(parts), sym, value, self.params(layers), fill)
        return self.node(depth, label, tooltip=quote(layers[0].path.rsplit(".", 1)[0].split("(")[0]))

    def compact(self, stmts: list[Statement], producers: dict[str, str], depth: int) -> None:
        """A block's statements, one small box each: the name, its layers on one line, its shape."""
        from netdsl.concrete import Block

        for st in stmts:
            if st.merge is not None and not st.merge.merge.final and st.items and \
                    not any(isinstance(it, Block) for it in st.items):
                # `output = add(x, y) |> relu`: the merge and its layers in one small box
                layers = st.items
                m = st.merge
                parts = [f"{m.merge.name}({', '.join(st.inputs)})",
                         *(layer_text(l.op, l.args, compact=True) for l in layers)]  # type: ignore[union-attr]
                nid = self.small_box(st.name, parts, layers, CATEGORY_FILL["merge"], depth)
                self.merge_edges(st, producers, nid, depth)
                producers[st.name] = nid
                continue
            if st.merge is not None and not st.merge.merge.final and not st.items:
                m = st.merge
                nid = self.small_box(st.name, [f"{m.merge.name}({', '.join(st.inputs)})"], [m],
                                     CATEGORY_FILL["merge"], depth)
                self.merge_edges(st, producers, nid, depth)
                producers[st.name] = nid
                continue
            prev = self.source(st, producers, depth, top=False)
            for seg in self.segments(st):
                if isinstance(seg, _Calls):
                    prev = self.calls(seg, prev, depth)
                    continue
                layers = seg.layers
                parts = [layer_text(l.op, l.args, compact=True) for l in layers]
                fill = CATEGORY_FILL.get(next((l.op.category for l in layers if l.op.category in ("conv", "linear")),
                                              layers[0].op.category), "#ffffff")
                nid = self.small_box(st.name, parts, layers, fill, depth)
                self.edge(depth, prev, nid)
                prev = nid
            producers[st.name] = prev


def chain(parts: list[str], per_line: int = CHAIN_LINE) -> str:
    """Layers in a row, `a → b → c`, escaped for a label, a new line every `per_line` layers.

    >>> chain(["conv(8, 3)", "relu", "maxpool(2)"], per_line=2)
    'conv(8, 3) → relu<br align="left"/>→ maxpool(2)'
    """
    lines = [" → ".join(esc(p) for p in parts[i:i + per_line]) for i in range(0, len(parts), per_line)]
    return "<br align=\"left\"/>→ ".join(lines)


def _small_label(name: str, html_text: str, sym: str, value: str, params: int, fill: str) -> str:
    end = "<br align=\"left\"/>" if "<br" in html_text else ""
    return (f"<table border=\"1\" cellborder=\"0\" cellspacing=\"0\" cellpadding=\"2\" color=\"#777777\" "
            f"bgcolor=\"white\" style=\"rounded\"><tr><td align=\"left\" bgcolor=\"{fill}\">"
            f"<b>{esc(name)}</b>  {html_text}{end}</td></tr><tr><td align=\"left\">"
            f"<font point-size=\"9\">{esc(sym)}  {esc(value)}"
            + (f"  · {esc(count_text(params))}" if params else "") + "</font></td></tr></table>")


def _gray(text: str) -> str:
    return f"<font color=\"#666666\">{esc(text)}</font>" if text else ""


def _walk(stmts: list[Statement]) -> Iterator[Any]:
    from netdsl.concrete import walk_statements

    return walk_statements(stmts)


def to_dot(cg: ConcreteGraph, expand: bool = False) -> str:
    """The network as Graphviz `dot` text (see the module's docstring for what is drawn).

    >>> from netdsl.api import shapes
    >>> cg = shapes("net T(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\\n"
    ...             "y = x |> conv(C, 3, padding=1) -> relu\\noutput = cat(x, y) |> maxpool(2)")
    >>> text = to_dot(cg)
    >>> text.startswith('digraph "T" {'), "[C + 1, H/2, W/2]" in text, "5×4×4" in text
    (True, True, True)
    """
    return _Picture(cg, expand).draw()


# --- files ---------------------------------------------------------------------------------------

def _atomic(path: Path, data: bytes, inputs: list[str], replace: bool = True) -> None:
    from netdsl.train.files import atomic_write

    atomic_write(path, lambda fh: fh.write(data), inputs=inputs, replace=replace)


def _same_content(path: Path, data: bytes) -> bool:
    """Whether the regular file at `path` holds exactly `data` (read no further than its size)."""
    try:
        if not path.is_file() or path.stat().st_size != len(data):
            return False
        with open(path, "rb") as fh:
            return fh.read(len(data) + 1) == data
    except OSError:
        return False


def render(dot_text: str, fmt: str, dot: str) -> bytes:
    """Run Graphviz's `dot` on the text; the picture's bytes."""
    try:
        done = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True,
                              timeout=RENDER_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetdslError(f"Graphviz's dot could not render the picture: {e}",
                          hint="export --to dot and render the file yourself") from e
    if done.returncode != 0 or not done.stdout:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise NetdslError(f"Graphviz's dot failed (exit status {done.returncode}): {err[-1] if err else 'no output'}",
                          hint="export --to dot and render the file yourself, or update Graphviz")
    return done.stdout


def _dot_instead(out: Path, fmt: str, data: bytes, inputs: list[str]) -> str:
    """Without Graphviz: the dot text beside `out`, never over a file the user has there."""
    from netdsl.train.files import is_stream

    dot_path = out.with_suffix(".dot")
    missing = f"Graphviz's `dot` program is not installed, so no {fmt} was drawn"
    if is_stream(out):  # a FIFO or device has no folder to leave the text in
        raise NetdslError(f"{missing} to {out}", path=str(out), hint=f"{INSTALL}; or export --to dot")
    if _same_content(dot_path, data):
        done = f"{dot_path} already holds its dot text"
    else:
        try:
            _atomic(dot_path, data, inputs, replace=False)
        except NetdslError as e:
            raise NetdslError(f"{missing}, and the dot text was not written either: {e.message}",
                              path=str(dot_path), hint=f"export --to dot -o OTHER.dot and render that, or install "
                                                       f"Graphviz: {INSTALL}") from None
        done = f"wrote {dot_path} instead"
    return (f"{missing}: {done}.\n"
            f"  Render it with `dot -T{fmt} {dot_path} -o {out}` once Graphviz is installed.\n  {INSTALL}")


def write_picture(cg: ConcreteGraph, out: Path | str, fmt: str, expand: bool = False) -> str:
    """Write the picture (`fmt` dot, svg or png) at `out`; return the message to print.

    Without Graphviz, svg and png leave the `.dot` text next to `out` and say how to render it;
    a different file already there under that name is kept, and that is an error. The spec
    (`cg.source`) is never overwritten.

    >>> import tempfile, pathlib
    >>> from netdsl.api import shapes
    >>> cg = shapes("net T(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     print(write_picture(cg, pathlib.Path(d) / "t.dot", "dot").split(d)[1])
    /t.dot (Graphviz dot text; render it with `dot -Tsvg t.dot -o t.svg`)
    """
    if fmt not in ("dot", "svg", "png"):
        raise NetdslError(f"no picture format '{fmt}'", hint="use dot, svg or png")
    out = Path(out)
    inputs = [cg.source[0]] if cg.source[0] else []
    text = to_dot(cg, expand)
    if fmt == "dot":
        _atomic(out, text.encode("utf-8"), inputs)
        return f"wrote {out} (Graphviz dot text; render it with `dot -Tsvg {out.name} -o {out.with_suffix('.svg').name}`)"
    dot = find_dot()
    if dot is None:
        return _dot_instead(out, fmt, text.encode("utf-8"), inputs)
    _atomic(out, render(text, fmt, dot), inputs)
    return f"wrote {out}"
