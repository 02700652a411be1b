"""Ultralytics YAML: GhostConv, GhostBottleneck, C3Ghost (YOLOv5's ghost YAMLs), YOLOv5's top-level
`activation`, YOLOv7's MP, SP and per-row `act=nn.LeakyReLU(0.1)`, read as data.

`Model` is this test's own transcription of what ultralytics/yolov5 (models/common.py GhostConv,
DWConv, GhostBottleneck, C3Ghost, SPPF; models/yolo.py parse_model, with `Conv.default_act` set from
the YAML's `activation`) and WongKinYiu/yolov7 (models/common.py MP, SP) build, written from their
definitions. A random state_dict of it loads into the import, tensor for tensor, and both give the
same outputs. Published figures: yolov5s-ghost has 3.9M parameters (ultralytics/yolov5 PR #4412), a
GhostConv(3, 16, 3, 2) 448 and GhostConv(16, 32, 3, 2) 2,768 (ultralytics issue #6974's summary),
yolov7-tiny 6.2M and yolov7 36.9M (WongKinYiu/yolov7's README).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

import netdsl
from netdsl.errors import NetdslError
from netdsl.importers import import_text
from netdsl.weights import load_weights
from test_ultralytics_yaml import HEAD, V5_ANCHORS, Concat, Detect, Ultra, randomize, rows

SIZE = 64
# The activation texts these YAMLs use, as the modules they make (a table, not eval).
ACTS: dict[str, nn.Module] = {"nn.LeakyReLU(0.1)": nn.LeakyReLU(0.1), "nn.ReLU()": nn.ReLU(), "nn.SiLU()": nn.SiLU(),
                              "nn.Hardswish()": nn.Hardswish()}


class Conv(nn.Module):
    default_act: nn.Module = nn.SiLU()

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: Any = None, g: int = 1, act: Any = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=0.001, momentum=0.03)
        self.act = self.default_act if act is True else ACTS[act] if isinstance(act, str) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def DWConv(c1: int, c2: int, k: int = 1, s: int = 1, act: Any = True) -> Conv:  # noqa: N802 - ultralytics' name
    return Conv(c1, c2, k, s, g=math.gcd(c1, c2), act=act)


class GhostConv(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: Any = True) -> None:
        super().__init__()
        h = c2 // 2
        self.cv1 = Conv(c1, h, k, s, None, g, act)
        self.cv2 = Conv(h, h, 5, 1, None, h, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


class GhostBottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1) -> None:
        super().__init__()
        h = c2 // 2
        self.conv = nn.Sequential(GhostConv(c1, h, 1, 1), DWConv(h, h, k, s, act=False) if s == 2 else nn.Identity(),
                                  GhostConv(h, c2, 1, 1, act=False))
        self.shortcut = nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False)) if s == 2 \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class C3Ghost(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        h = int(c2 * e)
        self.cv1, self.cv2, self.cv3 = Conv(c1, h), Conv(c1, h), Conv(2 * h, c2)
        self.m = nn.Sequential(*(GhostBottleneck(h, h) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        self.cv1, self.cv2 = Conv(c1, c1 // 2), Conv(c1 // 2 * 4, c2)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        y += [self.m(y[-1]) for _ in range(3)]
        return self.cv2(torch.cat(y, 1))


class MP(nn.Module):
    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.m = nn.MaxPool2d(k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class SP(nn.Module):
    def __init__(self, k: int = 3, s: int = 1) -> None:
        super().__init__()
        self.m = nn.MaxPool2d(k, s, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class SPPCSPC(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        h = int(2 * c2 * e)
        self.cv1, self.cv2, self.cv3, self.cv4 = Conv(c1, h), Conv(c1, h), Conv(h, h, 3), Conv(h, h)
        self.m = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (5, 9, 13))
        self.cv5, self.cv6, self.cv7 = Conv(4 * h, h), Conv(h, h, 3), Conv(2 * h, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [m(x1) for m in self.m], 1)))
        return self.cv7(torch.cat((y1, self.cv2(x)), 1))


def _conv_bn(c1: int, c2: int, k: int, s: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c1, c2, k, s, k // 2, bias=False), nn.BatchNorm2d(c2, eps=0.001, momentum=0.03))


class RepConv(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, p: Any = None, g: int = 1, act: Any = True) -> None:
        super().__init__()
        self.act = Conv.default_act  # p, g and act at their defaults here
        self.rbr_identity = nn.BatchNorm2d(c1, eps=0.001, momentum=0.03) if c1 == c2 and s == 1 else None
        self.rbr_dense, self.rbr_1x1 = _conv_bn(c1, c2, k, s), _conv_bn(c1, c2, 1, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        return self.act(y + self.rbr_identity(x) if self.rbr_identity is not None else y)


MODULES: dict[str, Any] = {"Conv": Conv, "GhostConv": GhostConv, "GhostBottleneck": GhostBottleneck,
                           "C3Ghost": C3Ghost, "SPPF": SPPF, "MP": MP, "SP": SP, "Concat": Concat, "Detect": Detect,
                           "nn.Upsample": nn.Upsample, "SPPCSPC": SPPCSPC, "RepConv": RepConv}
SIZED = ("Conv", "GhostConv", "GhostBottleneck", "C3Ghost", "SPPF", "SPPCSPC", "RepConv")


class Model(Ultra):
    """parse_model's rules (as tests/importers/test_ultralytics_yaml.py's `Ultra`, whose forward it
    runs) for these modules."""

    def __init__(self, text: str) -> None:
        nn.Module.__init__(self)  # Ultra's own constructor knows only the older modules
        d = yaml.safe_load(text)
        nc, anchors, gd, gw = d["nc"], d["anchors"], d["depth_multiple"], d["width_multiple"]
        no = len(anchors[0]) // 2 * (nc + 5)
        names = {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}
        layers: list[nn.Module] = []
        ch: list[int] = []
        self.froms: list[Any] = []
        Conv.default_act = ACTS[d["activation"]] if "activation" in d else nn.SiLU()
        try:
            for i, (f, n, m, args) in enumerate(d["backbone"] + d["head"]):
                args = [names.get(a, a) if isinstance(a, str) else a for a in args]
                n = max(round(n * gd), 1) if n > 1 else n
                c1 = 3 if i == 0 else ch[f] if isinstance(f, int) else 0
                c2 = c1
                if m in SIZED:
                    c2 = args[0] if args[0] == no else math.ceil(args[0] * gw / 8) * 8
                    args = [c1, c2, *args[1:]]
                    if m in ("C3Ghost", "SPPCSPC"):
                        args.insert(2, n)
                        n = 1
                elif m == "Concat":
                    c2 = sum(ch[x] for x in f)
                elif m == "Detect":
                    args.append([ch[x] for x in f])
                mods = [MODULES[m](*args) for _ in range(n)]
                layers.append(nn.Sequential(*mods) if n > 1 else mods[0])
                self.froms.append(f)
                ch.append(c2)
        finally:
            Conv.default_act = nn.SiLU()
        self.model = nn.Sequential(*layers)


# -- the YAMLs --------------------------------------------------------------------------------------

# ultralytics/yolov5 models/hub/yolov5s-ghost.yaml, its rows as written there.
GHOST = HEAD.format(nc=80, gd=0.33, gw=0.50, anchors=V5_ANCHORS, backbone=rows(
    "[-1, 1, Conv, [64, 6, 2, 2]]", "[-1, 1, GhostConv, [128, 3, 2]]", "[-1, 3, C3Ghost, [128]]",
    "[-1, 1, GhostConv, [256, 3, 2]]", "[-1, 6, C3Ghost, [256]]", "[-1, 1, GhostConv, [512, 3, 2]]",
    "[-1, 9, C3Ghost, [512]]", "[-1, 1, GhostConv, [1024, 3, 2]]", "[-1, 3, C3Ghost, [1024]]",
    "[-1, 1, SPPF, [1024, 5]]"), head=rows(
    "[-1, 1, GhostConv, [512, 1, 1]]", '[-1, 1, nn.Upsample, [None, 2, "nearest"]]', "[[-1, 6], 1, Concat, [1]]",
    "[-1, 3, C3Ghost, [512, False]]", "[-1, 1, GhostConv, [256, 1, 1]]", '[-1, 1, nn.Upsample, [None, 2, "nearest"]]',
    "[[-1, 4], 1, Concat, [1]]", "[-1, 3, C3Ghost, [256, False]]", "[-1, 1, GhostConv, [256, 3, 2]]",
    "[[-1, 14], 1, Concat, [1]]", "[-1, 3, C3Ghost, [512, False]]", "[-1, 1, GhostConv, [512, 3, 2]]",
    "[[-1, 10], 1, Concat, [1]]", "[-1, 3, C3Ghost, [1024, False]]", "[[17, 20, 23], 1, Detect, [nc, anchors]]"))

# Every option: GhostConv grouped, act False, an activation module, repeated; GhostBottleneck with
# stride 2 (its own k), stride 1, repeated; C3Ghost with e; MP, SP; a model-wide activation.
EVERY = "activation: nn.ReLU()\n" + HEAD.format(nc=2, gd=1.0, gw=1.0, anchors="  - [10,13, 16,30]\n  - [30,61, 62,45]\n",
                                                backbone=rows(
    "[-1, 1, Conv, [16, 3, 2]]", "[-1, 1, GhostConv, [32, 3, 1, 2]]", "[-1, 1, GhostConv, [32, 1, 1, 1, False]]",
    "[-1, 2, GhostConv, [32, 3, 1, 1, nn.LeakyReLU(0.1)]]", "[-1, 1, GhostBottleneck, [48, 5, 2]]",
    "[-1, 2, GhostBottleneck, [48]]", "[-1, 1, C3Ghost, [64, True, 1, 0.25]]", "[-1, 1, MP, []]",
    "[-1, 1, SP, [5]]", "[-2, 1, SP, [3, 2]]"), head=rows(
    "[-1, 1, Conv, [32, 1, 1, None, 1, nn.Hardswish()]]", "[-1, 1, nn.Upsample, [None, 2, 'nearest']]",
    "[[-1, 8], 1, Concat, [1]]", "[-1, 1, C3Ghost, [32, False]]", "[[13, 10], 1, Detect, [nc, anchors]]"))

# YOLOv7's SPPCSPC and RepConv (its training form: with and without the identity branch).
V7 = HEAD.format(nc=2, gd=1.0, gw=1.0, anchors="  - [10,13, 16,30]\n  - [30,61, 62,45]\n", backbone=rows(
    "[-1, 1, Conv, [16, 3, 2]]", "[-1, 1, RepConv, [16, 3, 1]]", "[-1, 1, RepConv, [32, 3, 2]]",
    "[-1, 1, MP, []]", "[-1, 1, SPPCSPC, [32]]", "[-1, 1, SPPCSPC, [16, False, 1, 0.25]]"), head=rows(
    "[4, 1, RepConv, [32, 5, 1]]", "[[-1, 5], 1, Concat, [1]]", "[2, 1, RepConv, [16, 1, 1, None, 1, True]]",
    "[[8, 7], 1, Detect, [nc, anchors]]"))

LEAKY = "nn.LeakyReLU(0.1)"


def _elan(c: int, first: int = -1) -> list[str]:
    """YOLOv7-tiny's repeated unit: two 1x1 branches, two 3x3 after the second, all joined, 1x1 to 2c."""
    conv = "[{f}, 1, Conv, [{c}, {k}, 1, None, 1, " + LEAKY + "]]"
    return [conv.format(f=first, c=c, k=1), conv.format(f=-2, c=c, k=1), conv.format(f=-1, c=c, k=3),
            conv.format(f=-1, c=c, k=3), "[[-1, -2, -3, -4], 1, Concat, [1]]", conv.format(f=-1, c=2 * c, k=1)]


