"""Box helpers shared by the losses and NMS: format conversion, pairwise IoU, complete IoU."""
from __future__ import annotations

import math

import torch


def xywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    """Centre-size boxes `[..., 4]` to corner boxes `[..., 4]`.

    >>> xywh_to_xyxy(torch.tensor([[2.0, 3.0, 4.0, 2.0]])).tolist()
    [[0.0, 2.0, 4.0, 4.0]]
    """
    xy, half = b[..., :2], b[..., 2:4] / 2
    return torch.cat((xy - half, xy + half), -1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU `[n, m]` of corner boxes `a` `[n, 4]` and `b` `[m, 4]` (as torchvision's).

    >>> box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2]])).tolist()
    [[0.3333333432674408]]
    """
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def complete_iou(p: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """CIoU of matching centre-size boxes `p`, `t` `[n, 4]`: IoU - centre distance^2 / enclosing
    diagonal^2 - alpha * v, v measuring the aspect-ratio mismatch (alpha is not differentiated).

    >>> round(complete_iou(torch.tensor([[0.5, 0.5, 1.0, 1.0]]), torch.tensor([[0.5, 0.5, 1.0, 1.0]])).item(), 5)
    1.0
    """
    return corner_complete_iou(xywh_to_xyxy(p), xywh_to_xyxy(t), eps)


def corner_complete_iou(p: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """`complete_iou` of matching corner boxes `p`, `t` `[..., 4]` (x1, y1, x2, y2) -> `[...]`.

    >>> round(corner_complete_iou(torch.tensor([[0.0, 0, 3, 3]]), torch.tensor([[1.0, 1, 2, 2]])).item(), 5)
    0.11111
    """
    p1, p2, t1, t2 = p[..., :2], p[..., 2:4], t[..., :2], t[..., 2:4]
    inter = (torch.min(p2, t2) - torch.max(p1, t1)).clamp(min=0).prod(-1)
    # eps on the heights only (as ultralytics' bbox_iou), so a degenerate box divides safely
    pw, ph = p2[..., 0] - p1[..., 0], p2[..., 1] - p1[..., 1] + eps
    tw, th = t2[..., 0] - t1[..., 0], t2[..., 1] - t1[..., 1] + eps
    iou = inter / (pw * ph + tw * th - inter + eps)
    enclosing = torch.max(p2, t2) - torch.min(p1, t1)
    diagonal2 = enclosing.pow(2).sum(-1) + eps
    centre2 = ((t1 + t2) - (p1 + p2)).pow(2).sum(-1) / 4
    v = (4 / math.pi**2) * (torch.atan(tw / th) - torch.atan(pw / ph)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (centre2 / diagonal2 + v * alpha)
