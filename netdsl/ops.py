"""The builtin layers: their arguments, in positional order, with types and defaults.

Pure data, read by `passes.lower` (argument checking), the shape pass and the backends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ArgType = Literal["int", "float", "bool", "str"]


@dataclass(frozen=True)
class ArgSpec:
    name: str
    type: ArgType
    default: int | float | bool | str | None = None  # None: required
    choices: tuple[str, ...] = ()
    # Where the default is another argument's value (a pool's stride is its kernel size).
    default_from: str | None = None
    minimum: int | None = None
    # Inclusive bounds for float arguments, as PyTorch enforces them.
    fmin: float | None = None
    fmax: float | None = None

    @property
    def required(self) -> bool:
        return self.default is None and self.default_from is None


@dataclass(frozen=True)
class OpSpec:
    name: str
    args: tuple[ArgSpec, ...]
    doc: str

    def arg(self, name: str) -> ArgSpec | None:
        return next((a for a in self.args if a.name == name), None)


def _conv_args(transposed: bool) -> tuple[ArgSpec, ...]:
    extra = (ArgSpec("output_padding", "int", 0, minimum=0),) if transposed else ()
    return (
        ArgSpec("out", "int", minimum=1),
        ArgSpec("kernel", "int", minimum=1),
        ArgSpec("stride", "int", 1, minimum=1),
        ArgSpec("padding", "int", 0, minimum=0),
        *extra,
        ArgSpec("dilation", "int", 1, minimum=1),
        ArgSpec("groups", "int", 1, minimum=1),
        ArgSpec("bias", "bool", True),
    )


OPS: dict[str, OpSpec] = {o.name: o for o in (
    OpSpec("conv", _conv_args(False), "Conv2d(in inferred, out, kernel, stride, padding, dilation, groups, bias)"),
    OpSpec("convT", _conv_args(True), "ConvTranspose2d(in inferred, out, kernel, stride, padding, output_padding, dilation, groups, bias)"),
    OpSpec("maxpool", (
        ArgSpec("kernel", "int", minimum=1), ArgSpec("stride", "int", default_from="kernel", minimum=1),
        ArgSpec("padding", "int", 0, minimum=0), ArgSpec("dilation", "int", 1, minimum=1),
    ), "MaxPool2d(kernel, stride=kernel, padding, dilation)"),
    OpSpec("avgpool", (
        ArgSpec("kernel", "int", minimum=1), ArgSpec("stride", "int", default_from="kernel", minimum=1),
        ArgSpec("padding", "int", 0, minimum=0),
    ), "AvgPool2d(kernel, stride=kernel, padding)"),
    OpSpec("upsample", (
        ArgSpec("scale", "int", minimum=1), ArgSpec("mode", "str", "nearest", choices=("nearest", "bilinear")),
        ArgSpec("align_corners", "bool", False),
    ), "Upsample(scale_factor=scale, mode)"),
    OpSpec("batchnorm", (
        ArgSpec("eps", "float", 1e-5, fmin=0.0), ArgSpec("momentum", "float", 0.1, fmin=0.0, fmax=1.0), ArgSpec("affine", "bool", True),
    ), "BatchNorm2d(channels inferred, eps, momentum, affine)"),
    OpSpec("relu", (), "ReLU()"),
    OpSpec("leaky_relu", (ArgSpec("slope", "float", 0.01),), "LeakyReLU(negative_slope=slope)"),
    OpSpec("sigmoid", (), "Sigmoid()"),
    OpSpec("tanh", (), "Tanh()"),
    OpSpec("dropout", (ArgSpec("p", "float", 0.5, fmin=0.0, fmax=1.0),), "Dropout(p)"),
)}
