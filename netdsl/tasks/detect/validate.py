"""Validation as ultralytics v9.6.0's val.py runs it during training, so that netdsl's mAP is the
number a user of the course's detector gets on the same weights and data.

Written from val.py's documented behaviour (not its GPL code):

- batches of twice the training batch (train.py's `batch_size * 2`) over the validation images
  sorted by aspect ratio h/w; each batch is letterboxed to its own rectangle (`rect_plan`):
  `ceil(s * img / stride + 0.5) * stride` per side, s = (largest h/w, 1) when every image of the
  batch is wider than tall, (1, 1 / smallest h/w) when every one is taller than wide, else (1, 1);
  stride = the head's largest, at least 32 (train.py's grid size). An image keeps netdsl's
  resize (long side to `img`) and is centred on grey 114; its labels move by half the padding
  (a float, as val.py's: the image itself sits at the rounded offset);
- the validation loss on those batches (means over batches), then multi-label NMS at confidence
  0.001 and IoU 0.6, at most 300 detections an image; a `detect_v8` network's NMS is ultralytics
  8.4's (`netdsl.tasks.detect.nms.V8`: confidence 0.001, IoU 0.7, its validator's settings; the
  loss callback gets its raw per-level maps as they come);
- detections and ground truth back to the original image's pixels (minus the padding, divided by
  the resized-to-original height ratio, clipped to the image), scored by
  `netdsl.tasks.detect.metrics.val_scores` (val.py's matching, AP and best-F1 precision/recall);
  COCOeval's mAPs of the same detections are given beside them (`coco_map50`, `coco_map50_95`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from netdsl.tasks.detect.augment import PAD_VALUE
from netdsl.tasks.detect.boxes import xywh_to_xyxy
from netdsl.tasks.detect.data import DetectionSet, collate
from netdsl.tasks.detect.metrics import evaluate, match_detections, val_scores
from netdsl.tasks.detect.predict import layout, protocol

VAL_MAX_DET = 300  # val.py's and ultralytics 8's; confidence and IoU are the head's (`nms.V3`, `nms.V8`)
RECT_PAD = 0.5  # train.py's validation loader: pad 0.5 strides
MIN_STRIDE = 32  # train.py: gs = max(largest stride, 32)

# a loss on the raw head outputs and targets: the detached (box, obj, cls) items
LossFn = Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor]


def eval_parts(out: Any) -> tuple[torch.Tensor, tuple]:
    """(decoded, raw) of an eval-mode forward."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], torch.Tensor) and isinstance(out[1], tuple):
        return out[0], out[1]
    raise ValueError("the model's output is not a detect head's (decoded, raw) pair")


def _hw(shape: Sequence[int]) -> tuple[int, int]:
    return int(shape[0]), int(shape[1])


def rect_plan(sizes: Sequence[tuple[int, int]], batch: int, img: int, stride: int,
              pad: float = RECT_PAD) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """`(order, shapes)`: the images (original `(h, w)`) by increasing h/w, and per batch of
    `batch` of them the letterboxed `(H, W)`.

    >>> rect_plan([(80, 160), (160, 80), (80, 160)], 2, 128, 32)
    (array([0, 2, 1]), [(96, 160), (160, 96)])
    """
    hw = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    ar = hw[:, 0] / hw[:, 1]
    order = np.argsort(ar, kind="stable")
    ar = ar[order]
    shapes = []
    for k in range(0, len(ar), batch):
        a = ar[k:k + batch]
        s = [a.max(), 1.0] if a.max() < 1 else [1.0, 1.0 / a.min()] if a.min() > 1 else [1.0, 1.0]
        h, w = (np.ceil(np.array(s) * img / stride + pad).astype(int) * stride).tolist()
        shapes.append((int(h), int(w)))
    return order, shapes


@dataclass(frozen=True)
class Placed:
    """Where an image's pixels went: original `(h, w)`, resized-to-original height ratio, and
    the half paddings `(dw, dh)` that labels and detections are moved by."""

    shape0: tuple[int, int]
    gain: float
    pad: tuple[float, float]

    def to_original(self, xyxy: torch.Tensor) -> torch.Tensor:
        """Letterboxed-pixel corner boxes `[k, 4]` to the original image's pixels, clipped to it."""
        out = xyxy.clone()
        out[:, [0, 2]] -= self.pad[0]
        out[:, [1, 3]] -= self.pad[1]
        out /= self.gain
        h, w = self.shape0
        out[:, [0, 2]] = out[:, [0, 2]].clamp(0, w)
        out[:, [1, 3]] = out[:, [1, 3]].clamp(0, h)
        return out