def yolov7_tiny(nc: int, head: str = "Detect") -> str:
    """WongKinYiu/yolov7 cfg/deploy/yolov7-tiny.yaml (head Detect) or cfg/training's (IDetect), its rows as written."""
    def conv(f: int | str, c: int, k: int, s: int = 1) -> str:
        return f"[{f}, 1, Conv, [{c}, {k}, {s}, None, 1, {LEAKY}]]"
    backbone = [conv(-1, 32, 3, 2), conv(-1, 64, 3, 2), *_elan(32)]
    for c in (64, 128, 256):
        backbone += ["[-1, 1, MP, []]", *_elan(c)]
    head_rows = [conv(-1, 256, 1), conv(-2, 256, 1), "[-1, 1, SP, [5]]", "[-2, 1, SP, [9]]", "[-3, 1, SP, [13]]",
                 "[[-1, -2, -3, -4], 1, Concat, [1]]", conv(-1, 256, 1), "[[-1, -7], 1, Concat, [1]]", conv(-1, 256, 1),
                 conv(-1, 128, 1), "[-1, 1, nn.Upsample, [None, 2, 'nearest']]", conv(21, 128, 1),
                 "[[-1, -2], 1, Concat, [1]]", *_elan(64), conv(-1, 64, 1), "[-1, 1, nn.Upsample, [None, 2, 'nearest']]",
                 conv(14, 64, 1), "[[-1, -2], 1, Concat, [1]]", *_elan(32), conv(-1, 128, 3, 2),
                 "[[-1, 47], 1, Concat, [1]]", *_elan(64), conv(-1, 256, 3, 2), "[[-1, 37], 1, Concat, [1]]",
                 *_elan(128), conv(57, 128, 3), conv(65, 256, 3), conv(73, 512, 3),
                 f"[[74,75,76], 1, {head}, [nc, anchors]]"]
    return HEAD.format(nc=nc, gd=1.0, gw=1.0, anchors=V5_ANCHORS, backbone=rows(*backbone), head=rows(*head_rows))


