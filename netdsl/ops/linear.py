"""Learned linear maps: linear (fully connected, on features), channel_linear (nn.Linear over the
channels at each position of an image) and layer_scale (a learned scale per channel)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import sympy as sp

from netdsl.ops import allocs
from netdsl.ops.allocs import Alloc, Mem, fresh
from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, Shape
from netdsl.ops.saves import PARAM_WIDTH, Need, Saves, low_precision
from netdsl.ops.window import Windows, pointwise


class Linear(OpDef):
    name = "linear"
    args = (ArgSpec("out", "int", minimum=1), ArgSpec("bias", "bool", True))
    doc = ("Linear(in inferred, out, bias); takes features [F] (flatten an image first) or a sequence [T, D], "
           "each token: [T, out]")
    category = Category.LINEAR
    ranks = (1, 2)

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (*ins[0][:-1], a.out)

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        return Counts(weights=sp.expand(ins[0][-1] * a.out), biases=a.out if a.bias else sp.Integer(0),
                      macs=sp.expand(sp.Mul(*ins[0]) * a.out))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Linear", dict(in_features=ins[0][-1], out_features=a.out, bias=a.bias)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # addmm keeps the input for the weight's gradient, the weight for the input's
        weights = self.counts(a, ins, out).weights if need.grads[0] else sp.Integer(0)
        s = low_precision(need, ins, (0,) if need.params else (), weights)
        if s.inputs and need.layouts[:1] == ("ndt",) and 1 not in need.at[0]:
            # a transposed sequence: matmul reads it as [N*T, D], a copy (kept in its place) for a
            # batch of more than one sample; a batch of one is a view, counted here as the copy
            s = replace(s, inputs=(), extra=sp.expand(s.extra + need.floats(ins[0])))
        return replace(s, layout="nchw")

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(1)

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        c = self.counts(a, ins, out)
        o = m.floats(out)
        if len(ins[0]) == 1 or m.layouts[:1] != ("ndt",) or 1 in m.at[0]:
            return allocs.low_precision(m, ins, c.weights + c.biases, fresh(o, "nchw"))
        # a transposed sequence: matmul reads it as [N*T, D], a copy unless the batch is one sample,
        # then adds the bias out of place (as torch does while a dispatch mode watches)
        copy = sp.Min(m.batch - 1, 1) * m.floats(ins[0])
        return allocs.low_precision(m, ins, c.weights + c.biases,
                                    fresh(o, "nchw", sp.Max(copy, o) if a.bias else copy))


class ChannelLinear(OpDef):
    name = "channel_linear"
    args = (ArgSpec("out", "int", minimum=1), ArgSpec("bias", "bool", True))
    doc = ("nn.Linear(in inferred, out, bias) over the channels at each position of an image (ConvNeXt's "
           "channels-last Linear; weight [out, in]): [C, H, W] -> [out, H, W]")
    category = Category.LINEAR

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (a.out, *ins[0][1:])

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        c, h, w = ins[0]
        return Counts(weights=sp.expand(c * a.out), biases=a.out if a.bias else sp.Integer(0),
                      macs=sp.expand(c * a.out * h * w))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "ChannelLinear", dict(in_features=ins[0][0], out_features=a.out, bias=a.bias)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # mm keeps the input for the weight's gradient, the weight for the input's. It reads the
        # input as [N*H*W, C]: a view where the permuted input is contiguous (channels last, as
        # after layernorm) or no axes merge across the batch, else a copy (the one kept).
        c, h, w = need.at[0]
        weights = self.counts(a, ins, out).weights if need.grads[0] else sp.Integer(0)
        s = low_precision(need, ins, (0,) if need.params else (), weights)
        if s.inputs and not (need.layouts[0] == "nhwc" or c == 1 or h * w == 1):
            s = replace(s, inputs=(), extra=sp.expand(s.extra + need.floats(ins[0])))
        return replace(s, layout="nhwc")

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(1)

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        c = self.counts(a, ins, out)
        return allocs.low_precision(m, ins, c.weights + c.biases, self._allocates(a, ins, out, m))

    @staticmethod
    def _allocates(a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        o = m.floats(out)
        if m.layouts[:1] == ("nhwc",) or sp.Mul(*ins[0][1:]) == 1:  # the permuted input is contiguous
            return fresh(o, "nhwc")
        # matmul copies the permuted input (clone), then mm; with a bias, add makes the result anew
        copy = m.floats(ins[0])
        return fresh(o, "nhwc", sp.Max(copy, o) if a.bias else copy)


class LayerScale(OpDef):
    name = "layer_scale"
    args = (ArgSpec("init", "float", 1e-6),)
    doc = "layer_scale(init=1e-6): a learned [C, 1, 1] weight, filled with init, multiplied in (ConvNeXt)"
    # An element-wise product, counted as the activations are (one connection per unit); its
    # weights are parameters, but not multiply-accumulates of a conv or linear layer.
    category = Category.ACTIVATION

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        return Counts(weights=ins[0][0])

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "LayerScale", dict(channels=ins[0][0], init=a.init)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # `x * weight` keeps x for the weight's gradient; a float32 weight makes the product float32
        return Saves(inputs=(0,) if need.params else (), width=PARAM_WIDTH)

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(1)

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return fresh(m.floats(out))


OPS = (Linear(), ChannelLinear(), LayerScale())
