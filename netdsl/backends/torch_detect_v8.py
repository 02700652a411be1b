"""The anchor-free YOLO head of ultralytics 8.x (YOLOv8, YOLO11): `detect_v8(p3, p4, ...)`.

Each input is one level's raw map `[N, 4*reg_max + classes, H_i, W_i]`: the box branch's
`4*reg_max` channels (per side of the box, left, top, right, bottom, a distribution over
`reg_max` distance bins) then the class branch's `classes` logits. The branches are ordinary
statements of the spec; this module only decodes. Training mode returns the raw maps as they came
(a tuple); eval mode returns `(decoded, raw)`, `decoded` `[N, 4 + classes, sum(H_i*W_i)]`: per
cell, levels in order and cells row by row, the box centre x, y and its width and height in input
pixels, then the class probabilities (sigmoid). A side's distance is the expectation of its
softmax over the bins (`DFL`: a fixed 1x1 convolution with weights 0, 1, ..., reg_max - 1), in
cells of that level, measured from the cell's centre.

`netdsl export --to python` copies these definitions into the file it writes (`STANDALONE` in
`torch_layers`): they name only `torch` and `nn`, and read sizes from tensors only where
`torch.fx.symbolic_trace` and the ONNX exporter can follow them (no Python branch on a size).
The training loss (`yolo_v8_loss`) reuses `make_anchors` and `dist2bbox`.
"""
from __future__ import annotations

import torch
from torch import nn


def make_anchors(maps: list[torch.Tensor] | tuple[torch.Tensor, ...], strides: list[int],
                 offset: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Every level's cell centres in that level's cells, `[2, A]` (x, y; levels in order, cells row
    by row), and each cell's stride, `[1, A]`; A = sum(H_i*W_i).

    >>> points, stride = make_anchors([torch.zeros(1, 3, 2, 2)], [8])
    >>> points.tolist(), stride.tolist()
    ([[0.5, 1.5, 0.5, 1.5], [0.5, 0.5, 1.5, 1.5]], [[8.0, 8.0, 8.0, 8.0]])
    """
    points, scale = [], []
    for x, s in zip(maps, strides):
        h, w = x.shape[2], x.shape[3]
        ys = torch.arange(h, device=x.device, dtype=x.dtype) + offset
        xs = torch.arange(w, device=x.device, dtype=x.dtype) + offset
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((gx.reshape(-1), gy.reshape(-1)), 0))
        scale.append(x.new_full((1, h * w), float(s)))
    return torch.cat(points, 1), torch.cat(scale, 1)


def dist2bbox(dist: torch.Tensor, points: torch.Tensor, xywh: bool = True, dim: int = 1) -> torch.Tensor:
    """Distances (left, top, right, bottom) from `points` (x, y) along `dim` to boxes along `dim`:
    centre and size (`xywh`) or the two corners.

    >>> dist2bbox(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[10.0, 10.0]]), dim=1).tolist()
    [[11.0, 11.0, 4.0, 6.0]]
    """
    near, far = dist.chunk(2, dim)
    top_left, bottom_right = points - near, points + far
    if not xywh:
        return torch.cat((top_left, bottom_right), dim)
    return torch.cat(((top_left + bottom_right) / 2, bottom_right - top_left), dim)


class DFL(nn.Module):
    """Distribution Focal Loss's integral: `[N, 4*bins, A]` logits -> `[N, 4, A]` expected distances.

    `conv` is a frozen 1x1 convolution with weights 0, 1, ..., bins - 1 (the state_dict key
    `dfl.conv.weight`, as in ultralytics' checkpoints).

    >>> DFL(4)(torch.zeros(1, 16, 3)).tolist()[0][0]
    [1.5, 1.5, 1.5]
    """

    def __init__(self, bins: int = 16) -> None:
        super().__init__()
        self.bins = bins
        self.conv = nn.Conv2d(bins, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(bins, dtype=torch.float32).view(1, bins, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, a = x.shape[0], x.shape[2]
        # bins on the channel axis, one "pixel" per side and cell: the convolution is the expectation
        p = x.view(n, 4, self.bins, a).transpose(1, 2).softmax(1)
        return self.conv(p).view(n, 4, a)


class DetectV8(nn.Module):
    """The anchor-free head: DFL decoding of each level's raw map `[N, 4*reg_max + classes, H, W]`.

    >>> head = DetectV8(classes=3, strides=[8, 16], reg_max=4).eval()
    >>> decoded, raw = head(torch.zeros(2, 19, 8, 8), torch.zeros(2, 19, 4, 4))
    >>> decoded.shape, decoded[0, :4, 0].tolist()  # the first cell: centre (4, 4), 3 cells of 8 pixels
    (torch.Size([2, 7, 80]), [4.0, 4.0, 24.0, 24.0])
    """

    def __init__(self, classes: int, strides: list[int], reg_max: int = 16) -> None:
        super().__init__()
        self.classes, self.reg_max = classes, reg_max
        self.strides = [int(s) for s in strides]
        self.dfl = DFL(reg_max)

    def extra_repr(self) -> str:
        return f"classes={self.classes}, strides={self.strides}, reg_max={self.reg_max}"

    def forward(self, *xs: torch.Tensor) -> tuple:
        if self.training:
            return tuple(xs)
        # the anchors first: their temporaries are gone before the large tensors are made
        points, stride = make_anchors(xs, self.strides)
        flat = torch.cat([x.flatten(2) for x in xs], 2)
        box, cls = flat.split((4 * self.reg_max, self.classes), 1)
        boxes = dist2bbox(self.dfl(box), points) * stride
        return torch.cat((boxes, cls.sigmoid()), 1), tuple(xs)

    def branch_channels(self) -> tuple[int, int]:
        """The channels of each level's box branch and class branch (the head's input, in order)."""
        return 4 * self.reg_max, self.classes

    def init_branch_biases(self, box: list[torch.Tensor], cls: list[torch.Tensor], image_size: int = 640) -> None:
        """A fresh head's branch biases as ultralytics 8.4 sets them (`Detect.bias_init`): each level's
        box branch's last bias 2.0, its class branch's log(5 / classes / (image_size / stride)^2)
        (about 0.01 of an object per cell at 640 pixels), so the first losses have a sensible size.
        `box` and `cls`: per level the bias of the convolution ending each branch."""
        with torch.no_grad():
            for b, c, s in zip(box, cls, self.strides):
                b.fill_(2.0)
                # math.log without importing math, on the CPU whatever the default device (meta too)
                c.fill_(torch.tensor(5 / self.classes / (image_size / s) ** 2, dtype=torch.float64,
                                     device="cpu").log().item())
