"""`netdsl solve`: values for open integer arguments (`?`) that make every shape annotation hold.

The spec's parameters are fixed at the values in use (defaults or --set); the input sizes H, W stay
symbolic, so an assignment is a solution only if every annotated tensor has the annotated shape
for *every* admissible H, W (under the spec's assumptions, e.g. H % 4 == 0), and every layer obeys
PyTorch's own rules (output_padding < max(stride, dilation), pooling padding at most half the
window, positive sizes). Candidates are searched layer by layer, inside graph-block calls too;
states with identical shapes (of the tensors still to be read) are merged, so annotated tensors cut
the search into independent segments, and each layer's shape at one candidate and input is computed
once. The work is bounded (MAX_EVALUATIONS, MAX_VISITS, MAX_ASSIGNMENTS): past it, an error that
names the statement, within seconds.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import sympy as sp

from netdsl import ir, ir_expr
from netdsl.errors import NetdslError
from netdsl.ops import REGISTRY
from netdsl.passes.shapes import Shape, ShapeInference
from netdsl.passes.solve_args import OpenArg, check_annotations, fill, fixed_env, open_args
from netdsl.passes.symbols import SymEnv
from netdsl.symbolic import always_equal

DEFAULT_MAX_VALUE = 16
MAX_VALUE_LIMIT = 1000  # the most --max-value / max_value may be
MAX_ASSIGNMENTS = 100_000
MAX_STATES = 2_000
# One layer's shape at one candidate costs a few milliseconds (SymPy): the search stops with an
# error after this many, about ten seconds, instead of running for minutes.
MAX_EVALUATIONS = 3_000
# States x candidates visited (each cheap: the shape is computed once): the same bound for the
# bookkeeping, checked before a layer's visits, not after.
MAX_VISITS = 500_000


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


@dataclass
class _State:
    tensors: dict[str, Shape]
    assigns: list[dict[int, int]]


# (running shape, live tensors) -> the shape and the assignments that reach it
_Table = dict[tuple, tuple[Shape, _State]]


@dataclass
class _Failures:
    """Why the candidates of one layer failed: all messages seen, and the last error."""

    messages: set[str] = field(default_factory=set)
    last: NetdslError | None = None

    def add(self, e: NetdslError) -> None:
        self.messages.add(e.message)
        self.last = e

    def merge(self, other: _Failures) -> None:
        self.messages |= other.messages
        self.last = other.last or self.last

    def note(self, key: str, make: Callable[[], object]) -> None:
        """A failure known without its message (formatting one costs more than the check):
        the message is made for the first only, as the example a report gives."""
        self.messages.add(key)
        if self.last is None:
            try:
                make()
            except NetdslError as e:
                self.last = e

    def single(self) -> NetdslError | None:
        """The error when every candidate failed one way: then no open argument can help."""
        return self.last if len(self.messages) == 1 else None


def _fmt(env: SymEnv, s: Shape) -> list[str]:
    return [str(env.show(x)) for x in s]


def _live_after(nodes: list[ir.TensorNode], keep: set[str]) -> list[frozenset[str]]:
    """For each statement, the tensors a later statement reads (and `keep`): the others are dropped
    from the search's states, so states that differ only in dead tensors merge."""
    live, out = set(keep), []
    for node in reversed(nodes):
        out.append(frozenset(live))
        live |= {i.name for i in node.inputs}
    return out[::-1]


def _next_states(cur: _Table, name: str, live: frozenset[str]) -> list[_State]:
    table: dict[tuple, _State] = {}
    for s, st in cur.values():
        tensors = {k: v for k, v in st.tensors.items() if k in live}
        if name in live:
            tensors[name] = s
        key = tuple(sorted(tensors.items(), key=lambda kv: kv[0]))
        if key in table:
            table[key].assigns.extend(st.assigns)
        else:
            table[key] = _State(tensors, list(st.assigns))
    return list(table.values())


