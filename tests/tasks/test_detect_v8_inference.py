"""Inference with the anchor-free head (`detect_v8`): ultralytics 8.4's NMS on hand-built decoded
tensors (`non_max_suppression_v8`), `validate()` of a YOLOv8n at 64x64 on a tiny dataset, and
`netdsl detect` with a YOLOv8n and random weights saved as a plain state_dict.

The NMS reference below is written from ultralytics 8.4's `utils/nms.py` behaviour (a box is a
candidate when its best class score > conf; one detection per (box, class) over conf with
`multi_label`, else its best class; per-class greedy NMS dropping IoU > iou; classes kept apart
by 7680 pixels; at most `max_det`), independently of `netdsl.tasks.detect.nms`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import netdsl
from netdsl.cli import main
from netdsl.tasks.detect.nms import V3, V8, non_max_suppression, non_max_suppression_v8, v8_rows

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"NCLS": 2, "H": 64, "W": 64}  # YOLOv8n (the spec's default scale), two classes


def v8_spec() -> Path:
    """specs/yolov8.net (or specs/yolo/yolov8.net, where it was first written)."""
    return next(p for p in (ROOT / "specs" / "yolov8.net", ROOT / "specs" / "yolo" / "yolov8.net") if p.exists())


# --- NMS -------------------------------------------------------------------------------------------

def column(*rows: list[float]) -> torch.Tensor:
    """Hand-written detections (cx, cy, w, h, class scores...) as one image's `[1, 4 + nc, A]`."""
    return torch.tensor(rows, dtype=torch.float32).T[None].contiguous()


def iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def reference(decoded: torch.Tensor, conf: float, iou_thres: float, multi_label: bool, agnostic: bool = False,
              max_det: int = 300) -> list[list[list[float]]]:
    """Ultralytics 8.4's NMS on `[N, 4 + nc, A]`, by plain loops (float64 boxes)."""
    out = []
    for img in decoded.double():
        nc = img.shape[0] - 4
        cands = []
        for a in range(img.shape[1]):
            cx, cy, w, h = img[:4, a].tolist()
            scores = img[4:, a].tolist()
            if max(scores) <= conf:
                continue
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            if multi_label and nc > 1:
                cands += [(box, s, c) for c, s in enumerate(scores) if s > conf]
            else:
                c = int(np.argmax(scores))
                cands.append((box, scores[c], c))
        cands.sort(key=lambda t: -t[1])
        kept: list[tuple[list[float], float, int]] = []
        for box, s, c in cands:
            if all(iou(box, k[0]) <= iou_thres for k in kept if agnostic or k[2] == c):
                kept.append((box, s, c))
        out.append([[*b, s, float(c)] for b, s, c in kept[:max_det]])
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("multi_label", "agnostic", "conf", "iou_thres"),
                         [(False, False, 0.25, 0.7), (True, False, 0.001, 0.7), (False, True, 0.25, 0.5)])
def test_v8_nms_equals_the_reference(seed: int, multi_label: bool, agnostic: bool, conf: float,
                                     iou_thres: float) -> None:
    g = torch.Generator().manual_seed(seed)
    n, nc = 120, 3
    xy = torch.rand(2, 2, n, generator=g) * 120
    wh = torch.rand(2, 2, n, generator=g) * 50 + 4
    scores = torch.rand(2, nc, n, generator=g) ** 3  # mostly low, as a trained head's
    decoded = torch.cat((xy, wh, scores), 1)
    got = non_max_suppression_v8(decoded, conf, iou_thres, agnostic=agnostic, multi_label=multi_label)
    want = reference(decoded, conf, iou_thres, multi_label, agnostic)
    for g_img, w_img in zip(got, want):
        assert len(w_img) > 3 and g_img.shape == (len(w_img), 6)
        torch.testing.assert_close(g_img.double(), torch.tensor(w_img, dtype=torch.float64), rtol=0, atol=1e-4)


