"""`netdsl count SPEC`: exact symbolic weights, outputs and connections; checks claims.

Exit status: 0, or 1 when a claim fails (or cannot be decided), 2 for an error (raised as
NetdslError and rendered by the CLI). Never imports torch; the compiler's passes (SymPy) are
imported when a count runs, as `netdsl --help` imports every command's module.
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

from netdsl.api import claim_sources, load
from netdsl.commands.common import add_set_argument
from netdsl.errors import NetdslError, source_text
from netdsl.values import parse_sets

if TYPE_CHECKING:
    from netdsl import ir
    from netdsl.concrete import ConcreteGraph, Tensor
    from netdsl.passes.claims import ClaimResult
    from netdsl.passes.counts import Convention, CountResult

SHOWN_METRICS = ("weights", "biases", "norm_params", "outputs", "connections")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Exact per-sample counts of weights, biases, BatchNorm parameters, outputs and connections, "
                     "per layer and in total, as formulas in the spec's parameters and input size H, W; "
                     "checks the claims of the spec and of SPEC.claims next to it.")
    p.add_argument("spec", help="path to a .net spec")
    add_set_argument(p, "override a parameter or input size for the values shown (repeatable)")
    p.add_argument("--double-resolution", action="store_true",
                   help="also give the totals at input size 2H x 2W and each metric's ratio")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--strict", action="store_true",
                   help="a tensor that nothing reads (a dead branch, an unused input) is an error, not a warning")
    p.add_argument("--claims", action="append", default=[], metavar="FILE",
                   help="also check the claims in FILE (SPEC.claims next to the spec is read automatically)")
    c = p.add_argument_group("convention of the totals (default: the seed's Question 3)")
    c.add_argument("--biases", action="store_true", default=False, help="weights include conv biases")
    c.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
                   help="weights include BatchNorm parameters, connections count BatchNorm units; "
                        "--no-batchnorm leaves BatchNorm out of outputs")
    c.add_argument("--activations", action="store_true", default=False,
                   help="outputs and connections include activation (and dropout) layers")
    c.add_argument("--merges", action="store_true", default=False,
                   help="outputs and connections include cat/add merges")


def assumptions(graph: ir.Graph | ir.Spec, text: str) -> list[str]:
    """The header's annotations and `where` conditions as written, for the report."""
    from netdsl.passes.symbols import conditions_of

    out = [f"{p.name}: {p.annotation}" for p in graph.params if p.annotation]
    out += [source_text(text, c.span) for c in conditions_of(graph)]
    return out


def _claim_json(r: ClaimResult) -> dict[str, Any]:
    c = r.source.claim
    return {
        "file": r.source.path, "line": c.span.line, "column": c.span.column, "claim": r.source.snippet(),
        "metric": r.metric, "doubled": r.doubled, "at": {k: str(v) for k, v in r.at.items()},
        "convention": r.convention.describe(r.metric), "status": r.status, "holds": r.holds,
        "claimed": str(r.claimed), "counted": str(r.counted),
        "difference": None if r.difference is None else str(r.difference),
        "counterexample": r.counterexample or None,
        "claimed_value": r.claimed_value, "counted_value": r.counted_value,
        "values_in_use": {"claimed": r.values_in_use[0], "counted": r.values_in_use[1]} if r.values_in_use else None,
    }


def _tensor(counts: CountResult, t: Tensor) -> dict[str, Any]:
    return {"name": t.name, "shape": [str(counts.show(x)) for x in t.shape], "at": list(t.at)}


def count_report(text: str, path: str | None, overrides: dict[str, int], convention: Convention | None = None,
                 doubled: bool = False, claim_files: list[str] | tuple[str, ...] = (), strict: bool = False,
                 ) -> tuple[dict[str, Any], CountResult, list[ClaimResult]]:
    """The JSON-able report of `netdsl count`, the CountResult and the claim results; `strict`: a
    tensor nothing reads is an error (else a warning, in "warnings", each also printed to stderr)."""
    from netdsl.passes.claims import check_claims
    from netdsl.passes.counts import METRICS, Convention, count_layers
    from netdsl.passes.front import analyse_text

    convention = convention or Convention()
    cg = analyse_text(text, path, overrides)
    warnings = warn_unused(cg, strict)
    counts = count_layers(cg)
    graph = counts.shapes.graph
    assert graph is not None, "analyse_text always lowers the spec"
    claims = check_claims(counts, claim_sources(counts.shapes.spec, text, path, claim_files))
    sh = counts.shapes
    layers, layer_values = [], []
    text_of: dict[Any, str] = {}  # deep networks repeat expressions; printing them is the slow part

    def s(x: Any) -> str:
        if x not in text_of:
            text_of[x] = str(x)
        return text_of[x]

    for layer in counts.layers:
        exprs = {m: counts.layer_metric(layer, m) for m in METRICS}
        layers.append({"name": layer.name, "op": layer.op, "line": layer.line,
                       "out_shape": [s(counts.show(x)) for x in layer.out_shape], **{m: s(e) for m, e in exprs.items()}})
        layer_values.append({"name": layer.name, "out_shape": sh.at(layer.out_shape),
                             **{m: int(counts.value(e)) for m, e in exprs.items()}})
    totals = {m: counts.total(m, convention) for m in METRICS}
    report: dict[str, Any] = {
        "net": graph.name, "spec": path,
        "symbols": list(counts.env.symbols), "assumptions": assumptions(graph, text),
        "convention": {"text": convention.text(), "biases": convention.biases, "batchnorm": convention.batchnorm,
                       "activations": convention.activations, "merges": convention.merges,
                       "changes": {m: convention.describe(m) for m in ("weights", "outputs", "connections")}},
        "inputs": [_tensor(counts, t) for t in counts.shapes.inputs],
        "outputs": [_tensor(counts, t) for t in counts.shapes.outputs],
        "layers": layers,
        "totals": {m: str(e) for m, e in totals.items()},
    }
    values: dict[str, Any] = {"at": dict(counts.env.values),
                              "totals": {m: int(counts.value(e)) for m, e in totals.items()}}
    if doubled:
        try:
            dbl = {m: counts.total(m, convention, doubled=True) for m in METRICS}
        except NetdslError as e:
            raise e.with_source(path, text) from None
        report["doubled"] = {m: str(e) for m, e in dbl.items()}
        report["ratios"] = {m: None if counts.ratio(m, convention) is None else str(counts.ratio(m, convention))
                            for m in METRICS}
        values["doubled"] = {m: int(counts.value(e)) for m, e in dbl.items()}
    values["layers"] = layer_values
    report["values"] = values
    report["claims"] = [_claim_json(r) for r in claims]
    report["notes"] = list(sh.notes)
    report["warnings"] = warnings
    return report, counts, claims


