"""Multi-head attention on sequences `[T, D]`: `attention(heads)` (self-attention, a layer) and
`attention_qkv(q, k, v, heads=)` (queries over keys and values, a statement of its own).

Both are `nn.MultiheadAttention(D, heads, dropout, bias, batch_first=True)` (netdsl's torch
layers `SelfAttention` and `QKVAttention`), run as in-projection, `scaled_dot_product_attention`
and out-projection. Counts as torch's: weights `4*D*D` (`in_proj_weight` [3D, D], `out_proj.weight`
[D, D]), biases `4*D`; multiply-accumulates the four projections plus the two products `Q K^T` and
`A V` (`Tq*Tk*D` each), as torch's FlopCounterMode counts them (flops / 2) where the attention runs
as matrix products. Memory rules are what torch 2.13 runs on the CPU: with no dropout (or in eval
mode) its flash kernel, which keeps the projections, its output and a float32 log-sum-exp per
query and head, never the `Tq x Tk` weights (measured: tests/ops/test_attention_ops.py).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import sympy as sp

from netdsl.ops.allocs import STAT_BYTES, Alloc, Mem
from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, RuleError, Shape, Unmodelled
from netdsl.ops.saves import Need, Saves
from netdsl.ops.window import POINT, Windows, whole

ZERO = sp.Integer(0)
_ARGS = (ArgSpec("dropout", "float", 0.0, fmin=0.0, fmax=1.0), ArgSpec("bias", "bool", True))
_DROPOUT = ("attention with dropout > 0 trains through torch's math attention (the flash kernel takes no "
            "dropout), whose saved tensors netdsl does not model")
_DROPOUT_HINT = ("count it with dropout=0 (the same network in eval mode, and the flash kernel's figures), or "
                 "measure the training step in torch")


def _heads_rule(a: Args, d: int) -> None:
    if d % a.heads:
        raise RuleError("heads", f"{d} features (D) do not split into {a.heads} heads: D % heads = {d % a.heads}",
                        "nn.MultiheadAttention needs D divisible by heads; pick heads dividing D")


def _param_tensors(a: Args) -> int:
    """in_proj_weight and out_proj.weight, and with bias in_proj_bias and out_proj.bias."""
    return 4 if a.bias else 2


def _params(d: sp.Expr, bias: bool) -> tuple[sp.Expr, sp.Expr]:
    """Weights (in_proj_weight [3D, D] and out_proj.weight [D, D]) and biases (3D and D)."""
    return sp.expand(4 * d * d), sp.expand(4 * d) if bias else ZERO


def _module(a: Args, d: int) -> dict[str, Any]:
    kw: dict[str, Any] = dict(embed_dim=d, num_heads=a.heads)
    if a.dropout:
        kw["dropout"] = a.dropout
    if not a.bias:
        kw["bias"] = False
    return kw


def _lse(m: Need | Mem, a: Args, tq: sp.Expr) -> sp.Expr:
    """The flash kernel's float32 log-sum-exp, one per query and head."""
    return sp.expand(m.batch * a.heads * tq * STAT_BYTES)


def _saved(a: Args, need: Need, ins: list[Shape], proj: sp.Expr, in_weights: sp.Expr) -> Saves:
    """What the flash path keeps: each input for its projection weight's gradient (under autocast its
    16-bit copy instead, unless it is 16 bits already), the projections `proj` values, the output
    and the log-sum-exp; under autocast also the 16-bit copies of the in-projection weights whose
    input needs a gradient (`in_weights` values) and of out_proj.weight (its input always needs one)."""
    if a.dropout:
        raise Unmodelled(_DROPOUT, _DROPOUT_HINT)
    d, w = ins[0][1], need.autocast or need.width
    out = need.values((ins[0][0], d))
    extra = (proj + out) * w + _lse(need, a, ins[0][0])
    keep = tuple(range(len(ins))) if need.params else ()
    if need.autocast is None:
        return Saves(inputs=keep, extra=sp.expand(extra), layout="nchw")
    kept = tuple(i for i in keep if need.widths[i] == need.autocast)
    copies = sum((need.values(ins[i]) for i in keep if i not in kept), ZERO)
    return Saves(inputs=kept, extra=sp.expand(extra + (copies + in_weights + d * d) * need.autocast), layout="nchw",
                 width=need.autocast)


def _cast(m: Mem, ins: list[Shape], i: int) -> sp.Expr:
    """Bytes of autocast's 16-bit copy of input i while its projection runs (none if not needed)."""
    return m.values(ins[i]) * m.autocast if m.autocast is not None and m.widths[i] != m.autocast else ZERO


def _transposed(m: Need | Mem, i: int) -> bool:
    """Input i is a transposed sequence (`tokens` of an image) that matmul cannot view as [N*T, D]."""
    return m.layouts[i:i + 1] == ("ndt",) and 1 not in m.at[i]


def _project(m: Mem, a: Args, ins: list[Shape], i: int, made: sp.Expr) -> sp.Expr:
    """Bytes alive while input i is projected to `made` bytes: on a transposed sequence matmul copies
    the input to [N*T, D] (a view for one sample), then adds the bias out of place."""
    if not _transposed(m, i):
        return made
    return 2 * made if a.bias else sp.Min(m.batch - 1, 1) * m.floats(ins[i]) + made


def _copied(s: Saves, need: Need, ins: list[Shape]) -> Saves:
    """A kept input that is a transposed sequence: matmul keeps its [N*T, D] copy instead (for one
    sample a view of it, counted here as the copy, as linear does)."""
    moved = tuple(i for i in s.inputs if _transposed(need, i))
    if not moved:
        return s
    extra = sum((need.values(ins[i]) * need.widths[i] for i in moved), ZERO)
    return replace(s, inputs=tuple(i for i in s.inputs if i not in moved), extra=sp.expand(s.extra + extra))


