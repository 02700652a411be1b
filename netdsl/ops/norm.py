"""batchnorm (BatchNorm2d on images, BatchNorm1d on features) and layernorm (over the channels at each
position of an image, torchvision's LayerNorm2d; over the features of a vector)."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.allocs import STAT_BYTES, Alloc, Mem, fresh
from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, Shape
from netdsl.ops.saves import Need, Saves
from netdsl.ops.window import Windows, pointwise


class BatchNorm(OpDef):
    name = "batchnorm"
    args = (ArgSpec("eps", "float", 1e-5, fmin=0.0), ArgSpec("momentum", "float", 0.1, fmin=0.0, fmax=1.0),
            ArgSpec("affine", "bool", True))
    doc = "BatchNorm2d (images) or BatchNorm1d (features)(channels inferred, eps, momentum, affine)"
    category = Category.NORM
    ranks = (1, 3)
    darknet_role = "bn"
    running_stats = True

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        c = ins[0][0]
        # Running mean and variance, and num_batches_tracked.
        return Counts(norm_params=2 * c if a.affine else sp.Integer(0), buffers=2 * c + 1)

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        in_shape = ins[0]
        kw: dict[str, Any] = dict(num_features=in_shape[0], eps=a.eps, momentum=a.momentum)
        if not a.affine:
            kw["affine"] = False
        return ("BatchNorm2d" if len(in_shape) == 3 else "BatchNorm1d"), kw

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        if need.eval_mode:  # running statistics (buffers) in place of the batch's
            return Saves(inputs=(0,))
        # the input, and the batch's mean and inverse std per channel (float32): not per sample
        return Saves(inputs=(0,), extra=sp.expand(2 * ins[0][0] * STAT_BYTES))

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(1)

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return fresh(m.floats(out))


class LayerNorm(OpDef):
    name = "layernorm"
    args = (ArgSpec("eps", "float", 1e-5, fmin=0.0), ArgSpec("affine", "bool", True))
    doc = ("LayerNorm(channels inferred, eps, affine): images over the channels at each position "
           "(torchvision's LayerNorm2d), features over the features, a sequence over each token's features")
    category = Category.NORM
    ranks = (1, 2, 3)

    @staticmethod
    def _normalised(s: tuple[Any, ...]) -> Any:
        return s[0] if len(s) == 3 else s[-1]  # an image's channels, else the last axis

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        return Counts(norm_params=2 * self._normalised(ins[0]) if a.affine else sp.Integer(0))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        in_shape = ins[0]
        kw: dict[str, Any] = dict(normalized_shape=self._normalised(in_shape), eps=a.eps)
        if not a.affine:
            kw["elementwise_affine"] = False
        return ("ChannelLayerNorm" if len(in_shape) == 3 else "LayerNorm"), kw

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # the input (a permuted view of it for images), and a float32 mean and rstd per position
        image = len(ins[0]) == 3
        positions = need.values(ins[0][1:] if image else ins[0][:-1])
        return Saves(inputs=(0,), extra=sp.expand(2 * positions * STAT_BYTES), layout="nhwc" if image else "nchw")

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(1)

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # native_layer_norm returns float32 mean and rstd per normalised position beside the output;
        # an image's output is a permuted view of a contiguous [N, H, W, C] tensor, a sequence's is
        # contiguous whatever its input's layout
        stats = 2 * m.values(ins[0][1:] if len(ins[0]) == 3 else ins[0][:-1]) * STAT_BYTES
        return fresh(m.floats(out), "nhwc" if len(ins[0]) == 3 else "nchw", stats)


OPS = (BatchNorm(), LayerNorm())
