"""`netdsl import`: darknet .cfg and Ultralytics YAML to netdsl specs.

The reference files (darknet's yolov3.cfg and yolov3-tiny.cfg, ultralytics v9.6.0's yolov3.yaml and
yolov3-tiny.yaml) are read from ../shared/reference when present (skipped otherwise); every other
test writes its own small cfg or YAML. The mutators at the end (`import_fuzz_case`) are shared with
`bench/fuzz.py --corpus import`.
"""
from __future__ import annotations

import functools
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import netdsl
from darknet_targets import yolov4_tiny, yolov7_tiny
from netdsl.cli import main as cli_main
from netdsl.errors import NetdslError
from netdsl.importers import import_file, import_text
from netdsl.weights import load_weights, save_weights
from netdsl.weights.darknet import darknet_layout
from test_fuzz import Hang, basic_edit, time_limit

ROOT = Path(__file__).resolve().parents[2]


def _reference() -> Path | None:
    for base in (ROOT.parent / "shared", Path("/work/shared")):
        if (base / "reference").is_dir():
            return base / "reference"
    return None


REF = _reference()
needs_ref = pytest.mark.skipif(REF is None, reason="../shared/reference is not present")


def total(spec: str, metric: str, **params: int) -> int:
    c = netdsl.count(spec + "\n", **params)
    return int(c.value(c.total(metric)))


def torch_params(spec: str, **params: int) -> int:
    return sum(p.numel() for p in netdsl.build(spec + "\n", **params).parameters())


# -- small cfg and YAML texts ------------------------------------------------------------------------

def cfg(*sections: tuple[str, dict[str, object]], width: int = 64, height: int = 64, channels: int = 3) -> str:
    text = f"[net]\n# Testing\nbatch=1\nwidth={width}\nheight={height}\nchannels={channels}\nmomentum=0.9\n"
    for name, opts in sections:
        text += f"\n[{name}]\n" + "".join(f"{k}={v}\n" for k, v in opts.items())
    return text


def conv(filters: int, size: int = 3, stride: int = 1, bn: int = 1, act: str = "leaky", **kw: object) -> tuple:
    opts: dict[str, object] = {"batch_normalize": bn} if bn else {}
    opts.update(filters=filters, size=size, stride=stride, pad=1, activation=act)
    opts.update(kw)
    return ("convolutional", opts)


def yolo(mask: str, classes: int = 2) -> tuple:
    return ("yolo", {"mask": mask, "anchors": "10,14, 23,27, 37,58, 81,82, 135,169, 344,319", "classes": classes,
                     "num": 6, "jitter": ".3", "ignore_thresh": ".7", "truth_thresh": 1, "random": 1})


# A two-level YOLO with a residual unit, a route back, an upsample and a route joining two layers.
SMALL_YOLO = cfg(conv(8), conv(16, stride=2), conv(8, 1), conv(16), ("shortcut", {"from": -3, "activation": "linear"}),
                 conv(32, stride=2), conv(21, 1, bn=0, act="linear"), yolo("3,4,5"), ("route", {"layers": -3}),
                 conv(8, 1), ("upsample", {"stride": 2}), ("route", {"layers": "-1, 4"}), conv(16),
                 conv(21, 1, bn=0, act="linear"), yolo("0,1,2"))
# The same network written by hand, shaped differently (several layers per statement, other names).
SMALL_YOLO_NET = """net T(NCLS = 2)
input x: [3, H = 64, W = 64] where H % 4 == 0, W % 4 == 0
block cbl(c, k = 1, s = 1) = conv(c, k, stride=s, padding=k//2, bias=false) -> \
batchnorm(eps=1e-5, momentum=0.03) -> leaky_relu(0.1)
a = x |> cbl(8, 3) -> cbl(16, 3, 2)
r = a |> cbl(8) -> cbl(16, 3)
s = add(a, r)
p4 = s |> cbl(32, 3, 2)
u = p4 |> cbl(8) -> upsample(2)
p2 = cat(u, s) |> cbl(16, 3)
output = detect(p2, p4, classes=NCLS, strides=[2, 4], anchors=[[10, 14, 23, 27, 37, 58], [81, 82, 135, 169, 344, 319]])
"""

YAML_HEAD = ("# a small model\nnc: {nc}\ndepth_multiple: {gd}\nwidth_multiple: {gw}\nanchors:\n"
             "  - [10,13, 16,30, 33,23]\n  - [30,61, 62,45, 59,119]\n  - [116,90, 156,198, 373,326]\n")


def yaml_text(backbone: list[str], head: list[str], nc: int = 80, gd: float = 1.0, gw: float = 1.0) -> str:
    rows = lambda rs: "\n".join(f"  {'[' if i == 0 else ' '}{r}," for i, r in enumerate(rs)) + "\n  ]\n"  # noqa
    return (YAML_HEAD.format(nc=nc, gd=gd, gw=gw) + "backbone:\n  # [from, number, module, args]\n" + rows(backbone)
            + "head:\n" + (rows(head) if head else "  []\n"))


# YOLOv5s (ultralytics v6.0's layout), rows generated here: ultralytics' summary reads 7,235,389 parameters.
_V5S_BACKBONE = ["[-1, 1, Conv, [64, 6, 2, 2]]", "[-1, 1, Conv, [128, 3, 2]]", "[-1, 3, C3, [128]]",
                 "[-1, 1, Conv, [256, 3, 2]]", "[-1, 6, C3, [256]]", "[-1, 1, Conv, [512, 3, 2]]", "[-1, 9, C3, [512]]",
                 "[-1, 1, Conv, [1024, 3, 2]]", "[-1, 3, C3, [1024]]", "[-1, 1, SPPF, [1024, 5]]"]
_V5S_HEAD = []
for _c, _cat, _up in ((512, 6, True), (256, 4, True)):
    _V5S_HEAD += [f"[-1, 1, Conv, [{_c}, 1, 1]]", "[-1, 1, nn.Upsample, [None, 2, 'nearest']]",
                  f"[[-1, {_cat}], 1, Concat, [1]]", f"[-1, 3, C3, [{_c}, False]]"]
_V5S_HEAD[-1] = "[-1, 3, C3, [256, False]]"
_V5S_HEAD[3] = "[-1, 3, C3, [512, False]]"
for _c, _cat in ((256, 14), (512, 10)):
    _V5S_HEAD += [f"[-1, 1, Conv, [{_c}, 3, 2]]", f"[[-1, {_cat}], 1, Concat, [1]]", f"[-1, 3, C3, [{2 * _c}, False]]"]