def yolov7(nc: int) -> str:
    """WongKinYiu/yolov7 cfg/deploy/yolov7.yaml, its rows as written there (Conv's default SiLU)."""
    def conv(f: int, c: int, k: int, s: int = 1) -> str:
        return f"[{f}, 1, Conv, [{c}, {k}, {s}]]"

    def elan(c: int, h: int, wide: bool) -> list[str]:  # 4 (backbone) or 6 (head) joined branches
        join = "[-1, -2, -3, -4, -5, -6]" if wide else "[-1, -3, -5, -6]"
        return [conv(-1, c, 1), conv(-2, c, 1), *[conv(-1, h, 3)] * 4, f"[{join}, 1, Concat, [1]]"]

    def down(c: int, extra: str = "") -> list[str]:  # MP and a strided 3x3, joined
        return ["[-1, 1, MP, []]", conv(-1, c, 1), conv(-3, c, 1), conv(-1, c, 3, 2), f"[[-1, -3{extra}], 1, Concat, [1]]"]

    backbone = [conv(-1, 32, 3), conv(-1, 64, 3, 2), conv(-1, 64, 3), conv(-1, 128, 3, 2), *elan(64, 64, False),
                conv(-1, 256, 1), *down(128), *elan(128, 128, False), conv(-1, 512, 1), *down(256),
                *elan(256, 256, False), conv(-1, 1024, 1), *down(512), *elan(256, 256, False), conv(-1, 1024, 1)]
    up = "[-1, 1, nn.Upsample, [None, 2, 'nearest']]"
    head = ["[-1, 1, SPPCSPC, [512]]", conv(-1, 256, 1), up, conv(37, 256, 1), "[[-1, -2], 1, Concat, [1]]",
            *elan(256, 128, True), conv(-1, 256, 1), conv(-1, 128, 1), up, conv(24, 128, 1),
            "[[-1, -2], 1, Concat, [1]]", *elan(128, 64, True), conv(-1, 128, 1), *down(128, ", 63"),
            *elan(256, 128, True), conv(-1, 256, 1), *down(256, ", 51"), *elan(512, 256, True), conv(-1, 512, 1),
            "[75, 1, RepConv, [256, 3, 1]]", "[88, 1, RepConv, [512, 3, 1]]", "[101, 1, RepConv, [1024, 3, 1]]",
            "[[102,103,104], 1, Detect, [nc, anchors]]"]
    anchors = "  - [12,16, 19,36, 40,28]\n  - [36,75, 76,55, 72,146]\n  - [142,110, 192,243, 459,401]\n"
    return HEAD.format(nc=nc, gd=1.0, gw=1.0, anchors=anchors, backbone=rows(*backbone), head=rows(*head))