def test_v8_nms_hand_built() -> None:
    # A: class 1 at 0.9; B: shifted by 1 pixel, class 1 at 0.8 (IoU 0.82 with A: dropped); C: the
    # same box as B, but class 0 (kept: per-class NMS); D: IoU 0.6 with A, class 1 (kept at 0.7,
    # dropped at YOLOv3's 0.45); E: best score 0.2, under conf 0.25.
    d = column([50, 50, 20, 20, 0.1, 0.9], [51, 51, 20, 20, 0.2, 0.8], [51, 51, 20, 20, 0.7, 0.3],
               [55, 50, 20, 20, 0.05, 0.6], [10, 10, 4, 4, 0.2, 0.1])
    out = non_max_suppression_v8(d)[0]
    assert out[:, 5].tolist() == [1.0, 0.0, 1.0]
    # the confidence is the class score itself, bit for bit (objectness 1)
    assert torch.equal(out[:, 4], torch.stack((d[0, 5, 0], d[0, 4, 2], d[0, 5, 3])))
    assert out[:, :4].tolist() == [[40, 40, 60, 60], [41, 41, 61, 61], [45, 40, 65, 60]]
    assert non_max_suppression_v8(d, iou_thres=0.45)[0][:, 5].tolist() == [1.0, 0.0]
    assert non_max_suppression_v8(d, agnostic=True)[0][:, 4].tolist() == pytest.approx([0.9, 0.6])
    assert non_max_suppression_v8(d, classes=[0])[0][:, 5].tolist() == [0.0]
    assert len(non_max_suppression_v8(d, max_det=2)[0]) == 2
    # multi-label: both of a box's scores over conf are detections (C's class 1 at 0.3 is A's overlap)
    assert non_max_suppression_v8(d, 0.25, 0.7, multi_label=True)[0].tolist() == out.tolist()
    f = column([90, 90, 10, 10, 0.5, 0.4])
    assert non_max_suppression_v8(f, multi_label=True)[0][:, 4:].flatten().tolist() == pytest.approx([0.5, 0, 0.4, 1])
    assert non_max_suppression_v8(f)[0][:, 4:].flatten().tolist() == pytest.approx([0.5, 0])
    assert non_max_suppression_v8(d, conf_thres=0.95)[0].shape == (0, 6)


def test_v8_nms_keeps_classes_7680_pixels_apart() -> None:
    """Ultralytics 8.x offsets each class's corners by 7680 pixels (YOLOv3's NMS by 4096): a class-1
    box at (0, 0)..(4100, 1000) offset by 4096 would be the class-0 box at (4096, 4096)..(8196, 5096)
    and suppress it."""
    d = column([2050, 500, 4100, 1000, 0.0, 0.9], [6146, 4596, 4100, 1000, 0.8, 0.0])
    assert len(non_max_suppression_v8(d, 0.25, 0.5)[0]) == 2
    assert len(non_max_suppression(v8_rows(d), 0.25, 0.5)[0]) == 1  # the v3 offset would lose one


def test_one_class_multi_label_is_single_label() -> None:
    d = column([50, 50, 20, 20, 0.9], [52, 50, 20, 20, 0.5], [10, 10, 6, 6, 0.3])
    assert torch.equal(non_max_suppression_v8(d, 0.001, 0.7, multi_label=True)[0], non_max_suppression_v8(d, 0.001)[0])


def test_the_protocols_defaults() -> None:
    """Ultralytics 8.4's default.yaml (`iou: 0.7`; conf 0.25 predicting, 0.001 validating), copied
    beside netdsl in ../shared/reference, and v9.6.0's detect.py/val.py for YOLOv3."""
    assert (V8.conf, V8.iou, V8.val_conf, V8.val_iou) == (0.25, 0.7, 0.001, 0.7)
    assert (V3.conf, V3.iou, V3.val_conf, V3.val_iou) == (0.25, 0.45, 0.001, 0.6)
    default = ROOT.parent / "shared" / "reference" / "ultralytics-8.4.190" / "default.yaml"
    if default.exists():
        import yaml

        assert yaml.safe_load(default.read_text())["iou"] == V8.iou


# --- a YOLOv8n: validate() and netdsl detect -------------------------------------------------------

@pytest.fixture(scope="module")
def v8n() -> torch.nn.Module:
    torch.manual_seed(0)
    return netdsl.build(v8_spec(), **SMALL)


