"""darknet's [yolo] sections as the levels of netdsl's `detect` head (see darknet_cfg)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from netdsl.importers.darknet_read import T, opt_int, opt_ints
from netdsl.importers.spec_writer import Stmt, stride_of

if TYPE_CHECKING:
    from netdsl.importers.darknet_cfg import CfgImporter


def read_yolo(imp: CfgImporter, i: int) -> None:
    s, src = imp.layers[i], imp.src
    ci = i - 1
    conv, csec = imp.convs[ci], imp.layers[ci]
    feature = imp.input_of(ci)
    num = opt_int(src, s, "num", 1, 1, 1000)
    classes = opt_int(src, s, "classes", 20, 1, 100_000)
    mask, _ = opt_ints(src, s, "mask", 0, num - 1) if "mask" in s.opts else (list(range(num)), None)
    anchors, aopt = opt_ints(src, s, "anchors", 1, 1 << 20)
    if len(anchors) != 2 * num:
        raise src.error(aopt.loc, f"{len(anchors)} anchor values for num={num}: darknet reads num "
                        "(width, height) pairs", f"give {2 * num} values, or set num={len(anchors) // 2}")
    want = len(mask) * (classes + 5)
    for key, bad, why in (("batch_normalize", conv.bn, "without batchnorm (detect's convolution has a bias)"),
                          ("size", conv.size != 1, "1x1"), ("stride", conv.stride != 1, "stride 1"),
                          ("padding", conv.padding != 0, "no padding"), ("groups", conv.groups != 1, "groups=1"),
                          ("activation", conv.act != "linear", "linear"),
                          ("filters", conv.filters != want, f"{want} filters (len(mask) * (classes + 5))")):
        if bad:
            opt = csec.opts.get(key)
            raise src.error(opt.loc if opt else csec.loc, f"the [convolutional] before the [yolo] at line "
                            f"{s.line} must be {why}: it is netdsl's detect convolution for that level",
                            "write the cfg's prediction convolution as darknet's YOLO cfgs do")
    stride = stride_of(feature.shape)
    if stride is None:
        raise src.error(s.loc, f"the [yolo] at line {s.line} reads a {feature.shape.show()} map, not the input "
                        "size divided by a whole stride", "each level's map must be H/s x W/s")
    level = [v for m in mask for v in anchors[2 * m: 2 * m + 2]]
    imp.levels.append((_weights_place(imp, i, feature), s, level, classes, csec))


def _weights_place(imp: CfgImporter, i: int, feature: T) -> T:
    """What detect reads for the [yolo] at layer i: its feature map, through a statement written here
    where another statement came after the map's.

    darknet's .weights hold a level's convolution after every convolution before its [yolo];
    netdsl.weights puts it after the convolutions up to the statement detect reads (ties in the order
    of those statements). A statement at the [yolo]'s place makes the two orders one."""
    if imp.w.last is not None and imp.w.last.name == feature.name:
        return feature
    stmt = imp.w.add(Stmt(f"yolo{i}", [feature.name], [], f"{imp.comment(i)}: the [yolo]'s input, named here for "
                          "darknet's .weights order", imp.layers[i].loc))
    return T(stmt.name, feature.shape, feature.last_conv)


def write_detect(imp: CfgImporter) -> None:
    src, levels = imp.src, imp.levels
    first = levels[0]
    for f, s, anchors, classes, _ in levels[1:]:
        if len(anchors) != len(first[2]):
            raise src.error(s.opts.get("mask", s.opts["anchors"]).loc, f"{len(anchors) // 2} anchors at this "
                            f"level, {len(first[2]) // 2} at the [yolo] on line {first[1].line}",
                            "netdsl's detect takes the same number of anchors at every level")
        if classes != first[3]:
            raise src.error(s.opts["classes"].loc if "classes" in s.opts else s.loc,
                            f"classes={classes} here, {first[3]} at the [yolo] on line {first[1].line}",
                            "every [yolo] must predict the same classes")
    order = sorted(range(len(levels)), key=lambda k: stride_of(levels[k][0].shape) or 0)
    strides = [stride_of(levels[k][0].shape) for k in order]
    names = imp.w.names()
    feats = [levels[k][0] for k in order]
    for t, st in zip(feats, strides):
        p = f"p{st.bit_length() - 1}" if st and st & (st - 1) == 0 else None
        if p and p not in names and t.name not in ("x", "output") and [f.name for f in feats].count(t.name) == 1 \
                and any(isinstance(it, Stmt) and it.name == t.name for it in imp.w.items):
            imp.w.rename(t.name, p)
            names.add(p)
            t.name = p
    imp.w.params.append(("NCLS", first[3]))
    lines = ", ".join(str(levels[k][1].line) for k in order)
    anchors = ", ".join("[" + ", ".join(map(str, levels[k][2])) + "]" for k in order)
    imp.w.note(f"\n# The [yolo] sections at lines {lines} (smallest stride first); the [convolutional] before "
               "each is its\n# level's 1x1 convolution inside detect, which decodes boxes as darknet's [yolo] does.")
    imp.w.add(Stmt("output", [t.name for t in feats], [], "", levels[order[0]][1].loc, merge="detect",
                   extra=f", classes=NCLS, strides=[{', '.join(map(str, strides))}],\n"
                         f"                anchors=[{anchors}], decode=\"darknet\""))
