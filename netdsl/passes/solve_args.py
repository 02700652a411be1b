"""What `netdsl solve` searches: the open arguments (`?`), each with the range the op's own rules
allow, in a graph whose parameters are fixed at their values and whose input sizes stay symbols."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from netdsl import ir
from netdsl.errors import NetdslError, Span
from netdsl.ops import REGISTRY, Args
from netdsl.passes.intpoly import internal_to_user, non_integer_point
from netdsl.passes.lower import lower
from netdsl.passes.names import check_header
from netdsl.passes.symbols import SymEnv, make_env


@dataclass(frozen=True)
class OpenArg:
    """One `?` as expanded into one layer (a `?` inside a block is open once per block call)."""

    tensor: str
    layer: str       # module path, e.g. "sequence3.0"
    op: str
    arg: str
    span: Span       # where the `?` is written
    line: int        # the statement the layer comes from
    low: int
    high: int
    rule: str        # why the range is what it is

    @property
    def key(self) -> str:
        return f"{self.layer}.{self.arg}"


def fixed_env(spec: ir.Spec, overrides: dict[str, int]) -> tuple[ir.Graph, SymEnv]:
    """The lowered graph and its environment with every parameter fixed at its value; H and W stay symbols."""
    check_header(spec)
    env = make_env(spec, overrides)
    graph = lower(spec, env.values)
    env.graph = graph
    dims = {d.name for d in graph.dims}
    for name, s in env.symbols.items():
        if name not in dims:
            env.fwd[s] = sp.Integer(env.values[name])
    return graph, env


def _known(env: SymEnv, op: ir.Op) -> dict:
    """The op's arguments that are constants (pairs as pairs), for the op's own range rules."""
    out: dict = {}
    for name, v in op.args.items():
        items = v.items if isinstance(v, ir.Pair) else (v,)
        if any(isinstance(x, (ir.Hole, ir.Float, ir.Str, ir.Bool)) for x in items):
            continue
        xs = [env.sym(x) for x in items]  # type: ignore[arg-type]
        if all(x.is_Integer for x in xs):
            spec = REGISTRY[op.op].arg(name)
            vals = tuple(int(x) for x in xs)
            out[name] = (vals * 2 if len(vals) == 1 else vals) if spec is not None and spec.pair else vals[0]
    return out


def _range(env: SymEnv, op: ir.Op, arg: str, max_value: int) -> tuple[int, int, str]:
    """The candidates for one open argument and the rule that bounds them (the op's own rules)."""
    spec = REGISTRY[op.op]
    found = spec.search_range(arg, Args(_known(env, op)))
    if found is not None:
        return found
    a = spec.arg(arg)
    low = a.minimum if a is not None and a.minimum is not None else 0
    return low, max_value, f"no upper bound in PyTorch; searched up to {max_value} (--max-value)"


def open_args(graph: ir.Graph, env: SymEnv, max_value: int) -> list[OpenArg]:
    out: list[OpenArg] = []
    for node in graph.nodes:
        _collect(node, node.name, "", env, max_value, out)
    return out


def _collect(node: ir.TensorNode, tensor: str, prefix: str, env: SymEnv, max_value: int,
             out: list[OpenArg]) -> None:
    """The `?` of one statement's layers, those inside its graph-block calls included (each call
    opens its own, named by the module path its layer gets)."""
    for op in node.layers:
        path = prefix + node.module_path(op)
        if isinstance(op, ir.BlockInstance):
            for inner in op.nodes:
                _collect(inner, tensor, path + ".", env, max_value, out)
            continue
        for name, v in op.args.items():
            if isinstance(v, ir.Hole):
                lo, hi, rule = _range(env, op, name, max_value)
                out.append(OpenArg(tensor=tensor, layer=path, op=op.op, arg=name,
                                   span=v.span, line=op.origin.line, low=lo, high=hi, rule=rule))


def fill(op: ir.Op, values: dict[tuple[str, str], int], path: str) -> ir.Op:
    """A copy of a layer with these `?` filled in."""
    if not any((path, n) in values for n in op.args):
        return op
    args = {n: ir.Int(span=v.span, value=values[(path, n)]) if (path, n) in values else v
            for n, v in op.args.items()}
    return op.model_copy(update={"args": args})


def check_annotations(graph: ir.Graph, env: SymEnv) -> None:
    """Annotations must be integers for every admissible H, W, or they can never hold."""
    for node in graph.nodes:
        for e in node.annotation or ():
            x = sp.expand(env.sym(e))
            if not x.is_polynomial(*x.free_symbols):
                continue
            bad = non_integer_point(x)
            if bad is not None:
                user = internal_to_user(env, bad)
                shown = ", ".join(f"{k}={v}" for k, v in user.items())
                raise NetdslError(f"this annotation is not an integer for every admissible input size "
                                  f"(at {shown} it is {x.xreplace({q: sp.Integer(v) for q, v in bad.items()})}), "
                                  "so it can never hold", e.span,
                                  "annotate sizes the assumptions make exact, e.g. H/2 with `where H % 2 == 0`")
