"""Non-maximum suppression for the `detect` head's eval output (ultralytics v9.6.0's semantics).

`nms` is greedy NMS as torchvision.ops.nms (highest score first, a box is dropped when its IoU
with a kept box is > the threshold; indices returned by decreasing score). `non_max_suppression`
post-processes the decoded `[N, n, 5+nc]` output (xywh pixels, sigmoid scores) per image: one
detection per box (its best class) by default, as `detect` runs it, or with `multi_label` one per
class scoring above the threshold, as v9.6.0's val.py runs it for mAP.

The anchor-free head (`detect_v8`, ultralytics 8.x) decodes to `[N, 4 + nc, A]` without
objectness; `non_max_suppression_v8` gives it ultralytics 8.4's NMS (`utils/nms.py`) by one
adapter, `v8_rows`: its rows in this module's layout with objectness 1, so a box's confidence
is its class score exactly and every filter above is ultralytics 8.x's (a candidate's best class
score > conf; with `multi_label` every class over conf). Its class offset is ultralytics 8.x's
7680 pixels. `V3` and `V8` (`Protocol`) hold each head's NMS and its default thresholds.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from netdsl.tasks.detect.boxes import xywh_to_xyxy

MAX_WH = 4096       # class offset (pixels) that keeps boxes of different classes apart
MAX_WH_V8 = 7680    # ultralytics 8.x's class offset (utils/nms.py `max_wh`)
MAX_NMS = 30000     # boxes per image passed to NMS at most (the highest scores)
BLOCK = 256         # boxes NMS resolves at once (one [BLOCK, BLOCK] IoU matrix)


def nms(boxes_xyxy: torch.Tensor, scores: torch.Tensor, iou_threshold: float, *,
        limit: int | None = None, block: int = BLOCK) -> torch.Tensor:
    """Indices (int64, by decreasing score) of the boxes `[n, 4]` that greedy NMS keeps.

    Works through the boxes by score in blocks: a block's boxes overlapping a box kept before
    it go, then the block is resolved within itself (`_resolve`). `limit` stops once that
    many boxes are kept (the same first indices, found sooner). The work is numpy's on the CPU,
    one thread: the same IEEE operations as `box_iou` on the same values, so the same boxes
    kept, without torch's per-operation overhead on many small arrays (the indices come back on
    the boxes' device).

    >>> b = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    >>> nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
    [0, 2]
    """
    order = np.argsort(-scores.detach().cpu().numpy(), kind="stable")  # descending, ties in their given order
    kept = _greedy(boxes_xyxy.detach().cpu().numpy()[order], iou_threshold, limit, block)
    return torch.from_numpy(order[kept]).to(boxes_xyxy.device)


def nms_by_group(boxes_xyxy: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float, *,
                 limit: int | None = None) -> torch.Tensor:
    """`nms(boxes_xyxy, scores, iou_threshold, limit=limit)`, the same indices, found group by
    group where the groups lie apart: boxes already offset by class (`non_max_suppression`) whose
    classes occupy disjoint x ranges overlap no box of another class (IoU 0), so greedy NMS of all
    of them is each class's own, merged back in score order. The pairs compared shrink by the
    number of classes. Where the ranges touch, or the threshold is negative, it is `nms` itself.

    >>> b = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [100, 100, 110, 110], [101, 101, 110, 110]])
    >>> nms_by_group(b, torch.tensor([0.9, 0.8, 0.95, 0.7]), torch.tensor([0, 0, 1, 1]), 0.5).tolist()
    [2, 0]
    """
    boxes, g = boxes_xyxy.detach().cpu().numpy(), groups.detach().cpu().numpy()
    labels, which = np.unique(g, return_inverse=True)
    if len(labels) < 2 or iou_threshold < 0 or not _apart(boxes, which, len(labels)):
        return nms(boxes_xyxy, scores, iou_threshold, limit=limit)
    order = np.argsort(-scores.detach().cpu().numpy(), kind="stable")
    kept = []
    for label in range(len(labels)):
        mine = order[which[order] == label]  # this group's boxes in the global order
        kept.append(mine[_greedy(boxes[mine], iou_threshold, limit, BLOCK)])
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    every = np.concatenate(kept)
    return torch.from_numpy(every[np.argsort(rank[every])][:limit]).to(boxes_xyxy.device)


def _apart(boxes: np.ndarray, which: np.ndarray, n: int) -> bool:
    """Whether groups 0..n-1 of `boxes` cover x ranges that do not overlap (one may end where the
    next begins: a zero-width intersection is clipped to 0)."""
    lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
    np.minimum.at(lo, which, np.minimum(boxes[:, 0], boxes[:, 2]))
    np.maximum.at(hi, which, np.maximum(boxes[:, 0], boxes[:, 2]))
    by_lo = np.argsort(lo)
    return bool(np.all(hi[by_lo][:-1] <= lo[by_lo][1:]))


def _greedy(boxes: np.ndarray, iou_threshold: float, limit: int | None, block: int) -> np.ndarray:
    """Positions kept by greedy NMS of `boxes` already in score order (at most `limit`)."""
    kept = np.zeros(0, dtype=np.int64)
    for start in range(0, len(boxes), block):
        if limit is not None and len(kept) >= limit:
            break
        cand = np.arange(start, min(start + block, len(boxes)))
        if len(kept):
            cand = cand[~(_iou(boxes[kept], boxes[cand]) > iou_threshold).any(0)]
        kept = np.concatenate((kept, cand[_resolve(boxes[cand], iou_threshold)]))
    return kept[:limit]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`box_iou` in numpy: per pair the same operations in the same order (so the same bits), one
    coordinate at a time and in place (five times fewer passes over memory than `[n, m, 2]` corners)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter = np.minimum(a[:, 2, None], b[None, :, 2])
    inter -= np.maximum(a[:, 0, None], b[None, :, 0])
    np.maximum(inter, 0, out=inter)  # the width
    h = np.minimum(a[:, 3, None], b[None, :, 3])
    h -= np.maximum(a[:, 1, None], b[None, :, 1])
    np.maximum(h, 0, out=h)
    inter *= h
    union = area_a[:, None] + area_b[None, :]
    union -= inter
    return np.divide(inter, union, out=inter)


def _resolve(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS of boxes already in score order, as a mask: box i is kept when no kept box
    before it overlaps it by more than the threshold. The overlaps are one matrix; the greedy
    pass then visits only the boxes that overlap a later one, in order (solving the rule for all
    boxes at once needed a round per link of a chain of overlaps, and early in training
    low-confidence boxes form long ones).

    >>> _resolve(np.array([[0.0, 0, 10, 10], [1, 1, 10, 10], [2, 2, 11, 11]], np.float32), 0.6).tolist()
    [True, False, True]
    """
    over = np.triu(_iou(boxes, boxes) > iou_threshold, 1)  # [earlier, later]
    keep = np.ones(len(over), dtype=bool)
    for i in np.flatnonzero(over.any(1)).tolist():
        if keep[i]:
            keep &= ~over[i]
    return keep