def both(text: str, tmp_path: Path) -> tuple[nn.Module, nn.Module, Path]:
    ref = Model(text).eval()
    randomize(ref, seed=5)
    pt = tmp_path / "ref.pt"
    torch.save(ref.state_dict(), pt)
    ours = netdsl.build(import_text(text, "m.yaml", "yaml") + "\n", H=SIZE, W=SIZE).eval()
    return ref, ours, pt


def assert_loads_and_agrees(text: str, tmp_path: Path) -> int:
    ref, ours, pt = both(text, tmp_path)
    params = sum(p.numel() for p in ours.parameters())
    assert params == sum(p.numel() for p in ref.parameters())
    load_weights(ours, pt)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        (rd, rr), (od, orr) = ref(x), ours(x)
    for r, o in zip(rr, orr, strict=True):
        assert r.shape == o.shape and r.abs().max() > 0
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(od, rd, rtol=1e-4, atol=1e-3)
    return params


# -- imports that load and agree --------------------------------------------------------------------

@pytest.mark.slow
def test_yolov5s_ghost_imports_loads_and_has_the_published_size(tmp_path: Path) -> None:
    params = assert_loads_and_agrees(GHOST, tmp_path)
    assert params == 3_897_605 and round(params / 1e5) == 39  # "3.9M" in ultralytics' table


