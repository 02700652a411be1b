"""The text report of `netdsl count`: tables of the JSON report `count_report` builds.

No SymPy and no torch here: `netdsl --help` imports every command's module.
"""
from __future__ import annotations

import shutil
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

SHOWN_METRICS = ("weights", "biases", "norm_params", "outputs", "connections")
SHOWN_MEMORY = ("saved_bytes", "peak_bytes")
MEMORY_ROWS = ("saved_bytes", "peak_bytes", "param_bytes", "buffer_bytes", "train_bytes")
RF_PARTS = ("size", "jump", "start")
RF_FORMULA_WIDTH = 24  # longer receptive-field formulas (phases after upsampling) only in --json


def print_report(report: dict[str, Any], doubled: bool, memory: bool = False, rf: bool = False) -> None:
    """Print the report; `memory`: per-layer saved and peak bytes; `rf`: a receptive-field column."""
    width = shutil.get_terminal_size((200, 24)).columns if sys.stdout.isatty() else 200
    console = Console(width=max(width, 100), highlight=False)
    _print_header(console, report)
    console.print(_layer_table(report, memory, rf))
    if rf:
        console.print(Text("receptive field: size / jump / start in input pixels (one value when both axes agree, "
                           "else height×width)", style="dim"))
    for kind in ("inputs", "outputs"):
        if len(report[kind]) > 1 or kind == "outputs":
            console.print(f"{kind}: " + "; ".join(f"{t['name']} [{', '.join(t['shape'])}] = {'×'.join(map(str, t['at']))}"
                                               for t in report[kind]))
    if rf and "rf" in report["totals"]:
        for name, f in report["totals"]["rf"].items():
            console.print(f"receptive field of {name} (size / jump / start): "
                          f"{_rf_cell(f, report['values']['totals']['rf'][name])}")
    console.print(Text("each layer's own counts are shown; the totals add up the layers their convention includes",
                       style="dim"))
    console.print(_totals_table(report, doubled))
    if "saved_bytes" in report["totals"]:
        console.print(_memory_table(report, doubled))
    _print_claims(console, report["claims"])
    for note in report["notes"]:
        if rf or not note.startswith("receptive fields: "):
            console.print(f"note: {note}")


def _print_header(console: Console, report: dict[str, Any]) -> None:
    vals = ", ".join(f"{k}={v}" for k, v in report["values"]["at"].items())
    batch = report.get("batch")
    spec_symbols = [s for s in report["symbols"] if s != batch]
    head = f"{report['net']}  ({report['spec'] or '<input>'}): counts per sample, exact in {', '.join(spec_symbols)}"
    if batch:
        m = report["memory"]
        head += f"; memory in bytes for a batch of {batch} ({m['dtype']}, {m['optimizer']})"
    console.print(Text(head, style="bold"))
    if report["assumptions"]:
        console.print(f"assuming {', '.join(report['assumptions'])}; values in use: {vals}")
    else:
        console.print(f"values in use: {vals}")
    console.print(f"totals: {report['convention']['text']}")


def _cell(formula: str | None, value: int | None) -> Text | str:
    """A layer's count: blank when zero, the formula, and its value when the formula is not a number;
    "-" for a metric not modelled under the options in use."""
    if formula is None or value is None:
        return "-"
    if formula == "0":
        return ""
    if formula == str(value):
        return formula
    return Text.assemble(formula, (f" = {value:,}", "dim"))


def _rf_cell(formulas: dict[str, list[str]] | None, values: dict[str, list[int | str]] | None) -> str:
    """`435 / 32 / -217`: size, jump and start, one number per part when both axes agree (else h×w);
    a short formula is followed by its value, a long one is left to `--json`. Blank for a tensor no
    input pixel reaches."""
    if formulas is None or values is None:
        return ""
    parts = []
    for part in RF_PARTS:
        axes = [f if f == str(v) else f"{f} = {v}" if len(f) <= RF_FORMULA_WIDTH else str(v)
                for f, v in zip(formulas[part], values[part])]
        parts.append(axes[0] if axes[0] == axes[1] else "×".join(axes))
    return " / ".join(parts)


