"""Detection metrics: precision, recall, mAP@0.5 and mAP@0.5:0.95 by pycocotools' COCOeval.

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
import io
from typing import Any, Mapping, Sequence

import numpy as np

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


def _check_class(c: float, nc: int, what: str) -> int:
    if c != int(c) or not 0 <= c < nc:
        raise ValueError(f"{what}: class {c} is not an integer in [0, {nc})")
    return int(c)


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
    images, annotations = [], []
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
        for (x1, y1, x2, y2), c in zip(boxes.tolist(), classes.tolist()):
            bw, bh = x2 - x1, y2 - y1
            annotations.append({"id": len(annotations) + 1, "image_id": ids[key], "iscrowd": 0,
                                "category_id": _check_class(c, nc, f"ground truth of image {key!r}") + 1,
                                "bbox": [x1, y1, bw, bh], "area": max(bw, 0.0) * max(bh, 0.0)})
    results = []
    for key, p in _items(predictions):
        if key not in ids:
            raise ValueError(f"predictions for image {key!r}, which has no ground-truth entry (give its size there)")
        for x1, y1, x2, y2, score, c in _rows(p, 6, f"predictions of image {key!r}").tolist():
            bw, bh = x2 - x1, y2 - y1
            results.append({"id": len(results) + 1, "image_id": ids[key], "iscrowd": 0,
                            "category_id": _check_class(c, nc, f"predictions of image {key!r}") + 1,
                            "bbox": [x1, y1, bw, bh], "area": max(bw, 0.0) * max(bh, 0.0), "score": score})
    categories = [{"id": c + 1, "name": f"class{c}"} for c in range(nc)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _coco(dataset: dict[str, Any]) -> Any:
    from pycocotools.coco import COCO

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
    gt_dataset, results = coco_datasets(predictions, ground_truth, nc)
    out: dict[str, Any] = {"precision": 0.0, "recall": 0.0, "map50": 0.0, "map50_95": 0.0,
                           "images": len(gt_dataset["images"]), "instances": len(gt_dataset["annotations"]),
                           "detections": len(results)}
    if not gt_dataset["annotations"] or not results:
        return out
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = _coco(gt_dataset)
        dt = _coco({**gt_dataset, "annotations": results})
        ev = COCOeval(gt, dt, "bbox")
        per_image = max(np.bincount([r["image_id"] for r in results]).max(), 100)
        ev.params.maxDets = [1, 10, int(per_image)]
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
