"""Image geometry and colour augmentation for detection training, as ultralytics v9.6.0 trained.

Written from the behaviour (not from ultralytics' GPL code), numpy and Pillow only, no global RNG:
- `resize_long_side`: the long side becomes `size` (area averaging when shrinking, bilinear
  otherwise, as its `load_image` chose INTER_AREA / INTER_LINEAR);
- `letterbox`: pad to `size` x `size` with grey 114, the padding split evenly (the odd pixel
  goes to the bottom / right, from its `round(d - 0.1)`, `round(d + 0.1)`);
- `augment_hsv`: gains `1 + U(-1, 1) * (hsv_h, hsv_s, hsv_v)`, hue multiplied modulo a turn,
  saturation and value multiplied and clipped;
- `flip_lr`: mirror the image and `cx -> 1 - cx`.

Labels are `[n, 5]` float rows `(class, cx, cy, w, h)` normalised to the image they describe.
"""
from __future__ import annotations

import numpy as np

PAD_VALUE = 114
# hyp.scratch.yaml's values for what this module does (mosaic, perspective and mixup are not done).
DEFAULT_AUGMENT: dict[str, float] = {"hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4, "fliplr": 0.5, "flipud": 0.0}


def resize_long_side(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 `[h, w, 3]` scaled so that `max(h, w) == size` (aspect kept, sides rounded, >= 1).

    >>> resize_long_side(np.zeros((30, 60, 3), np.uint8), 32).shape
    (16, 32, 3)
    """
    from PIL import Image

    h, w = img.shape[:2]
    r = size / max(h, w)
    if r == 1:
        return img
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    method = Image.Resampling.BOX if r < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((nw, nh), method))


def letterbox(img: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad uint8 `[h, w, 3]` (both <= size) to `[size, size, 3]` with grey 114, centred.

    Returns `(padded, (left, top))`.

    >>> out, (left, top) = letterbox(np.zeros((16, 32, 3), np.uint8), 32)
    >>> out.shape, left, top, int(out[0, 0, 0]), int(out[8, 0, 0])
    ((32, 32, 3), 0, 8, 114, 0)
    """
    h, w = img.shape[:2]
    dw, dh = (size - w) / 2, (size - h) / 2
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    out = np.full((h + top + bottom, w + left + right, 3), PAD_VALUE, np.uint8)
    out[top:top + h, left:left + w] = img
    return out, (left, top)


def letterbox_labels(labels: np.ndarray, shape: tuple[int, int], pad: tuple[int, int], size: int) -> np.ndarray:
    """Labels normalised to an image of `shape` (h, w) after resizing, moved into the padded
    `size` x `size` image whose content starts at `pad` (left, top); normalised to it."""
    out = np.array(labels, np.float32).reshape(-1, 5)
    h, w = shape
    out[:, 1] = (out[:, 1] * w + pad[0]) / size
    out[:, 2] = (out[:, 2] * h + pad[1]) / size
    out[:, 3] *= w / size
    out[:, 4] *= h / size
    return out


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """float `[..., 3]` RGB in [0, 1] to HSV, hue in [0, 1)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(-1)
    c = v - rgb.min(-1)
    s = np.where(v > 0, c / np.where(v > 0, v, 1), 0)
    safe = np.where(c > 0, c, 1)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = np.where(c > 0, (h / 6) % 1.0, 0)
    return np.stack([h, s, v], -1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    k = lambda n: (n + h * 6) % 6  # noqa: E731
    f = lambda n: v - v * s * np.clip(np.minimum(k(n), 4 - k(n)), 0, 1)  # noqa: E731
    return np.stack([f(5), f(3), f(1)], -1)


def augment_hsv(img: np.ndarray, rng: np.random.Generator, hgain: float = 0.015, sgain: float = 0.7,
                vgain: float = 0.4) -> np.ndarray:
    """uint8 `[h, w, 3]` RGB with hue, saturation and value scaled by random gains (one draw of
    three uniforms from `rng`, always, so the stream does not depend on the gains).

    >>> img = np.full((2, 2, 3), 100, np.uint8)
    >>> a = augment_hsv(img, np.random.default_rng(1)); b = augment_hsv(img, np.random.default_rng(1))
    >>> bool((a == b).all()), bool((augment_hsv(img, np.random.default_rng(1), 0, 0, 0) == img).all())
    (True, True)
    """
    gains = rng.uniform(-1, 1, 3) * np.array([hgain, sgain, vgain]) + 1
    if not (hgain or sgain or vgain):
        return img
    # Per-value lookup tables would need the uint8 HSV of OpenCV; float HSV is exact enough.
    hsv = _rgb_to_hsv(img.astype(np.float32) / 255.0)
    hsv[..., 0] = (hsv[..., 0] * gains[0]) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] * gains[1], 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] * gains[2], 0, 1)
    return np.clip(_hsv_to_rgb(hsv) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def flip_lr(img: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right; `cx -> 1 - cx`.

    >>> im, lb = flip_lr(np.arange(6, dtype=np.uint8).reshape(1, 2, 3), np.array([[0, 0.25, 0.5, 0.1, 0.1]]))
    >>> im[0, 0].tolist(), lb[0, 1].item()
    ([3, 4, 5], 0.75)
    """
    out = np.array(labels, np.float32).reshape(-1, 5)
    out[:, 1] = 1 - out[:, 1]
    return np.ascontiguousarray(img[:, ::-1]), out


def flip_ud(img: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror top-bottom; `cy -> 1 - cy`."""
    out = np.array(labels, np.float32).reshape(-1, 5)
    out[:, 2] = 1 - out[:, 2]
    return np.ascontiguousarray(img[::-1]), out