def test_every_ghost_option_pool_and_activation_loads_and_agrees(tmp_path: Path) -> None:
    assert_loads_and_agrees(EVERY, tmp_path)


@pytest.mark.slow
def test_sppcspc_and_repconv_load_and_agree(tmp_path: Path) -> None:
    assert_loads_and_agrees(V7, tmp_path)
    spec = import_text(V7, "m.yaml", "yaml")
    assert "rep_id(16)" in spec and "rep(32, 3, 2)" in spec and "rep_id(32, 5)" in spec and "rep(16, 1)" in spec
    assert "sppcspc(32, 32)" in spec and "sppcspc(16, 8)" in spec


@pytest.mark.slow
def test_yolov7_tiny_deploy_imports_loads_and_agrees(tmp_path: Path) -> None:
    assert_loads_and_agrees(yolov7_tiny(nc=1), tmp_path)


def test_yolov7_tiny_has_the_published_size() -> None:
    model = netdsl.build(import_text(yolov7_tiny(nc=80), "yolov7-tiny.yaml", "yaml") + "\n", H=SIZE, W=SIZE)
    params = sum(p.numel() for p in model.parameters())
    assert params == sum(p.numel() for p in Model(yolov7_tiny(nc=80)).parameters())
    assert round(params / 1e5) == 62  # "6.2M" in yolov7's README (its IDetect adds 1,152 implicit values)


@pytest.mark.slow
def test_yolov7_deploy_imports_with_the_transcriptions_size() -> None:
    text = yolov7(nc=80)
    model = netdsl.build(import_text(text, "yolov7.yaml", "yaml") + "\n", H=SIZE, W=SIZE)
    params = sum(p.numel() for p in model.parameters())
    assert params == sum(p.numel() for p in Model(text).parameters()) == 37_620_125
    # yolov7's README gives 36.9M: its RepConvs re-parameterized (the 1x1 branch and two BatchNorms folded away).
    folded = sum(c1 * c2 + 3 * c2 for c1, c2 in ((128, 256), (256, 512), (512, 1024)))
    assert round((params - folded) / 1e5) == 369


def test_ghostconv_rows_have_ultralytics_summary_figures() -> None:
    text = HEAD.format(nc=1, gd=1.0, gw=1.0, anchors="  - [10,13]\n", backbone=rows(
        "[-1, 1, GhostConv, [16, 3, 2]]", "[-1, 1, GhostConv, [32, 3, 2]]"), head=rows("[[-1], 1, Detect, [nc, anchors]]"))
    model = netdsl.build(import_text(text, "m.yaml", "yaml") + "\n", H=SIZE, W=SIZE)
    sizes = [sum(p.numel() for p in getattr(model, name).parameters()) for name in ("b0", "b1")]
    assert sizes == [448, 2768]


# -- what the spec says -----------------------------------------------------------------------------

def test_activations_become_their_own_conv_blocks() -> None:
    spec = import_text(EVERY, "m.yaml", "yaml")
    assert "block cba(c, k = 1, s = 1, g = 1) = conv(c, k, stride=s, padding=k // 2, groups=g, bias=false) -> " \
        "batchnorm(eps=0.001, momentum=0.03) -> relu" in spec
    assert "block cba_leaky_relu(" in spec and "-> leaky_relu(0.1)" in spec and "block cba_hardswish(" in spec
    assert "ghost_leaky_relu(32, 3) * 2" in spec and "ghost_cb(32)" in spec and "ghost(32, 3, g=2)" in spec
    assert "gbottle2(48, 32, 5)" in spec and "gbottle(48) * 2" in spec and "c3ghost(64, 1, h=16)" in spec
    assert "maxpool(2)" in spec and "maxpool(5, stride=1, padding=2)" in spec and "maxpool(3, stride=2, padding=1)" in spec