class _Search:
    """Candidates layer by layer, for the spec's statements and, the same way, for each graph-block
    call's body: a call's `?` are searched layer by layer against its input shape (not as one
    product of all of them), and a call's result for one input shape is computed once."""

    def __init__(self, graph: ir.Graph, env: SymEnv, holes: list[OpenArg], max_value: int) -> None:
        self.inf = ShapeInference(graph, env)
        self.holes = holes
        self.index = {(h.layer, h.arg): i for i, h in enumerate(holes)}
        self.max_value = max_value
        self.evaluations = 0
        self.visits = 0
        self.calls_open: list[tuple[ir.TensorNode, ir.BlockInstance]] = []  # the graph-block calls being searched
        self.layers: dict[tuple, tuple[Shape | None, NetdslError | None]] = {}
        self.values: dict[Shape, tuple[int, ...]] = {}
        self.calls: dict[tuple[str, Shape], tuple[list[tuple[Shape, list[dict[int, int]]]], _Failures]] = {}

    def charge(self, n: int, node: ir.TensorNode) -> None:
        """A layer's new shape evaluations, before they are made."""
        self.evaluations += n
        if self.evaluations > MAX_EVALUATIONS:
            self.refuse(node, f"{MAX_EVALUATIONS:,} layer evaluations")

    def charge_visits(self, n: int, node: ir.TensorNode) -> None:
        """States x candidates of one layer, before they are visited: cheap each, but not free."""
        self.visits += n
        if self.visits > MAX_VISITS:
            self.refuse(node, f"{MAX_VISITS:,} candidate states")

    def refuse(self, node: ir.TensorNode, what: str) -> NoReturn:
        """Located at the spec's statement, which names the graph-block call the search was in."""
        where = f"'{node.name}' (line {node.span.line})"
        if self.calls_open:
            top, inst = self.calls_open[0]
            where += f" in the call of block '{inst.block}' in '{top.name}' (line {top.span.line})"
            node = top
        raise NetdslError(f"too many combinations of open arguments to search: more than {what} by {where}, "
                          f"with values up to {self.max_value}", node.span,
                          "annotate intermediate tensors (name: [C, H', W'] = ...), fill in some of the open "
                          "arguments, or narrow them with --max-value")

    def attempt(self, fn: Callable[[], Shape], failures: _Failures) -> Shape | None:
        """fn's shape; None where it fails (the message kept) or holds at the values in use only."""
        notes = len(self.inf.notes)
        try:
            out = fn()
        except NetdslError as e:
            failures.add(e)
            return None
        if len(self.inf.notes) > notes:  # equal at the values in use only: not for every H, W
            del self.inf.notes[notes:]
            return None
        return out

    def statement(self, node: ir.TensorNode, states: list[_State], prefix: str,
                  strict: bool) -> tuple[_Table, _Failures]:
        """The shapes one statement can end with, and why the last stage failed where none can.
        strict: a layer whose candidates all fail one way is an error in the spec or its values."""
        cur: _Table = {}
        failures = _Failures()
        for st in states:
            differ = self.mismatch(node, st.tensors)
            if differ is not None:
                failures.note(f"{node.name}({node.merge}): {differ}", lambda: self.inf.source(node, st.tensors, prefix))  # noqa: B023
                continue
            s = self.attempt(lambda: self.inf.source(node, st.tensors, prefix)[0], failures)  # noqa: B023
            if s is not None:
                _add(cur, s, st, st.assigns)
        for op in node.layers:
            if not cur:
                break
            path = prefix + node.module_path(op)
            failures = _Failures()
            nxt = (self.op(node, op, path, cur, failures) if isinstance(op, ir.Op)
                   else self.call(node, op, path, cur, failures))
            if strict and not nxt and failures.single() is not None:
                raise failures.single()  # type: ignore[misc]
            cur = nxt
            if len(cur) > MAX_STATES:
                self.refuse(node, f"{MAX_STATES:,} distinct shapes")
        return cur, failures

    def mismatch(self, node: ir.TensorNode, tensors: dict[str, Shape]) -> tuple | None:
        """A merge's input sizes where they differ at the values in use, so can never be equal for
        every H, W (most pairs of branch shapes a block's `?` give): None where source decides."""
        if node.merge == "ref" or not node.inputs:  # a learned tensor has none
            return None
        shapes = [tensors[i.name] for i in node.inputs]
        if len({len(s) for s in shapes}) > 1:
            return None
        m = REGISTRY[node.merge]
        # an axis where a size is 1 broadcasts (add, mul): not a mismatch
        axes = [i for i in m.match_axes(len(shapes[0])) if not any(m.stretches(shapes[0][i], s[i]) for s in shapes)]
        at = tuple(tuple(self.at(s)[i] for i in axes) for s in shapes)
        return at if len(set(at)) > 1 else None

    def at(self, s: Shape) -> tuple[int, ...]:
        if s not in self.values:
            self.values[s] = tuple(self.inf.at(s))
        return self.values[s]

    def op(self, node: ir.TensorNode, op: ir.Op, path: str, cur: _Table, failures: _Failures) -> _Table:
        opened = [(path, n) for n, v in op.args.items() if isinstance(v, ir.Hole)]
        combos = _combos(opened, self.holes, self.index, node)
        self.charge_visits(len(cur) * len(combos), node)
        inputs = {s for s, _ in cur.values()}
        self.charge(sum((path, c, s) not in self.layers for s in inputs for c in combos), node)
        nxt: _Table = {}
        found = 0
        for s, st in cur.values():
            for combo in combos:
                out = self.layer(node, op, path, opened, combo, s, failures)
                if out is not None:
                    found = self.count(found, len(st.assigns), node)
                    extra = {self.index[k]: v for k, v in zip(opened, combo)}
                    _add(nxt, out, st, [{**a, **extra} for a in st.assigns])
        return nxt

    def count(self, found: int, more: int, node: ir.TensorNode) -> int:
        """Partial solutions so far at one layer, checked before they are made."""
        if found + more > MAX_ASSIGNMENTS:
            self.refuse(node, f"{MAX_ASSIGNMENTS:,} partial solutions")
        return found + more

    def layer(self, node: ir.TensorNode, op: ir.Op, path: str, opened: list[tuple[str, str]],
              combo: tuple[int, ...], s: Shape, failures: _Failures) -> Shape | None:
        """One layer at one candidate, computed once: states that differ in other branches' shapes
        (a block's main path while its skip path is searched) reach it with the same input."""
        key = (path, combo, s)
        if key not in self.layers:
            seen = _Failures()
            filled = fill(op, dict(zip(opened, combo)), path)
            self.layers[key] = (self.attempt(lambda: self.inf.layer_shape(node, filled, s)[4], seen), seen.last)
        out, error = self.layers[key]
        if error is not None:
            failures.add(error)
        return out

    def call(self, node: ir.TensorNode, inst: ir.BlockInstance, path: str, cur: _Table,
             failures: _Failures) -> _Table:
        nxt: _Table = {}
        found = 0
        for s, st in cur.values():
            outs, failed = self.body(node, inst, s, path)
            failures.merge(failed)
            for out, inner in outs:
                found = self.count(found, len(st.assigns) * len(inner), node)
                _add(nxt, out, st, [{**a, **b} for a in st.assigns for b in inner])
        return nxt

    def body(self, node: ir.TensorNode, inst: ir.BlockInstance, s: Shape,
             path: str) -> tuple[list[tuple[Shape, list[dict[int, int]]]], _Failures]:
        """A graph-block call's output shapes for one input shape, each with the values of the
        call's own `?` that give it; stops at the first statement nothing gets through."""
        key = (path, s)
        if key not in self.calls:
            saved = dict(self.inf.origin)
            self.inf.origin[inst.input] = inst.span
            self.calls_open.append((node, inst))
            try:
                self.calls[key] = self.body_states(inst, s, path)
            finally:
                self.inf.origin = saved
                self.calls_open.pop()
        return self.calls[key]

    def body_states(self, inst: ir.BlockInstance, s: Shape,
                    path: str) -> tuple[list[tuple[Shape, list[dict[int, int]]]], _Failures]:
        states = [_State({inst.input: s}, [{}])]
        for node, live in zip(inst.nodes, _live_after(inst.nodes, {"output"})):
            cur, failures = self.statement(node, states, path + ".", strict=False)
            self.inf.origin[node.name] = node.span
            if node.annotation is not None:
                cur = self.annotated(node, cur, failures)
            if not cur:
                return [], failures
            states = _next_states(cur, node.name, live)
        return [(st.tensors["output"], st.assigns) for st in states], _Failures()

    def annotated(self, node: ir.TensorNode, cur: _Table, failures: _Failures) -> _Table:
        """The states whose shape meets an annotation inside a block (for every admissible H, W)."""
        def check(s: Shape) -> Shape:
            self.inf.check_annotation(node, s)
            return s
        return {k: (s, st) for k, (s, st) in cur.items() if self.attempt(lambda: check(s), failures) is not None}  # noqa: B023


