"""NMS (netdsl.tasks.detect.nms): greedy `nms` and `non_max_suppression` of the head's eval output,
against brute-force references written here, hand-made cases, and the compiled yolov3-tiny."""
from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import torch

import netdsl
import netdsl.tasks.detect.nms
from netdsl.tasks.detect.nms import _apart, nms, nms_by_group, non_max_suppression

ROOT = Path(__file__).resolve().parents[2]


def iou(a: list[float], b: list[float]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def greedy(boxes: list[list[float]], scores: list[float], thr: float) -> list[int]:
    """Keep the best remaining box, drop those overlapping it by more than thr, repeat."""
    left = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept = []
    while left:
        best = left.pop(0)
        kept.append(best)
        left = [i for i in left if iou(boxes[best], boxes[i]) <= thr]
    return kept


def random_boxes(g: torch.Generator, n: int, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * size / 3 + 1
    return torch.cat((xy, xy + wh), 1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.1, 0.45, 0.7])
def test_nms_matches_brute_force(seed: int, thr: float) -> None:
    g = torch.Generator().manual_seed(seed)
    boxes, scores = random_boxes(g, 60), torch.rand(60, generator=g, dtype=torch.float64)
    kept = nms(boxes, scores, thr)
    assert kept.dtype == torch.int64 and kept.tolist() == greedy(boxes.tolist(), scores.tolist(), thr)
    assert nms(boxes, scores, thr, limit=3).tolist() == kept[:3].tolist()
    for block in (1, 7, 16):   # boxes suppressed by kept boxes of earlier blocks, and limits across blocks
        assert nms(boxes, scores, thr, block=block).tolist() == kept.tolist()
        assert nms(boxes, scores, thr, block=block, limit=5).tolist() == kept[:5].tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_iou_is_box_iou_bit_for_bit(dtype: torch.dtype) -> None:
    """nms's numpy IoU against `box_iou` (torch): every value equal, the degenerate (zero-area, 0/0)
    pairs NaN in both, boxes far apart (class offsets) 0 in both."""
    from netdsl.tasks.detect.boxes import box_iou
    from netdsl.tasks.detect.nms import _iou

    g = torch.Generator().manual_seed(0)
    a = random_boxes(g, 70).to(dtype)
    a[:4, 2:] = a[:4, :2]  # zero area
    b = torch.cat((a.flip(0)[::2], random_boxes(g, 30).to(dtype) + 4096))
    with np.errstate(invalid="ignore"):
        ours = _iou(a.numpy(), b.numpy())
    theirs = box_iou(a, b).numpy()
    assert ours.dtype == theirs.dtype and np.isnan(ours).any()
    assert np.array_equal(ours, theirs, equal_nan=True) and np.array_equal(np.signbit(ours), np.signbit(theirs))


def test_nms_hand_made_and_empty() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 6], [50, 50, 60, 60], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.95, 0.3, 0.5, 0.1])
    # 1 (best) overlaps 0 by exactly 0.5 (not > 0.5: kept), 2 by 5/6 (dropped); 4 repeats 0 (dropped).
    assert nms(boxes, scores, 0.5).tolist() == [1, 0, 3]
    assert nms(boxes, scores, 0.49).tolist() == [1, 3]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


@pytest.mark.parametrize("seed", range(6))
def test_nms_by_group_is_nms(seed: int) -> None:
    """Group by group where the groups lie apart, one pass where they do not: the same indices as
    `nms` over all the boxes, with and without a limit; ties in score keep the given order."""
    g = torch.Generator().manual_seed(seed)
    n = 400
    boxes = random_boxes(g, n, size=300.0)
    groups = torch.randint(0, 4, (n,), generator=g)
    scores = torch.randint(0, 30, (n,), generator=g).double() / 30  # ties across and within groups
    apart = boxes + groups[:, None] * 4096.0
    touching = apart.clone()
    i = int((groups < 3).nonzero()[0])
    touching[i, 2] = 4096.0 * (int(groups[i]) + 1) + 50  # one box reaching into the next class's range
    for b in (apart, touching, boxes):
        for limit in (None, 7, 300):
            assert nms_by_group(b, scores, groups, 0.45, limit=limit).tolist() == nms(b, scores, 0.45, limit=limit).tolist()
    assert not _apart(touching.numpy(), groups.numpy(), 4) and _apart(apart.numpy(), groups.numpy(), 4)