def make_folder(root: Path) -> Path:
    """A YOLO folder (images/{train,val}, labels/{train,val}): bright squares (class 0) and bars
    (class 1) on dark noise, 64x64 and one 48x64 validation image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 2), ("val", 3)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            h = 48 if (split, i) == ("val", 2) else 64
            im = rng.integers(0, 40, (h, 64, 3)).astype(np.uint8)
            lines = []
            for c, (w, bh) in enumerate([(16, 16), (28, 10)]):
                x0, y0 = int(rng.integers(0, 64 - w)), int(rng.integers(0, h - bh))
                im[y0:y0 + bh, x0:x0 + w] = (220, 200, 60)
                lines.append(f"{c} {(x0 + w / 2) / 64:.6f} {(y0 + bh / 2) / h:.6f} {w / 64:.6f} {bh / h:.6f}")
            Image.fromarray(im).save(root / "images" / split / f"{i}.png")
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_validate_runs_a_v8_model(v8n: torch.nn.Module, tmp_path: Path) -> None:
    from netdsl.tasks.detect.data import load_detection_data
    from netdsl.tasks.detect.validate import RectLoader, eval_parts, validate

    data = load_detection_data(str(make_folder(tmp_path / "data")), img=64, nc=2)
    loader = RectLoader.of(data.val, 2, 64, 32)
    seen: list[list[tuple[int, ...]]] = []

    def loss(raw: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        seen.append([tuple(r.shape) for r in raw])
        return torch.tensor([1.0, 2.0, 3.0]) * len(targets)

    v8n.train()
    means, m = validate(v8n, loader, 2, loss)
    assert v8n.training  # put back
    # the loss gets the raw per-level maps (4*16 + 2 channels) of each rectangular batch
    sizes = [2, 1]
    assert loader.shapes == [(96, 96), (96, 96)]  # val.py's rule: ceil(64 / 32 + 0.5) * 32
    assert seen == [[(n, 66, h // s, w // s) for s in (8, 16, 32)] for n, (h, w) in zip(sizes, loader.shapes)]
    assert means == pytest.approx([3.0, 6.0, 9.0])  # 4 then 2 targets: (4 + 2) / 2 batches, times 1, 2, 3
    assert m["images"] == 3 and m["instances"] == 6
    for k in ("precision", "recall", "map50", "map50_95", "coco_map50", "coco_map50_95"):
        assert 0.0 <= m[k] <= 1.0, k
    # the detections counted are ultralytics 8.4's validation NMS (conf 0.001, IoU 0.7, multi-label)
    v8n.eval()
    with torch.no_grad():
        want = sum(len(d) for images, _, _ in loader
                   for d in non_max_suppression_v8(eval_parts(v8n(images))[0], 0.001, 0.7, multi_label=True))
    assert m["detections"] == want > 0


def test_netdsl_detect_with_a_v8_state_dict(v8n: torch.nn.Module, tmp_path: Path, capsys) -> None:
    from PIL import Image

    from netdsl.tasks.detect.predict import predict, protocol

    weights = tmp_path / "v8n.pt"
    torch.save(v8n.state_dict(), weights)  # a plain state_dict, not netdsl's own format
    source = tmp_path / "images"
    source.mkdir()
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(source / "a.png")
    out = tmp_path / "out"
    sets = [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]
    rc = main(["detect", str(v8_spec()), "--weights", str(weights), "--source", str(source), *sets, "--img", "64",
               "--conf", "0.001", "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "detections.json"]
    report = json.loads((out / "detections.json").read_text())
    assert report["iou"] == 0.7 and report["classes"] == 2  # the v8 head's default IoU
    entry = report["images"][0]
    assert entry["input_size"] == [64, 64] and cap.out.startswith("a.png: 64x64 ")
    # the same as predict() on the model in memory: the weights file was read into the network
    assert protocol(v8n) is V8
    want = predict(v8n, [pixels], img=64, conf=0.001, auto=True)[0]
    got = [[*d["box"], d["confidence"], d["class"]] for d in entry["detections"]]
    assert len(got) == len(want) > 0
    np.testing.assert_allclose(np.array(got), want.numpy(), atol=1e-3)
    assert all(0 <= d["box"][0] <= d["box"][2] <= 70 and 0 <= d["box"][1] <= d["box"][3] <= 50
               for d in entry["detections"])


def test_netdsl_detect_takes_an_iou(v8n: torch.nn.Module, tmp_path: Path, capsys) -> None:
    weights = tmp_path / "v8n.pt"
    torch.save(v8n.state_dict(), weights)
    image = tmp_path / "b.png"
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(image)
    sets = [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]
    rc = main(["detect", str(v8_spec()), "--weights", str(weights), "--source", str(image), *sets, "--img", "64",
               "--iou", "0.5", "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "detections.json").read_text())["iou"] == 0.5
