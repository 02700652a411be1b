"""The network drawn as Graphviz `dot` text (`Drawing`); what is drawn is told in `picture`'s docstring."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sympy as sp

from netdsl.backends.picture_text import chain, count_text, differs, esc, layer_text, quote, value_text
from netdsl.concrete import Block, ConcreteGraph, Layer, Statement, walk_statements
from netdsl.errors import source_text
from netdsl.ops import Category

FONT = "Helvetica"
CATEGORY_FILL = {Category.CONV: "#dbeafe", Category.LINEAR: "#fde2e2", Category.NORM: "#eeeeee",
                 Category.ACTIVATION: "#dcfce7", Category.POOL: "#ffedd5", Category.UPSAMPLE: "#ede9fe",
                 Category.SHAPE: "#f5f5f4", Category.MERGE: "#fef9c3"}
# Rows of layers with weights take the colour of their weighted layer.
WEIGHTED = (Category.CONV, Category.LINEAR)
HEADER_FILL = "#e5e7eb"
INPUT_FILL = "#fef3c7"
BLOCK_FILL = "#f8fafc"
SKIP_COLOR = "#2563eb"
HEAD_COLOR = "#b45309"
MAX_SHAPE_TEXT = 48


Item = Layer | Block


@dataclass
class _Run:
    """Consecutive layers of one statement: one box."""

    layers: list[Layer]


@dataclass
class _Calls:
    """One graph-block call, or several identical repeats of it from the same place."""

    blocks: list[Block]
    in_at: tuple[int, ...]


class Drawing:
    """One drawing of a concrete graph: `draw()` gives its dot text."""

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
        return self.params(list(walk_statements(block.statements)))

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
        if m.op.final:  # detect: a head with weights, one box
            sym, value = self.shape_cells(m.out_shape, m.out_at)
            args = ", ".join(f"{a.name}={value_text(m.args[a.name], a.type in ('ints', 'intlists'))}"
                             for a in m.op.args if a.name in m.args and a.name != "anchors"
                             and (a.required or differs(a, m.args, m.args[a.name])))
            per = len(m.args["anchors"][0]) // 2 if "anchors" in m.args else 0
            rows = [self.row(esc(f"{m.op.name}({args})") + (f"<br align=\"left\"/><font point-size=\"9\" "
                             f"color=\"#555555\">{per} anchors per level</font><br align=\"left\"/>" if per else ""),
                             sym, value,
                             self.params([m]), m.op.category, raw=True)]
            label = self.table(st.name, rows, output=st.name in self.outputs)
            nid = self.node(depth, label, tooltip=quote(m.path))
            for name in st.inputs:
                self.edge(depth, producers[name], nid, color=quote(HEAD_COLOR), fontcolor=quote(HEAD_COLOR),
                          label=quote(name))
            return nid
        sym, value = self.shape_cells(m.out_shape, m.out_at)
        symbol = m.op.symbol or m.op.name
        if st.items:
            label = f"<b>{esc(symbol)}</b>"
            nid = self.node(depth, label, shape="circle", style="filled", fillcolor=quote(CATEGORY_FILL[Category.MERGE]),
                            width="0.3", height="0.3", fixedsize="false", margin="0.02",
                            tooltip=quote(f"{st.name} = {m.op.name}({', '.join(st.inputs)}): {sym}"))
        else:
            label = (f"<b>{esc(st.name)}</b> = {esc(m.op.name)}<br/>{esc(sym)}<br/>"
                     f"<font point-size=\"10\">{esc(value)}</font>")
            nid = self.node(depth, label, shape="box", style=quote("rounded,filled"),
                            fillcolor=quote(CATEGORY_FILL[Category.MERGE]), margin=quote("0.08,0.03"),
                            penwidth="2" if top and st.name in self.outputs else "1",
                            tooltip=quote(f"{st.name} = {m.op.name}({', '.join(st.inputs)})"))
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

    def row(self, what: str, sym: str, value: str, params: int, category: Category, raw: bool = False,
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
            category = next((g.op.category for g in group if g.op.category in WEIGHTED), group[0].op.category)
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
        for st in stmts:
            if st.merge is not None and not st.merge.op.final and st.items and \
                    not any(isinstance(it, Block) for it in st.items):
                # `output = add(x, y) |> relu`: the merge and its layers in one small box
                items = st.items
                m = st.merge
                parts = [f"{m.op.name}({', '.join(st.inputs)})",
                         *(layer_text(x.op, x.args, compact=True) for x in items)]  # type: ignore[union-attr]
                nid = self.small_box(st.name, parts, items, CATEGORY_FILL[Category.MERGE], depth)
                self.merge_edges(st, producers, nid, depth)
                producers[st.name] = nid
                continue
            if st.merge is not None and not st.merge.op.final and not st.items:
                m = st.merge
                nid = self.small_box(st.name, [f"{m.op.name}({', '.join(st.inputs)})"], [m],
                                     CATEGORY_FILL[Category.MERGE], depth)
                self.merge_edges(st, producers, nid, depth)
                producers[st.name] = nid
                continue
            prev = self.source(st, producers, depth, top=False)
            for seg in self.segments(st):
                if isinstance(seg, _Calls):
                    prev = self.calls(seg, prev, depth)
                    continue
                layers = seg.layers
                parts = [layer_text(x.op, x.args, compact=True) for x in layers]
                fill = CATEGORY_FILL.get(next((x.op.category for x in layers if x.op.category in WEIGHTED),
                                              layers[0].op.category), "#ffffff")
                nid = self.small_box(st.name, parts, layers, fill, depth)
                self.edge(depth, prev, nid)
                prev = nid
            producers[st.name] = prev


def _small_label(name: str, html_text: str, sym: str, value: str, params: int, fill: str) -> str:
    end = "<br align=\"left\"/>" if "<br" in html_text else ""
    return (f"<table border=\"1\" cellborder=\"0\" cellspacing=\"0\" cellpadding=\"2\" color=\"#777777\" "
            f"bgcolor=\"white\" style=\"rounded\"><tr><td align=\"left\" bgcolor=\"{fill}\">"
            f"<b>{esc(name)}</b>  {html_text}{end}</td></tr><tr><td align=\"left\">"
            f"<font point-size=\"9\">{esc(sym)}  {esc(value)}"
            + (f"  · {esc(count_text(params))}" if params else "") + "</font></td></tr></table>")


def _gray(text: str) -> str:
    return f"<font color=\"#666666\">{esc(text)}</font>" if text else ""
