"""The seven darknet cfgs netdsl's importer targets, generated from compact descriptions.

darknet's own files cannot be downloaded at test time and are not copied into the project: each
function here writes a cfg with the same sections, in the same order, with the keys that shape the
network (and, as the real files have them, training-only keys the importer must accept and
ignore). The architectures are AlexeyAB/darknet's `cfg/yolov4.cfg`, `yolov4-tiny.cfg`,
`yolov7-tiny.cfg`, `yolov3-tiny-prn.cfg`, `enet-coco.cfg`, `efficientnet_b0.cfg` and `resnet50.cfg`.
Where a real file names a layer by its absolute index (`layers = 85`, `from=90`), the generator
computes the index from its own structure and checks it against the number the real file writes:
a section too many or too few anywhere before it fails at once.
"""
from __future__ import annotations

from collections.abc import Callable

Opts = list[tuple[str, object]]

COCO_ANCHORS_9 = "10,13, 16,30, 33,23, 30,61, 62,45, 59,119, 116,90, 156,198, 373,326"
V4_ANCHORS = "12, 16, 19, 36, 40, 28, 36, 75, 76, 55, 72, 146, 142, 110, 192, 243, 459, 401"
TINY_ANCHORS = "10,14,  23,27,  37,58,  81,82,  135,169,  344,319"

# [net] keys that only steer training or augmentation, as the real files carry them.
_DETECT_TRAINING: Opts = [("momentum", 0.9), ("decay", 0.0005), ("angle", 0), ("saturation", 1.5),
                          ("exposure", 1.5), ("hue", ".1")]
_CLASSIFY_TRAINING: Opts = [("angle", 7), ("hue", ".1"), ("saturation", ".75"), ("exposure", ".75"),
                            ("aspect", ".75")]


class Cfg:
    """A cfg being written: sections in order, each a kind and its (key, value) pairs; a layer's
    index is its position after [net], as darknet numbers them."""

    def __init__(self, net: Opts) -> None:
        self.sections: list[tuple[str, Opts]] = [("net", net)]

    @property
    def last(self) -> int:
        """The index of the last layer written."""
        return len(self.sections) - 2

    def add(self, kind: str, *opts: tuple[str, object]) -> int:
        self.sections.append((kind, list(opts)))
        return self.last

    def conv(self, filters: int, size: int = 1, stride: int = 1, act: str = "leaky", bn: bool = True,
             groups: int = 1, pad: int = 1) -> int:
        opts: Opts = [("batch_normalize", 1)] if bn else []
        opts += [("groups", groups)] if groups != 1 else []
        opts += [("filters", filters), ("size", size), ("stride", stride), ("pad", pad), ("activation", act)]
        return self.add("convolutional", *opts)

    def route(self, *layers: int, **extra: object) -> int:
        return self.add("route", ("layers", ",".join(map(str, layers))), *extra.items())

    def shortcut(self, src: int, act: str = "linear") -> int:
        return self.add("shortcut", ("from", src), ("activation", act))

    def maxpool(self, size: int, stride: int) -> int:
        return self.add("maxpool", ("size", size), ("stride", stride))

    def upsample(self, stride: int = 2) -> int:
        return self.add("upsample", ("stride", stride))

    def text(self) -> str:
        out = []
        for kind, opts in self.sections:
            out.append(f"[{kind}]")
            out += [f"{k}={v}" for k, v in opts]
            out.append("")
        return "\n".join(out)


def _at(index: int, written: int, what: str) -> int:
    """An absolute layer index the real file writes, checked against the generator's structure."""
    if index != written:
        raise AssertionError(f"{what}: the generator puts it at layer {index}, the real cfg says {written}")
    return index


def _yolo(cfg: Cfg, mask: str, anchors: str, num: int, classes: int, *extra: tuple[str, object]) -> int:
    return cfg.add("yolo", ("mask", mask), ("anchors", anchors), ("classes", classes), ("num", num), *extra)


def _head(cfg: Cfg, classes: int, anchors: int = 3, act: str = "linear") -> int:
    return cfg.conv(anchors * (classes + 5), 1, act=act, bn=False)


