"""Inference with a compiled detection network: letterbox, forward in eval mode, NMS, map back.

`predict(model, images)` takes RGB images (`[H, W, 3]` uint8 arrays, as imageio reads them; greyscale
`[H, W]` is repeated) and returns per image a `[k, 6]` float tensor (x1, y1, x2, y2, confidence,
class) in the original image's pixels, by decreasing confidence, as ultralytics v9.6.0's detect.py:
letterbox (scale by min(img/h, img/w), bilinear resize, pad with grey 114 split evenly, the odd
pixel after: to `img` x `img`, or with `auto` (detect.py's default) only to the next multiple of
the head's largest stride, so a 1080x810 photo runs at 640x480), pixels / 255, the head's NMS
(`netdsl.tasks.detect.nms`: `V3` for `detect`, `V8` for `detect_v8`, ultralytics 8.4's, whose
IoU is 0.7 by default), then subtract the padding, divide by the scale and clip to the image.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from netdsl.backends.torch_detect_v8 import DetectV8
from netdsl.backends.torch_layers import Detect
from netdsl.tasks.detect import augment
from netdsl.tasks.detect import images as image_io
from netdsl.tasks.detect.nms import V3, V8, Protocol


@dataclass(frozen=True)
class Letterbox:
    """How an image was letterboxed: `scale` then `left`, `top` pixels of padding."""
    scale: float
    left: int
    top: int


def detect_head(model: nn.Module) -> Detect | DetectV8:
    """The model's detect head: `Detect` (YOLOv3's `detect`) or `DetectV8` (`detect_v8`), or ValueError."""
    head = next((m for m in model.modules() if isinstance(m, (Detect, DetectV8))), None)
    if head is None:
        raise ValueError("the model has no detect head (the spec must end in `detect(...)` or `detect_v8(...)`)")
    return head


def protocol(model: nn.Module) -> Protocol:
    """How the model's head output is post-processed: `V8` for `detect_v8` (ultralytics 8.4's NMS,
    IoU 0.7), else `V3` (ultralytics v9.6.0's, IoU 0.45 predicting, 0.6 validating)."""
    return V8 if isinstance(detect_head(model), DetectV8) else V3


def max_stride(model: nn.Module) -> int:
    """The largest stride of the model's detect head (32 for YOLOv3)."""
    return max(detect_head(model).strides)


def as_rgb(image: Any) -> np.ndarray:
    """An image as uint8 `[H, W, 3]` by training's rules (`netdsl.tasks.detect.images.as_rgb`: greyscale
    repeated, alpha dropped, uint16 scaled to 8 bits), or ValueError."""
    return image_io.as_rgb(image)


def letterbox(image: np.ndarray, img: int, stride: int | None = None) -> tuple[torch.Tensor, Letterbox]:
    """A uint8 `[H, W, 3]` image as a float `[3, H', W']` tensor in [0, 1], aspect kept, grey padding:
    `img` x `img`, or with `stride` padded only up to multiples of it (ultralytics' `auto=True`).

    The resize is detect.py's (cv2.INTER_LINEAR at scale `min(img / H, img / W)`: bilinear with
    half-pixel centres, no antialiasing, rounded to uint8); the padding is training's, one rule
    for both (`netdsl.tasks.detect.augment.letterbox`). Training resizes differently (area averaging
    when shrinking, as ultralytics' `load_image`), so the two share the padding, not the resize.

    >>> x, lb = letterbox(np.zeros((30, 60, 3), np.uint8), 64)
    >>> tuple(x.shape), lb, round(float(x[0, 0, 0]) * 255)
    ((3, 64, 64), Letterbox(scale=1.0666666666666667, left=0, top=16), 114)
    >>> x, lb = letterbox(np.zeros((1080, 810, 3), np.uint8), 640, stride=32)
    >>> tuple(x.shape), lb.left, lb.top
    ((3, 640, 480), 0, 0)
    """
    h, w = image.shape[:2]
    r = min(img / h, img / w)
    nw, nh = max(1, int(round(w * r))), max(1, int(round(h * r)))
    resized = np.ascontiguousarray(image)
    if (nh, nw) != (h, w):  # cv2.INTER_LINEAR's rule (half-pixel centres, no antialiasing)
        x = torch.from_numpy(resized).permute(2, 0, 1).float()
        x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
        resized = x.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()  # cv2 resizes to uint8
    padded, (left, top) = augment.letterbox(resized, img, stride)
    out = torch.from_numpy(padded).permute(2, 0, 1).float() / 255.0
    return out.contiguous(), Letterbox(r, left, top)


def unletterbox(det: torch.Tensor, lb: Letterbox, shape: tuple[int, int]) -> torch.Tensor:
    """Boxes `[k, 6]` on the letterboxed image back to the original `shape` (h, w), clipped."""
    det = det.clone()
    det[:, [0, 2]] = ((det[:, [0, 2]] - lb.left) / lb.scale).clamp(0, shape[1])
    det[:, [1, 3]] = ((det[:, [1, 3]] - lb.top) / lb.scale).clamp(0, shape[0])
    return det


def decoded_output(out: Any) -> torch.Tensor:
    """The decoded tensor of an eval-mode forward (`(decoded, raw)`): `detect`'s `[N, n, 5+nc]` or
    `detect_v8`'s `[N, 4+nc, A]`."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], torch.Tensor) and isinstance(out[1], tuple):
        return out[0]
    if isinstance(out, tuple):  # several outputs: the detect head's is the one shaped (decoded, raw)
        for o in out:
            if isinstance(o, tuple) and len(o) == 2 and isinstance(o[0], torch.Tensor):
                return o[0]
    raise ValueError("the model's output is not a detect head's (decoded, raw) pair")


def layout(model: nn.Module) -> torch.memory_format:
    """channels_last where the model's convolution weights are, else the standard layout: the input
    follows the weights (at 320x640 on 2 cores, yolov3-tiny took 41 ms an image with both
    channels_last, 43-47 ms with one of them, 60 ms with neither).

    >>> layout(nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last))
    torch.channels_last
    >>> layout(nn.Conv2d(3, 8, 3))
    torch.contiguous_format
    """
    for p in model.parameters():
        if p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last):
            return torch.channels_last
    return torch.contiguous_format


def predict(model: nn.Module, images: Sequence[Any], img: int = 640, conf: float = 0.25, iou: float | None = None,
            max_det: int = 300, auto: bool = False, batch: int | None = None,
            shapes: list[tuple[int, int]] | None = None) -> list[torch.Tensor]:
    """Per image `[k, 6]` detections (x1, y1, x2, y2, confidence, class) in its own pixels.

    `model`: a CompiledNet whose spec ends in `detect` or `detect_v8`; run in eval mode without
    gradients (its training mode is restored afterwards). `img` must be a multiple of the head's
    largest stride. `iou`: the NMS IoU threshold; None takes the head's default (`protocol`: 0.45
    for `detect`, as v9.6.0's detect.py; 0.7 for `detect_v8`, as ultralytics 8.x's default.yaml).
    `auto`: pad each image only to multiples of that stride (ultralytics detect.py) instead of to
    `img` x `img`; consecutive images of the same letterboxed size share a batch of at most
    `batch` (default: 1 on a CPU, where larger batches were slower per image, 8 elsewhere). The
    images go in the model's memory layout (`layout`: channels_last where its weights are). A
    list given as `shapes` receives each image's letterboxed (height, width).
    """
    stride = max_stride(model)
    post = protocol(model)
    iou = post.iou if iou is None else iou
    if img <= 0 or img % stride:
        raise ValueError(f"img {img} is not a positive multiple of the model's largest stride {stride}")
    rgb = [as_rgb(im) for im in images]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    batch = batch or (1 if device.type == "cpu" else 8)
    memory_format = layout(model)
    was_training = model.training
    model.eval()
    results: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            pending: list[tuple[np.ndarray, torch.Tensor, Letterbox]] = []

            def flush() -> None:
                x = torch.stack([p[1] for p in pending]).to(device=device, dtype=dtype, memory_format=memory_format)
                dets = post.suppress(decoded_output(model(x)).float(), conf, iou, max_det=max_det)
                for (im, _, lb), det in zip(pending, dets):
                    results.append(unletterbox(det.cpu(), lb, im.shape[:2]))
                pending.clear()

            for im in rgb:
                x, lb = letterbox(im, img, stride if auto else None)
                if shapes is not None:
                    shapes.append((x.shape[1], x.shape[2]))
                if pending and (len(pending) >= batch or pending[0][1].shape != x.shape):
                    flush()
                pending.append((im, x, lb))
            if pending:
                flush()
    finally:
        model.train(was_training)
    return results