def _layer_table(report: dict[str, Any], memory: bool, rf: bool) -> Table:
    table = Table(title_justify="left", show_lines=False)
    for col in ("layer", "op", "line"):
        table.add_column(col, justify="right" if col == "line" else "left", no_wrap=True)
    cols = ["output", "weights", "biases", "BN params", "outputs", "connections"]
    cols += ["saved bytes", "peak bytes"] if memory else []
    cols += ["receptive field"] if rf else []
    for col in cols:
        table.add_column(col, overflow="fold")
    metrics = SHOWN_METRICS + (SHOWN_MEMORY if memory else ())
    for row, v in zip(report["layers"], report["values"]["layers"]):
        at = " = " + "×".join(map(str, v["out_shape"]))
        shape = Text.assemble("[" + ", ".join(row["out_shape"]) + "]", (at, "dim"))
        cells: list[Text | str] = [_cell(row[m], v[m]) for m in metrics]
        if rf:
            cells.append(_rf_cell(row["rf"], v["rf"]))
        table.add_row(row["name"], row["op"], str(row["line"]), shape, *cells)
    return table


def _totals_table(report: dict[str, Any], doubled: bool) -> Table:
    totals = Table(title="totals", title_justify="left")
    _columns(totals, doubled)
    for m, e in report["totals"].items():
        if m in MEMORY_ROWS or m == "rf":
            continue
        row = [m, e, f"{report['values']['totals'][m]:,}"]
        if doubled:
            row += [report["doubled"][m], f"{report['values']['doubled'][m]:,}", report["ratios"][m] or "-"]
        totals.add_row(*row)
    return totals


def _memory_table(report: dict[str, Any], doubled: bool) -> Table:
    from netdsl.passes.memory_model import human_bytes  # SymPy's: count has it loaded by now

    m = report["memory"]
    table = Table(title=f"memory in bytes, for a batch of {m['batch']} ({m['dtype']}; train_bytes with "
                        f"{m['optimizer']})", title_justify="left")
    _columns(table, doubled)
    for metric in MEMORY_ROWS:
        if report["totals"][metric] is None:  # not modelled here: the note says why
            table.add_row(metric, "not modelled (see the note)", "-", *(["-"] * 3 if doubled else []))
            continue
        row = [metric, report["totals"][metric], human_bytes(report["values"]["totals"][metric])]
        if doubled:
            here = report["values"]["ratios"][metric]
            row += [report["doubled"][metric], human_bytes(report["values"]["doubled"][metric]),
                    report["ratios"][metric] or ("-" if here is None else f"{here:g} here")]
        table.add_row(*row)
    return table


def _columns(table: Table, doubled: bool) -> None:
    table.add_column("metric")
    table.add_column("formula", overflow="fold")
    table.add_column("value", justify="right")
    if doubled:
        table.add_column("at 2H x 2W", overflow="fold")
        table.add_column("value", justify="right")
        table.add_column("ratio", justify="right")


def _print_claims(console: Console, claims: list[dict[str, Any]]) -> None:
    if claims:
        console.print(Text("claims", style="bold"))
    for c in claims:
        where = f"{c['file'] or '<input>'}:{c['line']}"
        if c["holds"]:
            console.print(Text(f"  ✓ {where}: {c['claim']}", style="green"))
            continue
        console.print(Text(f"  ✗ {where}: {c['claim']}", style="red"))
        console.print(f"      claimed − counted = {c['difference']}")
        if c["counterexample"]:
            at = ", ".join(f"{k}={v}" for k, v in {**c["counterexample"], **c["at"]}.items())
            doubled = " (then doubled: a 2H x 2W input)" if c["doubled"] else ""
            console.print(f"      e.g. at {at}{doubled}: claimed {c['claimed_value']:,}, counted {c['counted_value']:,}")
        else:
            console.print("      netdsl could not decide this claim, and found no assignment where the sides differ")
        if c["values_in_use"]:
            console.print(f"      at the values in use: claimed {c['values_in_use']['claimed']:,}, "
                          f"counted {c['values_in_use']['counted']:,}")