class Attention(OpDef):
    name = "attention"
    args = (ArgSpec("heads", "int", minimum=1), *_ARGS)
    doc = ("attention(heads, dropout=0.0, bias=true): self-attention on a sequence [T, D] -> [T, D], "
           "nn.MultiheadAttention(D, heads, batch_first=True) with x as query, key and value")
    # Matrix products with weights: connections are its multiply-accumulates, as a linear layer's.
    category = Category.LINEAR
    ranks = (2,)

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        _heads_rule(a, ins[0][1])

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        t, d = ins[0]
        weights, biases = _params(d, a.bias)
        return Counts(weights=weights, biases=biases, macs=sp.expand(4 * t * d * d + 2 * t * t * d))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "SelfAttention", _module(a, ins[0][1])

    def param_tensors(self, a: Args, inputs: int, c: Counts) -> int:
        return _param_tensors(a)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        t, d = ins[0]
        # addmm keeps the weight (under autocast its copy) only for the input's gradient
        return _copied(_saved(a, need, ins, need.values((t, 3 * d)), 3 * d * d if need.grads[0] else ZERO), need, ins)

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return [(whole(ins[0][0]), POINT)]  # every token reads every token

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # in-projection [N, T, 3D], the kernel's output [N, T, D] (viewed as heads) and its
        # log-sum-exp, the out-projection [N, T, D]: all alive at once at the out-projection
        t, d = ins[0]
        unit = m.values((t, d)) * m.width
        cached_in = cached_out = ZERO
        if m.autocast is not None:  # 16-bit copies of the leaf weights (and biases), cached
            cached_in = (3 * d * d + (3 * d if a.bias else 0)) * m.autocast
            cached_out = (d * d + (d if a.bias else 0)) * m.autocast
        busiest = sp.Max(_cast(m, ins, 0) + _project(m, a, ins, 0, 3 * unit), 4 * unit + _lse(m, a, t),
                         5 * unit + cached_out)
        return Alloc(peak=sp.expand(cached_in + busiest), output=sp.expand(unit), layout="nchw",
                     cached=sp.expand(cached_in + cached_out))


class AttentionQKV(OpDef):
    name = "attention_qkv"
    args = (ArgSpec("heads", "int", minimum=1), *_ARGS)
    doc = ("attention_qkv(q, k, v, heads=H, dropout=0.0, bias=true): queries q [Tq, D] over keys k and "
           "values v [Tk, D] -> [Tq, D], nn.MultiheadAttention(D, heads, batch_first=True)(q, k, v)")
    category = Category.LINEAR
    min_inputs = max_inputs = 3
    alone = True
    mismatch_text = ("features",
                     "attention_qkv projects q, k and v with one D x D weight each: give them the same features")

    def match_axes(self, rank: int) -> range:
        return range(1, 2) if rank == 2 else range(rank)  # the features; k and v's tokens: `check`

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        if any(len(s) != 2 for s in ins):
            raise RuleError(None, "attention_qkv() takes sequences [T, D], but got "
                            + ", ".join(f"[{', '.join(map(str, s))}]" for s in ins),
                            "make a sequence first: `-> tokens`")
        if ins[1][0] != ins[2][0]:
            raise RuleError(None, f"attention_qkv(): keys k are [{ins[1][0]}, {ins[1][1]}] but values v are "
                            f"[{ins[2][0]}, {ins[2][1]}]: each key needs its value",
                            "give k and v the same number of tokens")
        _heads_rule(a, ins[0][1])

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        (tq, d), tk = ins[0], ins[1][0]
        weights, biases = _params(d, a.bias)
        return Counts(weights=weights, biases=biases, macs=sp.expand(2 * tq * d * d + 2 * tk * d * d + 2 * tq * tk * d))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "QKVAttention", _module(a, ins[0][1])

    def param_tensors(self, a: Args, inputs: int, c: Counts) -> int:
        return _param_tensors(a)

    def node_path(self, statement_path: str) -> str:
        return statement_path  # its module is the statement's own: `ma.in_proj_weight`

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        (tq, d), tk = ins[0], ins[1][0]
        return _copied(_saved(a, need, ins, need.values((tq + 2 * tk, d)), d * d * sum(need.grads)), need, ins)

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        tk = ins[1][0]
        return [(POINT, POINT), (whole(tk), POINT), (whole(tk), POINT)]

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # three projections one after another (autocast copies an input and a weight third for each:
        # chunks of in_proj_weight are views, which autocast does not cache), then as attention
        (tq, d), tk = ins[0], ins[1][0]
        q, k = m.values((tq, d)) * m.width, m.values((tk, d)) * m.width
        chunk = cached_out = ZERO
        if m.autocast is not None:
            chunk = (d * d + (d if a.bias else 0)) * m.autocast
            cached_out = chunk
        before = (ZERO, q, q + k)  # the projections made before input i's
        made = (q, k, k)
        busiest = sp.Max(*(before[i] + _cast(m, ins, i) + chunk + _project(m, a, ins, i, made[i]) for i in range(3)),
                         2 * q + 2 * k + _lse(m, a, tq), 3 * q + 2 * k + cached_out)
        return Alloc(peak=sp.expand(busiest), output=sp.expand(q), layout="nchw", cached=sp.expand(cached_out))


OPS = (Attention(), AttentionQKV())
