"""Learned linear maps: linear (fully connected, on features), channel_linear (nn.Linear over the
channels at each position of an image) and layer_scale (a learned scale per channel)."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, Shape


class Linear(OpDef):
    name = "linear"
    args = (ArgSpec("out", "int", minimum=1), ArgSpec("bias", "bool", True))
    doc = "Linear(in inferred, out, bias); takes features [F]: flatten an image first"
    category = Category.LINEAR
    ranks = (1,)

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (a.out,)

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        return Counts(weights=sp.expand(ins[0][0] * a.out), biases=a.out if a.bias else sp.Integer(0),
                      macs=sp.expand(ins[0][0] * a.out))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Linear", dict(in_features=ins[0][0], out_features=a.out, bias=a.bias)


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


OPS = (Linear(), ChannelLinear(), LayerScale())
