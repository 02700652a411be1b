"""YOLOv3's loss (netdsl.tasks.detect.loss.yolo_loss): hand-computed cases, a plain-loop reference
of the assignment and the terms, invariants, and the compiled yolov3-tiny head end to end."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.tasks.detect.loss import DEFAULT_HYP, assign_targets, head_geometry, yolo_loss

ROOT = Path(__file__).resolve().parents[2]
HYP_YAML = ROOT.parent / "shared" / "reference" / "ultralytics-yolov3-v9.6.0" / "hyp.scratch.yaml"
LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75


def bce(logit: float, t: float, pos_weight: float = 1.0) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(pos_weight * t * math.log(p) + (1 - t) * math.log(1 - p))


def ciou(p: tuple, t: tuple, eps: float = 1e-7) -> float:
    """Complete IoU of two (cx, cy, w, h) boxes, plain floats."""
    (px, py, pw, ph), (tx, ty, tw, th) = p, t
    ix = max(0.0, min(px + pw / 2, tx + tw / 2) - max(px - pw / 2, tx - tw / 2))
    iy = max(0.0, min(py + ph / 2, ty + th / 2) - max(py - ph / 2, ty - th / 2))
    iou = ix * iy / (pw * ph + tw * th - ix * iy)
    cw = max(px + pw / 2, tx + tw / 2) - min(px - pw / 2, tx - tw / 2)
    ch = max(py + ph / 2, ty + th / 2) - min(py - ph / 2, ty - th / 2)
    rho2 = (px - tx) ** 2 + (py - ty) ** 2
    v = 4 / math.pi**2 * (math.atan(tw / th) - math.atan(pw / ph)) ** 2
    alpha = v / (v - iou + 1 + eps)
    return iou - rho2 / (cw**2 + ch**2) - alpha * v


# One level, 4x4 grid, stride 8 (32x32 image), one anchor of 16x16 pixels = 2x2 cells, two images.
# The target, in image 0, class 1: centre (1.5, 1.5) cells (a centre on a cell's middle has no
# neighbours), 2x2 cells, so cell (1, 1), xy offset (0.5, 0.5), wh (2, 2).
TARGET = torch.tensor([[0, 1, 1.5 / 4, 1.5 / 4, 0.5, 0.5]])
ANCHORS, STRIDES = torch.tensor([[[16.0, 16.0]]]), torch.tensor([8.0])


def one_level(x: float, w: float, obj: float, cls1: float) -> torch.Tensor:
    p = torch.zeros(2, 1, 4, 4, 7)
    p[0, 0, 1, 1, 0], p[0, 0, 1, 1, 2], p[0, 0, 1, 1, 4], p[0, 0, 1, 1, 6] = x, w, obj, cls1
    return p


def expected_one_level(x: float, w: float, obj: float, cls1: float, hyp: dict) -> tuple[float, float, float]:
    sx, sw = 1 / (1 + math.exp(-x)), 1 / (1 + math.exp(-w))
    iou = ciou((2 * sx - 0.5, 0.5, (2 * sw) ** 2 * 2, 2.0), (0.5, 0.5, 2.0, 2.0))
    box = 1 - iou
    cells = 2 * 1 * 4 * 4
    lobj = (bce(obj, max(iou, 0.0), hyp["obj_pw"]) + (cells - 1) * bce(0.0, 0.0)) / cells * 4.0  # balance 4.0
    eps = hyp["label_smoothing"]
    lcls = (bce(0.0, 0.5 * eps, hyp["cls_pw"]) + bce(cls1, 1 - 0.5 * eps, hyp["cls_pw"])) / 2
    return box * hyp["box"], lobj * hyp["obj"], lcls * hyp["cls"]


@pytest.mark.parametrize("case", [
    dict(x=0.0, w=0.0, obj=0.0, cls1=0.0, hyp={}),                                  # exact box
    dict(x=LN3, w=0.0, obj=LN3, cls1=LN3, hyp={}),                                  # shifted centre
    dict(x=0.0, w=LN3, obj=-LN3, cls1=-LN3, hyp={}),                                 # wider, other shape
    dict(x=-LN3, w=-LN3, obj=LN3, cls1=LN3, hyp={"cls_pw": 2.0, "obj_pw": 3.0}),
    dict(x=LN3, w=LN3, obj=0.0, cls1=LN3, hyp={"label_smoothing": 0.1, "box": 1.0, "obj": 0.7, "cls": 2.0}),
])
def test_hand_computed_one_target(case: dict) -> None:
    hyp = {**DEFAULT_HYP, **case["hyp"]}
    preds = [one_level(case["x"], case["w"], case["obj"], case["cls1"])]
    loss, items = yolo_loss(preds, TARGET, ANCHORS, STRIDES, nc=2, hyp=case["hyp"])
    want = expected_one_level(case["x"], case["w"], case["obj"], case["cls1"], hyp)
    assert items.tolist() == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert loss.shape == (1,) and loss.item() == pytest.approx(sum(want) * 2, rel=1e-5)


def test_one_class_has_no_class_term_and_focal_loss() -> None:
    preds = [one_level(LN3, 0.0, LN3, 0.0)[..., :6]]
    assert yolo_loss(preds, TARGET, ANCHORS, STRIDES, nc=1)[1][2] == 0
    # Focal loss (gamma 1.5, alpha 0.25) on the class term, by hand.
    preds = [one_level(LN3, 0.0, LN3, LN3)]
    g = 1.5
    focal = (bce(0.0, 0.0) * 0.75 * 0.5**g + bce(LN3, 1.0) * 0.25 * 0.25**g) / 2
    items = yolo_loss(preds, TARGET, ANCHORS, STRIDES, nc=2, hyp={"fl_gamma": g})[1]
    assert items[2].item() == pytest.approx(focal * 0.5, rel=1e-5)


def test_neighbour_cells_and_anchor_ratio() -> None:
    anchors = torch.tensor([[2.0, 2.0], [7.9, 2.0], [8.0, 8.0]])   # grid units
    t = torch.tensor([[1, 0, 2.25 / 8, 5.75 / 8, 0.25, 0.25],      # 2x2 cells: anchors 0, 1 (ratio 3.95), not 2 (4.0)
                      [0, 0, 0.25 / 8, 7.75 / 8, 0.25, 0.25]])     # x < 1: no left; 8 - y < 1: no down
    m = assign_targets(t, anchors, 8, 8, 4.0)
    got = sorted(zip(m.image.tolist(), m.anchor.tolist(), m.gi.tolist(), m.gj.tolist(),
                     [round(v, 5) for v in m.box[:, 0].tolist()], [round(v, 5) for v in m.box[:, 1].tolist()]))
    want = sorted([(1, a, gi, gj, 2.25 - gi, 5.75 - gj) for a in (0, 1) for gi, gj in ((2, 5), (1, 5), (2, 6))]
                  + [(0, a, 0, 7, 0.25, 0.75) for a in (0, 1)])
    assert got == want and m.box[:, 2:].tolist() == [[2.0, 2.0]] * len(want)


def reference_loss(preds: list[torch.Tensor], targets: torch.Tensor, anchors: torch.Tensor, strides: torch.Tensor,
                   nc: int, hyp: dict) -> list[float]:
    """The loss with plain loops over levels, anchors, targets and the five candidate cells."""
    balance = [4.0, 1.0, 0.4]
    lbox = lobj = lcls = 0.0
    for i, p in enumerate(preds):
        n, na, h, w, _ = p.shape
        found = []
        for dx, dy in ((0, 0), (0.5, 0), (0, 0.5), (-0.5, 0), (0, -0.5)):
            for a in range(na):
                aw, ah = (anchors[i, a] / strides[i]).tolist()
                for img, c, cx, cy, tw, th in targets.tolist():
                    x, y, tw, th = cx * w, cy * h, tw * w, th * h
                    if max(tw / aw, aw / tw, th / ah, ah / th) >= hyp["anchor_t"]:
                        continue
                    take = {(0, 0): True, (0.5, 0): x % 1 < 0.5 and x > 1, (0, 0.5): y % 1 < 0.5 and y > 1,
                            (-0.5, 0): (w - x) % 1 < 0.5 and w - x > 1, (0, -0.5): (h - y) % 1 < 0.5 and h - y > 1}
                    if take[(dx, dy)]:
                        gi, gj = int(x - dx), int(y - dy)
                        found.append((int(img), a, gj, gi, int(c), (x - gi, y - gj, tw, th), (aw, ah)))
        tobj = {}
        for img, a, gj, gi, c, tbox, (aw, ah) in found:
            s = p[img, a, gj, gi].sigmoid().tolist()
            iou = ciou((2 * s[0] - 0.5, 2 * s[1] - 0.5, (2 * s[2]) ** 2 * aw, (2 * s[3]) ** 2 * ah), tbox)
            lbox += (1 - iou) / len(found)
            tobj[(img, a, gj, gi)] = max(iou, 0.0)
            logits = p[img, a, gj, gi, 5:].tolist()
            lcls += sum(bce(v, float(k == c), hyp["cls_pw"]) for k, v in enumerate(logits)) / (len(found) * nc)
        total = sum(bce(p[idx][4].item(), tobj.get(idx, 0.0), hyp["obj_pw"])
                    for idx in ((b, a, y, x) for b in range(n) for a in range(na) for y in range(h) for x in range(w)))
        lobj += total / (n * na * h * w) * balance[i]
    return [lbox * hyp["box"], lobj * hyp["obj"], lcls * hyp["cls"]]


def random_case(seed: int, nt: int = 6) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    preds = [torch.randn(2, 3, s, s, 5 + 3, generator=g, dtype=torch.float64) for s in (8, 4, 2)]
    t = torch.rand(nt, 6, generator=g, dtype=torch.float64)
    t[:, 0], t[:, 1] = (t[:, 0] * 2).floor(), (t[:, 1] * 3).floor()
    t[:, 4:] = t[:, 4:] * 0.6 + 0.02
    return preds, t


@pytest.mark.parametrize("seed", range(4))
def test_matches_a_plain_loop_reference(seed: int) -> None:
    preds, t = random_case(seed)
    anchors = torch.tensor([[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]],
                            [[116, 90], [156, 198], [373, 326]]], dtype=torch.float64) / 4
    strides = torch.tensor([8.0, 16.0, 32.0])
    hyp = {**DEFAULT_HYP, "cls_pw": 1.5, "obj_pw": 0.8}
    items = yolo_loss(preds, t, anchors, strides, nc=3, hyp=hyp)[1]
    assert items.tolist() == pytest.approx(reference_loss(preds, t, anchors, strides, 3, hyp), rel=1e-6)


def tiny_level_case() -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    preds, t = random_case(11)
    anchors = torch.tensor([[[10, 14], [23, 27], [37, 58]], [[81, 82], [135, 169], [344, 319]]],
                           dtype=torch.float64) / 4
    return preds[1:], t, anchors, torch.tensor([16.0, 32.0])


def test_permuting_images_keeps_the_loss() -> None:
    preds, t, anchors, strides = tiny_level_case()
    perm = torch.tensor([1, 0])
    t2 = t.clone()
    t2[:, 0] = perm.argsort()[t[:, 0].long()].to(t.dtype)   # image k moves to position perm^-1[k]
    l1, i1 = yolo_loss(preds, t, anchors, strides, nc=3)
    l2, i2 = yolo_loss([p[perm] for p in preds], t2, anchors, strides, nc=3)
    assert torch.allclose(l1, l2) and torch.allclose(i1, i2)


def test_a_better_prediction_has_lower_loss() -> None:
    far = one_level(-2.0, 2.0, -1.0, -1.0)
    near = one_level(0.5, 0.3, 1.0, 1.0)
    lf, i_far = yolo_loss([far], TARGET, ANCHORS, STRIDES, nc=2)
    ln, i_near = yolo_loss([near], TARGET, ANCHORS, STRIDES, nc=2)
    assert ln < lf and (i_near < i_far).all()


def test_pos_weight_changes_only_positive_terms() -> None:
    preds, t, anchors, strides = tiny_level_case()
    empty = torch.zeros(0, 6)
    base = yolo_loss(preds, empty, anchors, strides, nc=3)[1]
    assert torch.allclose(base, yolo_loss(preds, empty, anchors, strides, nc=3, hyp={"obj_pw": 5.0})[1])
    with_targets = yolo_loss(preds, t, anchors, strides, nc=3)[1]
    heavier = yolo_loss(preds, t, anchors, strides, nc=3, hyp={"obj_pw": 5.0, "cls_pw": 5.0})[1]
    assert heavier[0] == with_targets[0] and (heavier[1:] > with_targets[1:]).all()


def test_no_targets_gives_zero_box_and_class_terms_and_gradients_flow() -> None:
    preds, t, anchors, strides = tiny_level_case()
    preds = [p.clone().requires_grad_() for p in preds]
    loss, items = yolo_loss(preds, torch.zeros(0, 6), anchors, strides, nc=3)
    assert items[0] == 0 and items[2] == 0 and items[1] > 0
    loss.backward()
    assert all(p.grad[..., 4].abs().sum() > 0 and p.grad[..., :4].abs().sum() == 0 for p in preds)
    preds = [p.detach().requires_grad_() for p in preds]
    yolo_loss(preds, t, anchors, strides, nc=3)[0].backward()
    assert all(p.grad[..., [0, 1, 2, 3, 5]].abs().sum() > 0 for p in preds)


def test_the_compiled_yolov3_tiny_head_trains() -> None:
    torch.manual_seed(0)
    model = netdsl.build(ROOT / "specs" / "yolov3-tiny.net", H=64, W=64, NCLS=3)
    model.train()
    anchors, strides, nc = head_geometry(model)
    assert strides.tolist() == [16.0, 32.0] and nc == 3
    preds = model(torch.randn(2, 3, 64, 64))
    assert [tuple(p.shape) for p in preds] == [(2, 3, 4, 4, 8), (2, 3, 2, 2, 8)]
    targets = torch.tensor([[0, 2, 0.4, 0.6, 0.3, 0.2], [1, 0, 0.7, 0.2, 0.8, 0.9]])
    loss, items = yolo_loss(preds, targets, anchors, strides, nc)
    assert torch.isfinite(loss).all() and (items > 0).all()
    loss.backward()
    head = [m for m in model.modules() if type(m).__name__ == "Detect"][0]
    assert all(conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0 for conv in head.m)
    first = next(p for p in model.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.skipif(not HYP_YAML.exists(), reason="the reference hyp.scratch.yaml is not present")
def test_defaults_are_hyp_scratch() -> None:
    values = {}
    for line in HYP_YAML.read_text().splitlines():
        key, _, rest = line.partition("#")[0].partition(":")
        if rest.strip():
            values[key.strip()] = float(rest)
    for key, value in DEFAULT_HYP.items():
        assert values.get(key, 0.0 if key == "label_smoothing" else None) == value, key


def test_lazy_export_and_docstring_examples() -> None:
    import doctest
    import subprocess
    import sys

    import netdsl.tasks.detect.boxes
    import netdsl.tasks.detect.loss

    code = ("import sys, netdsl; light = 'torch' not in sys.modules; "
            "from netdsl.tasks.detect.loss import yolo_loss; print(light, netdsl.yolo_loss is yolo_loss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]
    for module, least in ((netdsl.tasks.detect.loss, 8), (netdsl.tasks.detect.boxes, 3)):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted >= least and result.failed == 0
