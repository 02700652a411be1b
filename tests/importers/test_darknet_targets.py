"""The seven darknet cfgs netdsl's importer targets: they import, their counts are darknet's, they run.

The cfgs come from `darknet_targets` (generated, not copied); `darknet_count` counts them with
darknet's own per-layer formulas, independently of the importer. netdsl's parameters and `macs`
(convolution multiply-accumulates) must equal that count exactly at the cfg's [net] size.
darknet's printed "Total BFLOPS" is more than 2 x convolution MACs: it adds a max pool's
size^2 * outputs and a [shortcut]'s outputs (see darknet_count); the published figures are
compared with that total, at the precision published: darknet's own printout for YOLOv4 at 608
(128.459) and YOLOv4-tiny at 416 (6.910), AlexeyAB's README for the rest (one decimal).
"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

import netdsl
from darknet_count import count as darknet_count
from darknet_targets import TARGETS, yolov4
from netdsl.cli import main as cli_main
from netdsl.importers import import_text
from netdsl.weights import load_weights

# name -> [(input size, BFLOPs as published)]
PUBLISHED = {
    "yolov4.cfg": [(608, "128.459"), (512, "91.1"), (416, "60.1")],
    "yolov4-tiny.cfg": [(416, "6.910")],
    "enet-coco.cfg": [(416, "3.7")],
    "yolov3-tiny-prn.cfg": [(416, "3.5")],
}
# name -> (parameters, convolution MACs) at the cfg's own size, as darknet_count finds them: pinned so
# that a change to the generator or the counter shows here.
COUNTS = {
    "yolov4.cfg": (64_363_101, 64_194_741_248),
    "yolov4-tiny.cfg": (6_056_606, 3_453_938_176),
    "yolov7-tiny.cfg": (6_227_101, 2_894_275_072),
    "yolov3-tiny-prn.cfg": (4_935_182, 1_730_430_208),
    "enet-coco.cfg": (4_770_414, 1_865_064_256),
    "efficientnet_b0.cfg": (4_853_720, 457_458_752),
    "resnet50.cfg": (22_780_456, 4_999_610_368),
}
DETECTORS = {"yolov4.cfg": 3, "yolov4-tiny.cfg": 2, "yolov7-tiny.cfg": 3, "yolov3-tiny-prn.cfg": 2, "enet-coco.cfg": 2}
# Forward passes of these take seconds on two shared cores.
SLOW = {"yolov4.cfg", "yolov7-tiny.cfg", "enet-coco.cfg", "efficientnet_b0.cfg", "resnet50.cfg"}


def _spec(name: str) -> str:
    return import_text(TARGETS[name](), name, "cfg") + "\n"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_counts_equal_darknets(name: str) -> None:
    text = TARGETS[name]()
    ref = darknet_count(text)
    assert (ref.params, ref.conv_macs) == COUNTS[name]
    c = netdsl.count(_spec(name))
    assert c.value(c.total("parameters")) == ref.params
    assert c.value(c.total("macs")) == ref.conv_macs


@pytest.mark.parametrize(("name", "size", "bflops"), [(n, s, b) for n, figs in sorted(PUBLISHED.items())
                                                      for s, b in figs])
def test_darknet_bflops_are_the_published_figures(name: str, size: int, bflops: str) -> None:
    got = darknet_count(TARGETS[name](), size, size).bflops
    assert f"{got:.{len(bflops.split('.')[1])}f}" == bflops


def test_bflops_count_pools_and_shortcuts_beyond_convolutions() -> None:
    """What darknet's total holds: YOLOv4's 128.459 is 2 x 64,194,741,248 convolution MACs plus its
    SPP pools' 50.8 M and its shortcuts' 19.7 M comparisons and additions."""
    ref = darknet_count(yolov4())
    assert f"{2 * ref.conv_macs / 1e9:.3f}" == "128.389"
    assert ref.other_flops == 128_458_794_496 - 2 * ref.conv_macs
    c = netdsl.count(_spec("yolov4.cfg"), H=416, W=416)  # another size: netdsl's count is symbolic in H, W
    assert c.value(c.total("macs")) == darknet_count(yolov4(), 416, 416).conv_macs


def _forward(name: str) -> None:
    spec = _spec(name)
    model = netdsl.build(spec, H=64, W=64).eval()
    c = netdsl.count(spec)
    assert sum(p.numel() for p in model.parameters()) == c.value(c.total("parameters"))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    if name in DETECTORS:
        decoded, raw = out
        levels = DETECTORS[name]
        cells = sum((64 // s) ** 2 for s in (8, 16, 32)[3 - levels:])
        assert decoded.shape == (1, 3 * cells, 85) and len(raw) == levels
        assert torch.isfinite(decoded).all()
    else:
        assert out.shape == (1, 1000, 1, 1)
        assert torch.allclose(out.sum(), torch.tensor(1.0), atol=1e-5)  # [softmax]


@pytest.mark.parametrize("name", sorted(set(TARGETS) - SLOW))
def test_target_runs_a_forward_pass(name: str) -> None:
    _forward(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_big_target_runs_a_forward_pass(name: str) -> None:
    _forward(name)


def test_new_coords_head_decodes_with_sigmoid_sizes() -> None:
    """YOLOv7-tiny's logistic heads with new_coords=1 and scale_x_y=2.0; YOLOv4's three scales."""
    v7 = _spec("yolov7-tiny.cfg")
    assert 'decode="darknet_new_coords",\n                scale_xy=2.0)' in v7
    assert not any("sigmoid" in line.split("#")[0] for line in v7.splitlines())  # no layer: detect's decoding
    v4 = _spec("yolov4.cfg")
    assert 'decode="darknet",\n                scale_xy=[1.2, 1.1, 1.05])' in v4 and "strides=[8, 16, 32]" in v4


def test_cli_imports_a_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "yolov4-tiny.cfg"
    src.write_text(TARGETS["yolov4-tiny.cfg"](), encoding="utf-8")
    out = tmp_path / "yolov4-tiny.net"
    assert cli_main(["import", str(src), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == _spec("yolov4-tiny.cfg")[:-1]
    assert cli_main(["count", str(out)]) == 0
    assert "6,056,606" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["yolov4-tiny.cfg", "yolov7-tiny.cfg"])
def test_darknet_weights_file_loads_in_darknets_order(name: str, tmp_path: Path) -> None:
    """A .weights file laid out from the cfg alone (per convolution in cfg order: biases, then BatchNorm's
    scales, means and variances, then the kernels) loads whole, and each [yolo]'s convolution lands in
    its detect level (levels by stride, the cfg's first [yolo] being the coarsest)."""
    ref = darknet_count(TARGETS[name]())
    floats = sum(n * (4 if bn else 1) + n * c * k * k for _, n, c, k, bn in ref.convs)
    values = torch.arange(floats, dtype=torch.float32) / floats + 0.5  # positive: valid variances
    (tmp_path / "t.weights").write_bytes(struct.pack("<3iq", 0, 2, 0, 0) + values.numpy().astype("<f4").tobytes())
    model = netdsl.build(_spec(name), H=64, W=64)
    load_weights(model, tmp_path / "t.weights")
    at, heads = 0, []
    for _, n, c, k, bn in ref.convs:
        if not bn:  # the [yolo] heads are the only convolutions without BatchNorm here
            heads.append((values[at:at + n], values[at + n:at + n + n * c * k * k].view(n, c, k, k)))
        at += n * (4 if bn else 1) + n * c * k * k
    assert at == floats
    levels = {"yolov4-tiny.cfg": [1, 0], "yolov7-tiny.cfg": [0, 1, 2]}[name]  # the heads' strides, in cfg order
    for level, (bias, kernel) in zip(levels, heads):
        assert torch.equal(model.output.m[level].bias, bias) and torch.equal(model.output.m[level].weight, kernel)
