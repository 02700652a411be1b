"""YOLO11's position-sensitive attention (ultralytics' `Attention`, inside C2PSA's PSABlock) as two
layers on its qkv map: `psa_attention(heads, key_dim)` and `psa_values(heads, key_dim)`.

The qkv map (ultralytics makes it with a 1x1 conv and BatchNorm, `dim + 2*heads*key_dim`
channels) is `[heads*(2*key_dim + head_dim), H, W]`: each head's `key_dim` query channels, then
`key_dim` key channels, then `head_dim` value channels; every pixel is a token, N = H*W of them.

- `psa_attention` -> `[heads*head_dim, H, W]`: per head `v @ softmax(q^T k * key_dim^-0.5)^T`.
  No weights; multiply-accumulates `heads*N*N*(key_dim + head_dim)`, the two batched matrix
  products as torch's FlopCounterMode counts them. Every output pixel reads every input pixel.
- `psa_values` -> `[heads*head_dim, H, W]`: the value channels alone, head after head (ultralytics
  feeds them to its depthwise `pe` conv). Pointwise; a copy, or a view with one head.

ultralytics' Attention written with them (`cb` its Conv without activation: conv and BatchNorm; the
whole PSABlock is BLOCK in tests/ops/test_psa_ops.py, bit for bit ultralytics' outputs):

    block psattn(c, heads, kd = c // heads // 2) {
      input x
      qkv = x |> cb(c + 2 * heads * kd)
      a = qkv |> psa_attention(heads, kd)
      v = qkv |> psa_values(heads, kd)
      pe = v |> cb(c, 3, g=c)
      proj = add(a, pe) |> cb(c)
      output = proj
    }

The memory rules are what torch 2.13 does on the CPU for the torch layers `PSAttention` and
`PSValues` (netdsl/backends/torch_psa.py), measured in tests/ops/test_psa_ops.py and
tests/analysis/: autograd keeps the qkv map (q, k and v are views of it), the scaled queries and the
`heads x N x N` softmax; an eval forward holds two `N x N` maps at once. Under autocast the products
run in 16 bits: on a 32-bit input they cast (and keep) 16-bit copies of their operands instead.
"""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.allocs import ALIAS, Alloc, Mem, fresh
from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, RuleError, Shape
from netdsl.ops.saves import VIEW, Need, Saves
from netdsl.ops.window import Windows, pointwise, whole

_ARGS = (ArgSpec("heads", "int", minimum=1), ArgSpec("key_dim", "int", minimum=1))
_LAYOUT = ("the qkv map holds heads*(2*key_dim + head_dim) channels (ultralytics' Attention(dim) makes "
           "dim + 2*heads*key_dim with a 1x1 conv)")


def _check(a: Args, ins: list[tuple[int, ...]]) -> None:
    """The qkv map's channels split into `heads` groups of `2*key_dim + head_dim`, head_dim >= 1."""
    c = ins[0][0]
    if c % a.heads:
        raise RuleError("heads", f"the qkv map's {c} channels do not split into {a.heads} heads: "
                        f"{c} % {a.heads} = {c % a.heads}", f"{_LAYOUT}: pick heads dividing {c}")
    per = c // a.heads
    if per - 2 * a.key_dim < 1:
        raise RuleError("key_dim", f"each of the {a.heads} heads has {per} channels, which leaves head_dim = "
                        f"{per} - 2*{a.key_dim} = {per - 2 * a.key_dim} value channels: it must be at least 1",
                        f"{_LAYOUT}: make 2*key_dim less than {per}, or the qkv map wider")


def _head_dim(a: Args, c: sp.Expr) -> sp.Expr:
    return sp.expand(c / a.heads - 2 * a.key_dim)


def _out(a: Args, ins: list[Shape]) -> Shape:
    c, h, w = ins[0]
    return (sp.expand(c - 2 * a.heads * a.key_dim), h, w)


class PSAttention(OpDef):
    name = "psa_attention"
    args = _ARGS
    doc = ("psa_attention(heads, key_dim): YOLO11's attention on a qkv map [heads*(2*key_dim + head_dim), H, W] "
           "-> [heads*head_dim, H, W], per head v @ softmax(q^T k / sqrt(key_dim))^T over the H*W pixels")
    # Matrix products (without weights): connections are its multiply-accumulates, as attention's.
    category = Category.LINEAR
    ranks = (3,)

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        _check(a, ins)

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return _out(a, ins)

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        c, h, w = ins[0]
        tokens = h * w
        return Counts(macs=sp.expand(a.heads * tokens * tokens * (a.key_dim + _head_dim(a, c))))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "PSAttention", dict(heads=a.heads, key_dim=a.key_dim)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # autocast runs both products in 16 bits: scores, softmax and output are 16-bit whatever
        # the input's width (the peak pass reads the output's width from here, grads or not)
        width = need.autocast
        if not need.grads[0]:
            return Saves(layout="nchw", width=width)
        heads, kd, tokens = a.heads, a.key_dim, ins[0][1] * ins[0][2]
        square = heads * tokens * tokens  # the softmax, kept by itself and by the second product
        if width is None or need.widths[0] == width:
            # q, k and v are views of the input: its storage; and the scaled queries q * scale
            made = need.values((heads * kd * tokens + square,)) * (width or need.width)
            return Saves(inputs=(0,), extra=sp.expand(made), layout="nchw", width=width)
        # a 32-bit input under autocast: the products keep 16-bit copies of the scaled queries, of
        # k and of v instead of the input
        copies = heads * (2 * kd + _head_dim(a, ins[0][0])) * tokens
        return Saves(extra=sp.expand(need.values((copies + square,)) * width), layout="nchw", width=width)

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        _, h, w = ins[0]
        return [(whole(h), whole(w))]  # every pixel attends to every pixel

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # the scaled queries (in the input's width) and the scores; then the scores and their
        # softmax; then the softmax and the output. Under autocast with a 32-bit input each product
        # also holds its 16-bit copies of the operands (the softmax is 16-bit already).
        heads, kd, tokens = a.heads, a.key_dim, ins[0][1] * ins[0][2]
        given = m.widths[0] if m.widths else m.width
        square = m.values((heads * tokens * tokens,)) * m.width
        queries = m.values((heads * kd * tokens,))
        output = m.floats(out)
        cast = m.autocast is not None and given != m.autocast
        first = queries * given + (2 * queries * m.width if cast else 0) + square
        last = square + output + (output if cast else 0)  # v's copy is the output's size
        return Alloc(peak=sp.expand(sp.Max(first, 2 * square, last)), output=output, layout="nchw")


class PSValues(OpDef):
    name = "psa_values"
    args = _ARGS
    doc = ("psa_values(heads, key_dim): the value channels of a qkv map [heads*(2*key_dim + head_dim), H, W], "
           "head after head -> [heads*head_dim, H, W]")
    category = Category.SHAPE
    ranks = (3,)

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        _check(a, ins)

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return _out(a, ins)

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "PSValues", dict(heads=a.heads, key_dim=a.key_dim)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # one head: the values are a channel range of the input, a view; else reshape copies them
        # (a copy keeps nothing for backward)
        return VIEW if a.heads == 1 else Saves(layout="nchw")

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(1)

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return ALIAS if a.heads == 1 else fresh(m.floats(out), "nchw")


OPS = (PSAttention(), PSValues())
