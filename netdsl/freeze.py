"""Which layers to freeze, as the command line and the API ask for it (`--freeze`, `--freeze-bn`).

A spec freezes layers with `@freeze`; a `Freeze` request adds to that at build time: the first N
top-level statements (`--freeze 10`, as ultralytics' `--freeze` and the course meant it), or
statements, layer labels and blocks by name. A name that matches nothing is an error, and so is one
that freezes nothing: a block whose calls repeat 0 times, a statement without parameters (a cat, an
activation), or a statement inside a graph block (which `--freeze` cannot reach by name).

>>> parse_freeze("10"), parse_freeze("b0,fc").names
(Freeze(first=10, names=(), bn='train'), ('b0', 'fc'))
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from netdsl.errors import NetdslError

if TYPE_CHECKING:
    from netdsl import ir
    from netdsl.concrete import ConcreteGraph

BN_POLICIES = ("train", "eval")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Freeze:
    first: int = 0                 # the first N top-level statements
    names: tuple[str, ...] = ()    # statements, labels or blocks
    # Frozen BatchNorm layers: "train" keeps updating their running statistics in training mode
    # (what the course's code did: requires_grad=False only); "eval" keeps them in eval mode.
    bn: Literal["train", "eval"] = "train"

    def __bool__(self) -> bool:
        return bool(self.first or self.names)


def parse_freeze(text: str | None, bn: str | None = None) -> Freeze:
    """`--freeze N` or `--freeze NAME[,NAME...]`, and `--freeze-bn train|eval`."""
    out = Freeze()
    if bn is not None:
        if bn not in BN_POLICIES:
            raise NetdslError(f"--freeze-bn {bn!r}: use train or eval",
                              hint="train: frozen BatchNorm still updates its statistics; eval: it does not")
        out = replace(out, bn=bn)  # type: ignore[arg-type]
    if text is None:
        return out
    text = text.strip()
    if text.isdigit():
        if len(text) > 6:
            raise NetdslError(f"--freeze {text}: too many statements", hint="give the number of top-level statements")
        return replace(out, first=int(text))
    names = tuple(n.strip() for n in text.split(","))
    bad = next((n for n in names if not _NAME.match(n)), None)
    if bad is not None:
        raise NetdslError(f"--freeze {text!r}: {bad!r} is neither a number nor a name",
                          hint="write --freeze 10 (the first 10 statements) or --freeze NAME,NAME")
    return replace(out, names=names)


def as_freeze(freeze: int | str | list[str] | tuple[str, ...] | Freeze | None, bn: str | None = None) -> Freeze:
    """The API's `freeze=` argument (a count, a name, names, or a Freeze) as a Freeze."""
    if bn is not None and (not isinstance(bn, str) or bn not in BN_POLICIES):
        raise NetdslError(f"freeze_bn={bn!r}: use 'train' or 'eval'",
                          hint="train: frozen BatchNorm still updates its statistics; eval: it does not")
    if isinstance(freeze, (list, tuple)) and not all(isinstance(x, str) for x in freeze):
        bad = next(x for x in freeze if not isinstance(x, str))
        raise NetdslError(f"freeze={freeze!r}: {bad!r} is not a name", hint="e.g. freeze=['b0', 'fc']")
    if isinstance(freeze, Freeze):
        return freeze if bn is None else replace(freeze, bn=parse_freeze(None, bn).bn)
    if freeze is None:
        return parse_freeze(None, bn)
    if isinstance(freeze, bool) or not isinstance(freeze, (int, str, list, tuple)):
        raise NetdslError(f"freeze={freeze!r}: give a number of statements or names",
                          hint="e.g. freeze=10 or freeze=['b0', 'fc']")
    if isinstance(freeze, int):
        if freeze < 0:
            raise NetdslError(f"freeze={freeze}: give a non-negative number of statements")
        return parse_freeze(str(freeze), bn)
    text = freeze if isinstance(freeze, str) else ",".join(str(x) for x in freeze)
    return parse_freeze(text, bn)


# --- what a name freezes ---------------------------------------------------------------------

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
    from netdsl.passes.lower import lower

    spec, graph = cg.spec, cg.graph
    assert spec is not None and graph is not None
    has_params = {x.path: (x.counts.weights + x.counts.biases + x.counts.norm_params) != 0 for x in cg.walk()}
    bare = _without_attrs(spec)  # so that what a name freezes is not hidden by the spec's own @freeze
    for name in freeze.names:
        frozen = list(_frozen(lower(bare, cg.env.values, Freeze(names=(name,))).nodes, ""))
        if any(has_params.get(path, False) for path, _ in frozen):
            continue
        kind = ("statement" if any(a.name == name for a in spec.assigns)
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
    from netdsl import ir
    from netdsl.ops import MERGES

    for node in nodes:
        if node.merge in MERGES and "freeze" in node.attrs:
            m = MERGES[node.merge]
            yield (f"{prefix}{node.name}" if m.final else f"{prefix}{node.name}({m.name})"), m.name
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

    blocks = [b.model_copy(update={"body": [call(c) for c in b.body], "assigns": [assign(a) for a in b.assigns]})
              for b in spec.blocks]
    return spec.model_copy(update={"assigns": [assign(a) for a in spec.assigns], "blocks": blocks})