_V5S_HEAD.append("[[17, 20, 23], 1, Detect, [nc, anchors]]")
YOLOV5S = yaml_text(_V5S_BACKBONE, _V5S_HEAD, gd=0.33, gw=0.50)


# -- the reference files -----------------------------------------------------------------------------

@needs_ref
@pytest.mark.parametrize(("path", "params", "macs", "size"), [
    ("darknet/yolov3.cfg", 61_949_149, 32_932_037_632, 416),
    ("darknet/yolov3-tiny.cfg", 8_852_366, 2_782_480_896, 416),
    ("ultralytics-yolov3-v9.6.0/yolov3.yaml", 61_949_149, 77_945_651_200, 640),
    ("ultralytics-yolov3-v9.6.0/yolov3-tiny.yaml", 8_852_366, 6_585_753_600, 640),
])
def test_reference_counts(path: str, params: int, macs: int, size: int) -> None:
    spec = import_file(str(REF / path))
    assert total(spec, "parameters", H=size, W=size) == params
    assert total(spec, "macs", H=size, W=size) == macs  # darknet's 65.86 and 5.56 BFLOPs at 416
    assert torch_params(spec, H=64, W=64) == params


@needs_ref
def test_reference_cfg_reads_like_the_hand_written_spec() -> None:
    spec = import_file(str(REF / "darknet/yolov3.cfg"))
    assert "res36 = conv12 |> residual(256) * 8" in spec and "route86 = cat(up85, res61)" in spec
    assert "block residual(c) {\n  input x\n  y = x |> cbl(c // 2) -> cbl(c, 3)\n  output = add(x, y)\n}" in spec
    assert "output = detect(p3, p4, p5, classes=NCLS, strides=[8, 16, 32]," in spec
    assert "input x: [3, H = 608, W = 608] where H % 32 == 0, W % 32 == 0" in spec  # [net] width, height
    statements = [ln for ln in spec.splitlines() if re.match(r"\w+ = ", ln)]
    assert len(statements) == 36  # 107 layers: 23 residual units in 5 runs; 2 routes read one layer; 3 heads
    assert all("# cfg line" in ln for ln in statements[:-1])
    # The YAML: one statement per row with the hand-written spec's names, the same modules and shapes.
    yspec = import_file(str(REF / "ultralytics-yolov3-v9.6.0/yolov3.yaml"))
    mine, hand = netdsl.build(yspec + "\n", H=64, W=64), netdsl.build(ROOT / "specs/yolov3.net", H=64, W=64, LEAKY=0)
    assert [n for n, _ in mine.named_children()] == [n for n, _ in hand.named_children()]
    assert {k: v.shape for k, v in mine.state_dict().items()} == {k: v.shape for k, v in hand.state_dict().items()}
    assert "n11 = b10 |> pair(1024)" in yspec and "b6 = b5 |> res(256) * 8" in yspec
    assert "# line 17, row 2: Bottleneck" in yspec


@needs_ref
def test_reference_other_files_import_and_build() -> None:
    d53 = import_file(str(REF / "darknet/darknet53.cfg"))  # a classifier: [avgpool], [softmax]
    assert "avg75 = res74 |> adaptive_avgpool" in d53 and "output = conv76 |> softmax" in d53
    assert total(d53, "parameters") == torch_params(d53, H=64, W=64)
    spp = import_file(str(REF / "ultralytics-yolov3-v9.6.0/yolov3-spp.yaml"))
    assert "n12 = n11 |> spp(512, 512)" in spp
    assert total(spp, "parameters") == torch_params(spp, H=64, W=64)


