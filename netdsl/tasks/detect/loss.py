"""YOLOv3's training loss for the `detect` head, with the semantics of ultralytics v9.6.0.

Written from the method's description (not from ultralytics' GPL code). Per level:
- targets are matched to the anchors whose width and height are within a factor `anchor_t`
  of theirs, and each match also goes to the (up to) two neighbouring cells nearest to the
  target's centre, its xy then measured from that cell (so it lies in [-0.5, 1.5]);
- box: mean of 1 - CIoU over the matches, the prediction decoded as the head does
  (xy = 2*sigmoid - 0.5, wh = (2*sigmoid)^2 * anchor, in grid units);
- objectness: BCE over every cell and anchor, target the detached IoU (clamped at 0) at the
  matched cells, 0 elsewhere, weighted per level (4.0, 1.0, 0.4 for three levels);
- classes (when nc > 1): BCE of the matches' class logits against smoothed one-hot targets.
The total is (box*hyp['box'] + obj*hyp['obj'] + cls*hyp['cls']) * batch size.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from netdsl.backends.torch_layers import Detect
from netdsl.tasks.detect.boxes import complete_iou

# hyp.scratch.yaml's values for the terms the loss reads; label_smoothing is train.py's default.
DEFAULT_HYP: dict[str, float] = {"box": 0.05, "obj": 1.0, "cls": 0.5, "cls_pw": 1.0, "obj_pw": 1.0,
                                 "anchor_t": 4.0, "fl_gamma": 0.0, "label_smoothing": 0.0}

# The five cells a target may go to, as offsets subtracted from its centre: its own, then left,
# up, right, down (a centre left of its cell's middle is nearer the left neighbour, and so on).
NEIGHBOUR_OFFSETS = ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (-0.5, 0.0), (0.0, -0.5))

BCE = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LevelTargets:
    """The (target, anchor, cell) matches of one level."""

    image: torch.Tensor    # [n] image index in the batch
    anchor: torch.Tensor   # [n] anchor index in the level
    gj: torch.Tensor       # [n] cell row
    gi: torch.Tensor       # [n] cell column
    box: torch.Tensor      # [n, 4] xy offset from the cell, wh in grid units
    cls: torch.Tensor      # [n] class index
    anchors: torch.Tensor  # [n, 2] the matched anchor's wh in grid units

    def __len__(self) -> int:
        return int(self.image.shape[0])


def level_balance(levels: int) -> list[float]:
    """Objectness weight per level, finest first: [4.0, 1.0, 0.4] for three levels.

    >>> level_balance(3), level_balance(2)
    ([4.0, 1.0, 0.4], [4.0, 1.0])
    """
    return [4.0, 1.0, 0.4] if levels == 3 else [4.0, 1.0, 0.25, 0.06, 0.02][:levels]


def match_anchors(wh: torch.Tensor, anchors: torch.Tensor, anchor_t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(target index, anchor index) pairs whose wh ratios are all within `anchor_t`, anchor-major.

    >>> match_anchors(torch.tensor([[2.0, 2.0]]), torch.tensor([[1.0, 1.0], [10.0, 10.0]]), 4.0)
    (tensor([0]), tensor([0]))
    """
    na, nt = anchors.shape[0], wh.shape[0]
    a = torch.arange(na, device=wh.device).repeat_interleave(nt)
    t = torch.arange(nt, device=wh.device).repeat(na)
    r = wh[t] / anchors[a]
    keep = torch.max(r, 1 / r).max(1).values < anchor_t
    return t[keep], a[keep]