def candidates(x: torch.Tensor, conf_thres: float, classes: Sequence[int] | None,
               multi_label: bool = False) -> torch.Tensor:
    """One image's decoded rows `[n, 5+nc]` to `[k, 6]` (x1, y1, x2, y2, conf, class): objectness
    > conf_thres, conf = objectness * class score > conf_thres, class among `classes`; the best
    class of each box, or with `multi_label` (and more than one class) every class over the
    threshold, in the order (box, class)."""
    x = x[x[:, 4] > conf_thres]
    scores = x[:, 5:] * x[:, 4:5]
    box = xywh_to_xyxy(x[:, :4])
    if multi_label and scores.shape[1] > 1:
        i, j = (scores > conf_thres).nonzero(as_tuple=True)
        x = torch.cat((box[i], scores[i, j, None], j[:, None].to(x.dtype)), 1)
    else:
        conf, cls = scores.max(1, keepdim=True)
        x = torch.cat((box, conf, cls.to(x.dtype)), 1)[conf.view(-1) > conf_thres]
    if classes is not None:
        x = x[(x[:, 5:6] == torch.tensor(classes, device=x.device, dtype=x.dtype)).any(1)]
    return x


def non_max_suppression(decoded: torch.Tensor, conf_thres: float = 0.25, iou_thres: float = 0.45,
                        classes: Sequence[int] | None = None, agnostic: bool = False,
                        max_det: int = 300, multi_label: bool = False,
                        max_wh: int = MAX_WH) -> list[torch.Tensor]:
    """Per image `[k, 6]` detections (x1, y1, x2, y2, conf, class), by decreasing conf.

    `decoded`: the head's eval output `[N, n, 5+nc]` (cx, cy, w, h in pixels, objectness and
    class scores in [0, 1]). NMS runs per class (boxes are offset by class * `max_wh` pixels) unless
    `agnostic`; at most 30000 candidates enter it and `max_det` detections leave it.
    `multi_label`: a box may give one detection per class (see `candidates`).

    >>> d = torch.tensor([[[50.0, 50, 20, 20, 0.9, 0.1, 0.9], [51, 51, 20, 20, 0.8, 0.2, 0.9],
    ...                    [51, 51, 20, 20, 0.8, 0.9, 0.1], [10, 10, 4, 4, 0.1, 0.9, 0.9]]])
    >>> [[round(v, 2) for v in row] for row in non_max_suppression(d)[0].tolist()]
    [[40.0, 40.0, 60.0, 60.0, 0.81, 1.0], [41.0, 41.0, 61.0, 61.0, 0.72, 0.0]]
    """
    output = []
    for x in decoded:
        x = candidates(x, conf_thres, classes, multi_label)
        if len(x) > MAX_NMS:
            x = x[x[:, 4].argsort(descending=True)[:MAX_NMS]]
        offset = x[:, 5:6] * (0 if agnostic else max_wh)
        output.append(x[nms_by_group(x[:, :4] + offset, x[:, 4], x[:, 5], iou_thres, limit=max_det)])
    return output


