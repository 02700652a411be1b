"""Detection metrics, two ways: as ultralytics v9.6.0's val.py computes them (`match_detections`,
`ap_per_class`, `val_scores`: the numbers the course reports), and by pycocotools' COCOeval
(`evaluate`).

val.py's way (written from its documented behaviour, not its GPL code): per image, the detections
of one class whose IoU with a ground-truth box of that class is >= 0.5 are matched one to one:
every (truth, detection) pair over 0.5 sorted by decreasing IoU, each detection keeps its best
pair, then each ground-truth box keeps the pair of its earliest detection (the detections'
order: decreasing confidence); a matched detection is a true positive at each IoU threshold
0.50:0.05:0.95 that its pair's IoU reaches. Per class (of the classes with ground truth), the
detections by decreasing confidence give cumulative recall TP / n_truth and precision
TP / (TP + FP); AP is the area (trapezoidal rule over 101 recall points 0, 0.01, ..., 1) under
the precision envelope interpolated linearly between the points (0, 1), the curve's, and
(1, 0): past the last recall the envelope falls linearly to 0 at recall 1, where COCOeval
counts 0, so val.py's AP is the larger for weak detectors. Precision and recall are read at one
confidence for all classes: the one, of 1000 evenly spaced in [0, 1], where the mean over
classes of F1 is highest (each class's curves interpolated in confidence; precision 1 above
its highest confidence, recall 0). When no detection is a true positive, every number is 0.

COCOeval's way:

`evaluate(predictions, ground_truth, nc)` builds COCO-format datasets in memory (images with their
sizes, boxes in pixels as x, y, w, h, category id = class + 1, scores), runs COCOeval's bbox
evaluation with its printing silenced, and reads the results from its arrays:

- `map50`, `map50_95`: COCOeval's accumulated precision array read directly (not `summarize()`,
  which prints and assumes maxDets 100), so pycocotools' tp / (tp + fp + eps) makes a perfect
  score 1 - 2e-16. COCO's 101-point interpolated AP at IoU 0.5 and averaged over IoU
  0.50:0.05:0.95, area "all", averaged over the classes that have ground truth (COCOeval leaves
  classes without ground truth out). Every detection given is counted: the per-image cap
  (`maxDets`) is raised to the largest number of detections of one image, at least 100.
- `precision`, `recall`: one number each, at IoU 0.5 and over the detections given, so at the
  confidence threshold the caller applied (ultralytics v9.6.0 reads its P and R at the confidence
  of the best mean F1 instead; evaluate with conf 0.001 for its mAP protocol), from COCOeval's
  own matching (`evalImgs`): per class TP / (TP + FP) and TP / ground truths, then the mean over
  the classes with ground truth (a class with ground truth and no detection has precision 0).
  Detections of classes without ground truth are false positives of no counted class, as in
  ultralytics (they lower no number; mAP is unaffected by them either).

Empty cases are clean: with no ground truth at all every metric is 0.0 (nothing to find); with
ground truth and no predictions, every metric is 0.0 too.
"""
from __future__ import annotations

import contextlib
import gc
import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from netdsl.tasks.detect.boxes import box_iou
from netdsl.tasks.detect.coco_fast import fast_cocoeval

# one image's ground truth: {"height": h, "width": w, "boxes": [m, 4] x1 y1 x2 y2 pixels, "classes": [m]}
GroundTruth = Mapping[str, Any]


def _rows(a: Any, cols: int, what: str) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    arr = np.asarray(a if a is not None else [], dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, cols))
    if arr.ndim != 2 or arr.shape[1] != cols:
        raise ValueError(f"{what}: expected an array of shape [n, {cols}], got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: values must be finite")
    return arr


