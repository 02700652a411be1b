"""detect: the YOLO detection head over several feature maps (one 1x1 conv per level, decoding).

Output layout as ultralytics' YOLOv3 (v9.6.0): in training mode a tuple of raw tensors
`[N, na, H_i, W_i, 5 + classes]`, levels in the order given; in eval mode `(decoded, raw)` with
`decoded` `[N, sum(na*H_i*W_i), 5 + classes]`: xy and wh in input pixels, sigmoid scores.
Weights trained by darknet expect darknet's decoding (`decode="darknet"`): xy = (sigmoid * s -
(s - 1) / 2 + grid) * stride with `scale_xy` s (darknet's scale_x_y, 1 by default; one number or
one per level), wh = exp * anchor; `decode="darknet_new_coords"` (darknet's new_coords=1 after a
logistic head convolution) takes xy the same way and wh = (2*sigmoid)^2 * anchor; ultralytics' is
xy = (2*sigmoid - 0.5 + grid) * stride, wh = (2*sigmoid)^2 * anchor. The raw outputs are the
level convolutions' linear outputs either way (a logistic head's sigmoid is the decoding's).
The shape and counts here describe `decoded` and the level convolutions.
"""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.allocs import INDEX_BYTES, Alloc, Mem, input_copies
from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, RuleError, Shape
from netdsl.ops.saves import Need, Saves, low_precision
from netdsl.ops.window import Windows, pointwise