def warn_unused(cg: ConcreteGraph, strict: bool) -> list[str]:
    """Each tensor nothing reads, printed to stderr as a located warning (`strict`: the first is an
    error); their messages, for the JSON report."""
    from netdsl.passes.unused import check_unused

    found = check_unused(cg, strict)
    for u in found:
        print(u.render(*cg.source), file=sys.stderr)
    return [u.message for u in found]


def _print(report: dict[str, Any], doubled: bool) -> None:
    width = shutil.get_terminal_size((200, 24)).columns if sys.stdout.isatty() else 200
    console = Console(width=max(width, 100), highlight=False)
    _print_header(console, report)
    console.print(_layer_table(report))
    for kind in ("inputs", "outputs"):
        if len(report[kind]) > 1 or kind == "outputs":
            console.print(f"{kind}: " + "; ".join(f"{t['name']} [{', '.join(t['shape'])}] = {'×'.join(map(str, t['at']))}"
                                               for t in report[kind]))
    console.print(Text("each layer's own counts are shown; the totals add up the layers their convention includes",
                       style="dim"))
    console.print(_totals_table(report, doubled))
    _print_claims(console, report["claims"])
    for note in report["notes"]:
        console.print(f"note: {note}")


def _print_header(console: Console, report: dict[str, Any]) -> None:
    vals = ", ".join(f"{k}={v}" for k, v in report["values"]["at"].items())
    console.print(Text(f"{report['net']}  ({report['spec'] or '<input>'}): counts per sample, exact in "
                       f"{', '.join(report['symbols'])}", style="bold"))
    if report["assumptions"]:
        console.print(f"assuming {', '.join(report['assumptions'])}; values in use: {vals}")
    else:
        console.print(f"values in use: {vals}")
    console.print(f"totals: {report['convention']['text']}")


def _cell(formula: str, value: int) -> Text | str:
    """A layer's count: blank when zero, the formula, and its value when the formula is not a number."""
    if formula == "0":
        return ""
    if formula == str(value):
        return formula
    return Text.assemble(formula, (f" = {value:,}", "dim"))


def _layer_table(report: dict[str, Any]) -> Table:
    table = Table(title_justify="left", show_lines=False)
    for col in ("layer", "op", "line"):
        table.add_column(col, justify="right" if col == "line" else "left", no_wrap=True)
    for col in ("output", "weights", "biases", "BN params", "outputs", "connections"):
        table.add_column(col, overflow="fold")
    vl = {v["name"]: v for v in report["values"]["layers"]}
    for row in report["layers"]:
        v = vl[row["name"]]
        at = " = " + "×".join(map(str, v["out_shape"]))
        shape = Text.assemble("[" + ", ".join(row["out_shape"]) + "]", (at, "dim"))
        table.add_row(row["name"], row["op"], str(row["line"]), shape, *[_cell(row[m], v[m]) for m in SHOWN_METRICS])
    return table


def _totals_table(report: dict[str, Any], doubled: bool) -> Table:
    totals = Table(title="totals", title_justify="left")
    totals.add_column("metric")
    totals.add_column("formula", overflow="fold")
    totals.add_column("value", justify="right")
    if doubled:
        totals.add_column("at 2H x 2W", overflow="fold")
        totals.add_column("value", justify="right")
        totals.add_column("ratio", justify="right")
    for m, e in report["totals"].items():
        row = [m, e, f"{report['values']['totals'][m]:,}"]
        if doubled:
            row += [report["doubled"][m], f"{report['values']['doubled'][m]:,}", report["ratios"][m] or "-"]
        totals.add_row(*row)
    return totals


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


def run(args: argparse.Namespace) -> int:
    from netdsl.passes.counts import Convention

    text, path = load(args.spec)
    overrides = parse_sets(args.sets)
    convention = Convention(biases=args.biases, batchnorm=args.batchnorm, activations=args.activations,
                            merges=args.merges)
    report, _, claims = count_report(text, path, overrides, convention, args.double_resolution, args.claims,
                                     getattr(args, "strict", False))
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print(report, args.double_resolution)
    return 0 if all(c.holds for c in claims) else 1