def _items(x: Sequence[Any] | Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    return list(x.items()) if isinstance(x, Mapping) else list(enumerate(x))


def _category_ids(classes: np.ndarray, nc: int, what: str) -> list[int]:
    """COCO's 1-based category ids of `classes` (floats), refusing the first that is not an
    integer in [0, nc)."""
    bad = (classes != np.trunc(classes)) | (classes < 0) | (classes >= nc)
    if bad.any():
        raise ValueError(f"{what}: class {float(classes[bad][0])} is not an integer in [0, {nc})")
    return (classes.astype(np.int64) + 1).tolist()


def _coco_rows(boxes: np.ndarray, image_id: int, first_id: int, categories: list[int],
               scores: np.ndarray | None = None) -> list[dict[str, Any]]:
    """COCO annotations (or results, with `scores`) of `[m, 4]` x1, y1, x2, y2 pixels: bbox x, y,
    w, h and area max(w, 0) * max(h, 0), the arithmetic done per column (a validation of an
    untrained network gives ten thousand detections)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = np.maximum(w, 0.0) * np.maximum(h, 0.0)
    columns = [boxes[:, 0].tolist(), boxes[:, 1].tolist(), w.tolist(), h.tolist(), area.tolist(), categories]
    if scores is None:
        return [{"id": first_id + k, "image_id": image_id, "iscrowd": 0, "category_id": c, "bbox": [x, y, bw, bh],
                 "area": a} for k, (x, y, bw, bh, a, c) in enumerate(zip(*columns))]
    return [{"id": first_id + k, "image_id": image_id, "iscrowd": 0, "category_id": c, "bbox": [x, y, bw, bh],
             "area": a, "score": sc} for k, (x, y, bw, bh, a, c, sc) in enumerate(zip(*columns, scores.tolist()))]


def coco_datasets(predictions: Sequence[Any] | Mapping[Any, Any],
                  ground_truth: Sequence[GroundTruth] | Mapping[Any, GroundTruth],
                  nc: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The COCO ground-truth dataset dict and the list of COCO results (xywh pixels, 1-based ids).

    `ground_truth`: per image (a list, or a dict keyed by image key) `height`, `width`, `boxes`
    ([m, 4] x1, y1, x2, y2 pixels) and `classes` ([m] in 0..nc-1). `predictions`: per image (the
    same keys) `[k, 6]` x1, y1, x2, y2, confidence, class, as `non_max_suppression` gives them.
    """
    gts = _items(ground_truth)
    ids = {key: i + 1 for i, (key, _) in enumerate(gts)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for key, g in gts:
        try:
            h, w = int(g["height"]), int(g["width"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"ground truth of image {key!r}: give integer 'height' and 'width'") from None
        boxes = _rows(g.get("boxes"), 4, f"ground truth boxes of image {key!r}")
        classes = np.asarray(g.get("classes", []), dtype=np.float64).reshape(-1)
        if len(classes) != len(boxes):
            raise ValueError(f"ground truth of image {key!r}: {len(boxes)} boxes but {len(classes)} classes")
        images.append({"id": ids[key], "height": h, "width": w})
        annotations += _coco_rows(boxes, ids[key], len(annotations) + 1,
                                  _category_ids(classes, nc, f"ground truth of image {key!r}"))
    results: list[dict[str, Any]] = []
    for key, p in _items(predictions):
        if key not in ids:
            raise ValueError(f"predictions for image {key!r}, which has no ground-truth entry (give its size there)")
        rows = _rows(p, 6, f"predictions of image {key!r}")
        results += _coco_rows(rows[:, :4], ids[key], len(results) + 1,
                              _category_ids(rows[:, 5], nc, f"predictions of image {key!r}"), rows[:, 4])
    categories = [{"id": c + 1, "name": f"class{c}"} for c in range(nc)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _coco(dataset: dict[str, Any]) -> Any:
    from pycocotools.coco import COCO  # pycocotools only when COCOeval's figures are asked for

    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def evaluate(predictions: Sequence[Any] | Mapping[Any, Any],
             ground_truth: Sequence[GroundTruth] | Mapping[Any, GroundTruth], nc: int) -> dict[str, Any]:
    """`{"precision", "recall", "map50", "map50_95", "images", "instances", "detections"}`.

    See the module's docstring for the inputs' format and what each number means.

    >>> gt = [{"height": 100, "width": 100, "boxes": [[0, 0, 50, 50]], "classes": [0]}]
    >>> r = evaluate([[[0, 0, 50, 50, 0.9, 0]]], gt, nc=1)
    >>> [round(r[k], 6) for k in ("precision", "recall", "map50", "map50_95")]
    [1.0, 1.0, 1.0, 1.0]
    """
    if nc < 1:
        raise ValueError(f"nc must be positive, got {nc}")
    with collector_paused():
        return _evaluate(predictions, ground_truth, nc)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off inside (and back as it was after): building tens of
    thousands of small dicts (COCO's records) otherwise triggers a collection every 700 of them,
    each walking the process's objects (torch's among them), four fifths of the time. The
    records hold no cycles, so reference counting frees them all the same.

    >>> with collector_paused():
    ...     gc.isenabled()
    False
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _evaluate(predictions: Sequence[Any] | Mapping[Any, Any],
              ground_truth: Sequence[GroundTruth] | Mapping[Any, GroundTruth], nc: int) -> dict[str, Any]:
    gt_dataset, results = coco_datasets(predictions, ground_truth, nc)
    out: dict[str, Any] = {"precision": 0.0, "recall": 0.0, "map50": 0.0, "map50_95": 0.0,
                           "images": len(gt_dataset["images"]), "instances": len(gt_dataset["annotations"]),
                           "detections": len(results)}
    if not gt_dataset["annotations"] or not results:
        return out
    from pycocotools.cocoeval import COCOeval  # as in _coco

    with contextlib.redirect_stdout(io.StringIO()):
        gt = _coco(gt_dataset)
        dt = _coco({**gt_dataset, "annotations": results})
        ev = fast_cocoeval(COCOeval)(gt, dt, "bbox")
        per_image = max(np.bincount([r["image_id"] for r in results]).max(), 100)
        # Only the last cap is read (every detection): `accumulate` scores each cap on its own.
        ev.params.maxDets = [int(per_image)]
        # Only the "all" area range is read: COCOeval scores each range on its own, so the small,
        # medium and large ones (three quarters of its time) are left out, with the same figures.
        ev.params.areaRng, ev.params.areaRngLbl = [ev.params.areaRng[0]], [ev.params.areaRngLbl[0]]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][:, :, :, 0, -1]  # [iou, recall, class] at area "all", every detection
    t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    has_gt = sorted({a["category_id"] for a in gt_dataset["annotations"]})
    cols = [ev.params.catIds.index(c) for c in has_gt]
    # a class with ground truth always has a curve (zeros when nothing matched); -1 marks no curve
    p = prec[:, :, cols]
    out["map50_95"] = float(np.mean(np.where(p > -1, p, 0.0)))
    out["map50"] = float(np.mean(np.where(p[t50] > -1, p[t50], 0.0)))
    out["precision"], out["recall"] = _precision_recall(ev, has_gt, t50)
    return out


def _precision_recall(ev: Any, cats: list[int], t: int) -> tuple[float, float]:
    """Mean over `cats` of TP/(TP+FP) and TP/GT at IoU threshold index `t`, from COCOeval's matching."""
    all_area = ev.params.areaRng[0]
    tp = dict.fromkeys(cats, 0)
    fp = dict.fromkeys(cats, 0)
    n_gt = dict.fromkeys(cats, 0)
    for e in ev.evalImgs:
        if e is None or e["aRng"] != all_area or e["category_id"] not in tp:
            continue
        c = e["category_id"]
        counted = ~np.asarray(e["dtIgnore"], dtype=bool).reshape(len(ev.params.iouThrs), -1)[t]
        matched = np.asarray(e["dtMatches"]).reshape(len(ev.params.iouThrs), -1)[t] > 0
        tp[c] += int((matched & counted).sum())
        fp[c] += int((~matched & counted).sum())
        n_gt[c] += int((~np.asarray(e["gtIgnore"], dtype=bool)).sum())
    precision = [tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else 0.0 for c in cats]
    recall = [tp[c] / n_gt[c] if n_gt[c] else 0.0 for c in cats]
    return float(np.mean(precision)), float(np.mean(recall))


# --- ultralytics v9.6.0 val.py's metrics ---------------------------------------------------------

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
CONF_POINTS = 1000  # confidences at which val.py reads precision, recall and F1


def match_detections(det: Any, labels: Any, iou_thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """`[k, t]` bool: whether detection i (`det` `[k, 6]` x1, y1, x2, y2, conf, class, by
    decreasing conf) is a true positive at IoU threshold j, against one image's `labels` `[m, 5]`
    (class, x1, y1, x2, y2), matched as val.py matches (see the module's docstring).

    >>> match_detections([[0, 0, 10, 10, .9, 0], [0, 0, 10, 9, .8, 0]], [[0, 0, 0, 10, 10]])[:, [0, 9]].tolist()
    [[True, True], [False, False]]
    """
    d, t = _rows(det, 6, "detections"), _rows(labels, 5, "labels")
    correct = np.zeros((len(d), len(iou_thresholds)), dtype=bool)
    if not len(d) or not len(t):
        return correct
    iou = box_iou(torch.from_numpy(t[:, 1:]).float(), torch.from_numpy(d[:, :4]).float()).numpy()
    li, di = np.nonzero((iou >= iou_thresholds[0]) & (t[:, :1] == d[None, :, 5]))
    if not len(li):
        return correct
    pairs = np.stack((li, di, iou[li, di]), 1)
    pairs = pairs[np.argsort(-pairs[:, 2], kind="stable")]
    pairs = pairs[np.unique(pairs[:, 1], return_index=True)[1]]  # a detection's best truth; now by detection
    pairs = pairs[np.unique(pairs[:, 0], return_index=True)[1]]  # a truth's earliest detection
    correct[pairs[:, 1].astype(int)] = pairs[:, 2:3] >= iou_thresholds
    return correct


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """val.py's AP of one class: the 101-point trapezoid under the precision envelope of the
    curve extended by (0, 1) and (1, 0).

    The envelope is 1 to recall 0.49, 2/3 from 0.5 to 0.99 and 0 at 1 (the sentinel):
    0.49 + (1 + 2/3) / 2 * .01 + .49 * 2/3 + 2/3 / 2 * .01:

    >>> round(compute_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])), 4)
    0.8283
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    y = np.interp(x, mrec, mpre)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def ap_per_class(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray,
                 target_cls: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`(p, r, ap, classes)` over the classes with ground truth: precision and recall at the
    confidence of the best mean F1, and AP `[classes, t]` per IoU threshold of `tp` `[n, t]`."""
    order = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes = np.unique(target_cls)
    px = np.linspace(0, 1, CONF_POINTS)
    ap = np.zeros((len(classes), tp.shape[1]))
    p, r = np.zeros((len(classes), CONF_POINTS)), np.zeros((len(classes), CONF_POINTS))
    for ci, c in enumerate(classes):
        mine = pred_cls == c
        n_truth = int((target_cls == c).sum())
        if not mine.any():
            continue
        tpc = tp[mine].cumsum(0)
        fpc = (1 - tp[mine]).cumsum(0)
        recall = tpc / (n_truth + 1e-16)
        precision = tpc / (tpc + fpc)
        # confidences decrease along the curve: interpolate over their negatives
        r[ci] = np.interp(-px, -conf[mine], recall[:, 0], left=0)
        p[ci] = np.interp(-px, -conf[mine], precision[:, 0], left=1)
        ap[ci] = [compute_ap(recall[:, j], precision[:, j]) for j in range(tp.shape[1])]
    f1 = 2 * p * r / (p + r + 1e-16)
    best = int(f1.mean(0).argmax()) if len(classes) else 0
    return p[:, best], r[:, best], ap, classes


def val_scores(stats: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """`{"precision", "recall", "map50", "map50_95"}` as val.py reports them, from per image
    `(correct [k, 10] bool, conf [k], class [k], truth classes [m])`; 0.0 each when no detection
    is a true positive (val.py's rule). Images without truth and without detections add nothing."""
    out = {"precision": 0.0, "recall": 0.0, "map50": 0.0, "map50_95": 0.0}
    if not stats:
        return out
    tp, conf, pcls, tcls = (np.concatenate([np.asarray(s[k], dtype=np.float64).reshape(
        (-1, len(IOU_THRESHOLDS)) if k == 0 else -1) for s in stats], 0) for k in range(4))
    if not tp.any():
        return out
    p, r, ap, _ = ap_per_class(tp, conf, pcls, tcls)
    return {"precision": float(p.mean()), "recall": float(r.mean()), "map50": float(ap[:, 0].mean()),
            "map50_95": float(ap.mean())}
