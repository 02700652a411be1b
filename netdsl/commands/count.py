"""`netdsl count SPEC`: exact symbolic weights, outputs, connections, memory in bytes and
receptive fields; checks claims.

Exit status: 0, or 1 when a claim fails (or cannot be decided), 2 for an error (raised as
NetdslError and rendered by the CLI). Never imports torch; the compiler's passes (SymPy) are
imported when a count runs, as `netdsl --help` imports every command's module.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from netdsl.api import claim_sources, load
from netdsl.commands.common import add_set_argument
from netdsl.commands.count_print import print_report
from netdsl.errors import NetdslError, source_text
from netdsl.values import parse_sets

if TYPE_CHECKING:
    from netdsl import ir
    from netdsl.concrete import ConcreteGraph, Tensor
    from netdsl.passes.claims import ClaimResult
    from netdsl.passes.counts import Convention, CountResult
    from netdsl.passes.memory_model import MemoryOptions
    from netdsl.passes.receptive import RF, RFResult

DTYPE_NAMES = ("fp32", "bf16", "fp16")  # memory_model.DTYPES, without importing SymPy for --help
OPTIMIZER_NAMES = ("adam", "sgd", "sgd-momentum", "none")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Exact per-sample counts of weights, biases, BatchNorm parameters, outputs and connections, "
                     "the bytes a batch of N needs (saved for backward, peak in inference, parameters, training) "
                     "and receptive fields, per layer and in total, as formulas in the spec's parameters, input "
                     "size H, W and the batch N; checks the claims of the spec and of SPEC.claims next to it.")
    p.add_argument("spec", help="path to a .net spec")
    add_set_argument(p, "override a parameter or input size for the values shown, or the batch N "
                        "(default 1) of the memory metrics (repeatable)")
    p.add_argument("--double-resolution", action="store_true",
                   help="also give the totals at input size 2H x 2W and each metric's ratio")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--strict", action="store_true",
                   help="a tensor that nothing reads (a dead branch, an unused input) is an error, not a warning")
    p.add_argument("--claims", action="append", default=[], metavar="FILE",
                   help="also check the claims in FILE (SPEC.claims next to the spec is read automatically)")
    m = p.add_argument_group("memory and receptive fields")
    m.add_argument("--dtype", choices=DTYPE_NAMES, default="fp32",
                   help="fp32, or the bytes torch.autocast to bf16/fp16 would save and hold (default fp32)")
    m.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="adam",
                   help="the optimizer whose state train_bytes counts (default adam)")
    m.add_argument("--memory", action="store_true", help="per-layer saved and peak bytes in the layer table")
    m.add_argument("--rf", action="store_true",
                   help="a receptive-field column (size, jump, start per axis) and the outputs' fields")
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


class _Text:
    """`str` of expressions, memoised: deep networks repeat expressions; printing them is the slow part."""

    def __init__(self, counts: CountResult) -> None:
        self.counts = counts
        self.cache: dict[Any, str] = {}

    def __call__(self, x: Any) -> str:
        if x not in self.cache:
            self.cache[x] = str(x)
        return self.cache[x]

    def rf(self, rf: RF | None) -> tuple[dict[str, list[str]] | None, dict[str, list[int | str]] | None]:
        """A receptive field as JSON: formulas (user symbols) and values (ints, or "a/b"); None
        for a tensor no input pixel reaches (a learned tensor)."""
        from netdsl.passes.count_memory import rational_value

        if rf is None:
            return None, None
        c = self.counts
        parts = {"size": rf.size, "jump": rf.jump, "start": rf.start}
        return ({k: [self(c.show(x)) for x in v] for k, v in parts.items()},
                {k: [rational_value(c.value(c.show(x))) for x in v] for k, v in parts.items()})


def count_report(text: str, path: str | None, overrides: dict[str, int], convention: Convention | None = None,
                 doubled: bool = False, claim_files: list[str] | tuple[str, ...] = (), strict: bool = False,
                 options: MemoryOptions | None = None, analysis: bool = True, layer_memory: bool = True,
                 rf: bool = True) -> tuple[dict[str, Any], CountResult, list[ClaimResult]]:
    """The JSON-able report of `netdsl count`, the CountResult and the claim results; `strict`: a
    tensor nothing reads is an error (else a warning, in "warnings", each also printed to stderr).
    `overrides` may set the batch (`N`); `options` pick the memory metrics' dtype and optimizer;
    `analysis=False` leaves the memory metrics and receptive fields out (the report before them);
    `layer_memory=False` the per-layer memory metrics, `rf=False` the receptive fields (the text
    report shows them only when asked: the formulas of deep networks take a while to print)."""
    from netdsl.passes.claims import check_claims
    from netdsl.passes.count_memory import LAYER_MEMORY_METRICS, MEMORY_METRICS, analyse_with_batch
    from netdsl.passes.counts import METRICS, Convention, count_layers
    from netdsl.passes.memory_model import MemoryOptions

    convention = convention or Convention()
    options = options or MemoryOptions()
    cg, batch_value = analyse_with_batch(text, path, overrides)
    warnings = warn_unused(cg, strict)
    counts = count_layers(cg, batch_value)
    graph = counts.shapes.graph
    assert graph is not None, "analyse_text always lowers the spec"
    claims = check_claims(counts, claim_sources(counts.shapes.spec, text, path, claim_files))
    sh = counts.shapes
    s = _Text(counts)
    fields = counts.receptive() if analysis and rf else None
    missing = counts.memory(options).missing if analysis else {}  # not modelled under these options
    memory = [m for m in LAYER_MEMORY_METRICS if analysis and layer_memory]
    layers, layer_values = _layers(counts, options, memory, missing, fields, s)
    shown = METRICS + (MEMORY_METRICS if analysis else ())
    metrics = tuple(m for m in shown if m not in missing)
    totals = {m: counts.total(m, convention, options=options) for m in metrics}
    report: dict[str, Any] = {
        "net": graph.name, "spec": path,
        "symbols": [*counts.env.symbols, counts.batch.name], "batch": counts.batch.name,
        "assumptions": assumptions(graph, text),
        "convention": {"text": convention.text(), "biases": convention.biases, "batchnorm": convention.batchnorm,
                       "activations": convention.activations, "merges": convention.merges,
                       "changes": {m: convention.describe(m) for m in ("weights", "outputs", "connections")}},
        "memory": {"batch": counts.batch.name, "dtype": options.dtype, "optimizer": options.optimizer},
        "inputs": [_tensor(counts, t) for t in counts.shapes.inputs],
        "outputs": [_tensor(counts, t) for t in counts.shapes.outputs],
        "layers": layers,
        "totals": {m: s(totals[m]) if m in totals else None for m in shown},
    }
    values: dict[str, Any] = {"at": {**counts.env.values, counts.batch.name: batch_value},
                              "totals": {m: int(counts.value(totals[m])) if m in totals else None for m in shown}}
    if fields is not None:
        out_rf = {name: s.rf(x) for name, x in fields.outputs.items()}
        report["totals"]["rf"] = {name: f for name, (f, _) in out_rf.items()}
        values["totals"]["rf"] = {name: v for name, (_, v) in out_rf.items()}
    if doubled:
        try:
            _add_doubled(report, values, counts, convention, options, shown, totals, s)
        except NetdslError as e:
            raise e.with_source(path, text) from None
    values["layers"] = layer_values
    report["values"] = values
    report["claims"] = [_claim_json(r) for r in claims]
    report["notes"] = (list(sh.notes) + [f"{m}: {why}" for m, why in missing.items()]
                       + ([f"receptive fields: {n}" for n in fields.notes] if fields is not None else []))
    report["warnings"] = warnings
    return report, counts, claims


def _layers(counts: CountResult, options: MemoryOptions, memory: list[str], missing: dict[str, str],
            fields: RFResult | None, s: _Text) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each layer's formulas and values: the counts, the `memory` metrics (None where `missing`)
    and, with `fields`, its receptive field."""
    from netdsl.passes.counts import METRICS

    layers, layer_values = [], []
    for i, layer in enumerate(counts.layers):
        exprs = {m: counts.layer_metric(layer, m) for m in METRICS}
        exprs.update({m: counts.layer_memory(i, m, options) for m in memory if m not in missing})
        layers.append({"name": layer.name, "op": layer.op, "line": layer.line,
                       "out_shape": [s(counts.show(x)) for x in layer.out_shape], **{m: s(e) for m, e in exprs.items()}})
        layer_values.append({"name": layer.name, "out_shape": counts.shapes.at(layer.out_shape),
                             **{m: int(counts.value(e)) for m, e in exprs.items()}})
        for row in (layers[-1], layer_values[-1]):
            row.update(dict.fromkeys(m for m in memory if m in missing))
        if fields is not None:
            layers[-1]["rf"], layer_values[-1]["rf"] = s.rf(fields.layers[i])
    return layers, layer_values