@pytest.mark.parametrize(("act", "layer"), [
    ("nn.LeakyReLU(0.1)", "leaky_relu(0.1)"), ("nn.LeakyReLU(negative_slope=0.2, inplace=True)", "leaky_relu(0.2)"),
    ("nn.LeakyReLU()", "leaky_relu(0.01)"), ("nn.ReLU(inplace=True)", "relu"), ("nn.SiLU()", "silu"),
    ("nn.Hardswish()", "hardswish"), ("nn.Hardsigmoid()", "hardsigmoid"), ("nn.Mish()", "mish"),
    ("nn.GELU(approximate='tanh')", 'gelu(approximate="tanh")'),
    ("nn.Identity()", ""),
])
def test_a_model_wide_activation_is_read_as_data(act: str, layer: str) -> None:
    text = f"activation: {act}\n" + HEAD.format(nc=1, gd=1.0, gw=1.0, anchors="  - [10,13]\n", backbone=rows(
        "[-1, 1, Conv, [16, 3, 2]]"), head=rows("[[-1], 1, Detect, [nc, anchors]]"))
    spec = import_text(text, "m.yaml", "yaml")
    assert f"batchnorm(eps=0.001, momentum=0.03){' -> ' if layer else ''}{layer}\n" in spec


# -- refusals, located ------------------------------------------------------------------------------

def _row(row: str, top: str = "") -> str:
    return top + HEAD.format(nc=1, gd=1.0, gw=1.0, anchors="  - [10,13]\n", backbone=rows("[-1, 1, Conv, [16, 3, 2]]", row),
                             head=rows("[[-1], 1, Detect, [nc, anchors]]"))


@pytest.mark.parametrize(("text", "where", "message"), [
    (_row("[-1, 1, Conv, [16, 3, 1, None, 1, nn.PReLU()]]"), "nn.PReLU", "the class nn.PReLU is not one netdsl reads"),
    (_row("[-1, 1, Conv, [16, 3, 1, None, 1, nn.LeakyReLU(x)]]"), "nn.LeakyReLU", "not a literal number"),
    (_row("[-1, 1, Conv, [16, 3, 1, None, 1, nn.ReLU(1)]]"), "nn.ReLU", "inplace in"),
    (_row("[-1, 1, Conv, [16]]", "activation: nn.LeakyReLU(0.1, 0.2, 3)\n"), "nn.Leaky", "an argument it does not take"),
    (_row("[-1, 1, Conv, [16]]", "activation: __import__('os').system('ls')\n"), "__import__", "is not supported"),
    (_row("[-1, 1, Conv, [16]]", "activation: nn.LeakyReLU(1e999)\n"), "nn.Leaky", "not a finite number"),
    (_row("[-1, 1, Conv, [16]]", "activation: nn.GELU(approximate='erf')\n"), "nn.GELU", "approximate in"),
    (_row("[-1, 1, GhostBottleneck, [32]]"), "[32]", "GhostBottleneck with stride 1 adds its input (16 channels)"),
    (_row("[-1, 1, GhostConv, [16, 1, 1, 3]]"), "3]]", "which g must divide"),
    (_row("[-1, 1, C3Ghost, [16, True, 1, 0.2]]"), "0.2", "too few"),
    (_row("[-1, 1, RepConv, [16, 3, 1, None, 5]]"), "5]]", "RepConv with g = 5"),
    (_row("[-1, 1, RepConv, [16, 4]]"), "4]]", "even kernel"),
    (_row("[-1, 1, SPPCSPC, [16, False, 1, 0.5, [3, 5, 7]]]"), "[3, 5, 7]", "SPPCSPC with the windows"),
    (_row("[-1, 1, IDetect, [nc, anchors]]"), "IDetect", "the deploy YAML (cfg/deploy), with Detect, imports"),
])
def test_refusals_are_located(text: str, where: str, message: str) -> None:
    with pytest.raises(NetdslError) as err:
        import_text(text, "m.yaml", "yaml")
    e = err.value
    before = text[:text.index(where)]
    assert message in e.message and e.hint
    assert e.span is not None and (e.span.line, e.span.column) == (before.count("\n") + 1, len(before) - before.rfind("\n"))


def test_yolov7_tiny_training_head_is_refused_at_its_row() -> None:
    text = yolov7_tiny(nc=80, head="IDetect")
    with pytest.raises(NetdslError, match="module 'IDetect' is not supported: YOLOv7's training head") as err:
        import_text(text, "yolov7-tiny.yaml", "yaml")
    assert err.value.span is not None and err.value.span.line == text[:text.index("IDetect")].count("\n") + 1