# -- YOLOv4 (608 x 608): CSPDarknet53, SPP, PANet, three [yolo] with scale_x_y ---------------------------

def _csp_stage(cfg: Cfg, filters: int, units: int, first: bool) -> int:
    """A CSPDarknet53 stage: a stride-2 conv, two 1x1 branches, residual units on one, joined."""
    half = filters if first else filters // 2
    inner = half // 2 if first else half
    cfg.conv(filters, 3, 2, "mish")
    cfg.conv(half, 1, act="mish")
    cfg.route(-2)
    cfg.conv(half, 1, act="mish")
    for _ in range(units):
        cfg.conv(inner, 1, act="mish")
        cfg.conv(half, 3, act="mish")
        cfg.shortcut(-3)
    cfg.conv(half, 1, act="mish")
    cfg.route(-1, -(3 * units + 4))
    return cfg.conv(filters, 1, act="mish")


def _spp(cfg: Cfg) -> None:
    cfg.add("maxpool", ("stride", 1), ("size", 5))
    cfg.route(-2)
    cfg.add("maxpool", ("stride", 1), ("size", 9))
    cfg.route(-4)
    cfg.add("maxpool", ("stride", 1), ("size", 13))
    cfg.route(-1, -3, -5, -6)


def _five(cfg: Cfg, c: int) -> int:
    """1x1 c, 3x3 2c, 1x1 c, 3x3 2c, 1x1 c: YOLOv4's neck convolutions."""
    for i in range(5):
        last = cfg.conv(c * (2 if i % 2 else 1), 3 if i % 2 else 1)
    return last


def _v4_yolo(scale: float, last: bool) -> Opts:
    return [("jitter", ".3"), ("ignore_thresh", ".7"), ("truth_thresh", 1), *([("random", 1)] if last else []),
            ("scale_x_y", scale), ("iou_thresh", 0.213), ("cls_normalizer", 1.0), ("iou_normalizer", 0.07),
            ("iou_loss", "ciou"), ("nms_kind", "greedynms"), ("beta_nms", 0.6), ("max_delta", 5)]


def yolov4(width: int = 608, classes: int = 80) -> str:
    cfg = Cfg([("batch", 1), ("subdivisions", 1), ("width", width), ("height", width), ("channels", 3),
               ("momentum", 0.949), ("decay", 0.0005), ("angle", 0), ("saturation", 1.5), ("exposure", 1.5),
               ("hue", ".1"), ("learning_rate", 0.0013), ("burn_in", 1000), ("max_batches", 500500),
               ("policy", "steps"), ("steps", "400000,450000"), ("scales", ".1,.1"), ("mosaic", 1)])
    cfg.conv(32, 3, act="mish")
    stages = [_csp_stage(cfg, f, n, f == 64) for f, n in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))]
    p3, p4 = _at(stages[2], 54, "stride-8 backbone map"), _at(stages[3], 85, "stride-16 backbone map")
    cfg.conv(512)
    cfg.conv(1024, 3)
    cfg.conv(512)
    _spp(cfg)
    cfg.conv(512)
    cfg.conv(1024, 3)
    n5 = cfg.conv(512)
    necks = []
    for c, lateral in ((256, p4), (128, p3)):
        cfg.conv(c)
        cfg.upsample()
        cfg.route(lateral)
        cfg.conv(c)
        cfg.route(-1, -3)
        necks.append(_five(cfg, c))
    n4 = necks[0]  # the 256-channel map the second level joins
    cfg.conv(256, 3)
    _head(cfg, classes)
    _yolo(cfg, "0,1,2", V4_ANCHORS, 9, classes, *_v4_yolo(1.2, False))
    for c, mask, scale, join in ((256, "3,4,5", 1.1, n4), (512, "6,7,8", 1.05, n5)):
        cfg.route(-4)
        down = cfg.conv(c, 3, 2)
        cfg.route(-1, _at(join - down - 1, -16 if c == 256 else -37, f"the map level {mask} joins"))
        _five(cfg, c)
        cfg.conv(2 * c, 3)
        _head(cfg, classes)
        _yolo(cfg, mask, V4_ANCHORS, 9, classes, *_v4_yolo(scale, c == 512))
    return cfg.text()