def place(resized: np.ndarray, labels: np.ndarray, shape0: tuple[int, int],
          shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, Placed]:
    """A resized image centred on grey in `shape` `(H, W)`, its labels (normalised to the
    original) normalised to that rectangle, and where it went."""
    h, w = resized.shape[:2]
    big_h, big_w = shape
    dw, dh = (big_w - w) / 2, (big_h - h) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    out = np.full((big_h, big_w, 3), PAD_VALUE, np.uint8)
    out[top:top + h, left:left + w] = resized
    lb = np.array(labels, np.float32).reshape(-1, 5)
    lb[:, 1] = (lb[:, 1] * w + dw) / big_w
    lb[:, 2] = (lb[:, 2] * h + dh) / big_h
    lb[:, 3] *= w / big_w
    lb[:, 4] *= h / big_h
    return out, lb, Placed((int(shape0[0]), int(shape0[1])), h / shape0[0], (dw, dh))


@dataclass(frozen=True)
class RectLoader:
    """A validation split in val.py's rectangular batches (`rect_plan`)."""

    split: DetectionSet
    order: np.ndarray
    shapes: list[tuple[int, int]]
    sizes: list[tuple[int, int]]
    batch: int

    @classmethod
    def of(cls, split: DetectionSet, batch: int, img: int, stride: int) -> RectLoader:
        sizes = [split.size(i) for i in range(len(split))]
        order, shapes = rect_plan(sizes, batch, img, max(stride, MIN_STRIDE))
        return cls(split, order, shapes, sizes, batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[Placed]]]:
        for b, shape in enumerate(self.shapes):
            items, placed = [], []
            for i in self.order[b * self.batch:(b + 1) * self.batch].tolist():
                resized, labels = self.split.load_resized(i)
                im, lb, where = place(resized, labels, self.sizes[i], shape)
                items.append((im, lb))
                placed.append(where)
            images, targets = collate(items)
            yield images, targets, placed


def image_truth(targets: torch.Tensor, j: int, hw: tuple[int, int], where: Placed) -> torch.Tensor:
    """Image j's ground truth `[m, 5]` (class, x1, y1, x2, y2) in its original pixels."""
    t = targets[targets[:, 0] == j]
    h, w = hw
    box = xywh_to_xyxy(t[:, 2:6] * torch.tensor([w, h, w, h], dtype=t.dtype))
    return torch.cat((t[:, 1:2], where.to_original(box)), 1)


@torch.no_grad()
def validate(model: nn.Module, loader: RectLoader, nc: int, loss: LossFn | None = None,
             device: torch.device | str = "cpu") -> tuple[list[float], dict[str, Any]]:
    """(validation loss means over batches of the three items `loss` returns (zeros without
    `loss`), metrics): val.py's `precision`, `recall`, `map50`, `map50_95`, COCOeval's
    `coco_map50`, `coco_map50_95`, and `images`, `instances`, `detections`. `model` is put in
    eval mode and back. Its head decides the NMS (`predict.protocol`): `detect`'s at IoU 0.6,
    `detect_v8`'s (ultralytics 8.4) at 0.7; both at confidence 0.001, multi-label, 300 at most."""
    post = protocol(model)
    memory_format = layout(model)  # the batches in the model's layout (channels_last when training is)
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    stats: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    coco_preds: list[np.ndarray] = []
    coco_truth: list[dict[str, Any]] = []
    nb = 0
    try:
        for images, targets, placed in loader:
            decoded, raw = eval_parts(model(images.to(device).contiguous(memory_format=memory_format)))
            if loss is not None:
                sums += loss(list(raw), targets.to(device)).double().cpu()
            nb += 1
            dets = post.suppress(decoded.float(), post.val_conf, post.val_iou, max_det=VAL_MAX_DET, multi_label=True)
            for j, (det, where) in enumerate(zip(dets, placed)):
                det = det.cpu()
                det[:, :4] = where.to_original(det[:, :4])
                truth = image_truth(targets, j, _hw(images.shape[2:]), where)
                stats.append((match_detections(det, truth), det[:, 4].numpy(), det[:, 5].numpy(),
                              truth[:, 0].numpy()))
                coco_preds.append(det.numpy())
                coco_truth.append({"height": where.shape0[0], "width": where.shape0[1],
                                   "boxes": truth[:, 1:].numpy(), "classes": truth[:, 0].numpy()})
    finally:
        model.train(was_training)
    coco = evaluate(coco_preds, coco_truth, nc)
    metrics: dict[str, Any] = {**val_scores(stats), "coco_map50": coco["map50"], "coco_map50_95": coco["map50_95"],
                               **{k: coco[k] for k in ("images", "instances", "detections")}}
    return (sums / max(nb, 1)).tolist(), metrics
