"""conv and convT: 2-d convolution and transposed convolution (Conv2d, ConvTranspose2d)."""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops import allocs
from netdsl.ops.allocs import Alloc, Mem, fresh
from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, RuleError, Shape, scalar, units, window_out
from netdsl.ops.saves import Need, Saves, low_precision
from netdsl.ops.window import Windows, sliding, transposed


def _args(transposed: bool) -> tuple[ArgSpec, ...]:
    extra = (ArgSpec("output_padding", "int", 0, minimum=0, pair=True),) if transposed else ()
    return (
        ArgSpec("out", "int", minimum=1),
        ArgSpec("kernel", "int", minimum=1, pair=True),
        ArgSpec("stride", "int", 1, minimum=1, pair=True),
        ArgSpec("padding", "int", 0, minimum=0, pair=True),
        *extra,
        ArgSpec("dilation", "int", 1, minimum=1, pair=True),
        ArgSpec("groups", "int", 1, minimum=1),
        ArgSpec("bias", "bool", True),
    )


def _groups_rule(a: Args, cin: int) -> None:
    if cin % a.groups or a.out % a.groups:
        raise RuleError("groups", f"groups={a.groups} must divide the input channels ({cin}) and the output "
                        f"channels ({a.out})", "choose groups that divide both")


class Conv(OpDef):
    name = "conv"
    args = _args(False)
    doc = "Conv2d(in inferred, out, kernel, stride, padding, dilation, groups, bias)"
    category = Category.CONV
    darknet_role = "conv"

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        _groups_rule(a, ins[0][0])

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        c, h, w = ins[0]
        return (a.out, *(window_out(x, k, st, p, d) for x, k, st, p, d in
                         zip((h, w), a.kernel, a.stride, a.padding, a.dilation)))

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        cin, (kh, kw) = ins[0][0], a.kernel
        return Counts(weights=sp.expand(cin * a.out * kh * kw / a.groups), biases=a.out if a.bias else sp.Integer(0),
                      macs=sp.expand(units(out) * kh * kw * cin / a.groups))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Conv2d", dict(in_channels=ins[0][0], out_channels=a.out, kernel_size=scalar(a.kernel),
                              stride=scalar(a.stride), padding=scalar(a.padding), dilation=scalar(a.dilation),
                              groups=a.groups, bias=a.bias)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # convolution_backward reads the input and the weight (under autocast, their 16-bit copies)
        return low_precision(need, ins, (0,), self.counts(a, ins, out).weights)

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        h, w = (sliding(d * (k - 1) + 1, st, p) for k, st, p, d in
                zip(a.kernel, a.stride, a.padding, a.dilation))
        return [(h, w)]

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        c = self.counts(a, ins, out)
        return allocs.low_precision(m, ins, c.weights + c.biases, fresh(m.floats(out)))


class ConvT(OpDef):
    name = "convT"
    args = _args(True)
    doc = "ConvTranspose2d(in inferred, out, kernel, stride, padding, output_padding, dilation, groups, bias)"
    category = Category.CONV

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        _groups_rule(a, ins[0][0])
        for op, st, d in zip(a.output_padding, a.stride, a.dilation):
            if op >= max(st, d):
                raise RuleError("output_padding", f"output_padding={op} must be smaller than stride ({st}) or "
                                f"dilation ({d})", "PyTorch's rule for ConvTranspose2d")

    def search_range(self, arg: str, a: Args) -> tuple[int, int, str] | None:
        if arg == "output_padding" and isinstance(a.get("stride"), tuple) and isinstance(a.get("dilation"), tuple):
            hi = min(max(s, d) for s, d in zip(a.stride, a.dilation)) - 1
            return 0, hi, "PyTorch: output_padding < max(stride, dilation)"
        return None

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        c, h, w = ins[0]
        return (a.out, *(sp.expand((x - 1) * st - 2 * p + d * (k - 1) + op + 1) for x, k, st, p, op, d in
                         zip((h, w), a.kernel, a.stride, a.padding, a.output_padding, a.dilation)))

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        cin, (kh, kw) = ins[0][0], a.kernel
        # Every input unit is scattered to k*k*C_out/g outputs.
        return Counts(weights=sp.expand(cin * a.out * kh * kw / a.groups), biases=a.out if a.bias else sp.Integer(0),
                      macs=sp.expand(units(ins[0]) * kh * kw * a.out / a.groups))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "ConvTranspose2d", dict(in_channels=ins[0][0], out_channels=a.out, kernel_size=scalar(a.kernel),
                                       stride=scalar(a.stride), padding=scalar(a.padding),
                                       output_padding=scalar(a.output_padding), groups=a.groups, bias=a.bias,
                                       dilation=scalar(a.dilation))

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # convolution_backward reads the input and the weight (under autocast, their 16-bit copies)
        return low_precision(need, ins, (0,), self.counts(a, ins, out).weights)

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        h, w = (transposed(k, st, p, d) for k, st, p, d in zip(a.kernel, a.stride, a.padding, a.dilation))
        return [(h, w)]

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        c = self.counts(a, ins, out)
        return allocs.low_precision(m, ins, c.weights + c.biases, fresh(m.floats(out)))


OPS = (Conv(), ConvT())
