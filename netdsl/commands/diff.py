"""`netdsl diff A.net B.net`: every total of two specs side by side as formulas, with B - A
simplified, the values in use, the outputs' receptive fields, and the layers matched by path.

Exit status: 0, or 2 for an error (raised as NetdslError and rendered by the CLI). Never imports
torch; the compiler's passes (SymPy) are imported when a diff runs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from netdsl.api import load
from netdsl.commands.common import add_set_argument
from netdsl.commands.count import DTYPE_NAMES, OPTIMIZER_NAMES
from netdsl.values import parse_sets

if TYPE_CHECKING:
    import sympy as sp

    from netdsl.passes.diff import Compared, DiffResult, LayerRef, Side


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Compare two specs: every total of `netdsl count` (parameters, MACs, connections, outputs, "
                     "buffers, memory) and the outputs' receptive fields of both, as formulas, with their difference "
                     "B - A simplified and the values in use; layers with the same module path are compared, the "
                     "others listed.")
    p.add_argument("spec_a", metavar="A", help="path to the first .net spec")
    p.add_argument("spec_b", metavar="B", help="path to the second .net spec")
    add_set_argument(p, "set a parameter, input size or the batch N in both specs (repeatable)")
    p.add_argument("--set-a", dest="sets_a", action="append", default=[], metavar="NAME=VALUE",
                   help="set a name in A only (repeatable)")
    p.add_argument("--set-b", dest="sets_b", action="append", default=[], metavar="NAME=VALUE",
                   help="set a name in B only (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--all-layers", action="store_true", help="list every matched layer, not only those that differ")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="fp32", help="autocast dtype of the memory metrics")
    p.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="adam",
                   help="optimizer whose state train_bytes counts (default adam)")
    c = p.add_argument_group("convention of the totals (as `netdsl count`)")
    c.add_argument("--biases", action="store_true", default=False, help="weights include conv biases")
    c.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
                   help="weights include BatchNorm parameters, connections count BatchNorm units")
    c.add_argument("--activations", action="store_true", default=False,
                   help="outputs and connections include activation (and dropout) layers")
    c.add_argument("--merges", action="store_true", default=False, help="outputs and connections include cat/add merges")


def _num(v: int | sp.Rational | None) -> int | str | None:
    """A value for JSON: an int, or "a/b" for a fraction (a receptive field's jump after upsampling)."""
    if v is None or isinstance(v, int):
        return v
    return int(v) if v.q == 1 else f"{v.p}/{v.q}"


def _text(x: sp.Expr | None) -> str | None:
    return None if x is None else str(x)


def _formulas(c: Compared) -> dict[str, str | None]:
    return {"a": _text(c.a), "b": _text(c.b), "difference": _text(c.difference)}


def _values(c: Compared) -> dict[str, int | str | None]:
    return {"a": _num(c.a_value), "b": _num(c.b_value), "difference": _num(c.value_difference)}


def _pair(h: Compared, w: Compared, key: str) -> list[Any] | None:
    """A receptive field's (h, w) formulas for one side (`key` "a", "b" or "difference")."""
    return None if getattr(h, key) is None else [str(getattr(c, key)) for c in (h, w)]


def _pair_values(h: Compared, w: Compared, key: str) -> list[Any] | None:
    return None if getattr(h, key) is None else [_num(getattr(c, key)) for c in (h, w)]


def _side(s: Side, label: str, text: str) -> dict[str, Any]:
    from netdsl.commands.count import assumptions

    graph = s.cg.graph
    assert graph is not None, "analyse_text always lowers the spec"
    return {"label": label, "net": s.cg.name, "spec": s.cg.source[0], "symbols": list(s.cg.env.symbols),
            "assumptions": assumptions(graph, text), "at": dict(s.cg.env.values), "layers": len(s.counts.layers)}


def _ref(x: LayerRef) -> dict[str, Any]:
    return {"name": x.name, "op": x.op, "line": x.line}


def diff_report(d: DiffResult, texts: tuple[str, str], warnings: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON-able report of `netdsl diff`."""
    batch = str(d.batch)
    rf = {o: {p: {"a": _pair(h, w, "a"), "b": _pair(h, w, "b"), "difference": _pair(h, w, "difference")}
              for p, (h, w) in parts.items()} for o, parts in d.rf.items()}
    rf_values = {o: {p: {"a": _pair_values(h, w, "a_value"), "b": _pair_values(h, w, "b_value"),
                         "difference": _pair_values(h, w, "value_difference")}
                     for p, (h, w) in parts.items()} for o, parts in d.rf.items()}
    matched = [{"name": x.name, "op_a": x.op_a, "op_b": x.op_b, "changed": x.changed,
                "metrics": {m: _formulas(c) for m, c in x.metrics.items()},
                "values": {m: _values(c) for m, c in x.metrics.items()}} for x in d.matched]
    return {
        "a": {**_side(d.a, "A", texts[0]), "batch": d.a.batch_value},
        "b": {**_side(d.b, "B", texts[1]), "batch": d.b.batch_value},
        "difference": "B - A", "batch": batch, "symbols": [*d.symbols, batch],
        "convention": d.convention.text(), "dtype": d.options.dtype, "optimizer": d.options.optimizer,
        "totals": {m: _formulas(c) for m, c in d.totals.items()},
        "rf": rf,
        "values": {"totals": {m: _values(c) for m, c in d.totals.items()}, "rf": rf_values},
        "layers": {"matched": matched, "only_a": [_ref(x) for x in d.only_a], "only_b": [_ref(x) for x in d.only_b]},
        "notes": d.notes, "warnings": list(warnings),
    }


def _console() -> Console:
    width = shutil.get_terminal_size((200, 24)).columns if sys.stdout.isatty() else 200
    return Console(width=max(width, 100), highlight=False)


def _signed(v: int | str | None) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if isinstance(v, str):
        return v if v.startswith("-") else "+" + v
    return f"{v:+,}"


def _shown(v: int | str | None) -> str:
    return "-" if v is None else v if isinstance(v, str) else f"{v:,}"


def _print(report: dict[str, Any], order: dict[str, list[str]], all_layers: bool) -> None:
    console = _console()
    a, b = report["a"], report["b"]
    for s in (a, b):
        at = ", ".join(f"{k}={v}" for k, v in s["at"].items())
        console.print(Text(f"{s['label']}: {s['net']}  ({s['spec'] or '<input>'}): values in use {at}, "
                           f"{report['batch']}={s['batch']}", style="bold"))
    console.print(f"differences are B - A, formulas in {', '.join(report['symbols'])} "
                  f"(memory: {report['dtype']}, {report['optimizer']}; {report['batch']} is the batch)")
    console.print(f"totals: {report['convention']}")
    console.print(_totals_table(report))
    if report["rf"]:
        console.print(_rf_table(report))
    _print_layers(console, report, order, all_layers)
    for note in report["notes"]:
        console.print(f"note: {note}")


def _totals_table(report: dict[str, Any]) -> Table:
    table = Table(title="totals", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("metric", "left"), ("A", "left"), ("B", "left"), ("B - A", "left"),
        ("A value", "right"), ("B value", "right"), ("B - A value", "right"))
    for col, just in columns:
        table.add_column(col, justify=just, overflow="fold")
    for m, f in report["totals"].items():
        v = report["values"]["totals"][m]
        table.add_row(m, f["a"], f["b"], f["difference"], _shown(v["a"]), _shown(v["b"]), _signed(v["difference"]))
    return table


def _rf_table(report: dict[str, Any]) -> Table:
    table = Table(title="receptive field of each output (h, w)", title_justify="left")
    for col in ("output", "", "A", "B", "B - A", "A value", "B value"):
        table.add_column(col, overflow="fold")

    def cell(x: list[Any] | None, fmt: Any = str) -> str:
        return "-" if x is None else ", ".join(fmt(v) for v in x)

    for o, parts in report["rf"].items():
        for p, f in parts.items():
            v = report["values"]["rf"][o][p]
            table.add_row(o, p, cell(f["a"]), cell(f["b"]), cell(f["difference"]), cell(v["a"]), cell(v["b"]))
    return table


def _runs(refs: list[dict[str, Any]], order: list[str]) -> list[str]:
    """Layers only one side has, as runs of consecutive layers of that side: `first ... last (n layers)`."""
    index = {n: i for i, n in enumerate(order)}
    runs: list[list[str]] = []
    for r in refs:
        if runs and index[r["name"]] == index[runs[-1][-1]] + 1:
            runs[-1].append(r["name"])
        else:
            runs.append([r["name"]])
    return [run[0] if len(run) == 1 else f"{run[0]} ... {run[-1]} ({len(run)} layers)" for run in runs]


def _print_layers(console: Console, report: dict[str, Any], order: dict[str, list[str]], all_layers: bool) -> None:
    lay = report["layers"]
    changed = [x for x in lay["matched"] if x["changed"]]
    console.print(f"layers: {report['a']['layers']} in A, {report['b']['layers']} in B; {len(lay['matched'])} matched "
                  f"by module path ({len(changed)} differ), {len(lay['only_a'])} only in A, {len(lay['only_b'])} only in B")
    rows = lay["matched"] if all_layers else changed
    if rows:
        table = Table(title_justify="left")
        for col in ("layer", "op", "B - A"):
            table.add_column(col, overflow="fold")
        for x in rows:
            op = x["op_a"] if x["op_a"] == x["op_b"] else f"{x['op_a']} -> {x['op_b']}"
            parts = [f"{m} {x['metrics'][m]['difference']} ({_signed(x['values'][m]['difference'])})"
                     for m in x["changed"] if m != "op"]
            table.add_row(x["name"], op, "; ".join(parts) or "same")
        console.print(table)
    for key, label in (("only_a", "A"), ("only_b", "B")):
        if lay[key]:
            console.print(f"only in {label}: " + "; ".join(_runs(lay[key], order[key])))


def run(args: argparse.Namespace) -> int:
    from netdsl.commands.count import warn_unused
    from netdsl.passes.count_memory import memory_options
    from netdsl.passes.counts import Convention
    from netdsl.passes.diff import Source, diff_sources

    (ta, pa), (tb, pb) = load(args.spec_a), load(args.spec_b)
    a, b = Source(ta, pa, parse_sets(args.sets_a)), Source(tb, pb, parse_sets(args.sets_b))
    convention = Convention(biases=args.biases, batchnorm=args.batchnorm, activations=args.activations,
                            merges=args.merges)
    d = diff_sources(a, b, parse_sets(args.sets), convention, memory_options(args.dtype, args.optimizer))
    warnings = [*warn_unused(d.a.cg, False), *warn_unused(d.b.cg, False)]
    report = diff_report(d, (ta, tb), tuple(warnings))
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        order = {"only_a": [r.name for r in d.a.counts.layers], "only_b": [r.name for r in d.b.counts.layers]}
        _print(report, order, args.all_layers)
    return 0
