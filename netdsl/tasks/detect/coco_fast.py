"""COCOeval made fast where netdsl runs it, value for value (tests/tasks/test_detection_metrics.py
checks every record and array against pycocotools' own): `fast_cocoeval(COCOeval)` is a subclass
whose per-image matching (`greedy_matches`) and accumulation of the precision-recall curves
(`pr_curves`) are numpy array operations instead of Python loops over detections. A validation of
an untrained network has ten thousand detections; these loops were most of its time.
"""
from __future__ import annotations

import datetime
from typing import Any

import numpy as np


def fast_cocoeval(base: type) -> type:
    """COCOeval with its per-image matching (`evaluateImg`, three nested Python loops: thresholds,
    detections, ground truths) done per threshold in numpy where no ground truth is a crowd or
    ignored (netdsl's never are): the greedy rule unchanged, one step per ground truth matched
    instead of one per (detection, ground truth). Every other case is COCOeval's own code. The
    returned record is COCOeval's, value for value (tested against it)."""

    class FastEval(base):
        def evaluateImg(self, imgId: Any, catId: Any, aRng: Any, maxDet: int) -> Any:  # noqa: N802, N803 - COCOeval's names
            gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
            if not self.params.useCats or any(g["ignore"] or g["iscrowd"] or not aRng[0] <= g["area"] <= aRng[1]
                                              for g in gt):
                return super().evaluateImg(imgId, catId, aRng, maxDet)
            if not gt and not dt:
                return None
            for g in gt:
                g["_ignore"] = 0
            dt = [dt[i] for i in np.argsort([-d["score"] for d in dt], kind="mergesort")[:maxDet]]
            thresholds = self.params.iouThrs
            ious = np.asarray(self.ious[imgId, catId], dtype=np.float64)
            dtm, gtm = greedy_matches(ious, thresholds, [d["id"] for d in dt], [g["id"] for g in gt])
            outside = np.array([d["area"] < aRng[0] or d["area"] > aRng[1] for d in dt]).reshape(1, len(dt))
            dt_ignore = np.logical_or(np.zeros((len(thresholds), len(dt))),
                                      np.logical_and(dtm == 0, np.repeat(outside, len(thresholds), 0)))
            return {"image_id": imgId, "category_id": catId, "aRng": aRng, "maxDet": maxDet,
                    "dtIds": [d["id"] for d in dt], "gtIds": [g["id"] for g in gt], "dtMatches": dtm,
                    "gtMatches": gtm, "dtScores": [d["score"] for d in dt], "gtIgnore": np.array([g["_ignore"] for g in gt]),
                    "dtIgnore": dt_ignore}

        def accumulate(self, p: Any = None) -> None:
            """COCOeval's `accumulate` with each (class, area, cap) curve from `pr_curves`; the
            `eval` dict it leaves is COCOeval's."""
            p = self.params if p is None else p
            if not p.useCats:
                return super().accumulate(p)
            shape = (len(p.iouThrs), len(p.recThrs), len(p.catIds), len(p.areaRng), len(p.maxDets))
            precision, scores, recall = -np.ones(shape), -np.ones(shape), -np.ones(shape[:1] + shape[2:])
            pe = self._paramsEval
            n_img, n_area = len(pe.imgIds), len(pe.areaRng)
            cats, areas, caps, imgs = set(pe.catIds), set(map(tuple, pe.areaRng)), set(pe.maxDets), set(pe.imgIds)
            images = [n for n, i in enumerate(p.imgIds) if i in imgs]
            for k, k0 in enumerate(n for n, c in enumerate(p.catIds) if c in cats):
                for a, a0 in enumerate(n for n, r in enumerate(map(tuple, p.areaRng)) if r in areas):
                    records = [self.evalImgs[(k0 * n_area + a0) * n_img + i] for i in images]
                    records = [e for e in records if e is not None]
                    for m, cap in enumerate(c for c in p.maxDets if c in caps):
                        curves = pr_curves(records, cap, p.recThrs) if records else None
                        if curves is not None:
                            precision[:, :, k, a, m], scores[:, :, k, a, m], recall[:, k, a, m] = curves
            self.eval = {"params": p, "counts": list(shape),
                         "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
                         "precision": precision, "recall": recall, "scores": scores}
            return None

    return FastEval


