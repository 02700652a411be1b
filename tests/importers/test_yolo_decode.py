"""darknet's [yolo] decoding in netdsl's detect: scale_x_y, new_coords and the logistic head conv.

The reference is a direct transcription of AlexeyAB/darknet's `forward_yolo_layer` (the logistic
of x, y, objectness and classes, then `x * s - (s - 1) / 2`; with new_coords=1 no activation there,
the head convolution's own logistic instead) and `get_yolo_box` (b.x = (i + x) / lw, b.w = exp(w)
* anchor / net_w, or w^2 * 4 * anchor / net_w with new_coords), written as plain loops over
darknet's memory layout and compared with what the importer's spec computes.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.errors import NetdslError
from netdsl.importers import import_text

NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"
ANCHORS = "10,14, 23,27, 37,58, 81,82, 135,169, 344,319"


def _logistic(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def darknet_yolo(out: list[float], w: int, h: int, n: int, classes: int, mask: list[int], biases: list[float],
                 net_w: int, net_h: int, scale: float, new_coords: bool, head_logistic: bool) -> list[list[float]]:
    """darknet's [yolo] over one image's head-convolution output `out` (darknet's layout: per anchor,
    per entry, h*w values), boxes in input pixels: one row (x, y, w, h, objectness, classes...) per
    anchor, row, column, in that order."""
    x = [_logistic(v) for v in out] if head_logistic else list(out)  # the convolution's own activation
    per = (4 + 1 + classes) * w * h
    for a in range(n):
        base = a * per
        if not new_coords:
            for k in range(2 * w * h):
                x[base + k] = _logistic(x[base + k])
            for k in range(4 * w * h, per):
                x[base + k] = _logistic(x[base + k])
        for k in range(2 * w * h):  # scal_add: x * scale - 0.5 * (scale - 1)
            x[base + k] = x[base + k] * scale + -0.5 * (scale - 1)
    rows = []
    for a in range(n):
        for j in range(h):
            for i in range(w):
                at = a * per + j * w + i
                tx, ty, tw, th = (x[at + e * w * h] for e in range(4))
                bx, by = (i + tx) / w, (j + ty) / h
                if new_coords:
                    bw, bh = tw * tw * 4 * biases[2 * mask[a]] / net_w, th * th * 4 * biases[2 * mask[a] + 1] / net_h
                else:
                    bw, bh = math.exp(tw) * biases[2 * mask[a]] / net_w, math.exp(th) * biases[2 * mask[a] + 1] / net_h
                rows.append([bx * net_w, by * net_h, bw * net_w, bh * net_h]
                            + [x[at + e * w * h] for e in range(4, 5 + classes)])
    return rows


def cfg(scale: str | None, new_coords: int | None, act: str, classes: int = 2) -> str:
    """Two levels (stride 16 and 32) over a small backbone, each with its own [yolo] keys."""
    extra = (f"scale_x_y={scale}\n" if scale else "") + (f"new_coords={new_coords}\n" if new_coords is not None else "")
    head = f"[convolutional]\nsize=1\nstride=1\npad=1\nfilters={3 * (classes + 5)}\nactivation={act}\n"
    conv = "[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=3\nstride={s}\npad=1\nactivation=leaky\n"
    return (NET + conv.format(f=8, s=4) + conv.format(f=16, s=4) + head
            + f"[yolo]\nmask=3,4,5\nanchors={ANCHORS}\nclasses={classes}\nnum=6\n{extra}"
            + "[route]\nlayers=-3\n" + conv.format(f=16, s=2) + head
            + f"[yolo]\nmask=3,4,5\nanchors={ANCHORS}\nclasses={classes}\nnum=6\n{extra}")


@pytest.mark.parametrize(("scale", "new_coords", "act"), [
    (None, None, "linear"),      # YOLOv3: plain darknet decoding
    ("1.05", None, "linear"),    # YOLOv4-tiny
    ("1.2", 0, "linear"),        # YOLOv4's first level
    ("2.0", 1, "logistic"),      # Scaled-YOLOv4, YOLOv7: logistic head, new_coords
    ("1.05", 1, "logistic"),
])
def test_imported_head_decodes_as_darknets_yolo_layer(scale: str | None, new_coords: int | None, act: str) -> None:
    spec = import_text(cfg(scale, new_coords, act), "t.cfg", "cfg")
    assert ('decode="darknet_new_coords"' if new_coords else 'decode="darknet"') in spec
    assert ("scale_xy=" in spec) == (scale is not None)
    assert scale is None or f"scale_xy={float(scale)!r}" in spec
    model = netdsl.build(spec + "\n").eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
        decoded, raw = model(torch.randn(1, 3, 64, 64))
    start = 0
    for level, r in enumerate(raw):  # detect's levels: stride 16 (4x4), then 32 (2x2)
        n, h, w = r.shape[1], r.shape[2], r.shape[3]
        flat = r[0].permute(0, 3, 1, 2).reshape(-1).tolist()  # darknet's layout: anchor, entry, row, column
        want = darknet_yolo(flat, w, h, n, 2, [3, 4, 5], [float(v) for v in ANCHORS.split(",")], 64, 64,
                            float(scale or 1), bool(new_coords), act == "logistic")
        got = decoded[0, start:start + n * h * w]
        assert torch.allclose(got, torch.tensor(want), rtol=1e-5, atol=1e-4), f"level {level}"
        start += n * h * w
    assert start == decoded.shape[1]


def test_per_level_scales_follow_the_levels_order() -> None:
    """detect's levels are written smallest stride first: each [yolo]'s scale_x_y goes with its own
    map, here the stride-32 [yolo] first in the cfg (as YOLOv3 and YOLOv4-tiny order them)."""
    conv = "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride={s}\npad=1\nactivation=leaky\n"
    head = "[convolutional]\nsize=1\nstride=1\npad=1\nfilters=21\nactivation=linear\n"
    yolo = f"[yolo]\nmask=3,4,5\nanchors={ANCHORS}\nclasses=2\nnum=6\nscale_x_y={{k}}\n"
    text = (NET + conv.format(s=4) + conv.format(s=4) + conv.format(s=2) + head + yolo.format(k=1.2)
            + "[route]\nlayers=1\n" + head + yolo.format(k=1.05))
    spec = import_text(text, "t.cfg", "cfg")
    assert "strides=[16, 32]" in spec and "scale_xy=[1.05, 1.2]" in spec
    model = netdsl.build(spec + "\n").eval()
    assert model.output.scale_xy == [1.05, 1.2]


@pytest.mark.parametrize(("scale", "new_coords", "act", "words"), [
    (None, None, "logistic", "must be linear: logistic without new_coords=1, darknet would apply the sigmoid twice"),
    ("2.0", 1, "linear", "must be logistic: new_coords=1 reads its outputs as sigmoids"),
    ("2.0", 1, "leaky", "must be logistic"),
    ("0", None, "linear", "expected a positive number"),
    ("x1", None, "linear", "expected a positive number"),
    (None, 2, "linear", "new_coords"),
])
def test_head_refusals_are_located(scale: str | None, new_coords: int | None, act: str, words: str) -> None:
    text = cfg(scale, new_coords, act)
    with pytest.raises(NetdslError, match=words) as e:
        import_text(text, "t.cfg", "cfg")
    assert e.value.span is not None and e.value.span.line > 1


def test_levels_must_agree_on_new_coords() -> None:
    text = cfg("2.0", 1, "logistic")
    last = text.rindex("new_coords=1")
    text = text[:last] + "new_coords=0" + text[last + len("new_coords=1"):]
    head = text.rindex("activation=logistic")
    text = text[:head] + "activation=linear" + text[head + len("activation=logistic"):]
    with pytest.raises(NetdslError, match="decodes every level one way") as e:
        import_text(text, "t.cfg", "cfg")
    assert e.value.span is not None and e.value.span.line == text[:last].count("\n") + 1


SPEC = "net D(NC = 2)\ninput x: [3, H = 64, W = 64]\na = x |> conv(8, 3, stride=8, padding=1)\nb = a |> maxpool(2)\n"


@pytest.mark.parametrize(("tail", "words"), [
    ('decode="ultralytics", scale_xy=1.05', "fixed scale"),
    ("scale_xy=2.0", "fixed scale"),  # the default decoding is ultralytics'
    ('decode="darknet", scale_xy=-1.0', "scale_xy"),
    ('decode="darknet", scale_xy=[1.1, 1.2, 1.3]', "3 values of scale_xy for 2 feature maps"),
    ('decode="darknet", scale_xy=[]', "empty"),
])
def test_detect_scale_errors(tail: str, words: str) -> None:
    spec = SPEC + f"output = detect(a, b, classes=NC, strides=[8, 16], anchors=[[10, 14], [23, 27]], {tail})"
    with pytest.raises(NetdslError, match=words) as e:
        netdsl.build(spec)
    assert e.value.span is not None and e.value.span.line == 5


def test_default_scale_writes_nothing_new() -> None:
    """A head at scale 1 builds a module without scale_xy: exported files of earlier specs stay as they were."""
    spec = SPEC + 'output = detect(a, b, classes=NC, strides=[8, 16], anchors=[[10, 14], [23, 27]], decode="darknet")'
    m = netdsl.build(spec)
    assert "scale_xy" not in repr(m.output)
    scaled = netdsl.build(spec.replace('"darknet"', '"darknet", scale_xy=1.05'))
    assert "scale_xy=[1.05, 1.05]" in repr(scaled.output)
    per_level = netdsl.build(spec.replace('"darknet"', '"darknet_new_coords", scale_xy=[2.0, 1.5]'))
    assert per_level.output.scale_xy == [2.0, 1.5] and per_level.output.decode_style == "darknet_new_coords"


@pytest.mark.slow  # the ONNX export checks itself at several sizes
def test_scaled_heads_export_to_python_and_onnx(tmp_path: Path) -> None:
    """An imported YOLOv7-style head (new_coords, scale 2) and per-level scales survive both exports."""
    import importlib.util

    from netdsl.api import analyse_text
    from netdsl.backends.python_source import to_python_source

    text = cfg("2.0", 1, "logistic")
    spec = import_text(text, "t.cfg", "cfg") + "\n"
    spec = spec.replace("scale_xy=2.0", "scale_xy=[2.0, 1.5]")
    cg = analyse_text(spec, None, {})
    model = netdsl.build(spec).eval()
    (tmp_path / "head_export.py").write_text(to_python_source(cg), encoding="utf-8")
    found = importlib.util.spec_from_file_location("head_export", tmp_path / "head_export.py")
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    mine = getattr(module, cg.name)().eval()
    mine.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        (want, _), (got, _) = model(x), mine(x)
    assert torch.equal(got, want)
    pytest.importorskip("onnxruntime")
    from netdsl.backends.onnx_export import export_model

    report = export_model(cg, tmp_path / "head.onnx")  # checked against torch by the export itself
    assert report.max_diff < 1e-3  # boxes in pixels: float32's spacing at a few hundred is ~3e-5
