"""What a `--freeze` request freezes: checks that need the compiler (`netdsl.freeze` holds the request).

Before lowering, a name only a statement inside a graph block has is refused with what to write
instead; after shapes, every name must freeze a layer with parameters.
"""
from __future__ import annotations

from collections.abc import Iterator

from netdsl import ir
from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError
from netdsl.freeze import Freeze
from netdsl.ops import REGISTRY
from netdsl.ops.learned import LEARNED, PARAM
from netdsl.passes.lower import lower


def _calls(spec: ir.Spec) -> Iterator[ir.LayerCall]:
    for a in spec.assigns:
        yield from a.chain
    for b in spec.blocks:
        yield from b.body
        for a in b.assigns:
            yield from a.chain


def check_reachable(spec: ir.Spec, freeze: Freeze) -> None:
    """Before lowering: a name that only a statement inside a graph block has is not one `--freeze`
    takes (its names are the spec's statements, labels and blocks); say what to write instead."""
    top = {a.name for a in spec.assigns} | {b.name for b in spec.blocks} | \
        {c.label.name for c in _calls(spec) if c.label}
    for name in freeze.names:
        if name in top:
            continue
        for b in spec.blocks:
            inner = next((a for a in b.assigns if a.name == name), None)
            if inner is None:
                continue
            callers = [a.name for a in spec.assigns if any(c.op.name == b.name for c in a.chain)]
            hint = f"write --freeze {b.name} (every call of block '{b.name}')"
            hint += f", --freeze {callers[0]} (the statement that calls it)" if callers else ""
            raise NetdslError(f"--freeze {name}: '{name}' is a statement inside graph block '{b.name}' (line "
                              f"{inner.span.line}); --freeze takes the top-level statements, labels and blocks",
                              hint=hint + f", or put @freeze on '{name}' inside the block")


def check_effect(freeze: Freeze, cg: ConcreteGraph) -> None:
    """After shapes: every name given must freeze a layer with parameters; one that freezes none
    (a block whose calls repeat 0 times, a cat or an activation) is an error, not a silent no-op."""
    spec, graph = cg.spec, cg.graph
    assert spec is not None and graph is not None
    has_params = {x.path: (x.counts.weights + x.counts.biases + x.counts.norm_params) != 0 for x in cg.walk()}
    bare = _without_attrs(spec)  # so that what a name freezes is not hidden by the spec's own @freeze
    for name in freeze.names:
        frozen = list(_frozen(lower(bare, cg.env.values, Freeze(names=(name,))).nodes, ""))
        if any(has_params.get(path, False) for path, _ in frozen):
            continue
        kind = ("statement" if any(a.name == name for a in spec.assigns) or any(d.name == name for d in spec.learned)
                else "block" if any(b.name == name for b in spec.blocks) else "label")
        if frozen:
            ops = ", ".join(dict.fromkeys(op for _, op in frozen))
            why = f"{kind} '{name}' has no layer with parameters ({ops})"
        else:
            lines = sorted({c.span.line for c in _calls(spec) if c.op.name == name or (c.label and c.label.name == name)})
            at = f" (line {', '.join(map(str, lines))})" if lines else ""
            why = (f"{kind} '{name}' is not in the network at the values in use: its calls{at} repeat 0 times")
        useful = list(dict.fromkeys(path.split(".")[0].split("(")[0] for path, p in has_params.items() if p))
        shown = ", ".join(useful[:12]) + (f" ... ({len(useful)} in all)" if len(useful) > 12 else "")
        raise NetdslError(f"--freeze {name} freezes nothing: {why}",
                          hint=f"name statements, labels or blocks whose layers have parameters; statements with "
                               f"parameters: {shown or 'none'}")


def _frozen(nodes: list[ir.TensorNode], prefix: str) -> Iterator[tuple[str, str]]:
    """(module path, op) of each frozen layer and merge, in the paths the concrete graph uses."""
    for node in nodes:
        if node.merge != "ref" and "freeze" in node.attrs:
            m = LEARNED if node.merge == PARAM else REGISTRY[node.merge]
            yield m.node_path(prefix + node.name), m.name
        for layer in node.layers:
            path = prefix + node.module_path(layer)
            if isinstance(layer, ir.BlockInstance):
                yield from _frozen(layer.nodes, path + ".")
            elif "freeze" in layer.attrs:
                yield path, layer.op


def _without_attrs(spec: ir.Spec) -> ir.Spec:
    def call(c: ir.LayerCall) -> ir.LayerCall:
        return c.model_copy(update={"attrs": []})

    def assign(a: ir.Assign) -> ir.Assign:
        return a.model_copy(update={"attrs": [], "chain": [call(c) for c in a.chain]})

    def learned(ds: list[ir.Learned]) -> list[ir.Learned]:
        return [d.model_copy(update={"attrs": []}) for d in ds]

    blocks = [b.model_copy(update={"body": [call(c) for c in b.body], "assigns": [assign(a) for a in b.assigns],
                                   "learned": learned(b.learned)})
              for b in spec.blocks]
    return spec.model_copy(update={"assigns": [assign(a) for a in spec.assigns], "blocks": blocks,
                                   "learned": learned(spec.learned)})
