"""darknet's [yolo] sections as the levels of netdsl's `detect` head (see darknet_cfg)."""
from __future__ import annotations

from dataclasses import dataclass

from netdsl.importers.darknet_layers import CfgLayers
from netdsl.importers.darknet_read import Section, opt_int, opt_ints
from netdsl.importers.spec_writer import Stmt, Tensor, Writer, stride_of


@dataclass
class Level:
    """One [yolo]: what detect reads for it, the section, its anchors (mask applied) and classes."""

    feature: Tensor
    yolo: Section
    anchors: list[int]
    classes: int


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
        self._check_conv(i - 1, s, len(mask) * (classes + 5))
        if stride_of(feature.shape) is None:
            raise src.error(s.loc, f"the [yolo] at line {s.line} reads a {feature.shape.show()} map, not the input "
                            "size divided by a whole stride", "each level's map must be H/s x W/s")
        level = [v for m in mask for v in anchors[2 * m: 2 * m + 2]]
        self.levels.append(Level(self._weights_place(i, feature), s, level, classes))

    def _check_conv(self, ci: int, s: Section, want: int) -> None:
        """The convolution before a [yolo] is detect's own for that level: 1x1, linear, with a bias."""
        conv, csec = self.cfg.convs[ci], self.cfg.layers[ci]
        for key, bad, why in (("batch_normalize", conv.bn, "without batchnorm (detect's convolution has a bias)"),
                              ("size", conv.size != 1, "1x1"), ("stride", conv.stride != 1, "stride 1"),
                              ("padding", conv.padding != 0, "no padding"), ("groups", conv.groups != 1, "groups=1"),
                              ("activation", conv.act != "linear", "linear"),
                              ("filters", conv.filters != want, f"{want} filters (len(mask) * (classes + 5))")):
            if bad:
                opt = csec.opts.get(key)
                raise self.cfg.src.error(opt.loc if opt else csec.loc, f"the [convolutional] before the [yolo] at "
                                         f"line {s.line} must be {why}: it is netdsl's detect convolution for that "
                                         "level", "write the cfg's prediction convolution as darknet's YOLO cfgs do")

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
                    "does.")
        self.w.add(Stmt("output", [t.name for t in feats], [], "", levels[0].yolo.loc, merge="detect",
                        extra=f", classes=NCLS, strides=[{', '.join(map(str, strides))}],\n"
                              f"                anchors=[{anchors}], decode=\"darknet\""))