# -- YOLOv4-tiny (416): CSP blocks whose [route] takes half the channels ---------------------------------

def _tiny_net() -> Cfg:
    return Cfg([("batch", 1), ("subdivisions", 1), ("width", 416), ("height", 416), ("channels", 3),
                *_DETECT_TRAINING, ("learning_rate", 0.00261), ("burn_in", 1000), ("max_batches", 2000200),
                ("policy", "steps"), ("steps", "1600000,1800000"), ("scales", ".1,.1")])


def yolov4_tiny(classes: int = 80) -> str:
    cfg = _tiny_net()
    cfg.conv(32, 3, 2)
    cfg.conv(64, 3, 2)
    for f in (64, 128, 256):
        cfg.conv(f, 3)
        cfg.route(-1, groups=2, group_id=1)
        cfg.conv(f // 2, 3)
        cfg.conv(f // 2, 3)
        cfg.route(-1, -2)
        inner = cfg.conv(f, 1)
        cfg.route(-6, -1)
        cfg.maxpool(2, 2)
    p4 = _at(inner, 23, "the stride-16 map the second level joins")
    cfg.conv(512, 3)
    cfg.conv(256, 1)
    cfg.conv(512, 3)
    keys: Opts = [("jitter", ".3"), ("scale_x_y", 1.05), ("cls_normalizer", 1.0), ("iou_normalizer", 0.07),
                  ("iou_loss", "ciou"), ("ignore_thresh", ".7"), ("truth_thresh", 1), ("random", 0),
                  ("resize", 1.5), ("nms_kind", "greedynms"), ("beta_nms", 0.6)]
    _head(cfg, classes)
    _yolo(cfg, "3,4,5", TINY_ANCHORS, 6, classes, *keys)
    cfg.route(-4)
    cfg.conv(128, 1)
    cfg.upsample()
    cfg.route(-1, p4)
    cfg.conv(256, 3)
    _head(cfg, classes)
    _yolo(cfg, "1,2,3", TINY_ANCHORS, 6, classes, *keys)
    return cfg.text()


# -- YOLOv7-tiny (416): ELAN blocks, SPPCSP, logistic heads with new_coords ------------------------------

def _elan(cfg: Cfg, c: int) -> int:
    cfg.conv(c, 1)
    cfg.route(-2)
    cfg.conv(c, 1)
    cfg.conv(c, 3)
    cfg.conv(c, 3)
    cfg.route(-5, -3, -2, -1)
    return cfg.conv(2 * c, 1)


def yolov7_tiny(classes: int = 80) -> str:
    cfg = _tiny_net()
    cfg.conv(32, 3, 2)
    cfg.conv(64, 3, 2)
    b = [_elan(cfg, 32)]
    for c in (64, 128, 256):
        cfg.maxpool(2, 2)
        b.append(_elan(cfg, c))
    c3, c4 = _at(b[1], 16, "ELAN(64)"), _at(b[2], 24, "ELAN(128)")
    cfg.conv(256, 1)
    cfg.route(-2)
    cfg.conv(256, 1)
    _spp(cfg)
    cfg.conv(256, 1)
    cfg.route(-10, -1)
    sppcsp = _at(cfg.conv(256, 1), 44, "SPPCSP")
    ups = []
    for c, lateral in ((128, c4), (64, c3)):
        cfg.conv(c, 1)
        cfg.upsample()
        cfg.route(lateral)
        cfg.conv(c, 1)
        cfg.route(-1, -3)
        ups.append(_elan(cfg, c // 2))
    n4, n3 = _at(ups[0], 56, "top-down ELAN at stride 16"), _at(ups[1], 68, "top-down ELAN at stride 8")
    outs = [n3]
    for c, join in ((128, n4), (256, sppcsp)):
        cfg.conv(c, 3, 2)
        cfg.route(-1, join)
        outs.append(_elan(cfg, c // 2))
    _at(outs[1], 77, "bottom-up ELAN at stride 16")
    _at(outs[2], 86, "bottom-up ELAN at stride 32")
    keys: Opts = [("jitter", ".1"), ("scale_x_y", 2.0), ("objectness_smooth", 1), ("ignore_thresh", ".7"),
                  ("truth_thresh", 1), ("resize", 1.5), ("iou_thresh", 0.2), ("iou_normalizer", 0.05),
                  ("cls_normalizer", 0.5), ("obj_normalizer", 1.0), ("iou_loss", "ciou"), ("nms_kind", "diounms"),
                  ("beta_nms", 0.6), ("new_coords", 1), ("max_delta", 2)]
    for src, c, mask in zip(outs, (128, 256, 512), ("0,1,2", "3,4,5", "6,7,8")):
        cfg.route(src)
        cfg.conv(c, 3)
        _head(cfg, classes, act="logistic")
        _yolo(cfg, mask, COCO_ANCHORS_9, 9, classes, *keys)
    return cfg.text()


# -- YOLOv3-tiny-PRN (416): partial residual [shortcut]s between maps of different channels --------------

def _prn_head(cfg: Cfg, classes: int, backbone16: int, yolo: Opts) -> None:
    """Both detectors of YOLOv3-tiny-PRN and of enet-coco: [shortcut]s instead of [route] concatenation."""
    cfg.conv(256, 1)
    cfg.conv(256, 3)
    cfg.shortcut(-2, "leaky")
    _head(cfg, classes)
    _yolo(cfg, "3,4,5", TINY_ANCHORS, 6, classes, *yolo)
    cfg.route(-4)
    cfg.conv(128, 1)
    cfg.upsample()
    cfg.shortcut(backbone16, "leaky")
    cfg.conv(128, 3)
    cfg.shortcut(-3, "leaky")
    cfg.shortcut(backbone16, "leaky")
    _head(cfg, classes)
    _yolo(cfg, "1,2,3", TINY_ANCHORS, 6, classes, *yolo)


def _training_net(width: int) -> Cfg:
    return Cfg([("batch", 64), ("subdivisions", 8), ("width", width), ("height", width), ("channels", 3),
                *_DETECT_TRAINING, ("learning_rate", 0.001), ("burn_in", 1000), ("max_batches", 500200),
                ("policy", "steps"), ("steps", "400000,450000"), ("scales", ".1,.1")])


def yolov3_tiny_prn(classes: int = 80) -> str:
    cfg = _training_net(416)
    for f in (16, 32, 64, 128, 256, 512):
        last = cfg.conv(f, 3)
        if f == 256:
            c16 = _at(last, 8, "the stride-16 map the second level adds")
        cfg.maxpool(2, 2 if f < 512 else 1)
    cfg.conv(512, 3)
    cfg.shortcut(-3, "leaky")
    _prn_head(cfg, classes, c16, [("jitter", ".3"), ("ignore_thresh", ".7"), ("truth_thresh", 1), ("random", 1)])
    return cfg.text()


# -- EfficientNet-B0 (224) and enet-coco (416): MBConv blocks with squeeze-excitation ----------------------

# Per MBConv block: expanded channels, depthwise kernel, stride, squeeze channels, output channels, and
# whether a [dropout] + [shortcut] from=-9 comes first (darknet's files add the previous block's
# input there, before the block, not after it).
MBCONV = [(32, 3, 1, 8, 16, False), (96, 3, 2, 16, 24, False), (144, 3, 1, 8, 24, False),
          (144, 5, 2, 8, 40, True), (192, 5, 1, 16, 40, False), (192, 3, 1, 16, 80, True),
          (384, 3, 1, 24, 80, False), (384, 3, 1, 24, 80, True), (384, 5, 2, 24, 112, True),
          (576, 5, 1, 32, 112, False), (576, 5, 1, 32, 112, True), (576, 5, 2, 32, 192, True),
          (960, 5, 1, 64, 192, False), (960, 5, 1, 64, 192, True), (960, 5, 1, 64, 192, True),
          (960, 3, 1, 64, 320, True)]


def _efficientnet_b0_backbone(cfg: Cfg, dropout: str) -> list[int]:
    """conv1, the sixteen MBConv blocks, the 1x1 to 1280; each block's last layer index."""
    cfg.conv(32, 3, 2, "swish")
    ends = []
    for expand, k, stride, squeeze, out, residual in MBCONV:
        if residual:
            cfg.add("dropout", ("probability", dropout))
            cfg.shortcut(-9)
        cfg.conv(expand, 1, act="swish", pad=0)
        cfg.conv(expand, k, stride, "swish", groups=expand)
        cfg.add("avgpool")
        cfg.conv(squeeze, 1, act="swish", bn=False, pad=0)
        cfg.conv(expand, 1, act="logistic", bn=False, pad=0)
        cfg.add("scale_channels", ("from", -4))
        ends.append(cfg.conv(out, 1, act="linear", pad=0))
    cfg.conv(1280, 1, act="swish", pad=0)
    return ends


def efficientnet_b0() -> str:
    cfg = Cfg([("batch", 120), ("subdivisions", 4), ("height", 224), ("width", 224), ("channels", 3),
               ("momentum", 0.9), ("decay", 0.0005), ("max_crop", 256), ("burn_in", 1000),
               ("learning_rate", 0.256), ("policy", "poly"), ("power", 4), ("max_batches", 800000),
               ("momentum", 0.9), ("decay", 0.00005), *_CLASSIFY_TRAINING])  # momentum and decay twice, as there
    _efficientnet_b0_backbone(cfg, ".2")
    cfg.add("avgpool")
    cfg.add("dropout", ("probability", ".2"))
    cfg.conv(1000, 1, act="linear", bn=False, pad=0)
    cfg.add("softmax", ("groups", 1))
    return cfg.text()


def enet_coco(classes: int = 80) -> str:
    cfg = _training_net(416)
    ends = _efficientnet_b0_backbone(cfg, ".0")
    # The twelfth block's expansion (576 channels, after its [dropout] and [shortcut]), the last
    # stride-16 map: the second level adds its first 128 channels.
    stride16 = _at(ends[10] + 3, 90, "the stride-16 map the second level adds")
    _prn_head(cfg, classes, stride16, [("jitter", ".3"), ("ignore_thresh", ".7"), ("truth_thresh", 1),
                                       ("random", 0)])
    return cfg.text()


# -- ResNet-50 (256): darknet's bottlenecks, [shortcut] across channel and size changes --------------------

def resnet50() -> str:
    cfg = Cfg([("batch", 1), ("subdivisions", 1), ("height", 256), ("width", 256), ("max_crop", 448),
               ("channels", 3), ("momentum", 0.9), ("decay", 0.0005), ("burn_in", 1000), ("learning_rate", 0.1),
               ("policy", "poly"), ("power", 4), ("max_batches", 1600000), *_CLASSIFY_TRAINING])
    cfg.conv(64, 7, 2)
    cfg.maxpool(2, 2)
    for filters, units, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for u in range(units):
            cfg.conv(filters, 1)
            cfg.conv(filters, 3, stride if u == 0 else 1)
            cfg.conv(4 * filters, 1, act="linear")
            cfg.shortcut(-4, "leaky")
    cfg.conv(1000, 1, act="linear", bn=False)
    cfg.add("avgpool")
    cfg.add("softmax", ("groups", 1))
    return cfg.text()


# name -> (the cfg's text, the [net] input size it is written for)
TARGETS: dict[str, Callable[[], str]] = {
    "yolov4.cfg": yolov4, "yolov4-tiny.cfg": yolov4_tiny, "yolov7-tiny.cfg": yolov7_tiny,
    "yolov3-tiny-prn.cfg": yolov3_tiny_prn, "enet-coco.cfg": enet_coco, "efficientnet_b0.cfg": efficientnet_b0,
    "resnet50.cfg": resnet50,
}