def greedy_matches(ious: np.ndarray, thresholds: np.ndarray, dt_ids: list[int],
                    gt_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's greedy matching with no crowd or ignored ground truth: at each threshold t, each
    detection in score order takes the unmatched ground truth of highest IoU >= min(t, 1 - 1e-10)
    (of equal ones, the last). `(dtMatches [T, D], gtMatches [T, G])`: the partner's id, or 0.

    >>> greedy_matches(np.array([[0.6, 0.7], [0.9, 0.2]]), np.array([0.5, 0.65]), [1, 2], [7, 8])[0].tolist()
    [[8.0, 7.0], [8.0, 7.0]]
    """
    t_n, d_n, g_n = len(thresholds), len(dt_ids), len(gt_ids)
    dtm, gtm = np.zeros((t_n, d_n)), np.zeros((t_n, g_n))
    if ious.size == 0:
        return dtm, gtm
    for ti, t in enumerate(thresholds):
        floor = min(t, 1 - 1e-10)
        free = np.ones(g_n, dtype=bool)
        start = 0
        while start < d_n and free.any():
            rows = np.where(free, ious[start:], -np.inf)
            best = rows.max(1)
            hits = np.flatnonzero(best >= floor)
            if not len(hits):
                break
            d = start + int(hits[0])
            m = g_n - 1 - int(np.argmax(rows[hits[0]][::-1] == best[hits[0]]))  # the last of the best
            dtm[ti, d], gtm[ti, m] = gt_ids[m], dt_ids[d]
            free[m] = False
            start = d + 1
    return dtm, gtm


def pr_curves(records: list[dict[str, Any]], cap: int, rec_thrs: np.ndarray,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One class's curves over its images' `records` (COCOeval's `evaluateImg` output), each
    image's first `cap` detections: `(precision [T, R], scores [T, R], recall [T])` as COCOeval's
    `accumulate` has them, or None where no ground truth counts. The detections by decreasing
    score (mergesort, as COCOeval); the precision envelope is a reversed running maximum (its
    loop, exactly); at each recall threshold the envelope and score of the first detection
    reaching it, 0 past the last.

    >>> r = {"dtScores": [0.9, 0.8], "dtMatches": np.array([[5.0, 0.0]]), "dtIgnore": np.zeros((1, 2)),
    ...      "gtIgnore": np.array([0])}
    >>> precision, scores, recall = pr_curves([r], 100, np.array([0.0, 0.5, 1.0]))
    >>> precision.round(9).tolist(), scores.tolist(), recall.tolist()  # 1 / (1 + eps) is 1 - 2e-16
    ([[1.0, 1.0, 1.0]], [[0.9, 0.9, 0.9]], [1.0])
    """
    n_truth = np.count_nonzero(np.concatenate([e["gtIgnore"] for e in records]) == 0)
    if n_truth == 0:
        return None
    det_scores = np.concatenate([e["dtScores"][:cap] for e in records])
    order = np.argsort(-det_scores, kind="mergesort")
    det_scores = det_scores[order]
    matched = np.concatenate([e["dtMatches"][:, :cap] for e in records], axis=1)[:, order]
    ignored = np.concatenate([e["dtIgnore"][:, :cap] for e in records], axis=1)[:, order]
    tp = np.cumsum(np.logical_and(matched, np.logical_not(ignored)), axis=1).astype(float)
    fp = np.cumsum(np.logical_and(np.logical_not(matched), np.logical_not(ignored)), axis=1).astype(float)
    n_t, n_d = tp.shape
    precision, scores = np.zeros((n_t, len(rec_thrs))), np.zeros((n_t, len(rec_thrs)))
    if n_d == 0:
        return precision, scores, np.zeros(n_t)
    rc = tp / n_truth
    envelope = np.maximum.accumulate((tp / (fp + tp + np.spacing(1)))[:, ::-1], axis=1)[:, ::-1]
    for t in range(n_t):
        at = np.searchsorted(rc[t], rec_thrs, side="left")
        reached = at < n_d
        precision[t, reached], scores[t, reached] = envelope[t, at[reached]], det_scores[at[reached]]
    return precision, scores, rc[:, -1].copy()
