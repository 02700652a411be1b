"""`netdsl solve SPEC`: values for the open arguments (`?`) that make every annotated shape hold.

Exit status: 0 when there is one solution, several, or nothing to solve; 1 when there is none;
2 for an error (raised as NetdslError). Never imports torch.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from netdsl.api import load
from netdsl.commands.common import add_set_argument
from netdsl.commands.count import assumptions
from netdsl.errors import NetdslError
from netdsl.parsing import parse_text
from netdsl.values import parse_sets

if TYPE_CHECKING:
    from netdsl.passes.solve import SolveResult


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Find the values of the spec's open integer arguments (`padding=?`) that make every shape "
                     "annotation (`t: [C, H/2, W/2] = ...`) hold for every admissible input size, within PyTorch's "
                     "rules. Parameters are fixed at their defaults or --set values; H and W stay symbolic.")
    p.add_argument("spec", help="path to a .net spec with open arguments")
    add_set_argument(p, "fix a parameter, e.g. --set k=4 (repeatable)")
    p.add_argument("--max-value", type=int, default=None, metavar="N",
                   help="largest value tried where PyTorch sets no bound (paddings, strides...); default 16")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def solve_report(text: str, path: str | None, overrides: dict[str, int],
                 max_value: int | None = None) -> tuple[dict[str, Any], SolveResult]:
    """The JSON-able report of `netdsl solve` and the SolveResult."""
    # SymPy's passes when a solve runs, so `netdsl --help` (every command's module) stays fast
    from netdsl.passes.solve import DEFAULT_MAX_VALUE, MAX_VALUE_LIMIT, solve

    if max_value is not None and not 0 <= max_value <= MAX_VALUE_LIMIT:
        raise NetdslError(f"--max-value {max_value} is out of range", hint=f"use a value from 0 to {MAX_VALUE_LIMIT}")
    try:
        res = solve(parse_text(text, path), overrides, DEFAULT_MAX_VALUE if max_value is None else max_value)
    except NetdslError as e:
        raise e.with_source(path, text) from None
    graph = res.env.graph
    dims = {d.name for d in graph.dims}
    report: dict[str, Any] = {
        "net": graph.name, "spec": path,
        "values": {k: v for k, v in res.env.values.items() if k not in dims},
        "assumptions": assumptions(graph, text),
        "holes": [{"name": h.key, "tensor": h.tensor, "layer": h.layer, "op": h.op, "arg": h.arg,
                   "line": h.span.line, "column": h.span.column, "statement_line": h.line,
                   "range": [h.low, h.high], "rule": h.rule} for h in res.holes],
        "status": res.status,
        "count": len(res.solutions),
        "solutions": [{h.key: v for h, v in zip(res.holes, sol)} for sol in res.solutions[:100]],
        "output_shapes": res.output_shapes,
        "reason": res.reason,
        "failed_at": res.failed_at,
        "near_misses": [{"values": vals, "shape": shape} for vals, shape in res.near_misses],
        "partial": res.partial,
    }
    return report, res


def _print(report: dict[str, Any]) -> None:
    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 160
    console = Console(highlight=False, width=max(width, 100))
    vals = ", ".join(f"{k}={v}" for k, v in report["values"].items())
    console.print(Text(f"{report['net']}  ({report['spec'] or '<input>'}) at {vals}", style="bold"))
    console.print("every annotation must hold for every input size"
                  + (f" with {', '.join(report['assumptions'])}" if report["assumptions"] else "")
                  + ", within PyTorch's rules")
    if not report["holes"]:
        console.print("the spec leaves no argument open (`?`)")
    status = report["status"]
    sols = report["solutions"]
    table = Table(title_justify="left")
    for col in ("open argument", "op", "written at", "from line", "searched"):
        table.add_column(col)
    if status in ("unique", "several"):
        table.add_column("value" if status == "unique" else "values")
    for h in report["holes"]:
        row = [h["name"], h["op"], f"{h['line']}:{h['column']}", str(h["statement_line"]),
               f"{h['range'][0]}..{h['range'][1]}"]
        if status in ("unique", "several"):
            seen = sorted({s[h["name"]] for s in sols})
            row.append(", ".join(map(str, seen)))
        table.add_row(*row)
    if report["holes"]:
        console.print(table)
    if status == "unique":
        console.print(Text("one solution", style="green"))
    elif status == "several":
        console.print(Text(f"{report['count']} solutions", style="yellow"))
        for s in sols[:10]:
            console.print("  " + ", ".join(f"{k}={v}" for k, v in s.items()))
        if report["count"] > 10:
            console.print(f"  ... and {report['count'] - 10} more (--json lists up to 100)")
    elif status == "none":
        console.print(Text(f"no solution: {report['reason']}", style="red"))
        for m in report["near_misses"][:4]:
            at = ", ".join(f"{k}={v}" for k, v in m["values"].items())
            console.print(f"  {at} gives [{', '.join(m['shape'])}]")
        if any(report["partial"]):
            console.print(f"the open arguments before '{report['failed_at']}' are solved by:")
            for p in report["partial"][:5]:
                console.print("  " + ", ".join(f"{k}={v}" for k, v in p.items()))
    else:
        console.print(Text("every annotation holds", style="green"))
    for h in report["holes"]:
        if "no upper bound" in h["rule"]:
            console.print(Text(f"note: {h['arg']} of {h['op']}: {h['rule']}", style="dim"))
            break


def run(args: argparse.Namespace) -> int:
    text, path = load(args.spec)
    report, res = solve_report(text, path, parse_sets(args.sets), args.max_value)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print(report)
    return 1 if res.status == "none" else 0
