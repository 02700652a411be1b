"""Element-wise layers of any rank: activations, dropout, stochastic depth, identity, softmax."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.allocs import ALIAS, Alloc, Mem, fresh
from netdsl.ops.base import Args, ArgSpec, Category, OpDef, RuleError, Shape
from netdsl.ops.saves import INPUT, OUTPUT, VIEW, Need, Saves
from netdsl.ops.window import POINT, Windows, pointwise, whole


class _Elementwise(OpDef):
    category = Category.ACTIVATION
    ranks = None
    torch_name = ""

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return self.torch_name, {}

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # derivatives.yaml: relu, sigmoid, tanh and the softmaxes differentiate through their
        # result; the others (hardtanh for relu6, silu, mish, gelu, leaky_relu, ...) through their input
        if self.torch_name == "Identity":
            return VIEW
        return OUTPUT if self.torch_name in _KEEP_RESULT else INPUT

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(1)

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # nn.Identity returns its input itself
        return ALIAS if self.torch_name == "Identity" else fresh(m.floats(out))


_KEEP_RESULT = frozenset({"ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax"})


def _simple(name: str, torch_name: str, category: Category = Category.ACTIVATION) -> _Elementwise:
    op = type(f"Op_{name}", (_Elementwise,), {"name": name, "torch_name": torch_name, "category": category,
                                              "doc": f"{torch_name}()"})
    return op()


class LeakyReLU(_Elementwise):
    name = "leaky_relu"
    args = (ArgSpec("slope", "float", 0.01),)
    doc = "LeakyReLU(negative_slope=slope)"

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "LeakyReLU", dict(negative_slope=a.slope)


class GELU(_Elementwise):
    name = "gelu"
    args = (ArgSpec("approximate", "str", "none", choices=("none", "tanh")),)
    doc = 'GELU(approximate="none" or "tanh")'

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "GELU", ({"approximate": a.approximate} if a.approximate != "none" else {})


class Dropout(_Elementwise):
    name = "dropout"
    args = (ArgSpec("p", "float", 0.5, fmin=0.0, fmax=1.0),)
    doc = "Dropout(p)"

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Dropout", dict(p=a.p)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        if a.p == 0:  # torch hands back the input itself
            return VIEW
        # On the CPU dropout is `input * noise`, noise a float tensor of the input's shape (at p = 1,
        # `input * 0` with a 0-d zero): the product keeps the noise.
        return Saves(extra=sp.Integer(need.width) if a.p == 1 else need.floats(ins[0]))

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return ALIAS  # the identity in eval mode: the input itself


class StochasticDepth(_Elementwise):
    name = "stochastic_depth"
    args = (ArgSpec("p", "float", fmin=0.0, fmax=1.0), ArgSpec("mode", "str", "row", choices=("row", "batch")))
    doc = ('stochastic_depth(p, mode="row" or "batch"): torchvision\'s StochasticDepth; the identity in eval '
           "mode, in training zeroes each sample (or the batch) with probability p and divides the rest by 1 - p")

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "StochasticDepth", dict(p=a.p, mode=a.mode)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        if a.p == 0:  # the module returns its input
            return VIEW
        # `x * noise`, noise [N, 1, 1, 1] per row or [1, 1, 1, 1] for the batch: the product keeps it
        return Saves(extra=sp.expand((need.batch if a.mode == "row" else 1) * need.width))

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return ALIAS  # the identity in eval mode: the input itself


class _Softmax(_Elementwise):
    args = (ArgSpec("dim", "int", 1),)

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        # `dim` counts the batch dimension, as in torch: 1 is the channels.
        in_shape = ins[0]
        rank = len(in_shape) + 1
        if not -rank <= a.dim < rank:
            raise RuleError("dim", f"dim={a.dim} is out of range for a [N, {', '.join(map(str, in_shape))}] tensor",
                            f"dims run from {-rank} to {rank - 1}, counting the batch; 1 is the channels")

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return self.torch_name, dict(dim=a.dim)

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        # Along the height or the width (dim 2 or 3, counting the batch) every unit reads the axis.
        rank = len(ins[0])
        axis = int(a.dim) % (rank + 1)
        if rank != 3 or axis < 2:
            return pointwise(1)
        along = whole(ins[0][axis - 1])
        return [(along, POINT) if axis == 2 else (POINT, along)]


class Softmax(_Softmax):
    name = "softmax"
    doc = "Softmax(dim=1); dim counts the batch dimension, as in torch"
    torch_name = "Softmax"


class LogSoftmax(_Softmax):
    name = "log_softmax"
    doc = "LogSoftmax(dim=1); dim counts the batch dimension, as in torch"
    torch_name = "LogSoftmax"


OPS = (
    _simple("relu", "ReLU"), _simple("relu6", "ReLU6"), _simple("sigmoid", "Sigmoid"), _simple("tanh", "Tanh"),
    _simple("silu", "SiLU"), _simple("mish", "Mish"), _simple("hardswish", "Hardswish"),
    _simple("hardsigmoid", "Hardsigmoid"),
    _simple("identity", "Identity", Category.SHAPE),
    LeakyReLU(), GELU(), Dropout(), StochasticDepth(), Softmax(), LogSoftmax(),
)
