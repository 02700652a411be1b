"""Element-wise layers of any rank: activations, dropout, stochastic depth, identity, softmax."""
from __future__ import annotations

from typing import Any

from netdsl.ops.base import Args, ArgSpec, Category, OpDef, RuleError, Shape


class _Elementwise(OpDef):
    category = Category.ACTIVATION
    ranks = None
    torch_name = ""

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return self.torch_name, {}


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


class StochasticDepth(_Elementwise):
    name = "stochastic_depth"
    args = (ArgSpec("p", "float", fmin=0.0, fmax=1.0), ArgSpec("mode", "str", "row", choices=("row", "batch")))
    doc = ('stochastic_depth(p, mode="row" or "batch"): torchvision\'s StochasticDepth; the identity in eval '
           "mode, in training zeroes each sample (or the batch) with probability p and divides the rest by 1 - p")

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "StochasticDepth", dict(p=a.p, mode=a.mode)


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
