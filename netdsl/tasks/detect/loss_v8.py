"""YOLOv8's training loss for the `detect_v8` head, with the semantics of ultralytics 8.4.190's
`v8DetectionLoss` (also YOLO11's).

Written from the method's description and ultralytics' observable behaviour (not from its AGPL
code). The head's raw maps `[N, 4*reg_max + nc, H_i, W_i]` are flattened to anchors (levels in
order, cells row by row); each anchor sits at its cell's centre. A side's predicted distance is the
expectation of its softmax over the `reg_max` bins (in cells of its level), the box the anchor
point minus/plus the distances. The anchors are assigned by `task_aligned_assign` (pixels), then:
- cls: BCE-with-logits of every anchor's class logits against the assignment's scores (soft
  one-hot targets, zero on background), summed, over S = max(sum of the scores, 1);
- box: sum over the foreground of (1 - CIoU(predicted box, its box)) times the anchor's score,
  over S;
- dfl: for each side of a foreground anchor, the target distance t (cells, clamped to
  [0, reg_max - 1.01]) split between its two neighbouring bins (weights floor(t)+1 - t and
  t - floor(t)), cross-entropy of the bins' softmax; the four sides' mean times the score, over S.
The total is (box*7.5 + cls*0.5 + dfl*1.5) * batch size (ultralytics' default gains).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F  # noqa: N812

from netdsl.backends.torch_detect_v8 import dist2bbox, make_anchors
from netdsl.tasks.detect.assign_v8 import pad_targets, task_aligned_assign
from netdsl.tasks.detect.boxes import corner_complete_iou

# ultralytics 8.4's cfg/default.yaml: box 7.5, cls 0.5, dfl 1.5
DEFAULT_GAINS = (7.5, 0.5, 1.5)


def expected_distances(logits: torch.Tensor, reg_max: int) -> torch.Tensor:
    """`[..., 4*reg_max]` bin logits (side-major) -> `[..., 4]` expected distances in cells.

    >>> expected_distances(torch.tensor([[0.0, 0.0, 0.0, 0.0, 9e9, 0.0, 0.0, 0.0]]), 2).tolist()
    [[0.5, 0.5, 0.0, 0.5]]
    """
    bins = torch.arange(reg_max, dtype=logits.dtype, device=logits.device)
    return logits.unflatten(-1, (4, reg_max)).softmax(-1).matmul(bins)


def distribution_focal_loss(logits: torch.Tensor, target: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Per anchor `[n]`: the mean over its four sides of DFL, `logits` `[n, 4*reg_max]`, `target`
    `[n, 4]` distances in cells (clamped to [0, reg_max - 1.01]).

    >>> round(distribution_focal_loss(torch.zeros(1, 16), torch.full((1, 4), 1.5), 4).item(), 4)  # ln 4
    1.3863
    """
    t = target.clamp(0, reg_max - 1 - 0.01)
    left = t.long()
    w_left = (left + 1) - t
    logp = F.log_softmax(logits.unflatten(-1, (4, reg_max)), -1)
    near = logp.gather(-1, left[..., None]).squeeze(-1)
    far = logp.gather(-1, (left + 1)[..., None]).squeeze(-1)
    return -(near * w_left + far * (1 - w_left)).mean(-1)


def _check(raw: Sequence[torch.Tensor], strides: Sequence[int], classes: int, reg_max: int) -> None:
    if not raw or len(raw) != len(strides):
        raise ValueError(f"yolo_v8_loss: {len(raw)} maps but {len(strides)} strides; give one stride per level")
    for i, x in enumerate(raw):
        if x.dim() != 4 or x.shape[1] != 4 * reg_max + classes:
            raise ValueError(f"yolo_v8_loss: map {i} has shape {list(x.shape)}; each level's map must be "
                             f"[N, 4*reg_max + classes = {4 * reg_max + classes}, H, W]")