def neighbour_mask(xy: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """`[5, n]`: which of NEIGHBOUR_OFFSETS' cells each centre `xy` (grid units) goes to.

    Own cell always; left when x's fractional part is < 0.5 and x > 1; right when
    (W - x)'s fractional part is < 0.5 and W - x > 1 (ultralytics' exact conditions); y alike.

    >>> neighbour_mask(torch.tensor([[2.3, 2.8]]), torch.tensor([8.0, 8.0])).view(-1).tolist()
    [True, True, False, False, True]
    """
    inv = size - xy
    low = (xy % 1 < 0.5) & (xy > 1)
    high = (inv % 1 < 0.5) & (inv > 1)
    return torch.stack((torch.ones_like(low[:, 0]), low[:, 0], low[:, 1], high[:, 0], high[:, 1]))


def assign_targets(targets: torch.Tensor, anchors: torch.Tensor, w: int, h: int, anchor_t: float) -> LevelTargets:
    """Match `targets` `[nt, 6]` (image, class, normalised cx, cy, w, h) to one level's
    `anchors` `[na, 2]` (grid units) on a `w` x `h` grid.

    >>> m = assign_targets(torch.tensor([[0, 1, 0.28125, 0.59375, 0.25, 0.25]]), torch.tensor([[2.0, 2.0]]), 8, 8, 4.0)
    >>> m.gi.tolist(), m.gj.tolist(), m.box[:, :2].tolist()
    ([2, 1, 2], [4, 4, 5], [[0.25, 0.75], [1.25, 0.75], [0.25, -0.25]])
    """
    scale = torch.tensor([w, h, w, h], dtype=targets.dtype, device=targets.device)
    grid = targets[:, 2:6] * scale
    ti, ai = match_anchors(grid[:, 2:4], anchors, anchor_t)
    xy = grid[ti, :2]
    use = neighbour_mask(xy, scale[:2])
    offsets = torch.tensor(NEIGHBOUR_OFFSETS, dtype=xy.dtype, device=xy.device)
    rows = torch.arange(len(ti), device=xy.device).repeat(5, 1)[use]
    cell = (xy[rows] - offsets[:, None, :].expand(5, len(ti), 2)[use]).long()
    ti, ai = ti[rows], ai[rows]
    return LevelTargets(image=targets[ti, 0].long(), anchor=ai,
                        gj=cell[:, 1].clamp(0, h - 1), gi=cell[:, 0].clamp(0, w - 1),
                        box=torch.cat((xy[rows] - cell, grid[ti, 2:4]), 1),
                        cls=targets[ti, 1].long(), anchors=anchors[ai])


def bce_loss(pos_weight: float, gamma: float, device: torch.device) -> BCE:
    """Mean BCE-with-logits with `pos_weight`; wrapped in focal loss (alpha 0.25) when gamma > 0."""
    weight = torch.tensor([pos_weight], device=device)
    if gamma <= 0:
        return nn.BCEWithLogitsLoss(pos_weight=weight)
    bce = nn.BCEWithLogitsLoss(pos_weight=weight, reduction="none")

    def focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = logits.sigmoid()
        p_t = target * p + (1 - target) * (1 - p)
        alpha = target * 0.25 + (1 - target) * 0.75
        return (bce(logits, target) * alpha * (1 - p_t) ** gamma).mean()

    return focal


def decode_boxes(ps: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Matched raw predictions `[n, 5+nc]` to boxes `[n, 4]` in grid units, as the head decodes them
    (xy relative to the cell)."""
    xy = ps[:, :2].sigmoid() * 2 - 0.5
    wh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors
    return torch.cat((xy, wh), 1)


def level_terms(pi: torch.Tensor, m: LevelTargets, nc: int, BCEcls: BCE, BCEobj: BCE,  # noqa: N803
                smooth: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unweighted (box, obj, cls) terms of one level's raw map `pi` `[N, na, H, W, 5+nc]`."""
    lbox, lcls = torch.zeros(1, dtype=pi.dtype, device=pi.device), torch.zeros(1, dtype=pi.dtype, device=pi.device)
    tobj = torch.zeros_like(pi[..., 4])
    if len(m):
        ps = pi[m.image, m.anchor, m.gj, m.gi]
        iou = complete_iou(decode_boxes(ps, m.anchors), m.box)
        lbox += (1.0 - iou).mean()
        # Several matches in one cell and anchor: the last one written sets the target.
        tobj[m.image, m.anchor, m.gj, m.gi] = iou.detach().clamp(0).to(tobj.dtype)
        if nc > 1:
            t = torch.full_like(ps[:, 5:], 0.5 * smooth)
            t[torch.arange(len(m)), m.cls] = 1.0 - 0.5 * smooth
            lcls += BCEcls(ps[:, 5:], t)
    return lbox, BCEobj(pi[..., 4], tobj), lcls


def yolo_loss(preds: Sequence[torch.Tensor], targets: torch.Tensor, anchors: torch.Tensor | Sequence,
              strides: torch.Tensor | Sequence, nc: int,
              hyp: Mapping[str, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """YOLOv3's loss (ultralytics v9.6.0's ComputeLoss) of the head's training output.

    `preds`: per level `[N, na, H_i, W_i, 5+nc]` raw maps; `targets`: `[nt, 6]` rows (image index,
    class, cx, cy, w, h), coordinates normalised to the input image; `anchors`: `[nl, na, 2]`
    pixels; `strides`: `[nl]`; `hyp`: overrides of DEFAULT_HYP (other keys are ignored).
    Returns `(loss [1], items [3])`: the total times the batch size, and the weighted box, obj
    and cls terms, detached.

    >>> preds = [torch.zeros(2, 1, 4, 4, 7, requires_grad=True)]
    >>> loss, items = yolo_loss(preds, torch.tensor([[0, 1, 0.5, 0.5, 0.25, 0.25]]), [[[8.0, 8.0]]], [8], nc=2)
    >>> loss.shape, items.shape
    (torch.Size([1]), torch.Size([3]))
    >>> loss.backward(); preds[0].grad.abs().sum() > 0
    tensor(True)
    """
    h = {**DEFAULT_HYP, **(hyp or {})}
    device, dtype = preds[0].device, preds[0].dtype
    grid_anchors = torch.as_tensor(anchors, dtype=dtype, device=device)
    grid_anchors = grid_anchors / torch.as_tensor(strides, dtype=dtype, device=device).view(-1, 1, 1)
    targets = torch.as_tensor(targets, dtype=dtype, device=device).view(-1, 6)
    BCEcls = bce_loss(h["cls_pw"], h["fl_gamma"], device)  # noqa: N806
    BCEobj = bce_loss(h["obj_pw"], h["fl_gamma"], device)  # noqa: N806
    balance = level_balance(len(preds))
    lbox, lobj, lcls = (torch.zeros(1, dtype=dtype, device=device) for _ in range(3))
    for i, pi in enumerate(preds):
        m = assign_targets(targets, grid_anchors[i], pi.shape[3], pi.shape[2], h["anchor_t"])
        box, obj, cls = level_terms(pi, m, nc, BCEcls, BCEobj, h["label_smoothing"])
        lbox, lobj, lcls = lbox + box, lobj + obj * balance[i], lcls + cls
    lbox, lobj, lcls = lbox * h["box"], lobj * h["obj"], lcls * h["cls"]
    return (lbox + lobj + lcls) * preds[0].shape[0], torch.cat((lbox, lobj, lcls)).detach()


def head_geometry(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`(anchors [nl, na, 2] pixels, strides [nl], classes)` of the compiled network's detect head.

    >>> from netdsl.backends.torch_layers import Detect
    >>> a, s, nc = head_geometry(Detect(3, [[10, 14, 23, 27]], [16], [8]))
    >>> a.tolist(), s.tolist(), nc
    ([[[10.0, 14.0], [23.0, 27.0]]], [16.0], 3)
    """
    head = next((m for m in model.modules() if isinstance(m, Detect)), None)
    if head is None:
        raise ValueError("the model has no detect head")
    return torch.tensor(head.anchor_pixels), torch.tensor(head.strides, dtype=torch.float32), head.classes