def _add_doubled(report: dict[str, Any], values: dict[str, Any], counts: CountResult, convention: Convention,
                 options: MemoryOptions, shown: tuple[str, ...], totals: dict[str, Any], s: _Text) -> None:
    """The totals at 2H x 2W, their values and ratios (None for a metric not modelled)."""
    from netdsl.passes.counts import METRICS

    dbl = {m: counts.total(m, convention, doubled=True, options=options) for m in totals}
    dbl_values = {m: int(counts.value(e)) for m, e in dbl.items()}
    ratios = {m: counts.ratio(m, convention) if m in METRICS
              else _memory_ratio(totals[m], dbl[m], values["totals"][m], dbl_values[m]) for m in totals}
    report["ratios"] = {m: None if ratios.get(m) is None else s(ratios[m]) for m in shown}
    report["doubled"] = {m: s(dbl[m]) if m in dbl else None for m in shown}
    values["doubled"] = {m: dbl_values.get(m) for m in shown}
    values["ratios"] = {m: None if not values["totals"][m] or m not in dbl_values
                        else round(dbl_values[m] / values["totals"][m], 4) for m in shown}


def _memory_ratio(base: Any, doubled: Any, base_value: int, doubled_value: int) -> Any:
    """doubled / undoubled when it is a constant, else None: bytes have terms that do not grow with
    the input (BatchNorm's statistics, parameters), so their ratio is a rational function, which
    says less than its value at the values in use (`values.ratios`)."""
    import sympy as sp

    if base_value == 0:
        return None
    c = sp.Rational(doubled_value, base_value)
    return c if sp.expand(doubled - c * base) == 0 else None


def warn_unused(cg: ConcreteGraph, strict: bool) -> list[str]:
    """Each tensor nothing reads, printed to stderr as a located warning (`strict`: the first is an
    error); their messages, for the JSON report."""
    from netdsl.passes.unused import check_unused

    found = check_unused(cg, strict)
    for u in found:
        print(u.render(*cg.source), file=sys.stderr)
    return [u.message for u in found]


def run(args: argparse.Namespace) -> int:
    from netdsl.passes.count_memory import memory_options
    from netdsl.passes.counts import Convention

    text, path = load(args.spec)
    overrides = parse_sets(args.sets)
    convention = Convention(biases=args.biases, batchnorm=args.batchnorm, activations=args.activations,
                            merges=args.merges)
    options = memory_options(args.dtype, args.optimizer)
    report, _, claims = count_report(text, path, overrides, convention, args.double_resolution, args.claims,
                                     getattr(args, "strict", False), options,
                                     layer_memory=args.json or args.memory, rf=args.json or args.rf)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_report(report, args.double_resolution, memory=args.memory, rf=args.rf)
    return 0 if all(c.holds for c in claims) else 1
