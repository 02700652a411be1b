"""`netdsl solve`: values for open integer arguments (`?`) that make every shape annotation hold.

The spec's parameters are fixed at the values in use (defaults or --set); the input sizes H, W stay
symbolic, so an assignment is a solution only if every annotated tensor has the annotated shape
for *every* admissible H, W (under the spec's assumptions, e.g. H % 4 == 0), and every layer obeys
PyTorch's own rules (output_padding < max(stride, dilation), pooling padding at most half the
window, positive sizes). Candidates are searched layer by layer; states with identical shapes are
merged, so annotated tensors cut the search into independent segments.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import sympy as sp

from netdsl import ir
from netdsl.errors import NetdslError, Span
from netdsl.ops import REGISTRY
from netdsl.passes.intpoly import internal_to_user, non_integer_point
from netdsl.passes.shapes import Shape, ShapeInference
from netdsl.passes.symbols import SymEnv, make_env
from netdsl.symbolic import always_equal

DEFAULT_MAX_VALUE = 16
MAX_ASSIGNMENTS = 100_000
MAX_STATES = 2_000


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


@dataclass
class SolveResult:
    env: SymEnv
    holes: list[OpenArg]
    solutions: list[tuple[int, ...]]
    max_value: int
    reason: str | None = None                 # why there is no solution
    failed_at: str | None = None              # the tensor whose annotation no candidate met
    near_misses: list[tuple[dict[str, int], list[str]]] = field(default_factory=list)
    partial: list[dict[str, int]] = field(default_factory=list)  # the solutions up to the failing tensor
    output_shapes: list[list[str]] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.solutions:
            return "none"
        if not self.holes:
            return "nothing to solve"
        return "unique" if len(self.solutions) == 1 else "several"


def _fixed_env(spec: ir.Spec, overrides: dict[str, int]) -> tuple[ir.Graph, SymEnv]:
    """The lowered graph and its environment with every parameter fixed at its value; H and W stay symbols."""
    from netdsl.passes.lower import check_header, lower

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
    from netdsl.ops import Args

    found = spec.search_range(arg, Args(_known(env, op)))
    if found is not None:
        return found
    a = spec.arg(arg)
    low = a.minimum if a is not None and a.minimum is not None else 0
    return low, max_value, f"no upper bound in PyTorch; searched up to {max_value} (--max-value)"


def _open_args(graph: ir.Graph, env: SymEnv, max_value: int) -> list[OpenArg]:
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


def _fill(op: ir.Op | ir.BlockInstance, values: dict[tuple[str, str], int], path: str) -> ir.Op | ir.BlockInstance:
    """A copy of a layer (a graph-block call: of its whole body) with these `?` filled in."""
    if isinstance(op, ir.Op):
        if not any((path, n) in values for n in op.args):
            return op
        args = {n: ir.Int(span=v.span, value=values[(path, n)]) if (path, n) in values else v
                for n, v in op.args.items()}
        return op.model_copy(update={"args": args})
    nodes = [n.model_copy(update={"layers": [_fill(l, values, f"{path}.{n.module_path(l)}") for l in n.layers]})
             for n in op.nodes]
    return op.model_copy(update={"nodes": nodes})


def _check_annotations(graph: ir.Graph, env: SymEnv) -> None:
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


@dataclass
class _State:
    tensors: dict[str, Shape]
    assigns: list[dict[int, int]]


def _fmt(env: SymEnv, s: Shape) -> list[str]:
    return [str(env.show(x)) for x in s]


def solve(spec: ir.Spec, overrides: dict[str, int] | None = None, max_value: int = DEFAULT_MAX_VALUE) -> SolveResult:
    """Every assignment of the open arguments that makes all annotations hold for all H, W."""
    graph, env = _fixed_env(spec, dict(overrides or {}))
    _check_annotations(graph, env)
    holes = _open_args(graph, env, max_value)
    index = {(h.layer, h.arg): i for i, h in enumerate(holes)}
    inf = ShapeInference(graph, env)
    states = [_State({i.name: inf.input_shape(i) for i in graph.inputs}, [{}])]
    result = SolveResult(env=env, holes=holes, solutions=[], max_value=max_value)
    for node in graph.nodes:
        # (running shape, tensors) -> assignments; identical shapes merge, which keeps this small.
        cur: dict[tuple, tuple[Shape, _State]] = {}
        last_error: NetdslError | None = None
        for st in states:
            notes = len(inf.notes)
            try:
                s = inf.source(node, st.tensors)[0]
            except NetdslError as e:
                last_error = e
                continue
            if len(inf.notes) > notes:  # equal at the values in use only: not for every H, W
                del inf.notes[notes:]
                continue
            _add(cur, s, st, st.assigns)
        for op in node.layers:
            qual = node.module_path(op)
            # this layer's `?`: its own, or (a graph-block call) every one inside it, in module order
            opened = [(h.layer, h.arg) for h in holes
                      if h.tensor == node.name and (h.layer == qual or h.layer.startswith(qual + "."))]
            nxt: dict[tuple, tuple[Shape, _State]] = {}
            combos = _combos(opened, holes, index, node)
            messages: set[str] = set()
            for s, st in cur.values():
                for combo in combos:
                    values = dict(zip(opened, combo))
                    filled = _fill(op, values, qual) if opened else op
                    notes = len(inf.notes)
                    try:
                        out = (inf.layer(node, filled, s, qual) if isinstance(filled, ir.Op)
                               else inf.block(filled, s, qual)).out_shape
                    except NetdslError as e:
                        last_error = e
                        messages.add(e.message)
                        continue
                    if len(inf.notes) > notes:  # a merge in the block holds at the values in use only
                        del inf.notes[notes:]
                        continue
                    extra = {index[k]: v for k, v in values.items()}
                    _add(nxt, out, st, [{**a, **extra} for a in st.assigns])
            if not nxt and cur and last_error is not None and len(messages) == 1:
                # Every candidate fails the same way (e.g. --set NF=0 makes a channel count zero):
                # no open argument can help, so this is an error in the spec or the values, not "none".
                raise last_error
            cur = nxt
            _guard_size(cur, node)
        inf.origin[node.name] = node.span
        if node.annotation is not None:
            cur = _keep_annotated(node, cur, env, holes, result)
        if not cur:
            result.partial = [{holes[i].key: v for i, v in sorted(a.items())} for st in states for a in st.assigns][:20]
            if result.reason is None:
                result.failed_at = node.name
                result.reason = (f"no open-argument values give valid layers up to '{node.name}' "
                                 f"(line {node.span.line})"
                                 + (f": e.g. {last_error.message}" if last_error is not None else ""))
            return result
        states = [_State({**st.tensors, node.name: s}, st.assigns) for s, st in cur.values()]
    outputs = []
    for st in states:
        outputs.append(_fmt(env, st.tensors[graph.outputs[0]]))
        result.solutions += [tuple(a[i] for i in range(len(holes))) for a in st.assigns]
    result.solutions.sort()
    result.output_shapes = outputs
    return result


def _combos(opened: list[tuple[str, str]], holes: list[OpenArg], index: dict[tuple[str, str], int],
            node: ir.TensorNode) -> list[tuple[int, ...]]:
    """Every combination of values for one layer's `?` (a graph-block call's: all inside it)."""
    ranges = [range(holes[index[k]].low, holes[index[k]].high + 1) for k in opened]
    if math.prod(len(r) for r in ranges) > MAX_ASSIGNMENTS:
        raise NetdslError("too many combinations of open arguments to search", node.span,
                          "fill in some of the open arguments, or narrow them with --max-value")
    return list(itertools.product(*ranges))


def _add(table: dict, s: Shape, st: _State, assigns: list[dict[int, int]]) -> None:
    key = (tuple(s), tuple(sorted(st.tensors.items(), key=lambda kv: kv[0])))
    if key in table:
        table[key][1].assigns.extend(assigns)
    else:
        table[key] = (s, _State(st.tensors, list(assigns)))


def _guard_size(cur: dict, node: ir.TensorNode) -> None:
    if len(cur) > MAX_STATES or sum(len(st.assigns) for _, st in cur.values()) > MAX_ASSIGNMENTS:
        raise NetdslError("too many combinations of open arguments to search", node.span,
                          "annotate intermediate tensors (name: [C, H', W'] = ...) or fill in some arguments")


def _keep_annotated(node: ir.TensorNode, cur: dict, env: SymEnv, holes: list[OpenArg],
                    result: SolveResult) -> dict:
    """The states whose shape equals the annotation for every admissible H, W."""
    assert node.annotation is not None
    want = tuple(sp.expand(env.sym(e)) for e in node.annotation)
    kept, misses = {}, []
    for key, (s, st) in cur.items():
        # Equal for every admissible H, W, floor forms included (`floor(H/2 - 1/2) + 1` is `(H + 1)//2`).
        bad = [i for i in range(len(want)) if i >= len(s) or not always_equal(s[i], want[i])]
        if not bad:
            kept[key] = (s, st)
        else:
            misses.append((s, st, bad))
    if kept or not misses:
        return kept
    # Nothing fits. An axis that is wrong the same way for every candidate can never hold: an error.
    for i, axis in enumerate(("channels", "height", "width")[:len(want)]):
        values = {m[0][i] for m in misses}
        if all(i in m[2] for m in misses) and len(values) == 1:
            got = env.show(next(iter(values)))
            opened = [h for h in holes if h.tensor == node.name] or holes
            why = "whatever the open arguments are" if opened else "and the spec leaves nothing open"
            raise NetdslError(f"'{node.name}' is annotated [{', '.join(ir.to_text(e) for e in node.annotation)}] but its "
                              f"{axis} are {got} {why}; the annotation can never hold", node.annotation[i].span,
                              "check the annotation and the layers before it")
    result.failed_at = node.name
    written = ", ".join(ir.to_text(e) for e in node.annotation)
    result.reason = (f"no values of the open arguments make '{node.name}' (line {node.span.line}) "
                     f"[{written}] for every admissible input size")
    for s, st, _ in misses[:8]:
        for a in st.assigns[:1]:
            shown = {holes[i].key: v for i, v in a.items() if holes[i].tensor == node.name} or \
                    {holes[i].key: v for i, v in a.items()}
            result.near_misses.append((shown, _fmt(env, s)))
    return kept
