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

from netdsl.ops.base import Args, ArgSpec, Category, Counts, OpDef, RuleError, Shape


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
        if len(a.strides) != n:
            raise RuleError("strides", f"{len(a.strides)} strides for {n} feature maps", "give one stride per feature map")
        if any(st <= 0 for st in a.strides):
            raise RuleError("strides", "strides must be positive", "a level's stride is input size / its size")
        self.check_scales(a, n)
        for i, (s, st) in enumerate(zip(ins, a.strides)):
            if image is not None and (s[1] * st, s[2] * st) != tuple(image[1:]):
                raise RuleError("strides", f"feature map {i + 1} is {s[1]}x{s[2]}; with stride {st} it covers "
                                f"{s[1] * st}x{s[2] * st}, but the input is {image[1]}x{image[2]}",
                                "each stride must be the input size divided by that map's size")

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


OPS = (Detect(),)
