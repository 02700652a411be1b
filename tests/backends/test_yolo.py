"""Part D's networks: YOLOv3 and YOLOv3-tiny as specs, and the detection head."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import sympy as sp
import torch

import netdsl
from netdsl.errors import NetdslError

ROOT = Path(__file__).resolve().parents[2]
YOLO = {"yolov3": (61_949_149, 32_932_037_632), "yolov3-tiny": (8_852_366, 2_782_480_896)}


@pytest.mark.parametrize("name", sorted(YOLO))
def test_parameters_and_macs_are_darknets_and_ultralytics(name: str) -> None:
    params, macs_416 = YOLO[name]
    c = netdsl.count(ROOT / "specs" / f"{name}.net")
    assert c.value(c.total("parameters")) == params
    at416 = netdsl.count(ROOT / "specs" / f"{name}.net", H=416, W=416)
    assert at416.value(at416.total("macs")) == macs_416
    assert at416.value(at416.total("macs")) * 2 / 1e9 == pytest.approx({"yolov3": 65.86, "yolov3-tiny": 5.56}[name],
                                                                         abs=0.005)


def test_yolov3_parameters_as_a_formula_in_the_class_count() -> None:
    c = netdsl.count(ROOT / "specs" / "yolov3.net")
    ncls = c.env.symbols["NCLS"]
    assert sp.expand(c.total("parameters") - (61_518_349 + 5_385 * ncls)) == 0


def test_statements_follow_ultralytics_rows() -> None:
    g = netdsl.parse(ROOT / "specs" / "yolov3.net")
    assert len(g.nodes) == 29 and g.nodes[10].name == "b10" and g.nodes[28].merge == "detect"
    t = netdsl.parse(ROOT / "specs" / "yolov3-tiny.net")
    assert len(t.nodes) == 21 and t.nodes[20].merge == "detect"


@pytest.mark.parametrize("pool", [1, 0])
def test_tiny_pool_semantics(pool: int) -> None:
    m = netdsl.build(ROOT / "specs" / "yolov3-tiny.net", H=64, W=64, DARKNET_POOL=pool).eval()
    x = -torch.rand(1, 512, 2, 2) - 1  # all negative: zero padding would win the last row and column
    y = m.b12(m.b11(x))
    assert y.shape == (1, 512, 2, 2)
    if pool:
        assert torch.equal(y[..., -1, -1], x[..., -1, -1])
    else:
        assert torch.equal(y[..., -1, -1], torch.zeros_like(y[..., -1, -1]))


def test_detect_layout_in_training_and_eval() -> None:
    m = netdsl.build(ROOT / "specs" / "yolov3-tiny.net", H=128, W=96)
    x = torch.randn(2, 3, 128, 96)
    raw = m.train()(x)
    assert [tuple(r.shape) for r in raw] == [(2, 3, 8, 6, 85), (2, 3, 4, 3, 85)]
    m.eval()
    with torch.no_grad():
        decoded, raw = m(x)
    assert decoded.shape == (2, 3 * (8 * 6 + 4 * 3), 85)
    # Decoding, written out for one cell: level 1 (stride 32), anchor 2 (344 x 319), cell (y=2, x=1).
    r = raw[1][0, 2, 2, 1].sigmoid()
    want = torch.cat([(r[:2] * 2 - 0.5 + torch.tensor([1.0, 2.0])) * 32,
                      (r[2:4] * 2) ** 2 * torch.tensor([344.0, 319.0]), r[4:]])
    index = 8 * 6 * 3 + 2 * (4 * 3) + 2 * 3 + 1
    assert torch.allclose(decoded[0, index], want, atol=1e-4)


def test_darknet_decoding_for_darknet_trained_weights() -> None:
    spec = HEAD + 'output = detect(a, b, classes=NC, strides=[8, 16], anchors=[[10, 14], [23, 27]], decode="darknet")'
    m = netdsl.build(spec).eval()
    plain = netdsl.build(spec.replace(', decode="darknet"', "")).eval()
    plain.load_state_dict(m.state_dict())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        (decoded, raw), (other, raw2) = m(x), plain(x)
    assert all(torch.equal(p, q) for p, q in zip(raw, raw2))  # only the decoding differs
    # darknet's [yolo], written out for level 1 (stride 16, anchor 23 x 27), cell (y=3, x=2).
    t = raw[1][0, 0, 3, 2]
    want = torch.cat([(t[:2].sigmoid() + torch.tensor([2.0, 3.0])) * 16,
                      t[2:4].exp() * torch.tensor([23.0, 27.0]), t[4:].sigmoid()])
    index = 8 * 8 + 3 * 4 + 2
    assert torch.allclose(decoded[0, index], want, atol=1e-5)
    assert not torch.allclose(other[0, index], want, atol=1e-3)
    with pytest.raises(NetdslError, match="ultralytics"):
        netdsl.build(spec.replace('"darknet"', '"yolov4"'))


def test_fresh_head_biases_as_ultralytics() -> None:
    m = netdsl.build(ROOT / "specs" / "yolov3.net", H=64, W=64)
    torch.manual_seed(0)
    fresh = netdsl.build(ROOT / "specs" / "yolov3.net", H=64, W=64)
    for level, stride in enumerate((8, 16, 32)):
        b = m.output.m[level].bias.view(3, 85)
        bound = 1 / math.sqrt(m.output.m[level].in_channels)  # torch's default init, before the offsets
        assert torch.all((b[:, 4] - math.log(8 / (640 / stride) ** 2)).abs() <= bound)
        assert torch.all((b[:, 5:] - math.log(0.6 / (80 - 0.99))).abs() <= bound)
    assert fresh.output.m[0].weight.shape == (255, 256, 1, 1)


HEAD = "net D(NC = 3)\ninput x: [3, H = 64, W = 64]\na = x |> conv(8, 3, stride=8, padding=1)\nb = a |> maxpool(2)\n"


@pytest.mark.parametrize(("tail", "words", "col"), [
    ("output = detect(a, b, classes=NC, strides=[8, 16], anchors=[[1, 2, 3, 4], [5, 6]])", "is ragged", 75),
    ("output = detect(a, b, classes=NC, strides=[8, 16], anchors=[[1, 2, 3], [4, 5, 6]])", "even number", 60),
    ("output = detect(a, b, classes=NC, strides=[8, 16], anchors=[[1, 2], [0, 6]])", "must be positive", 60),
    ("output = detect(a, b, classes=NC, strides=[8, 32], anchors=[[1, 2], [3, 4]])",
     "covers 128x128, but the input is 64x64", 43),
    ("output = detect(a, b, classes=NC, strides=[8], anchors=[[1, 2], [3, 4]])", "1 strides for 2", 43),
    ("output = detect(a, b, classes=NC, strides=8, anchors=[[1, 2], [3, 4]])", "list of integers", 43),
    ("output = detect(a, b, classes=NC, strides=[8, 16], anchors=[1, 2])", "list of lists", 61),
    ("output = detect(a, b, classes=NC, strides=[8, 16], anchors=[]) ", "empty list", 60),
    ("output = detect(a, b, strides=[8, 16], anchors=[[1, 2], [3, 4]])", "needs its argument 'classes'", 10),
    ("output = detect(a, b, classes=NC, strides=[8, 16], anchors=[[1, 2], [3, 4]]) |> relu", "no layers may follow", 81),
    ("d = detect(a, b, classes=NC, strides=[8, 16], anchors=[[1, 2], [3, 4]])\noutput = d", "outputs", 1),
    ("output d = detect(a, b, classes=NC, strides=[8, 16], anchors=[[1, 2], [3, 4]])\noutput e = d |> relu",
     "not a tensor", 12),
    ("output = mix(a, b)", "unknown merge 'mix'", 10),
])
def test_detect_errors_are_located(tail: str, words: str, col: int) -> None:
    with pytest.raises(NetdslError, match=re.escape(words)) as e:
        netdsl.build(HEAD + tail)
    assert e.value.span is not None and e.value.span.column == col, e.value.render()