def stride_rule(strides: tuple[int, ...], ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
    """A head's `strides`: one per feature map, positive, each mapping its map onto the input
    (`image`, the network's first image input at the values in use) exactly."""
    n = len(ins)
    if len(strides) != n:
        raise RuleError("strides", f"{len(strides)} strides for {n} feature maps", "give one stride per feature map")
    if any(st <= 0 for st in strides):
        raise RuleError("strides", "strides must be positive", "a level's stride is input size / its size")
    for i, (s, st) in enumerate(zip(ins, strides)):
        if image is not None and (s[1] * st, s[2] * st) != tuple(image[1:]):
            raise RuleError("strides", f"feature map {i + 1} is {s[1]}x{s[2]}; with stride {st} it covers "
                            f"{s[1] * st}x{s[2] * st}, but the input is {image[1]}x{image[2]}",
                            "each stride must be the input size divided by that map's size")


class Detect(OpDef):
    name = "detect"
    doc = ("detect(p3, p4, ..., classes=NCLS, anchors=[[w, h, w, h, ...], ...], strides=[8, 16, ...], "
           "decode=\"ultralytics\"): one 1x1 conv per level to anchors*(5 + classes) channels; anchors in "
           "input pixels; boxes decoded as ultralytics v9.6.0 does, or as darknet's [yolo] (decode=\"darknet\", "
           "scale_xy=1.05 or one per level; decode=\"darknet_new_coords\" for new_coords=1)")
    args = (ArgSpec("classes", "int", minimum=1), ArgSpec("anchors", "intlists"), ArgSpec("strides", "ints"),
            ArgSpec("decode", "str", "ultralytics", choices=("ultralytics", "darknet", "darknet_new_coords")),
            ArgSpec("scale_xy", "floats", 1.0, fmin=0.0))
    min_inputs, max_inputs = 1, None
    final = True
    category = Category.CONV  # the totals count its level convolutions
    darknet_role = "head"
    task = "detect"

    def match_axes(self, rank: int) -> range:
        return range(0)  # levels differ in size by design

    @staticmethod
    def per_level(a: Args) -> int:
        return len(a.anchors[0]) // 2

    @staticmethod
    def scales(a: Args) -> tuple[float, ...]:
        """scale_xy as given: one number for every level, or one per level."""
        v = a.scale_xy
        return tuple(float(x) for x in v) if isinstance(v, (tuple, list)) else (float(v),)

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        n = len(ins)
        if any(len(s) != 3 for s in ins):
            raise RuleError(None, "detect() takes image feature maps [C, H, W]", "give it the neck's feature maps")
        if len(a.anchors) != n:
            raise RuleError("anchors", f"{len(a.anchors)} lists of anchors for {n} feature maps",
                            "give one list of anchors per feature map, in the same order")
        if len(a.anchors[0]) % 2:
            raise RuleError("anchors", "anchors are (width, height) pairs: each list needs an even number of values",
                            "write e.g. [10, 13, 16, 30, 33, 23] for three anchors")
        if any(v <= 0 for level in a.anchors for v in level):
            raise RuleError("anchors", "anchors must be positive (widths and heights in input pixels)",
                            "write the anchors in pixels of the input image")
        self.check_scales(a, n)
        stride_rule(a.strides, ins, image)

    def check_scales(self, a: Args, n: int) -> None:
        scales = self.scales(a)
        if len(scales) not in (1, n):
            raise RuleError("scale_xy", f"{len(scales)} values of scale_xy for {n} feature maps",
                            "give one number for every level, or one per feature map in the same order")
        if a.decode == "ultralytics" and any(v != 1 for v in scales):
            raise RuleError("scale_xy", "ultralytics' decoding has its own fixed scale (2*sigmoid - 0.5)",
                            'scale_xy is darknet\'s scale_x_y: use it with decode="darknet" or "darknet_new_coords"')

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        cells = sp.Add(*[s[1] * s[2] for s in ins])
        return (sp.expand(self.per_level(a) * cells), sp.expand(a.classes + 5))

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        outs = self.per_level(a) * (a.classes + 5)
        return Counts(weights=sp.expand(outs * sp.Add(*[s[0] for s in ins])), biases=sp.expand(len(ins) * outs),
                      macs=sp.expand(outs * sp.Add(*[s[0] * s[1] * s[2] for s in ins])))

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        made = dict(classes=a.classes, anchors=[list(x) for x in a.anchors], strides=list(a.strides),
                    in_channels=[s[0] for s in ins], decode=a.decode)
        scales = self.scales(a)
        if any(v != 1 for v in scales):  # at its default the module (and an exported file) shows none
            made["scale_xy"] = list(scales)
        return "Detect", made

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        # Training mode: per level a 1x1 convolution (it keeps its input wherever that convolution has
        # an autograd node), then a view, a permute and a copy that keep nothing.
        live = tuple(i for i, g in enumerate(need.grads) if g or need.params)
        weights = sp.Add(*[self.per_level(a) * (a.classes + 5) * ins[i][0] for i in live])
        return low_precision(need, ins, live, sp.expand(weights))

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(len(ins))  # each level's 1x1 convolution

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        # Detect.forward in eval, step by step as aten ops see it. Per level: the conv's output
        # (kept by the local `y` until the next level's conv returns) and its contiguous copy
        # (`raw`); the last level's `y` lives on through the decoding. Decoding a level keeps its
        # int64 aranges, the float grid, the anchors, the sigmoid, xy and wh alive while `cat`
        # makes the level's decoded rows; the decoded levels stay until the final `cat`.
        na = self.per_level(a)
        maps = [m.floats((na * (a.classes + 5), s[1], s[2])) for s in ins]
        pairs = [m.values((na, s[1], s[2], 2)) * m.width for s in ins]
        # A 1x1 map's permute is contiguous already: `.contiguous()` returns it, no copy (where
        # a symbolic map is 1x1 at some values, the formula counts a copy torch does not make).
        single = [sp.Mul(*s[1:]) == 1 for s in ins]
        # Under autocast each level's conv reads a 16-bit copy of a float32 input (alive while it
        # runs) and caches 16-bit copies of its weight and bias (alive to the end of the forward).
        outs = na * (a.classes + 5)
        cache = [(outs * s[0] + outs) * (m.autocast or 0) for s in ins]
        raw, decoded, cached = sp.Integer(0), sp.Integer(0), sp.Integer(0)
        steps: list[sp.Expr] = []
        for i, y in enumerate(maps):
            before = maps[i - 1] if i and not single[i - 1] else sp.Integer(0)
            cached += cache[i]
            steps += [raw + before + y + cached + input_copies(m, ins, (i,)), raw + (y if single[i] else 2 * y) + cached]
            raw += y
        last = sp.Integer(0) if single[-1] else maps[-1]  # the last level's `y`, alive to the end
        for s, y, p in zip(ins, maps, pairs):
            grid = INDEX_BYTES * (s[1] + s[2]) + 2 * s[1] * s[2] * m.width + 2 * na * m.width
            steps.append(raw + last + decoded + grid + 2 * y + 2 * p + cached)
            decoded += y
        steps.append(raw + last + 2 * decoded + cached)
        return Alloc(peak=sp.Max(*(sp.expand(x) for x in steps)), output=sp.expand(2 * raw), cached=sp.expand(cached))


OPS = (Detect(),)