def _check_targets(targets: torch.Tensor, batch: int, classes: int) -> None:
    if len(targets) == 0:
        return
    image, cls = targets[:, 0], targets[:, 1]
    if image.min() < 0 or image.max() >= batch:
        raise ValueError(f"yolo_v8_loss: a target's image index is outside 0..{batch - 1} (the batch has {batch} images)")
    if cls.min() < 0 or cls.max() >= classes:
        raise ValueError(f"yolo_v8_loss: a target's class is outside 0..{classes - 1} (the head has {classes} classes)")


def yolo_v8_loss(raw: Sequence[torch.Tensor], targets: torch.Tensor, strides: Sequence[int], classes: int,
                 reg_max: int = 16, gains: Sequence[float] = DEFAULT_GAINS, topk: int = 10, alpha: float = 0.5,
                 beta: float = 6.0, eps: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    """YOLOv8's loss (ultralytics 8.4.190's v8DetectionLoss) of the `detect_v8` head's training output.

    `raw`: per level `[N, 4*reg_max + classes, H_i, W_i]` (box bins first); `targets`: `[nt, 6]`
    rows (image index, class, cx, cy, w, h), coordinates normalised to the input image, whose size
    is the first map's times `strides[0]`; `gains`: (box, cls, dfl); `topk`, `alpha`, `beta`,
    `eps`: the assigner's. Returns `(loss [1], items [3])`: the sum of the gained box, cls and dfl
    terms times the batch size, and those three gained terms, detached.

    >>> raw = [torch.zeros(2, 4 * 16 + 3, 8, 8, requires_grad=True), torch.zeros(2, 4 * 16 + 3, 4, 4)]
    >>> targets = torch.tensor([[0, 1, 0.5, 0.5, 0.25, 0.25], [1, 2, 0.3, 0.6, 0.2, 0.4]])
    >>> loss, items = yolo_v8_loss(raw, targets, strides=[8, 16], classes=3)
    >>> loss.shape, items.shape
    (torch.Size([1]), torch.Size([3]))
    >>> loss.backward(); raw[0].grad[:, :64].abs().sum() > 0  # the box bins get gradients
    tensor(True)
    """
    _check(raw, strides, classes, reg_max)
    batch, dtype, device = raw[0].shape[0], raw[0].dtype, raw[0].device
    flat = torch.cat([x.flatten(2) for x in raw], 2).transpose(1, 2)  # [B, A, 4R + nc]
    bins, logits = flat.split((4 * reg_max, classes), 2)
    points, stride = (t.transpose(0, 1) for t in make_anchors(list(raw), [int(s) for s in strides]))  # [A, 2/1]
    height, width = raw[0].shape[2] * strides[0], raw[0].shape[3] * strides[0]
    targets = torch.as_tensor(targets, dtype=dtype, device=device).view(-1, 6)
    _check_targets(targets, batch, classes)
    gt = pad_targets(targets, batch, float(width), float(height))

    pred = dist2bbox(expected_distances(bins, reg_max), points, xywh=False, dim=-1)  # corners, cells
    # ultralytics widens tiny boxes to the second level's stride (the only level's when just one)
    min_side = float(strides[1] if len(strides) > 1 else strides[0])
    assigned = task_aligned_assign(logits.detach().sigmoid(), pred.detach() * stride, points * stride, gt,
                                   min_side, topk, alpha, beta, eps)
    scores_sum = assigned.scores.sum().clamp(min=1)

    cls = F.binary_cross_entropy_with_logits(logits, assigned.scores.to(dtype), reduction="none").sum() / scores_sum
    fg = assigned.foreground
    weight = assigned.scores[fg].sum(-1)
    box_cells = assigned.boxes / stride
    box = ((1.0 - corner_complete_iou(pred[fg], box_cells[fg])) * weight).sum() / scores_sum
    # target distances from the anchor point to the box's sides, in cells
    sides = torch.cat((points - box_cells[..., :2], box_cells[..., 2:] - points), -1)
    dfl = (distribution_focal_loss(bins[fg], sides[fg], reg_max) * weight).sum() / scores_sum

    terms = torch.stack((box * gains[0], cls * gains[1], dfl * gains[2]))
    return (terms.sum() * batch).view(1), terms.detach()