def solve(spec: ir.Spec, overrides: dict[str, int] | None = None, max_value: int = DEFAULT_MAX_VALUE) -> SolveResult:
    """Every assignment of the open arguments that makes all annotations hold for all H, W."""
    graph, env = fixed_env(spec, dict(overrides or {}))
    check_annotations(graph, env)
    holes = open_args(graph, env, max_value)
    search = _Search(graph, env, holes, max_value)
    states = [_State({i.name: search.inf.input_shape(i) for i in graph.inputs}, [{}])]
    result = SolveResult(env=env, holes=holes, solutions=[], max_value=max_value)
    for node, live in zip(graph.nodes, _live_after(graph.nodes, set(graph.outputs))):
        cur, failures = search.statement(node, states, "", strict=True)
        search.inf.origin[node.name] = node.span
        if node.annotation is not None:
            cur = _keep_annotated(node, cur, env, holes, result)
        if not cur:
            result.partial = [{holes[i].key: v for i, v in sorted(a.items())} for st in states for a in st.assigns][:20]
            if result.reason is None:
                result.failed_at = node.name
                result.reason = (f"no open-argument values give valid layers up to '{node.name}' "
                                 f"(line {node.span.line})"
                                 + (f": e.g. {failures.last.message}" if failures.last is not None else ""))
            return result
        states = _next_states(cur, node.name, live)
    outputs = []
    for st in states:
        outputs.append(_fmt(env, st.tensors[graph.outputs[0]]))
        result.solutions += [tuple(a[i] for i in range(len(holes))) for a in st.assigns]
    result.solutions.sort()
    result.output_shapes = outputs
    return result