def v8_rows(decoded: torch.Tensor) -> torch.Tensor:
    """The anchor-free head's decoded `[N, 4 + nc, A]` (xywh pixels, class probabilities) as rows
    `[N, A, 5 + nc]` of the YOLOv3 layout with objectness exactly 1: `candidates` then keeps what
    ultralytics 8.x keeps (1 > conf for any conf < 1, and 1 * score is the score, bit for bit).

    >>> v8_rows(torch.tensor([[[10.0, 20.0], [10, 20], [4, 4], [4, 4], [0.25, 0.75]]])).tolist()
    [[[10.0, 10.0, 4.0, 4.0, 1.0, 0.25], [20.0, 20.0, 4.0, 4.0, 1.0, 0.75]]]
    """
    rows = decoded.transpose(1, 2)
    return torch.cat((rows[..., :4], rows.new_ones(*rows.shape[:2], 1), rows[..., 4:]), 2)


def non_max_suppression_v8(decoded: torch.Tensor, conf_thres: float = 0.25, iou_thres: float = 0.7,
                           classes: Sequence[int] | None = None, agnostic: bool = False,
                           max_det: int = 300, multi_label: bool = False) -> list[torch.Tensor]:
    """Ultralytics 8.4's NMS of the anchor-free head's decoded `[N, 4 + nc, A]`: per image `[k, 6]`
    (x1, y1, x2, y2, conf, class) by decreasing conf, conf = the class score.

    The defaults are ultralytics 8.x's predict defaults (conf 0.25, IoU 0.7: its default.yaml has
    one `iou` for predict and val, 0.7, where YOLOv3's detect.py used 0.45); its validation runs
    conf 0.001, IoU 0.7, `multi_label` (`V8`). With one class `multi_label` changes nothing.

    >>> d = torch.tensor([[[50.0, 51, 51], [50, 51, 51], [20, 20, 20], [20, 20, 20],
    ...                    [0.1, 0.2, 0.9], [0.9, 0.8, 0.1]]])
    >>> [[round(v, 2) for v in row] for row in non_max_suppression_v8(d)[0].tolist()]
    [[40.0, 40.0, 60.0, 60.0, 0.9, 1.0], [41.0, 41.0, 61.0, 61.0, 0.9, 0.0]]
    """
    return non_max_suppression(v8_rows(decoded), conf_thres, iou_thres, classes, agnostic, max_det,
                               multi_label, max_wh=MAX_WH_V8)


Suppress = Callable[..., list[torch.Tensor]]


@dataclass(frozen=True)
class Protocol:
    """One head's post-processing: its NMS (`decoded, conf, iou, *, max_det, multi_label`) and the
    thresholds its reference uses to predict (`conf`, `iou`) and to validate (`val_conf`,
    `val_iou`, multi-label, at most 300 detections an image)."""

    name: str
    suppress: Suppress
    conf: float
    iou: float
    val_conf: float
    val_iou: float


# YOLOv3: ultralytics v9.6.0's detect.py (0.25, 0.45) and val.py during training (0.001, 0.6).
V3 = Protocol("yolov3", non_max_suppression, 0.25, 0.45, 0.001, 0.6)
# detect_v8: ultralytics 8.4's default.yaml: iou 0.7 for both; conf 0.25 predicting, 0.001 validating.
V8 = Protocol("yolov8", non_max_suppression_v8, 0.25, 0.7, 0.001, 0.7)
