"""The task-aligned assignment of YOLOv8's loss (TOOD's assigner, as ultralytics 8.4 runs it).

Written from the method's description and ultralytics 8.4.190's observable behaviour (not from
its AGPL code). Per image and ground-truth box (all in input pixels):
- candidates: the anchor points strictly inside the box, a side shorter than `min_side` first
  widened to `min_side` about the box's centre (so a tiny box still gets an anchor);
- each candidate's alignment metric is score^alpha * CIoU^beta: the predicted probability of the
  box's class at that anchor, and the CIoU (clamped at 0) of the anchor's predicted box;
- the box keeps its `topk` anchors of highest metric (among all anchors; a non-candidate has
  metric 0 and is dropped again afterwards);
- an anchor kept by several boxes goes to the box it overlaps most (highest CIoU among all its
  candidate boxes);
- an assigned anchor's class target is one-hot, scaled by metric * (the box's best CIoU among its
  anchors) / (the box's best metric + eps), the highest over the boxes (only its own is non-zero).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from netdsl.tasks.detect.boxes import corner_complete_iou


@dataclass
class Assignment:
    """What each anchor is trained towards; `[B, A]` first dimensions."""

    foreground: torch.Tensor  # [B, A] bool: the anchor has a box
    boxes: torch.Tensor       # [B, A, 4] its box, corners in pixels (meaningless on background)
    scores: torch.Tensor      # [B, A, nc] class targets (zero rows on background)


@dataclass
class Candidates:
    """The padded ground truth of a batch: `M` rows per image, the missing ones invalid."""

    labels: torch.Tensor  # [B, M] long class index (0 on padding)
    boxes: torch.Tensor   # [B, M, 4] corners in pixels (0 on padding)
    valid: torch.Tensor   # [B, M] bool


def pad_targets(targets: torch.Tensor, batch: int, width: float, height: float) -> Candidates:
    """Rows `[nt, 6]` (image, class, cx, cy, w, h normalised) to per-image padded boxes in pixels,
    each image's boxes in the order its rows came.

    >>> c = pad_targets(torch.tensor([[1, 2, 0.5, 0.5, 0.5, 0.25]]), 2, 32, 16)
    >>> c.labels.tolist(), c.boxes[1].tolist(), c.valid.tolist()
    ([[0], [2]], [[8.0, 6.0, 24.0, 10.0]], [[False], [True]])
    """
    image = targets[:, 0].long()
    per_image = torch.bincount(image, minlength=batch) if len(image) else image.new_zeros(batch)
    m = int(per_image.max()) if len(image) else 0
    labels = targets.new_zeros(batch, m, dtype=torch.long)
    boxes = targets.new_zeros(batch, m, 4)
    valid = torch.zeros(batch, m, dtype=torch.bool, device=targets.device)
    if m:
        # rows grouped by image, in their order; a row's slot: how many rows of its image came before it
        order = torch.argsort(image, stable=True)
        rows, img = targets[order], image[order]
        slot = torch.arange(len(img), device=targets.device) - (torch.cumsum(per_image, 0) - per_image)[img]
        scale = targets.new_tensor([width, height, width, height])
        xy, wh = rows[:, 2:4] * scale[:2], rows[:, 4:6] * scale[2:]
        labels[img, slot] = rows[:, 1].long()
        boxes[img, slot] = torch.cat((xy - wh / 2, xy + wh / 2), 1)
        valid[img, slot] = True
    return Candidates(labels, boxes, valid)


def inside_boxes(points: torch.Tensor, boxes: torch.Tensor, min_side: float, eps: float = 1e-9) -> torch.Tensor:
    """`[B, M, A]`: anchor `points` `[A, 2]` strictly (by `eps`) inside `boxes` `[B, M, 4]`, each
    side shorter than `min_side` widened to it about the centre.

    >>> inside_boxes(torch.tensor([[4.0, 4.0], [12.0, 4.0]]), torch.tensor([[[6.0, 3.0, 7.0, 5.0]]]), 8).tolist()
    [[[True, False]]]
    """
    # through centre and size (as ultralytics does for every box), so the edges round alike
    centre, size = (boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]
    size = torch.where(size < min_side, torch.full_like(size, min_side), size)
    low, high = centre - size / 2, centre + size / 2
    p = points[None, None]  # [1, 1, A, 2]
    return ((p - low[:, :, None]).amin(-1) > eps) & ((high[:, :, None] - p).amin(-1) > eps)


def task_aligned_assign(probs: torch.Tensor, pred_boxes: torch.Tensor, points: torch.Tensor, gt: Candidates,
                        min_side: float, topk: int = 10, alpha: float = 0.5, beta: float = 6.0,
                        eps: float = 1e-9) -> Assignment:
    """Assign the anchors of a batch. `probs` `[B, A, nc]` (sigmoid), `pred_boxes` `[B, A, 4]`
    corners in pixels, `points` `[A, 2]` pixels; all detached.

    >>> gt = Candidates(torch.tensor([[1]]), torch.tensor([[[8.0, 8.0, 16.0, 16.0]]]), torch.tensor([[True]]))
    >>> points = torch.tensor([[4.0, 4.0], [12.0, 12.0]])
    >>> pred = torch.tensor([[[0.0, 0.0, 8.0, 8.0], [8.0, 8.0, 16.0, 16.0]]])
    >>> a = task_aligned_assign(torch.full((1, 2, 2), 0.25), pred, points, gt, 8, topk=2)
    >>> a.foreground.tolist(), [round(s, 4) for s in a.scores[0, 1].tolist()]
    ([[False, True]], [0.0, 1.0])
    """
    batch, anchors, nc = probs.shape
    m = gt.boxes.shape[1]
    if m == 0:
        return Assignment(torch.zeros(batch, anchors, dtype=torch.bool, device=probs.device),
                          torch.zeros_like(pred_boxes), torch.zeros_like(probs))
    candidate = inside_boxes(points, gt.boxes, min_side) & gt.valid[..., None]  # [B, M, A]
    b, g, a = candidate.nonzero(as_tuple=True)
    overlap = corner_complete_iou(gt.boxes[b, g], pred_boxes[b, a]).clamp(min=0)
    score = probs[b, a, gt.labels[b, g]]
    overlaps = probs.new_zeros(batch, m, anchors)
    metric = probs.new_zeros(batch, m, anchors)
    overlaps[b, g, a] = overlap.to(overlaps.dtype)
    metric[b, g, a] = score.pow(alpha) * overlap.pow(beta)
    best = torch.topk(metric, min(topk, anchors), dim=-1).indices
    positive = torch.zeros_like(candidate).scatter_(-1, best, True) & candidate
    # an anchor positive for several boxes keeps only the box it overlaps most
    shared = positive.sum(1, keepdim=True) > 1
    closest = torch.zeros_like(positive).scatter_(1, overlaps.max(1).indices[:, None], True)
    positive = torch.where(shared, closest, positive)
    foreground, gt_index = positive.to(torch.int8).max(1)
    labels = gt.labels.gather(1, gt_index)
    boxes = gt.boxes.gather(1, gt_index[..., None].expand(-1, -1, 4))
    onehot = torch.nn.functional.one_hot(labels, nc).to(probs.dtype) * foreground[..., None]
    # the class target's size: the metric relative to the box's best, times the box's best CIoU
    metric = metric * positive
    best_overlap = (overlaps * positive).amax(-1, keepdim=True)
    norm = (metric * best_overlap / (metric.amax(-1, keepdim=True) + eps)).amax(1)
    return Assignment(foreground.bool(), boxes, onehot * norm[..., None])