def reference_nms(decoded: torch.Tensor, conf: float, thr: float, classes: list[int] | None, agnostic: bool,
                  max_det: int) -> list[list[list[float]]]:
    """Per image: candidates by the plain rules, greedy NMS per class (or all together), merged by score."""
    out = []
    for rows in decoded.tolist():
        cands = []
        for cx, cy, w, h, obj, *cls in rows:
            score = max(obj * c for c in cls)
            best = max(range(len(cls)), key=lambda k: obj * cls[k])
            if obj > conf and score > conf and (classes is None or best in classes):
                cands.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score, float(best)])
        kept = []
        for group in ({0} if agnostic else {c[5] for c in cands}):
            members = [c for c in cands if agnostic or c[5] == group]
            kept += [members[i] for i in greedy([m[:4] for m in members], [m[4] for m in members], thr)]
        out.append(sorted(kept, key=lambda c: -c[4])[:max_det])
    return out


def random_decoded(seed: int, n: int = 80, nc: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(2, n, 2, generator=g, dtype=torch.float64) * 200
    wh = torch.rand(2, n, 2, generator=g, dtype=torch.float64) * 60 + 2
    scores = torch.rand(2, n, 1 + nc, generator=g, dtype=torch.float64)
    return torch.cat((xy, wh, scores), 2)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("classes", "agnostic", "max_det"), [(None, False, 300), (None, True, 300),
                                                               ([0, 2], False, 300), (None, False, 5)])
def test_non_max_suppression_matches_brute_force(seed: int, classes: list[int] | None, agnostic: bool,
                                                  max_det: int) -> None:
    decoded = random_decoded(seed)
    got = non_max_suppression(decoded, 0.25, 0.45, classes=classes, agnostic=agnostic, max_det=max_det)
    want = reference_nms(decoded, 0.25, 0.45, classes, agnostic, max_det)
    assert len(got) == 2
    for g, w in zip(got, want):
        assert g.shape == (len(w), 6) and len(w) > 0
        assert torch.allclose(g, torch.tensor(w, dtype=g.dtype))


def test_non_max_suppression_hand_made() -> None:
    # Two overlapping boxes of class 1 (the weaker one goes), the same box as class 0 (stays:
    # per-class NMS), one whose objectness is under conf_thres, one whose obj*cls is.
    d = torch.tensor([[[50.0, 50, 20, 20, 0.9, 0.1, 0.9], [51, 51, 20, 20, 0.8, 0.2, 0.9],
                       [51, 51, 20, 20, 0.8, 0.9, 0.1], [10, 10, 4, 4, 0.2, 0.9, 0.9],
                       [90, 90, 4, 4, 0.5, 0.4, 0.4]]])
    out = non_max_suppression(d)[0]
    assert torch.allclose(out, torch.tensor([[40, 40, 60, 60, 0.81, 1], [41, 41, 61, 61, 0.72, 0]]))
    assert non_max_suppression(d, agnostic=True)[0][:, 5].tolist() == [1.0]
    assert non_max_suppression(d, classes=[0])[0][:, 5].tolist() == [0.0]
    assert non_max_suppression(d, max_det=1)[0].shape == (1, 6)
    assert non_max_suppression(d, conf_thres=0.95)[0].shape == (0, 6)


def test_compiled_yolov3_tiny_eval_output() -> None:
    torch.manual_seed(0)
    model = netdsl.build(ROOT / "specs" / "yolov3-tiny.net", H=64, W=64, NCLS=3).eval()
    with torch.no_grad():
        decoded, _ = model(torch.randn(2, 3, 64, 64))
    out = non_max_suppression(decoded, conf_thres=0.0, iou_thres=0.5)
    assert len(out) == 2 and all(o.shape[1] == 6 and len(o) > 0 for o in out)
    assert all((o[:-1, 4] >= o[1:, 4]).all() and (o[:, 2:4] >= o[:, :2]).all() for o in out)


def test_docstring_examples() -> None:
    result = doctest.testmod(netdsl.tasks.detect.nms, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4 and result.failed == 0
