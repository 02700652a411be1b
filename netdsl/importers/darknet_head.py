"""darknet's [yolo] sections as the levels of netdsl's `detect` head (see darknet_cfg).

A [yolo]'s `scale_x_y` (AlexeyAB's darknet: xy = sigmoid * s - (s - 1) / 2 before the grid is
added) becomes detect's `scale_xy`, one number for every level or one per level. `new_coords=1`
(Scaled-YOLOv4, YOLOv7) reads the head convolution's outputs as sigmoids, which darknet's cfgs
make with `activation=logistic`, and sizes as (2 * sigmoid)^2 * anchor: detect's
`decode="darknet_new_coords"`, whose convolution stays linear and whose decoding applies that
logistic once. A logistic head without new_coords (darknet would apply the sigmoid twice) and a
linear one with it (darknet would read unbounded values as sigmoids) are refused.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from netdsl.importers.darknet_layers import CfgLayers
from netdsl.importers.darknet_read import Section, opt_int, opt_ints
from netdsl.importers.spec_writer import Stmt, Tensor, Writer, stride_of

_NUMBER = re.compile(r"[+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


@dataclass
class Level:
    """One [yolo]: what detect reads for it, the section, its anchors (mask applied) and classes."""

    feature: Tensor
    yolo: Section
    anchors: list[int]
    classes: int
    scale: float = 1.0
    new_coords: bool = False


class DetectHead:
    """Collects the [yolo] levels as the layers are written, then writes the one `detect` statement."""

    def __init__(self, cfg: CfgLayers, w: Writer) -> None:
        self.cfg, self.w = cfg, w
        self.levels: list[Level] = []

    def read(self, i: int, feature: Tensor) -> None:
        """The [yolo] at layer i, over `feature` (what the convolution before it reads)."""
        src, s = self.cfg.src, self.cfg.layers[i]
        num = opt_int(src, s, "num", 1, 1, 1000)
        classes = opt_int(src, s, "classes", 20, 1, 100_000)
        mask, _ = opt_ints(src, s, "mask", 0, num - 1) if "mask" in s.opts else (list(range(num)), None)
        anchors, aopt = opt_ints(src, s, "anchors", 1, 1 << 20)
        if len(anchors) != 2 * num:
            raise src.error(aopt.loc, f"{len(anchors)} anchor values for num={num}: darknet reads num "
                            "(width, height) pairs", f"give {2 * num} values, or set num={len(anchors) // 2}")
        scale = self._scale(s)
        new_coords = bool(opt_int(src, s, "new_coords", 0, 0, 1))
        self._check_conv(i - 1, s, len(mask) * (classes + 5), new_coords)
        if stride_of(feature.shape) is None:
            raise src.error(s.loc, f"the [yolo] at line {s.line} reads a {feature.shape.show()} map, not the input "
                            "size divided by a whole stride", "each level's map must be H/s x W/s")
        level = [v for m in mask for v in anchors[2 * m: 2 * m + 2]]
        self.levels.append(Level(self._weights_place(i, feature), s, level, classes, scale, new_coords))

    def _scale(self, s: Section) -> float:
        """scale_x_y: a positive number, 1 (no scaling) when absent."""
        opt = s.opts.get("scale_x_y")
        if opt is None:
            return 1.0
        if not _NUMBER.fullmatch(opt.value) or not 0 < float(opt.value) < 1e6:
            raise self.cfg.src.error(opt.loc, f"scale_x_y={opt.value}: expected a positive number",
                                     "write e.g. scale_x_y=1.05 (YOLOv4) or scale_x_y=2.0 (with new_coords=1)")
        return float(opt.value)

    def _check_conv(self, ci: int, s: Section, want: int, new_coords: bool) -> None:
        """The convolution before a [yolo] is detect's own for that level: 1x1, with a bias, linear
        (logistic with new_coords=1: the sigmoid detect's decoding applies)."""
        conv, csec = self.cfg.convs[ci], self.cfg.layers[ci]
        act = "logistic" if new_coords else "linear"
        if conv.act in ("linear", "logistic") and conv.act != act:
            self._refuse_activation(csec, s, new_coords)
        for key, bad, why in (("batch_normalize", conv.bn, "without batchnorm (detect's convolution has a bias)"),
                              ("size", conv.size != 1, "1x1"), ("stride", conv.stride != 1, "stride 1"),
                              ("padding", conv.padding != 0, "no padding"), ("groups", conv.groups != 1, "groups=1"),
                              ("activation", conv.act != act, act),
                              ("filters", conv.filters != want, f"{want} filters (len(mask) * (classes + 5))")):
            if bad:
                opt = csec.opts.get(key)
                raise self.cfg.src.error(opt.loc if opt else csec.loc, f"the [convolutional] before the [yolo] at "
                                         f"line {s.line} must be {why}: it is netdsl's detect convolution for that "
                                         "level", "write the cfg's prediction convolution as darknet's YOLO cfgs do")

    def _refuse_activation(self, csec: Section, s: Section, new_coords: bool) -> None:
        opt = csec.opts.get("activation")
        loc = opt.loc if opt else csec.loc
        if new_coords:
            raise self.cfg.src.error(loc, f"the [convolutional] before the [yolo] at line {s.line} must be logistic: "
                                     "new_coords=1 reads its outputs as sigmoids",
                                     "give it activation=logistic, as darknet's new_coords cfgs do")
        raise self.cfg.src.error(loc, f"the [convolutional] before the [yolo] at line {s.line} must be linear: "
                                 "logistic without new_coords=1, darknet would apply the sigmoid twice (here and in "
                                 "the [yolo])", "set new_coords=1 in the [yolo] (as YOLOv7 does), or activation=linear")

    def _weights_place(self, i: int, feature: Tensor) -> Tensor:
        """What detect reads for the [yolo] at layer i: its feature map, through a statement written here
        where another statement came after the map's.

        darknet's .weights hold a level's convolution after every convolution before its [yolo];
        netdsl.weights puts it after the convolutions up to the statement detect reads (ties in the order
        of those statements). A statement at the [yolo]'s place makes the two orders one."""
        if self.w.last is not None and self.w.last.name == feature.name:
            return feature
        stmt = self.w.add(Stmt(f"yolo{i}", [feature.name], [], f"{self.cfg.comment(i)}: the [yolo]'s input, named "
                               "here for darknet's .weights order", self.cfg.layers[i].loc))
        return Tensor(stmt.name, feature.shape, feature.last_conv)

    def _check_levels(self) -> None:
        src, first = self.cfg.src, self.levels[0]
        for lv in self.levels[1:]:
            s = lv.yolo
            if len(lv.anchors) != len(first.anchors):
                raise src.error(s.opts.get("mask", s.opts["anchors"]).loc, f"{len(lv.anchors) // 2} anchors at this "
                                f"level, {len(first.anchors) // 2} at the [yolo] on line {first.yolo.line}",
                                "netdsl's detect takes the same number of anchors at every level")
            if lv.classes != first.classes:
                raise src.error(s.opts["classes"].loc if "classes" in s.opts else s.loc,
                                f"classes={lv.classes} here, {first.classes} at the [yolo] on line {first.yolo.line}",
                                "every [yolo] must predict the same classes")
            if lv.new_coords != first.new_coords:
                raise src.error(s.opts["new_coords"].loc if "new_coords" in s.opts else s.loc,
                                f"new_coords={int(lv.new_coords)} here, {int(first.new_coords)} at the [yolo] on line "
                                f"{first.yolo.line}", "netdsl's detect decodes every level one way: make them equal")

    def _decoding(self, levels: list[Level]) -> str:
        """detect's decode and scale_xy arguments for the levels (in detect's order)."""
        decode = "darknet_new_coords" if levels[0].new_coords else "darknet"
        scales = [lv.scale for lv in levels]
        if all(v == 1 for v in scales):
            return f'decode="{decode}"'
        shown = [repr(v) for v in scales]
        return f'decode="{decode}",\n                scale_xy=' + (shown[0] if len(set(scales)) == 1 else f"[{', '.join(shown)}]")

    def write(self) -> None:
        """The detect statement over every level, smallest stride first (each map renamed p<log2 stride>
        where that name is free)."""
        self._check_levels()
        levels = sorted(self.levels, key=lambda lv: stride_of(lv.feature.shape) or 0)
        strides = [stride_of(lv.feature.shape) for lv in levels]
        names = self.w.names()
        feats = [lv.feature for lv in levels]
        for t, st in zip(feats, strides):
            p = f"p{st.bit_length() - 1}" if st and st & (st - 1) == 0 else None
            if p and p not in names and t.name not in ("x", "output") and [f.name for f in feats].count(t.name) == 1 \
                    and any(isinstance(it, Stmt) and it.name == t.name for it in self.w.items):
                self.w.rename(t.name, p)
                names.add(p)
                t.name = p
        self.w.params.append(("NCLS", self.levels[0].classes))
        lines = ", ".join(str(lv.yolo.line) for lv in levels)
        anchors = ", ".join("[" + ", ".join(map(str, lv.anchors)) + "]" for lv in levels)
        self.w.note(f"\n# The [yolo] sections at lines {lines} (smallest stride first); the [convolutional] before "
                    "each is its\n# level's 1x1 convolution inside detect, which decodes boxes as darknet's [yolo] "
                    "does." + ("\n# Their activation=logistic is the sigmoid detect's decoding applies (new_coords=1)."
                               if levels[0].new_coords else ""))
        self.w.add(Stmt("output", [t.name for t in feats], [], "", levels[0].yolo.loc, merge="detect",
                        extra=f", classes=NCLS, strides=[{', '.join(map(str, strides))}],\n"
                              f"                anchors=[{anchors}], {self._decoding(levels)}"))
