"""detect_v8: the anchor-free YOLO head of ultralytics 8.x (YOLOv8, YOLO11), decoding only.

`detect_v8(p3, p4, ..., classes=NC, strides=[8, 16, ...], reg_max=16)` reads each level's raw map
`[4*reg_max + classes, H_i, W_i]` (the box branch's output, then the class branch's: ordinary
statements of the spec, `cat(box, cls)`). In training mode the network's output is those maps as
they came; in eval mode `(decoded, raw)`, `decoded` `[4 + classes, sum(H_i*W_i)]` per sample: box
centre and size in input pixels (the softmax expectation over `reg_max` bins per side, Distribution
Focal Loss's integral, as distances from the cell's centre) and sigmoid class scores. The shape here
is `decoded`'s; the counts are the decoding's frozen 1x1 convolution (`dfl.conv`, reg_max weights,
4*reg_max multiply-accumulates per cell, as torch's FlopCounterMode counts it), which ultralytics'
parameter counts include. The torch module is `netdsl.backends.torch_detect_v8.DetectV8`; a fresh
network's branch biases are set as ultralytics' `bias_init` sets them (`torch_head_init`).
"""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.allocs import Alloc, Mem
from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, RuleError, Shape
from netdsl.ops.detect import stride_rule
from netdsl.ops.saves import NOTHING, Need, Saves
from netdsl.ops.window import Windows, pointwise


def _cells(ins: list[Shape]) -> sp.Expr:
    return sp.expand(sp.Add(*[s[1] * s[2] for s in ins]))


class DetectV8(OpDef):
    name = "detect_v8"
    doc = ("detect_v8(p3, p4, ..., classes=NCLS, strides=[8, 16, ...], reg_max=16): ultralytics 8.x's anchor-free "
           "head; each map is [4*reg_max + classes, H, W] (box branch, then class branch); eval output "
           "[4 + classes, sum(H*W)]: xywh in input pixels (DFL expectation) and sigmoid class scores")
    args = (ArgSpec("classes", "int", minimum=1), ArgSpec("strides", "ints"), ArgSpec("reg_max", "int", 16, minimum=2))
    min_inputs, max_inputs = 1, None
    final = True
    task = "detect"  # trained by netdsl.tasks.detect with ultralytics 8.x's recipe (trainer_v8)
    # Its one weight is the DFL's 1x1 convolution: the conv totals (weights, MACs) include it, as
    # ultralytics' parameter count and FlopCounterMode's conv figure do; connections are its MACs.
    category = Category.CONV
    fixed_params = True  # the DFL's weights are the bins 0 .. reg_max - 1, never trained

    def match_axes(self, rank: int) -> range:
        return range(0)  # levels differ in size by design

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        if any(len(s) != 3 for s in ins):
            raise RuleError(None, "detect_v8() takes image feature maps [C, H, W]",
                            "give it each level's raw map: cat(box branch, class branch)")
        box = 4 * a.reg_max
        for i, s in enumerate(ins):
            if s[0] == box + a.classes:
                continue
            left = s[0] - a.classes
            what = f"feature map {i + 1} has {s[0]} channels: {left} box channels besides the {a.classes} classes"
            if left > 0 and left % box:
                raise RuleError("reg_max", f"{what}, which 4*reg_max = {box} (reg_max={a.reg_max}) does not divide",
                                "each map is cat(box branch, class branch) with 4*reg_max box channels: check reg_max, "
                                "classes and the box branch's last conv")
            raise RuleError("reg_max" if left > 0 else "classes", f"{what}; the head needs 4*reg_max + classes = "
                            f"{box} + {a.classes} = {box + a.classes}",
                            "each map is cat(box branch, class branch): the box branch ends with a conv to "
                            "4*reg_max channels, the class branch with a conv to classes channels")
        stride_rule(a.strides, ins, image)

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (sp.expand(a.classes + 4), _cells(ins))

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        return Counts(weights=sp.expand(sp.Integer(0) + a.reg_max), macs=sp.expand(4 * a.reg_max * _cells(ins)))

    def param_tensors(self, a: Args, inputs: int, c: Counts) -> int:
        return 1  # dfl.conv.weight, whatever the number of levels

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "DetectV8", dict(classes=a.classes, strides=list(a.strides), reg_max=a.reg_max)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # Training mode returns its inputs as they are: no autograd node, nothing kept.
        return NOTHING

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(len(ins))  # a cell's box and scores read that cell of its level only

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # DetectV8.forward in eval, as aten ops see it (measured: tests/ops/test_detect_v8.py). The
        # anchors first (cell centres [2, A] and strides [1, A], alive to the end; their temporaries,
        # at most about 12*A values, die before the rest and never make the peak: the next steps
        # hold more than 20*A values even at one sample, reg_max 2 and one class); then `flat`, the
        # levels side by side [N, C, A] (alive to the end), and the DFL's softmax over the box
        # channels while its convolution makes the distances [N, 4, A]; dist2bbox's corners, their
        # sum, its half and the sizes before its `cat`; finally the boxes in pixels, the sigmoid
        # of the classes and the output's `cat`. The raw maps it returns are its inputs. Flattening a
        # map's H and W is a view whether it lies contiguous or channels-last (nhwc).
        cells = _cells(ins)
        flat = m.floats((ins[0][0], cells))
        anchors = 3 * cells * m.width
        dist = m.floats((4, cells))
        soft = m.floats((4 * a.reg_max, cells))
        scores = m.floats((a.classes, cells))
        # Under autocast the convolution reads a 16-bit copy of dfl.conv.weight, made while it runs
        # and not cached (autocast caches copies of parameters that require grad; this one is frozen).
        weight = a.reg_max * (m.autocast or 0)
        steps = [soft + dist + weight, 4 * dist, 2 * dist + 2 * scores]
        return Alloc(peak=sp.Max(*(sp.expand(flat + anchors + x) for x in steps)), output=sp.expand(dist + scores))


OPS = (DetectV8(),)