def _combos(opened: list[tuple[str, str]], holes: list[OpenArg], index: dict[tuple[str, str], int],
            node: ir.TensorNode) -> list[tuple[int, ...]]:
    """Every combination of values for one layer's `?`."""
    ranges = [range(holes[index[k]].low, holes[index[k]].high + 1) for k in opened]
    if math.prod(len(r) for r in ranges) > MAX_ASSIGNMENTS:
        raise NetdslError("too many combinations of open arguments to search", node.span,
                          "fill in some of the open arguments, or narrow them with --max-value")
    return list(itertools.product(*ranges))


def _add(table: _Table, s: Shape, st: _State, assigns: list[dict[int, int]]) -> None:
    key = (tuple(s), tuple(sorted(st.tensors.items(), key=lambda kv: kv[0])))
    if key in table:
        table[key][1].assigns.extend(assigns)
    else:
        table[key] = (s, _State(st.tensors, list(assigns)))


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
            raise NetdslError(f"'{node.name}' is annotated [{', '.join(ir_expr.to_text(e) for e in node.annotation)}] but its "
                              f"{axis} are {got} {why}; the annotation can never hold", node.annotation[i].span,
                              "check the annotation and the layers before it")
    result.failed_at = node.name
    written = ", ".join(ir_expr.to_text(e) for e in node.annotation)
    result.reason = (f"no values of the open arguments make '{node.name}' (line {node.span.line}) "
                     f"[{written}] for every admissible input size")
    for s, st, _ in misses[:8]:
        for a in st.assigns[:1]:
            shown = {holes[i].key: v for i, v in a.items() if holes[i].tensor == node.name} or \
                    {holes[i].key: v for i, v in a.items()}
            result.near_misses.append((shown, _fmt(env, s)))
    return kept