def random_darknet_weights(model: nn.Module, path: Path, seed: int = 0, kernels: bool = True) -> None:
    """Random values in every float darknet stores (BatchNorm statistics included), saved as .weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and kernels:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            elif p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.add_(1.0)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    save_weights(model, path)


def same_raw_outputs(a: nn.Module, b: nn.Module, size: int) -> None:
    a.eval(), b.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ra, rb = a(x)[1], b(x)[1]
    assert len(ra) == len(rb)
    for u, v in zip(ra, rb):
        assert u.shape == v.shape and u.abs().max() > 0
        torch.testing.assert_close(u, v, rtol=0, atol=0)


@needs_ref
def test_reference_tiny_cfg_loads_darknet_weights_like_the_hand_written_spec(tmp_path: Path) -> None:
    mine = netdsl.build(import_file(str(REF / "darknet/yolov3-tiny.cfg")) + "\n", H=64, W=64)
    hand = netdsl.build(ROOT / "specs/yolov3-tiny.net", H=64, W=64)
    random_darknet_weights(mine, tmp_path / "w.weights")
    load_weights(hand, tmp_path / "w.weights")
    same_raw_outputs(mine, hand, 64)


@needs_ref
@pytest.mark.parametrize(("name", "floats"), [("yolov3", 62_001_757), ("yolov3-tiny", 8_858_734)])
def test_reference_cfg_has_the_hand_written_specs_darknet_layout(name: str, floats: int) -> None:
    # What decides where each float of a .weights file goes (writing yolov3's 248 MB takes too long here).
    def layout(model: nn.Module) -> list[tuple]:
        return [(e.count, e.filters, e.size, e.batch_normalize, e.detect_level,
                 [(s.role, s.shape, s.in_file) for s in e.slots]) for e in darknet_layout(model)]
    mine = layout(netdsl.build(import_file(str(REF / f"darknet/{name}.cfg")) + "\n", H=64, W=64))
    assert mine == layout(netdsl.build(ROOT / f"specs/{name}.net", H=64, W=64))
    assert sum(e[0] for e in mine) == floats  # the sizes of the published yolov3.weights and yolov3-tiny.weights


# -- darknet semantics, on small generated files ------------------------------------------------------

def test_small_cfg_counts_by_hand() -> None:
    text = cfg(conv(8), ("maxpool", {"size": 2, "stride": 2}), conv(16, stride=2), conv(8, 1), conv(16),
               ("shortcut", {"from": -3, "activation": "linear"}), conv(4, 1, bn=0, act="logistic"))
    spec = import_text(text, "small.cfg", "cfg")
    # 3->8 3x3 + BN; 8->16 3x3 s2 + BN; 16->8 1x1 + BN; 8->16 3x3 + BN; 16->4 1x1 with bias.
    assert total(spec, "parameters") == (216 + 16) + (1152 + 32) + (128 + 16) + (1152 + 32) + (64 + 4) == 2812
    assert torch_params(spec) == 2812
    # at 64x64: 64*64*8*27; the rest at 16x16 (the pool and the stride-2 conv): 16*16*(16*72 + 8*16 + 16*72 + 4*16)
    assert total(spec, "macs") == 64 * 64 * 8 * 27 + 16 * 16 * (16 * 72 + 8 * 16 + 16 * 72 + 4 * 16) == 1_523_712
    assert "res5 = conv2 |> residual(16)" in spec and "output = res5 |> conv(4, 1) -> sigmoid" in spec
    assert "input x: [3, H = 64, W = 64] where H % 4 == 0, W % 4 == 0" in spec


def darknet_maxpool(x: torch.Tensor, size: int, stride: int, padding: int) -> torch.Tensor:
    """darknet's forward_maxpool_layer: windows offset by -padding/2, positions outside skipped."""
    n, c, h, w = x.shape
    oh, ow = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
    off = -(padding // 2)
    out = torch.full((n, c, oh, ow), float("-inf"))
    for i in range(oh):
        for j in range(ow):
            for a in range(size):
                for b in range(size):
                    y, z = off + i * stride + a, off + j * stride + b
                    if 0 <= y < h and 0 <= z < w:
                        out[..., i, j] = torch.maximum(out[..., i, j], x[..., y, z])
    return out


@pytest.mark.parametrize(("size", "stride", "padding", "width", "written"), [
    (2, 2, None, 8, "maxpool(2)"),                                           # the extra row never reached
    (2, 1, None, 7, "pad(0, 1, 0, 1, value=-inf) -> maxpool(2, stride=1)"),  # yolov3-tiny's layer 11
    (3, 2, None, 8, "maxpool(3, stride=2, padding=1)"),                      # an even split: the pool's own
    (3, 1, None, 7, "maxpool(3, stride=1, padding=1)"),
    (5, 1, None, 9, "maxpool(5, stride=1, padding=2)"),
    (4, 2, None, 8, "pad(1, 2, 1, 2, value=-inf) -> maxpool(4, stride=2)"),
    (3, 3, None, 9, "maxpool(3, padding=1)"),
    (2, 2, 4, 8, "pad(2, 2, 2, 2, value=-inf) -> maxpool(2)"),               # more than torch's pool padding
    (2, 2, 0, 8, "maxpool(2)"),
    (3, 2, 0, 10, "maxpool(3, stride=2)"),
    (2, 2, 3, 8, "pad(1, 2, 1, 2, value=-inf) -> maxpool(2)"),
])
def test_maxpool_as_darknet_pools(size: int, stride: int, padding: int | None, width: int, written: str) -> None:
    opts = {"size": size, "stride": stride} | ({} if padding is None else {"padding": padding})
    text = cfg(("maxpool", opts), width=width, height=width, channels=2)
    spec = import_text(text, "p.cfg", "cfg")
    assert f"output = x |> {written}" in spec
    x = torch.randn(1, 2, width, width, generator=torch.Generator().manual_seed(size * 10 + stride))
    got = netdsl.build(spec + "\n")(x)
    torch.testing.assert_close(got, darknet_maxpool(x, size, stride, size - 1 if padding is None else padding))


def test_conv_padding_routes_and_activations() -> None:
    text = cfg(conv(4, 3, act="logistic", pad=1, padding=5), conv(4, 3, act="swish", pad=0, padding=2),
               conv(4, 3, bn=0, act="relu", pad=0), conv(4, 1, act="tanh", groups=2),
               ("route", {"layers": "0, -2"}), ("route", {"layers": 3}), conv(4, 1, bn=0, act="linear"),
               ("shortcut", {"from": 0, "activation": "leaky"}), width=8, height=8)
    spec = import_text(text, "a.cfg", "cfg")
    assert "conv0 = x |> cb_sigmoid(4, 3)" in spec            # pad=1 wins over padding: size // 2
    assert "conv1 = conv0 |> cb_silu(4, 3, p=2)" in spec       # pad=0: padding as written
    assert "conv2 = conv1 |> conv(4, 3) -> relu" in spec and "cb_tanh(4, g=2)" in spec
    assert "route4 = cat(conv0, conv2)" in spec and "layers=3: the next layer reads conv3" in spec
    assert "output = add(conv6, conv0) |> leaky_relu(0.1)" in spec
    m = netdsl.build(spec + "\n")
    kinds = {type(x).__name__ for x in m.modules()}
    assert {"Sigmoid", "SiLU", "ReLU", "Tanh", "LeakyReLU"} <= kinds
    assert m.conv1[0].padding == (2, 2) and m.conv1[0].out_channels == 4 and m.conv3[0].groups == 2
    assert total(spec, "parameters") == torch_params(spec)


def test_mish_is_darknet_mish() -> None:
    # darknet's mish is x * tanh(softplus(x)), as torch's Mish; with and without batchnorm.
    text = cfg(conv(4, 3, act="mish"), conv(4, 1, bn=0, act="mish"), width=8, height=8)
    spec = import_text(text, "m.cfg", "cfg")
    assert "cb_mish(4, 3)" in spec and "conv(4, 1) -> mish" in spec
    m = netdsl.build(spec + "\n").eval()
    assert sum(isinstance(x, torch.nn.Mish) for x in m.modules()) == 2
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        pre = m.output[0](m.conv0(x))
        torch.testing.assert_close(m(x), pre * torch.tanh(torch.nn.functional.softplus(pre)))


def test_residual_runs_group_only_what_nothing_else_reads() -> None:
    unit = [conv(4, 1), conv(8), ("shortcut", {"from": -3, "activation": "linear"})]
    text = cfg(conv(8), *unit, *unit, *unit, conv(8, stride=2), *unit, *unit, ("route", {"layers": 8}), width=8, height=8)
    spec = import_text(text.replace("layers=8", "layers=-1"), "r.cfg", "cfg")
    assert "res9 = conv0 |> residual(8) * 3" in spec and "res16 = conv10 |> residual(8) * 2" in spec
    assert "output = res16" in spec
    # The route reads layer 8, inside the third unit: that unit is written layer by layer.
    spec = import_text(text, "r.cfg", "cfg")
    assert "res6 = conv0 |> residual(8) * 2" in spec and "conv8 = conv7 |> cbl(8, 3)" in spec
    assert "add9 = add(conv8, res6)" in spec and "res16 = conv10 |> residual(8) * 2" in spec
    assert "output = conv8" in spec
    assert total(spec, "parameters") == torch_params(spec)


def test_generated_yolo_cfg_loads_weights_like_a_hand_written_spec(tmp_path: Path) -> None:
    spec = import_text(SMALL_YOLO, "small.cfg", "cfg")
    assert "output = detect(p1, p2, classes=NCLS, strides=[2, 4]," in spec
    mine, hand = netdsl.build(spec + "\n"), netdsl.build(SMALL_YOLO_NET)
    assert total(spec, "parameters") == sum(p.numel() for p in hand.parameters())
    random_darknet_weights(mine, tmp_path / "s.weights", seed=3)
    load_weights(hand, tmp_path / "s.weights")
    same_raw_outputs(mine, hand, 64)


# -- Ultralytics semantics, on small generated files ---------------------------------------------------

def test_yolov5s_rows_give_ultralytics_published_count() -> None:
    spec = import_text(YOLOV5S, "yolov5s.yaml", "yaml")
    assert total(spec, "parameters") == 7_235_389 == torch_params(spec, H=64, W=64)
    # width 0.5 (make_divisible), depth 0.33: round(3*0.33) = 1, round(6*0.33) = 2, round(9*0.33) = 3
    assert "b0 = x |> cba(32, 6, 2, p=2)" in spec and "b4 = b3 |> c3(128, 2)" in spec and "b6 = b5 |> c3(256, 3)" in spec
    assert "b9 = b8 |> sppf(512, 256)" in spec and "n13 = n12 |> c3_plain(256, 1)" in spec
    assert "output = detect(n17, n20, n23, classes=NCLS, strides=[8, 16, 32]," in spec


def test_yaml_widths_depths_and_blocks_by_hand() -> None:
    text = yaml_text(["[-1, 1, Conv, [20, 3, 2]]",            # 20 * 0.5 = 10 -> 16 (multiple of 8)
                      "[-1, 5, Bottleneck, [32]]",            # 16 -> 16 channels: a sum; round(2.5) = 2 copies
                      "[-1, 1, SPP, [32, [3, 5]]]", "[-1, 1, nn.MaxPool2d, [3, 2, 1]]",
                      "[-1, 1, nn.ZeroPad2d, [[1, 0, 1, 0]]]", "[-1, 4, Conv, [32, 1, 1, None, 1, False]]"],
                     [], gd=0.5, gw=0.5)
    spec = import_text(text, "m.yaml", "yaml")
    assert "b0 = x |> cba(16, 3, 2)" in spec and "b1 = b0 |> res(16) * 2" in spec
    assert "b2 = b1 |> spp(16, 8)" in spec and "b3 = b2 |> maxpool(3, stride=2, padding=1)" in spec
    assert "b4 = b3 |> pad(1, 0, 1, 0)" in spec and "output = b4 |> cb(16) * 2" in spec
    # by hand: 3->16 3x3 + BN; two bottlenecks (16->8 1x1, 8->16 3x3, + BN); SPP (16->8, 24->16 + BN);
    # two 16->16 1x1 + BN
    want = (432 + 32) + 2 * ((128 + 16) + (1152 + 32)) + ((128 + 16) + (384 + 32)) + 2 * (256 + 32)
    assert total(spec, "parameters") == want == torch_params(spec)
    assert "input x: [3, H = 640, W = 640] where H % 4 == 0, W % 4 == 0" in spec


def test_repeated_strided_conv_strides_every_copy() -> None:
    spec = import_text(yaml_text([_ROW0, "[-1, 2, Conv, [16, 3, 2]]"], []), "m.yaml", "yaml")
    assert "output = b0 |> cba(16, 3, 2) * 2" in spec and "where H % 8 == 0, W % 8 == 0" in spec
    with pytest.raises(NetdslError, match="Concat of maps of different sizes: b1 \\[16, H/8, W/8\\], b0"):
        import_text(yaml_text([_ROW0, "[-1, 2, Conv, [16, 3, 2]]", "[[-1, 0], 1, Concat, [1]]"], []), "m.yaml", "yaml")


# -- errors: file:line:col, what and what to do --------------------------------------------------------

_C = "\n".join(["[convolutional]", "batch_normalize=1", "filters=8", "size=3", "stride=1", "pad=1",
                "activation=leaky"]) + "\n"
_NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"  # lines 1-4; _C at lines 5-11
CFG_ERRORS = [
    (_NET + _C + "[crop]\n", 12, 1, "section [crop] is not supported"),
    (_NET + _C + "dilation=2\n", 12, 1, "key 'dilation' of [convolutional] is not supported"),
    (_NET + _C + "[route]\nlayers = -1, -3\n", 13, 10, "-3 names layer -2"),
    (_NET + _C + "[route]\nlayers=1\n", 13, 8, "names layer 1, but layer 1 can only read layers 0 to 0"),
    (_NET + _C + "[shortcut]\nfrom=-2\n", 13, 6, "names layer -1"),
    # a key given twice: darknet reads the first (8 filters, which groups=3 does not divide; 9 would do)
    (_NET + "[convolutional]\nfilters=8\nfilters=9\ngroups=3\n", 8, 8, "groups=3 must divide the input's 3 channels and the 8"),
    (_NET + "[convolutional]\nfilters=8x\n", 6, 9, "filters=8x: expected a whole number"),
    (_NET + "[convolutional]\nfilters=8\nactivation = mlsh\n", 7, 14, "activation=mlsh is not supported"),
    (_NET + "[convolutional]\nactivation=elu\n", 6, 12, "activation=elu is not supported"),
    ("filters=3\n[net]\n", 1, 1, "an option before the first section"),
    ("[convolutional]\n", 1, 1, "darknet's first section is [net]"),
    (_NET + _C + "[yolo]\nmask=0\nanchors=1,2\nclasses=1\nnum=1\n", 6, 17, "must be without batchnorm"),
    (_NET + "[convolutional]\nfilters=20\nsize=1\nactivation=linear\n[yolo]\nmask=0,1,2\nanchors=1,2,3,4,5,6\n"
     "classes=1\nnum=3\n", 6, 9, "must be 18 filters"),
    (_NET + "[convolutional]\nfilters=18\nsize=1\nactivation=linear\n[yolo]\nmask=0,1,3\nanchors=1,2,3,4,5,6\n"
     "classes=1\nnum=3\n", 10, 6, "out of range"),
    (_NET + "[convolutional]\nfilters=18\nsize=1\nactivation=linear\n[yolo]\nmask=0,1,2\nanchors=1,2,3,4,5,6\n"
     "classes=1\nnum=3\n[convolutional]\n", 14, 1, "would read the [yolo] at line 9"),
    (_NET + "[yolo]\n", 5, 1, "a [yolo] must follow the [convolutional]"),
    ("[net]\nwidth=65\nheight=64\nchannels=3\n" + _C + "[maxpool]\nsize=2\nstride=2\n", 2, 7,
     "width=65 is not a multiple of 2"),
    (_NET + _C + "[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n", 16, 8, "joins maps of different sizes"),
    (_NET + _C + "[convolutional]\nfilters=8\nstride=2\n[shortcut]\nfrom=0\nweights_type=per_feature\n", 17, 14,
     "weights_type=per_feature: a weighted [shortcut] is not supported"),
    (_NET + _C + "[upsample]\nscale=0.5\n", 13, 7, "scale=0.5 is not supported"),
    (_NET + _C + "[convolutional]\nfilters=4\nsize=1\n" + _C + "[shortcut]\nfrom=-3\nalpha=0.5\n", 24, 7,
     "alpha=0.5 is not supported"),  # a residual unit but for its shortcut's weight
    (_NET + _C + "[softmax]\n", 12, 1, "[softmax] of a [8, H, W] map"),
    (_NET + _C + "[convolutional]\nfilters=6\ngroups=4\n", 14, 8, "groups=4 must divide"),
    (_NET + _C + "[convolutional]\nfilters=9\nsize=99\n", 12, 1, "would be 9x-34x-34 for a 64x64 input"),
    (_NET + _C + "[convolutional]\nfilters=99999999999999999999999\n", 13, 9, "out of range"),
    ("[net]\nwidth=64\nheight=64\n" + _C, 1, 1, "[net] needs 'channels'"),
    (_NET + _C + "\x00", 12, 1, "NUL byte"),
    (_NET + "[net]\n", 5, 1, "a second [net] section"),
    (_NET + "[convolutional]\nfilters=8\n[convolutional]\nfilters=8\n[yolo]\nmask=0\nanchors=1,2\nnum=1\nclasses=3"
     "\n[convolutional]\nfilters=8\n[convolutional]\nfilters=8\n", 7, 1, "before the [yolo] at line 9 must be"),
]


@pytest.mark.parametrize(("text", "line", "col", "message"), CFG_ERRORS)
def test_cfg_errors_are_located(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(NetdslError) as info:
        import_text(text, "bad.cfg", "cfg")
    e = info.value
    assert message in e.message, e.render()
    assert (e.span.line, e.span.column) == (line, col), e.render()
    assert e.path == "bad.cfg" and e.hint and e.render().startswith(f"bad.cfg:{line}:{col}: error: ")


_ROW0 = "[-1, 1, Conv, [16, 3, 2]]"
_Y = yaml_text([_ROW0, "{row}"], [])  # line 11: row 0; line 12: row 1
YAML_ERRORS = [
    (_Y.format(row="[-1, 1, Focus, [3]]"), 12, 12, "module 'Focus' is not supported"),
    (_Y.format(row="[-3, 1, Conv, [3]]"), 12, 5, "from -3 names row -2"),
    (_Y.format(row="[5, 1, Conv, [3]]"), 12, 5, "from 5 names row 5"),
    (_Y.format(row="[-1, 1, Conv, [16, 3, 2, 1, 1, True, 7]]"), 12, 41, "Conv takes at most 6 arguments"),
    (_Y.format(row="[-1, 1, Conv, ['3*2', 3, 2]]"), 12, 19, "the output channels is '3*2'"),
    (yaml_text([_ROW0, "[-1, 1, Detect, [nc, anchors]]", "[-1, 1, Conv, [3]]"], []), 12, 12,
     "Detect in row 1, not the last row"),
    (_Y.format(row="[[-1, 0], 1, Detect, [nc, 3]]"), 12, 30, "ultralytics would compute them"),
    (_Y.format(row="[-1, 2, Conv, [32, 3, 1]]"), 12, 9, "2 copies of Conv"),
    (_Y.format(row="[-1, 1, SPP, [32, [5, 6]]]"), 12, 22, "even window 6"),
    (_Y.format(row="[-1, 1, Concat, [1]]"), 12, 5, "Concat reads a list of rows"),
    (_Y.format(row="[[-1, 0], 1, Concat, [2]]"), 12, 26, "Concat along dimension 2"),
    (_Y.format(row="[-1, 1, !!python/object/apply:os.system ['true'], [1]]"), 12, 12, "is not allowed"),
    (_Y.format(row="[-1, 1, nn.Upsample, [None, 2.5, 'nearest']]"), 12, 32, "whole scale factor"),
    (_Y.format(row="[-1, 1, nn.MaxPool2d, [2, 2, 3]]"), 12, 33, "out of range"),
    (_Y.format(row="[-1, 1, Conv]"), 12, 4, "a row is [from, number, module, args]"),
    (_Y.format(row="[-1, 0, Conv, [8]]"), 12, 9, "number = 0 is out of range"),
    (_Y.format(row="[-1, 1, C3, [32, maybe]]"), 12, 21, "shortcut is 'maybe'"),
    (_Y + "extra: 1\n", 16, 1, "key 'extra' is not supported"),
    (_Y.replace("nc: 80\n", ""), 2, 1, "'nc' is missing"),
    (_Y.replace("nc: 80", "nc: 80\nnc: 81"), 3, 1, "'nc' is given twice"),
    (_Y.replace("nc: 80", "nc: [80"), 3, 15, "not valid YAML"),
    (_Y.replace("width_multiple: 1.0", "width_multiple: -1"), 4, 17, "expected a positive number"),
    ("a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(f"{x}: &{x} [{', '.join([f'*{p}'] * 9)}]\n" for p, x in
                                           zip("abcde", "bcdef")), 1, 1, "(aliases included)"),
    ("[" * 3000 + "]" * 3000, 1, 1, "nests too deeply"),
    ("- 1\n- 2\n", 1, 1, "the top level is not a mapping"),
    ("", 1, 1, "no YAML document"),
]


@pytest.mark.parametrize(("text", "line", "col", "message"), YAML_ERRORS)
def test_yaml_errors_are_located(text: str, line: int, col: int, message: str, tmp_path: Path) -> None:
    with pytest.raises(NetdslError) as info, time_limit(10):
        import_text(text, "bad.yaml", "yaml")
    e = info.value
    assert message in e.message, e.render()
    if message != "(aliases included)":
        assert (e.span.line, e.span.column) == (line, col), e.render()
    assert e.path == "bad.yaml" and e.hint and e.span.line >= 1


def test_yaml_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    for payload in (f"!!python/object/apply:os.system ['touch {marker}']", f"\"__import__('os').system('touch {marker}')\"",
                    "!!python/name:os.system", f"[\"exec('open(\\\"{marker}\\\", \\\"w\\\")')\", 3]"):
        for text in (_Y.format(row=f"[-1, 1, Conv, [{payload}, 3, 1]]"), _Y.format(row=f"[-1, 1, {payload}, [1]]"),
                     _Y.replace("nc: 80", f"nc: {payload}")):
            with pytest.raises(NetdslError):
                import_text(text, "evil.yaml", "yaml")
    assert not marker.exists()


# -- the command ------------------------------------------------------------------------------------

def test_cli_prints_writes_and_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "small.cfg"
    src.write_text(SMALL_YOLO, encoding="utf-8")
    assert cli_main(["import", str(src)]) == 0
    printed = capsys.readouterr().out
    assert printed == import_file(str(src)) and printed.startswith("# Imported from small.cfg")
    out = tmp_path / "small.net"
    assert cli_main(["import", str(src), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == printed and "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.cfg", "small.net"]  # no temp file left
    # Errors: exit 2, file:line:col, no traceback, nothing written (an existing file left as it was).
    bad = tmp_path / "bad.yml"
    bad.write_text(_Y.format(row="[-1, 1, Focus, [3]]"), encoding="utf-8")
    out.write_text("old\n", encoding="utf-8")
    assert cli_main(["import", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:12:12: error: module 'Focus' is not supported") and "Traceback" not in err
    assert out.read_text(encoding="utf-8") == "old\n"
    for argv, message in ((["import", str(tmp_path / "x.txt")], "cannot tell the format"),
                          (["import", str(tmp_path / "none.cfg")], "no such file"),
                          (["import", str(src), "-o", str(tmp_path)], "is a folder"),
                          (["import", str(src), "-o", str(tmp_path / "no" / "a.net")], "does not exist"),
                          (["import", str(src), "-o", str(src)], "refusing to overwrite the file being read")):
        (tmp_path / "x.txt").write_text(SMALL_YOLO, encoding="utf-8")
        assert cli_main(argv) == 2
        assert message in capsys.readouterr().err
    assert cli_main(["import", str(tmp_path / "x.txt"), "--format", "cfg"]) == 0
    assert capsys.readouterr().out.startswith("# Imported from x.txt")


def test_import_needs_no_torch() -> None:
    code = ("import sys; from netdsl.cli import main; import netdsl.commands.import_spec as m; "
            "from netdsl.importers import import_text; "
            f"import_text({SMALL_YOLO!r}, 'a.cfg', 'cfg'); import_text({YOLOV5S!r}, 'a.yaml', 'yaml'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr


# -- fuzzing: mutated cfg and YAML files end in a spec or a located error -------------------------------

_CFG_NOISE = ["0", "-1", "1", "2", "3", "1000000000", "9" * 25, "abc", "", "1.5", ",", "-1,-1", "0,0,0", "mish",
              "linear", "logistic", "-100", "=", "[", "]", "#", ";", " ", "\t", "\x00", "é", "\ufeff", "1e3", "+2"]
_CFG_LINES = ["[convolutional]", "[route]", "[shortcut]", "[yolo]", "[maxpool]", "[upsample]", "[avgpool]", "[softmax]",
              "[net]", "[crop]", "[conv", "layers=-1,-4", "layers=0", "from=-3", "from=-100", "filters=255", "size=1",
              "stride=2", "padding=7", "pad=0", "groups=2", "batch_normalize=0", "activation=linear", "mask=0,1,2",
              "anchors=10,14,23,27,37,58", "classes=80", "num=3", "width=13", "height=0", "channels=0", "binary=1",
              "scale=2", "alpha=0.5", "temperature=2", "key_without_value", "==", "dilation=2",
              "[scale_channels]", "[sam]", "[reorg]", "[cost]", "[dropout]", "groups=3", "group_id=1", "group_id=5",
              "scale_wh=1", "reverse=1", "weights_type=per_channel", "ema_alpha=0.9", "stopbackward=1",
              "probability=0.5", "filters=16", "from=-1,-2"]
_YAML_NOISE = ["0", "-1", "-2", "1", "2", "3", "8", "32", "1000000", "9" * 25, "-1e9", "0.5", "1.5", "nan", ".inf",
               "null", "None", "True", "False", "nc", "anchors", "'nearest'", "'bilinear'", "[]", "[[]]", "[-1, 0]",
               "[1, 1]", "{}", "Conv", "Bottleneck", "C3", "SPP", "SPPF", "Concat", "nn.Upsample", "nn.MaxPool2d",
               "nn.ZeroPad2d", "Detect", "Focus", "nn.BatchNorm2d", "&a", "*a", "!!python/object/apply:os.system",
               "!!binary", "'", '"', "[", "]", ",", ":", "- ", "#", "\t", "\n", "\x00", "\ufeff", "é", "2022-01-01",
               "0x10", "1_000", "~", "GhostConv", "GhostBottleneck", "C3Ghost", "MP", "SP", "IDetect",
               "nn.LeakyReLU(0.1)", "nn.ReLU()", "nn.SiLU()", "nn.PReLU()", "nn.LeakyReLU(x)", "nn.GELU(approximate='tanh')",
               "nn.LeakyReLU(0.1, inplace=True)", "activation: nn.Hardswish()", "nn.Identity()", "nn.LeakyReLU(1e999)"]
_YAML_TOKEN = re.compile(r"nn\.[A-Za-z0-9]+|[A-Za-z_][A-Za-z0-9_.]*|-?[0-9]+(?:\.[0-9]*)?|\s+|.", re.S)


def _yaml_seeds() -> list[str]:
    tiny = yaml_text(["[-1, 1, Conv, [16, 3, 1]]", "[-1, 1, nn.MaxPool2d, [2, 2, 0]]", "[-1, 1, Conv, [32, 3, 1]]",
                      "[-1, 1, nn.MaxPool2d, [2, 2, 0]]", "[-1, 1, Conv, [64, 3, 1]]", "[-1, 1, nn.ZeroPad2d, [[0, 1, 0, 1]]]",
                      "[-1, 1, nn.MaxPool2d, [2, 1, 0]]"],
                     ["[-1, 1, Conv, [32, 1, 1]]", "[-1, 1, Conv, [64, 3, 1]]", "[-2, 1, Conv, [16, 1, 1]]",
                      "[-1, 1, nn.Upsample, [None, 2, 'nearest']]", "[[-1, 2], 1, Concat, [1]]",
                      "[-1, 1, Bottleneck, [32, False]]", "[-1, 1, SPP, [32, [3, 5]]]", "[-1, 2, C3, [32]]",
                      "[[-1, -1, 9], 1, Detect, [nc, anchors]]"], nc=3, gw=0.25)
    # The ghost modules, YOLOv5's model-wide activation, YOLOv7's MP, SP and per-row activations.
    ghost = "activation: nn.LeakyReLU(0.1)\n" + yaml_text(
        ["[-1, 1, Conv, [16, 3, 2, None, 1, nn.ReLU()]]", "[-1, 1, GhostConv, [32, 3, 2]]", "[-1, 2, C3Ghost, [32]]",
         "[-1, 1, GhostBottleneck, [64, 3, 2]]", "[-1, 1, GhostBottleneck, [64]]", "[-1, 1, MP, []]",
         "[-1, 1, SP, [5]]", "[-2, 1, GhostConv, [32, 1, 1, 1, False]]"],
        ["[-1, 1, Conv, [32, 1, 1, None, 1, nn.LeakyReLU(0.1)]]", "[-1, 1, nn.Upsample, [None, 2, 'nearest']]",
         "[[-1, 4], 1, Concat, [1]]", "[-1, 1, C3Ghost, [64, False, 1, 0.5]]", "[[-1, -1, 7], 1, Detect, [nc, anchors]]"],
        nc=3, gw=0.5)
    return [tiny, YOLOV5S, ghost]


def _cfg_seeds() -> list[str]:
    return [SMALL_YOLO, cfg(conv(8), ("maxpool", {"size": 2, "stride": 1}), conv(8, 1), conv(8),
                            ("shortcut", {"from": -3}), ("avgpool", {}), conv(10, 1, bn=0, act="linear"),
                            ("softmax", {"groups": 1}), width=16, height=16),
            # The sections of later darknet cfgs: CSP split, squeeze-excitation, sam, shortcut of other
            # shapes, the passthrough reorg, dropout and cost.
            cfg(conv(8), ("route", {"layers": -1, "groups": 2, "group_id": 1}), conv(8, 1), ("avgpool", {}),
                conv(4, 1, bn=0, act="relu"), conv(8, 1, bn=0, act="logistic"), ("scale_channels", {"from": -4}),
                conv(8, 1, bn=0, act="logistic"), ("sam", {"from": -2}), conv(16), ("shortcut", {"from": -9}),
                ("reorg", {"stride": 2}), ("dropout", {"probability": 0.1}), conv(10, 1, bn=0, act="linear"),
                ("avgpool", {}), ("softmax", {"groups": 1}), ("cost", {"type": "sse"}), width=16, height=16),
            # [yolo] scale_x_y per level, new_coords=1 after a logistic head convolution
            yolov4_tiny(classes=1), yolov7_tiny(classes=1)]


@functools.cache
def _corpus() -> tuple[list[str], list[str]]:
    cfgs, yamls = _cfg_seeds(), _yaml_seeds()
    if REF is not None:
        cfgs += [p.read_text(encoding="utf-8") for p in sorted((REF / "darknet").glob("*.cfg"))]
        yamls += [p.read_text(encoding="utf-8") for p in sorted((REF / "ultralytics-yolov3-v9.6.0").glob("yolov3*.yaml"))]
    return cfgs, yamls


def _random_section(rng: random.Random) -> str:
    """A section with plausible values: valid more often than not, so mutants reach the later checks."""
    r = rng.randrange
    kind = rng.choice(["convolutional"] * 4 + ["maxpool", "route", "shortcut", "upsample", "avgpool", "scale_channels",
                                                "sam", "reorg", "dropout"])
    opts = {"convolutional": {"batch_normalize": r(2), "filters": rng.choice([1, 4, 8, 16, 21, 64]),
                              "size": rng.choice([1, 2, 3, 5]), "stride": rng.choice([1, 1, 2, 3]), "pad": r(2),
                              "groups": rng.choice([1, 1, 1, 2]),
                              "activation": rng.choice(["leaky", "linear", "logistic", "swish", "mish", "relu", "tanh"])},
            "maxpool": {"size": r(1, 4), "stride": r(1, 3)} | ({"padding": r(4)} if r(2) else {}),
            "route": {"layers": rng.choice(["-1", "-2", "-1,-3", "0", "-4,1", "2,-1"])},
            "shortcut": {"from": rng.choice([-1, -2, -3, 0, 1]), "activation": rng.choice(["linear", "leaky"])},
            "upsample": {"stride": r(1, 3)}, "avgpool": {}, "dropout": {"probability": 0.5},
            "scale_channels": {"from": rng.choice([-2, -3, -4])} | ({"scale_wh": 1} if r(4) == 0 else {}),
            "sam": {"from": rng.choice([-2, -3])}, "reorg": {"stride": rng.choice([1, 2, 2, 3])}}[kind]
    if kind == "route" and r(3) == 0:
        opts = opts | {"groups": rng.choice([2, 2, 3, 4]), "group_id": r(3)}
    return f"[{kind}]\n" + "".join(f"{k}={v}\n" for k, v in opts.items())


def _random_row(rng: random.Random) -> str:
    c, k, s, n = rng.choice([8, 16, 32, 255]), rng.choice([1, 3, 5]), rng.choice([1, 2]), rng.choice([1, 2, 3])
    f = rng.choice(["-1", "-1", "-2", "0", "[-1, 0]", "[-1, -2]"])
    f1 = f if not f.startswith("[") else "-1"
    row = rng.choice([f"[{f1}, {n}, Conv, [{c}, {k}, {s}]]", f"[{f1}, {n}, Bottleneck, [{c}]]",
                      f"[{f1}, {n}, Bottleneck, [{c}, False]]", f"[{f1}, {n}, C3, [{c}]]",
                      f"[{f1}, {n}, C3, [{c}, False, 1, 0.25]]", f"[{f1}, 1, SPP, [{c}, [{k}, {k + 2}]]]",
                      f"[{f1}, 1, SPPF, [{c}, {k}]]", f"[{f1}, 1, nn.Upsample, [None, {s}, 'nearest']]",
                      f"[{f1}, 1, nn.MaxPool2d, [{k}, {s}, {k // 2}]]", f"[{f1}, 1, nn.ZeroPad2d, [[0, 1, 0, 1]]]",
                      f"[{f if f.startswith('[') else '[-1, 0]'}, 1, Concat, [1]]",
                      f"[{f1}, {n}, GhostConv, [{c}, {k}, {s}]]", f"[{f1}, {n}, GhostBottleneck, [{c}, {k}, {s}]]",
                      f"[{f1}, {n}, C3Ghost, [{c}]]", f"[{f1}, 1, MP, []]", f"[{f1}, 1, SP, [{k}]]",
                      f"[{f1}, {n}, Conv, [{c}, {k}, {s}, None, 1, nn.LeakyReLU(0.1)]]"])
    return row + ","


def mutate_cfg(text: str, rng: random.Random, rounds: int) -> str:
    lines = text.split("\n")
    for _ in range(rounds):
        i = rng.randrange(len(lines)) if lines else 0
        kind = rng.randrange(11)
        if kind >= 9:  # a plausible section inserted where one starts
            starts = [j for j, ln in enumerate(lines) if ln.startswith("[") and j > 0] or [len(lines)]
            lines[rng.choice(starts):rng.choice(starts)] = _random_section(rng).split("\n")
            continue
        if not lines or kind == 0:
            lines.insert(i, rng.choice(_CFG_LINES))
        elif kind <= 3:
            basic_edit(lines, i, kind - 1, rng)
        elif kind in (4, 5) and "=" in lines[i]:  # a value replaced, or one item of a list
            key, _, value = lines[i].partition("=")
            items = value.split(",")
            items[rng.randrange(len(items))] = rng.choice(_CFG_NOISE)
            lines[i] = key + "=" + ",".join(items)
        elif kind == 6 and "=" in lines[i]:  # a key replaced
            lines[i] = rng.choice(_CFG_LINES).split("=")[0] + "=" + lines[i].partition("=")[2]
        elif kind == 7 and lines[i]:  # noise inside a line
            j = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:j] + rng.choice(_CFG_NOISE) + lines[i][j:]
        else:  # the file cut short, or CRLF line ends
            if rng.random() < 0.5:
                lines = lines[: rng.randrange(len(lines) + 1)]
            else:
                return "\r\n".join(lines)
    return "\n".join(lines)


def mutate_yaml(text: str, rng: random.Random, rounds: int) -> str:
    toks = _YAML_TOKEN.findall(text)
    for _ in range(rounds):
        if not toks:
            toks = [rng.choice(_YAML_NOISE)]
        i = rng.randrange(len(toks))
        kind = rng.randrange(10)
        if kind >= 8:  # a plausible row inserted after a row
            text_ = "".join(toks).split("\n")
            rows = [j for j, ln in enumerate(text_) if ln.lstrip().startswith("[") and ln.rstrip().endswith(",")]
            if rows:
                text_.insert(rng.choice(rows) + 1, "   " + _random_row(rng))
                toks = _YAML_TOKEN.findall("\n".join(text_))
            continue
        if kind <= 2:
            basic_edit(toks, i, kind, rng)
        elif kind in (3, 4):  # a number, name or module replaced
            words = [j for j, t in enumerate(toks) if t.strip() and t.strip() not in "[],:"] or [i]
            toks[rng.choice(words)] = rng.choice(_YAML_NOISE)
        elif kind == 5:
            toks.insert(i, rng.choice(_YAML_NOISE))
        elif kind == 6:  # a whole line deleted or doubled
            text_ = "".join(toks).split("\n")
            j = rng.randrange(len(text_))
            text_[j:j + 1] = [] if rng.random() < 0.5 else [text_[j], text_[j]]
            toks = _YAML_TOKEN.findall("\n".join(text_))
        else:  # indentation changed
            text_ = "".join(toks).split("\n")
            j = rng.randrange(len(text_))
            text_[j] = rng.choice(["", " ", "   ", "\t"]) + text_[j].lstrip()
            toks = _YAML_TOKEN.findall("\n".join(text_))
    return "".join(toks)


def import_fuzz_case(rng: random.Random) -> tuple[str, str]:
    """(text, format): a mutated cfg or YAML (from the seeds here and the reference files), or random bytes."""
    cfgs, yamls = _corpus()
    fmt = "cfg" if rng.random() < 0.5 else "yaml"
    if rng.random() < 0.05:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(300))).decode("utf-8", "replace"), fmt
    if fmt == "cfg":
        return mutate_cfg(rng.choice(cfgs), rng, rng.randrange(1, 5)), fmt
    return mutate_yaml(rng.choice(yamls), rng, rng.randrange(1, 5)), fmt


def import_check(text: str, fmt: str, build: bool = False) -> str:
    """'ok' (a spec that netdsl's passes accept; with `build`, one whose parameters torch counts the
    same) or 'error' (a NetdslError located in the imported file); anything else propagates."""
    try:
        spec = import_text(text, f"case.{fmt}", fmt)
    except NetdslError as e:
        assert e.span is not None and e.span.line >= 1 and e.span.column >= 1, e.render()
        assert e.path == f"case.{fmt}"
        e.render()
        return "error"
    if build:  # at the spec's own input size, as far as the memory estimate lets it
        try:
            model = netdsl.build(spec + "\n", max_bytes=2**28)
        except NetdslError as e:
            assert "needs about" in e.message and "the limit is" in e.message, e.render()
            return "ok"
        c = netdsl.count(spec + "\n")
        assert c.value(c.total("parameters")) == sum(p.numel() for p in model.parameters())
        if c.value(c.total("macs")) < 2 * 10**8:
            model.eval()
            with torch.no_grad():
                out = model(torch.zeros(1, *model.concrete.inputs[0].at))
            out = out[0] if isinstance(out, tuple) else out
            assert list(out.shape[1:]) == list(model.concrete.outputs[0].at)
    return "ok"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_mutated_imports_fail_cleanly(seed: int) -> None:
    text, fmt = import_fuzz_case(random.Random(seed))
    with time_limit(20):
        import_check(text, fmt)


def test_fuzz_seeds_import_and_build() -> None:
    cfgs, yamls = _corpus()
    for text, fmt in [(t, "cfg") for t in cfgs[:2]] + [(t, "yaml") for t in yamls[:2]]:
        assert import_check(text, fmt, build=True) == "ok"


def test_fuzz_cases_end() -> None:
    # Each case has a hang guard; total time is not asserted (no timed unit tests).
    rng = random.Random(7)
    outcomes = []
    for _ in range(40):
        try:
            with time_limit(20):
                outcomes.append(import_check(*import_fuzz_case(rng)))
        except Hang:  # pragma: no cover - reported by the assertion below
            outcomes.append("hang")
    assert "hang" not in outcomes and "error" in outcomes
