"""`netdsl build`: compile a spec, show per-layer shapes and parameters."""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from netdsl.api import load
from netdsl.commands.common import add_set_argument
from netdsl.commands.count import warn_unused
from netdsl.concrete import Layer, Merge
from netdsl.errors import NetdslError
from netdsl.freeze import Freeze, parse_freeze
from netdsl.limits import DEFAULT_MAX_BYTES
from netdsl.values import parse_sets
from netdsl.weights import load_weights


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="path to a .net spec")
    add_set_argument(p, "override a declared parameter or input size (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--emit-ir", action="store_true", help="print the typed IR as JSON and stop")
    p.add_argument("--max-memory", type=float, metavar="GIB",
                   help="refuse networks estimated to need more memory than this (default 8 GiB)")
    p.add_argument("--freeze", metavar="N|NAME[,NAME]",
                   help="freeze the first N top-level statements, or statements, labels and blocks by name")
    p.add_argument("--freeze-bn", choices=("train", "eval"),
                   help="frozen BatchNorm layers: keep updating their statistics (train, the default) or not (eval)")
    p.add_argument("--strict", action="store_true",
                   help="a tensor that nothing reads (a dead branch, an unused input) is an error, not a warning")
    p.add_argument("--weights", metavar="PATH",
                   help="load pretrained weights after building: darknet .weights, or a .pt/.pth state_dict "
                        "or netdsl checkpoint")


def build_report(text: str, path: str | None, overrides: dict[str, int],
                 max_bytes: int | None = DEFAULT_MAX_BYTES, freeze: Freeze | None = None,
                 strict: bool = False) -> tuple[dict[str, Any], Any]:
    """The JSON-able report of a build and the compiled module; `strict`: a tensor nothing reads
    is an error (else a warning, in the report's "warnings", each also printed to stderr)."""
    from netdsl.backends.torch_build import compile_spec  # torch (and SymPy) only when a build runs

    cg, model = compile_spec(text, path, overrides, max_bytes, freeze)
    warnings = warn_unused(cg, strict)
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    layers = []
    for layer in cg.walk():
        if isinstance(layer, Merge) and layer.path in params:  # a learned tensor: the parameter itself
            p = params[layer.path]
            layers.append({"name": layer.path, "op": layer.op.name, "line": layer.line, "out_shape": list(layer.out_at),
                           "out_shape_symbolic": [str(x) for x in cg.show(layer.out_shape)],
                           "params": p.numel(), **({"frozen": True} if not p.requires_grad else {}),
                           # `@batch_axis`: stored as [1, *dims], so the state_dict shape differs
                           **({"stored_shape": list(p.shape)} if tuple(p.shape) != layer.out_at else {})})
            continue
        if isinstance(layer, Merge) and layer.path not in modules:
            continue  # cat and add hold no module; detect does
        attrs = layer.attrs if isinstance(layer, Layer) else frozenset()
        layers.append({
            "name": layer.path,
            "op": layer.op.name,
            "line": layer.line,
            "out_shape": list(layer.out_at),
            "out_shape_symbolic": [str(x) for x in cg.show(layer.out_shape)],
            "params": sum(p.numel() for p in modules[layer.path].parameters()),
            **({"attrs": sorted(attrs)} if attrs else {}),
            **({"frozen": True} if any(not p.requires_grad for p in modules[layer.path].parameters()) else {}),
        })

    def tensor(t: Any) -> dict[str, Any]:
        return {"name": t.name, "shape": list(t.at), "shape_symbolic": [str(x) for x in cg.show(t.shape)]}

    report = {
        "net": cg.name,
        "spec": path,
        "values": cg.values,
        "inputs": [tensor(t) for t in cg.inputs],
        "outputs": [tensor(t) for t in cg.outputs],
        "input_shape": list(cg.inputs[0].at),
        "input_shape_symbolic": [str(x) for x in cg.show(cg.input_shape)],
        "layers": layers,
        "total_params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "frozen_params": sum(p.numel() for p in model.parameters() if not p.requires_grad),
        "buffers": sum(b.numel() for b in model.buffers()),
        "notes": cg.notes,
        "warnings": warnings,
    }
    if len(cg.outputs) == 1:
        report["output_shape"] = list(cg.outputs[0].at)
        report["output_shape_symbolic"] = [str(x) for x in cg.show(cg.output_shape)]
    return report, model


def _print_table(report: dict[str, Any]) -> None:
    console = Console()
    vals = ", ".join(f"{k}={v}" for k, v in report["values"].items())
    table = Table(title=f"{report['net']}  ({vals})", title_justify="left")
    table.add_column("layer")
    table.add_column("op")
    table.add_column("line", justify="right")
    table.add_column("output shape")
    table.add_column("at values", justify="right")
    table.add_column("params", justify="right")
    for inp in report["inputs"]:
        table.add_row("input" if len(report["inputs"]) == 1 else f"input {inp['name']}", "", "",
                      "[" + ", ".join(inp["shape_symbolic"]) + "]", "×".join(map(str, inp["shape"])), "")
    for layer in report["layers"]:
        table.add_row(layer["name"], layer["op"], str(layer["line"]),
                      "[" + ", ".join(layer["out_shape_symbolic"]) + "]",
                      "×".join(map(str, layer["out_shape"])),
                      (f"{layer['params']:,}" + (" frozen" if layer.get("frozen") else "")) if layer["params"] else "")
    console.print(table)
    for out in report["outputs"]:
        label = "output" if len(report["outputs"]) == 1 else f"output {out['name']}"
        console.print(f"{label}: [{', '.join(out['shape_symbolic'])}] = [N, {', '.join(map(str, out['shape']))}]")
    frozen = f"frozen {report['frozen_params']:,}; " if report["frozen_params"] else ""
    console.print(f"total parameters: {report['total_params']:,}  (trainable {report['trainable_params']:,}; "
                  f"{frozen}buffers {report['buffers']:,})")
    for note in report["notes"]:
        console.print(f"note: {note}")


def max_memory_bytes(gib: float | None) -> int:
    """`--max-memory GIB` in bytes; a finite, positive number of GiB or a NetdslError naming the flag."""
    if gib is None:
        return DEFAULT_MAX_BYTES
    # `not gib > 0` also catches nan; inf (and 1e400, which float() makes inf) has no byte count
    if not (math.isfinite(gib) and gib > 0):
        raise NetdslError(f"--max-memory {gib}: give a finite, positive number of GiB", hint="e.g. --max-memory 16")
    # a finite but absurd size (1e300 GiB) would overflow to inf in bytes: it means "no limit", so cap it
    return max(1, int(min(gib, 2.0**33) * 2**30))


def run(args: argparse.Namespace) -> int:
    text, path = load(args.spec)
    overrides = parse_sets(args.sets)
    max_bytes = max_memory_bytes(args.max_memory)  # a bad flag is refused even with --emit-ir
    weights = getattr(args, "weights", None)
    if args.emit_ir:
        if weights is not None:
            raise NetdslError("--weights has no effect with --emit-ir, which stops before building",
                              hint="drop one of the two flags")
        from netdsl.passes.front import lower_text  # SymPy only when a command runs

        graph = lower_text(text, path, overrides)
        sys.stdout.write(graph.model_dump_json(indent=2) + "\n")
        return 0
    freeze = parse_freeze(getattr(args, "freeze", None), getattr(args, "freeze_bn", None))
    report, model = build_report(text, path, overrides, max_bytes, freeze, getattr(args, "strict", False))
    if weights is not None:
        load_weights(model, weights)
        report["weights"] = weights
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print_table(report)
        if weights is not None:
            print(f"weights: {weights}")
    return 0
