"""The sizes of an ONNX export as PyTorch's exporter sees them, and as the written model names them.

`dynamic_shapes` tells `torch.export` which input sizes vary and over which range (`SizeAxis`);
`rename_dims` writes every symbolic dimension of the exported graph in the spec's names
(`32*s20` becomes `H`), from the sizes PyTorch traced (`size_symbols`), never parsed back from text.
"""
from __future__ import annotations

from typing import Any

import sympy as sp
from torch.export import Dim

from netdsl.backends.onnx_axes import SizeAxis
from netdsl.concrete import ConcreteGraph
from netdsl.limits import MAX_INT32


def trace_sizes(axes: list[SizeAxis]) -> dict[str, int]:
    """Sizes to trace at: the values in use, raised to PyTorch's traced range (no size 1 anywhere;
    a multiple of m at least 2m, or PyTorch fixes its quotient)."""
    out = {}
    for a in axes:
        if a.dynamic:
            v = max(a.value, a.trace_low)
            while (v - a.offset) // a.step < 2:
                v += a.step
            out[a.name] = v
    return out


def batch_name(cg: ConcreteGraph, axes: list[SizeAxis]) -> str:
    taken = {a.name for a in axes} | {t.name for t in cg.inputs}
    return next(n for n in ("batch", "N", "batch_", "batch__") if n not in taken)


def dynamic_shapes(cg: ConcreteGraph, axes: list[SizeAxis], dynamic: bool) -> tuple:
    batch = Dim(batch_name(cg, axes), min=1)
    dims: dict[str, Any] = {}
    for a in axes:
        if not (dynamic and a.dynamic) or a.name in dims:
            continue
        top = a.high if a.high is not None else MAX_INT32
        if a.step == 1:
            dims[a.name] = Dim(a.name, min=a.trace_low, max=top)
        else:
            qlow = max(-(-(a.trace_low - a.offset) // a.step), 2)
            q = Dim(f"{a.name}_q", min=qlow, max=(top - a.offset) // a.step)
            dims[a.name] = a.step * q + a.offset if a.offset else a.step * q
    spec = []
    for t in cg.inputs:
        d: dict[int, Any] = {0: batch}
        for a in axes:
            if a.input == t.name and a.name in dims:
                d[a.axis] = dims[a.name]
        spec.append(d)
    return tuple(spec)


def size_symbols(cg: ConcreteGraph, ep: Any, axes: list[SizeAxis]) -> dict[str, sp.Expr]:
    """PyTorch's size symbols (`s77`, `s20`) by name, in the spec's terms: the batch, and
    H_q = (H - r)/m for a size traced as m*H_q + r."""
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    batch = sp.Symbol(batch_name(cg, axes))
    out: dict[str, sp.Expr] = {}
    for t, name in zip(cg.inputs, ep.graph_signature.user_inputs):
        shape = nodes[name].meta["val"].shape
        want: dict[int, sp.Expr] = {0: batch}
        want.update({a.axis: sp.Symbol(a.name) for a in axes if a.input == t.name})
        for axis, dim in enumerate(shape):
            expr = getattr(getattr(dim, "node", None), "expr", None)
            if not isinstance(expr, sp.Expr) or axis not in want or len(expr.free_symbols) != 1:
                continue
            s = next(iter(expr.free_symbols))
            slope, const = expr.coeff(s), expr.subs(s, 0)
            if expr == sp.expand(slope * s + const) and slope != 0:
                out[s.name] = sp.expand((want[axis] - const) / slope)
    return out


def rename_dims(program: Any, symbols: dict[str, sp.Expr]) -> None:
    """Write every symbolic dimension of the ONNX graph in the spec's names (`32*s20` becomes `H`,
    `15*s20*s33` becomes `15*H*W/1024`). The texts come from the sizes PyTorch traced (never
    parsed back from text); one it did not trace keeps PyTorch's text."""
    if not symbols:
        return
    try:  # the optional extra: imported when an export runs
        import onnx_ir as oir
    except ImportError:  # older onnxscript bundles it
        from onnxscript import ir as oir  # type: ignore[no-redef]
    texts: dict[str, str] = {}
    for ep in {id(p): p for p in (getattr(program, "exported_program", None),) if p is not None}.values():
        for node in ep.graph.nodes:
            for v in _flat_meta(node.meta.get("val")):
                for dim in getattr(v, "shape", ()):
                    expr = getattr(getattr(dim, "node", None), "expr", None)
                    if isinstance(expr, sp.Expr) and str(expr) not in texts:
                        texts[str(expr)] = _in_spec_terms(expr, symbols)
    graph = program.model.graph
    values = [*graph.inputs, *graph.outputs]
    for node in oir.traversal.RecursiveGraphIterator(graph):
        values.extend(node.outputs)
    for v in values:
        shape = v.shape
        if shape is None or not any(isinstance(d, oir.SymbolicDim) for d in shape):
            continue
        v.shape = oir.Shape([oir.SymbolicDim(texts.get(d.value, d.value))
                             if isinstance(d, oir.SymbolicDim) and d.value else d for d in shape])


def _flat_meta(v: Any) -> list[Any]:
    if isinstance(v, (list, tuple)):
        return [y for x in v for y in _flat_meta(x)]
    return [v]


_TORCH_FUNCTIONS = {"FloorDiv": lambda e: sp.floor(e.args[0] / e.args[1]),
                    "CleanDiv": lambda e: e.args[0] / e.args[1],
                    "CeilDiv": lambda e: sp.ceiling(e.args[0] / e.args[1])}


def _in_spec_terms(expr: sp.Expr, symbols: dict[str, sp.Expr]) -> str:
    subs = {s: symbols[s.name] for s in expr.free_symbols if isinstance(s, sp.Symbol) and s.name in symbols}
    if len(subs) != len(expr.free_symbols):
        return str(expr)
    new = expr.xreplace(subs)
    for name, rule in _TORCH_FUNCTIONS.items():  # torch's own integer functions, as SymPy writes them
        new = new.replace(lambda e, n=name: type(e).__name__ == n and len(e.args) == 2, rule)
    plain = all(isinstance(a, (sp.Add, sp.Mul, sp.Pow, sp.Symbol, sp.Number)) for a in sp.preorder_traversal(new))
    return str(sp.expand(new) if plain else new)
