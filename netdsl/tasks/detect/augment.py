"""Image geometry and colour augmentation for detection training, as ultralytics v9.6.0 trained.

Written from the behaviour (not from ultralytics' GPL code), numpy and Pillow only, no global RNG:
- `resize_long_side`: the long side becomes `size` (area averaging when shrinking, bilinear
  otherwise, as its `load_image` chose INTER_AREA / INTER_LINEAR);
- `letterbox`: pad to `size` x `size` (or, with `stride`, only up to multiples of it: detect.py's
  `auto`) with grey 114, the padding split evenly (the odd pixel goes to the bottom / right,
  from its `round(d - 0.1)`, `round(d + 0.1)`); the one padding rule of training and
  `netdsl.tasks.detect.predict`;
- `random_perspective`: one matrix `M = T @ Sh @ R @ P @ C` (centre the input at the origin,
  perspective, rotation by U(-degrees, degrees) with scale U(1 - scale, 1 + scale), shear by
  U(-shear, shear) degrees in x and y, translation to the output's centre +- U(-translate,
  translate) of its size), the image warped with it (bilinear, grey 114 outside), each box's
  four corners mapped and the box becoming their bounding box, clipped to the image; a box
  survives if it is wider and taller than 2 px, keeps more than 10% of its (scaled) area and
  its aspect ratio stays under 20 (ultralytics' `box_candidates`);
- `mosaic`: four images (long side `size` each) placed around a random centre in
  [size/2, 3 size/2)^2 on a 2 size x 2 size grey canvas (the first up-left of the centre, the
  second up-right, the third down-left, the fourth down-right, each cut at the canvas' edge),
  then `random_perspective` from that canvas to `size` x `size` (so with no scaling the output
  is the canvas' central region, shifted by the translation);
- `augment_hsv`: gains `1 + U(-1, 1) * (hsv_h, hsv_s, hsv_v)`, hue multiplied modulo a turn,
  saturation and value multiplied and clipped;
- `flip_lr`: mirror the image and `cx -> 1 - cx`.

Labels are `[n, 5]` float rows `(class, cx, cy, w, h)` normalised to the image they describe
(`(class, x1, y1, x2, y2)` in pixels inside the geometric transforms). Pixel coordinates are
continuous: pixel `(i, j)` covers `[j, j + 1) x [i, i + 1)`, so a box's corners and the pixels
it covers move together under the warp (Pillow's transform samples at pixel centres).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

PAD_VALUE = 114
# hyp.scratch.yaml's values for what this module does (mixup and copy-paste are not done).
DEFAULT_AUGMENT: dict[str, float] = {"hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4, "fliplr": 0.5, "flipud": 0.0,
                                     "degrees": 0.0, "translate": 0.1, "scale": 0.5, "shear": 0.0,
                                     "perspective": 0.0, "mosaic": 1.0}
GEOMETRY = ("degrees", "translate", "scale", "shear", "perspective")


def resize_long_side(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 `[h, w, 3]` scaled so that `max(h, w) == size` (aspect kept, sides rounded, >= 1).

    >>> resize_long_side(np.zeros((30, 60, 3), np.uint8), 32).shape
    (16, 32, 3)
    """
    h, w = img.shape[:2]
    r = size / max(h, w)
    if r == 1:
        return img
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    method = Image.Resampling.BOX if r < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((nw, nh), method))


def letterbox(img: np.ndarray, size: int, stride: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad uint8 `[h, w, 3]` (both <= size) with grey 114, centred: to `[size, size, 3]`, or with
    `stride` only by `(size - h) % stride` rows and `(size - w) % stride` columns (ultralytics'
    `auto=True`, the smallest multiple of the stride that the network takes).

    Returns `(padded, (left, top))`.

    >>> out, (left, top) = letterbox(np.zeros((16, 32, 3), np.uint8), 32)
    >>> out.shape, left, top, int(out[0, 0, 0]), int(out[8, 0, 0])
    ((32, 32, 3), 0, 8, 114, 0)
    >>> letterbox(np.zeros((20, 32, 3), np.uint8), 32, stride=8)[0].shape
    (24, 32, 3)
    """
    h, w = img.shape[:2]
    dw, dh = size - w, size - h
    if stride:
        dw, dh = dw % stride, dh % stride
    top, bottom = int(round(dh / 2 - 0.1)), int(round(dh / 2 + 0.1))
    left, right = int(round(dw / 2 - 0.1)), int(round(dw / 2 + 0.1))
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
    """HSV (hue in [0, 1)) back to RGB: channel n of (5, 3, 1) is v - v s clip(min(k, 4 - k), 0, 1)
    with k = (n + 6 h) mod 6. `h * 6` and `v * s` are made once and the temporaries reused: the
    same operations on the same values as the formula written out, so the same bits, in half the
    time (tested against it)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    h6, vs = h * 6, v * s
    out = np.empty(hsv.shape, np.result_type(hsv, h6))
    k = np.empty_like(h6)
    t = np.empty_like(h6)
    for c, n in enumerate((5, 3, 1)):
        np.add(n, h6, out=k)
        np.remainder(k, 6, out=k)
        np.subtract(4, k, out=t)
        np.minimum(k, t, out=t)
        np.clip(t, 0, 1, out=t)
        np.multiply(vs, t, out=t)
        np.subtract(v, t, out=out[..., c])
    return out


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


# --- geometric augmentation --------------------------------------------------------------------

def to_pixels(labels: np.ndarray, w: float, h: float, padw: float = 0, padh: float = 0) -> np.ndarray:
    """`(class, cx, cy, w, h)` normalised to a `w` x `h` image -> `(class, x1, y1, x2, y2)` in
    pixels, shifted by `(padw, padh)`."""
    lb = np.array(labels, np.float64).reshape(-1, 5)
    out = lb.copy()
    out[:, 1] = w * (lb[:, 1] - lb[:, 3] / 2) + padw
    out[:, 2] = h * (lb[:, 2] - lb[:, 4] / 2) + padh
    out[:, 3] = w * (lb[:, 1] + lb[:, 3] / 2) + padw
    out[:, 4] = h * (lb[:, 2] + lb[:, 4] / 2) + padh
    return out


def to_normalised(labels: np.ndarray, w: float, h: float) -> np.ndarray:
    """`(class, x1, y1, x2, y2)` pixels -> `(class, cx, cy, w, h)` normalised (clipped to [0, 1]), float32."""
    lb = np.array(labels, np.float64).reshape(-1, 5)
    x1, x2 = np.clip(lb[:, [1, 3]] / w, 0, 1).T
    y1, y2 = np.clip(lb[:, [2, 4]] / h, 0, 1).T
    return np.stack([lb[:, 0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1).astype(np.float32)


def make_matrix(in_hw: tuple[int, int], out_hw: tuple[int, int], angle: float = 0.0, scale: float = 1.0,
                shear_x: float = 0.0, shear_y: float = 0.0, tx: float = 0.5, ty: float = 0.5, px: float = 0.0,
                py: float = 0.0) -> np.ndarray:
    """The 3x3 matrix from input to output pixels: the input's centre to the origin, perspective
    `(px, py)`, rotation by `angle` degrees (anticlockwise as seen: y points down) with `scale`,
    shear by `shear_x`, `shear_y` degrees, then the origin to `(tx, ty)` of the output's width
    and height (0.5, 0.5: its centre).

    >>> M = make_matrix((40, 40), (40, 40), angle=90)
    >>> np.round(M @ [10, 5, 1], 9).tolist()  # the top band turns to the left side
    [5.0, 30.0, 1.0]
    """
    C = np.eye(3)
    C[0, 2], C[1, 2] = -in_hw[1] / 2, -in_hw[0] / 2
    P = np.eye(3)
    P[2, 0], P[2, 1] = px, py
    R = np.eye(3)
    cos, sin = math.cos(math.radians(angle)) * scale, math.sin(math.radians(angle)) * scale
    R[:2, :2] = [[cos, sin], [-sin, cos]]
    S = np.eye(3)
    S[0, 1], S[1, 0] = math.tan(math.radians(shear_x)), math.tan(math.radians(shear_y))
    T = np.eye(3)
    T[0, 2], T[1, 2] = tx * out_hw[1], ty * out_hw[0]
    return T @ S @ R @ P @ C


def affine_matrix(rng: np.random.Generator, in_hw: tuple[int, int], out_hw: tuple[int, int], degrees: float = 0.0,
                  translate: float = 0.0, scale: float = 0.0, shear: float = 0.0,
                  perspective: float = 0.0) -> tuple[np.ndarray, float]:
    """`(M, s)`: a random `make_matrix` within hyp's ranges and its scale `s`. Eight uniforms are
    drawn from `rng` whatever the ranges (a zero range gives the identity part), so the stream
    does not depend on the settings.

    >>> M, s = affine_matrix(np.random.default_rng(0), (40, 60), (40, 60))
    >>> np.allclose(M, np.eye(3)), s
    (True, 1.0)
    """
    u = lambda lo, hi: lo + (hi - lo) * float(rng.random())  # noqa: E731  (always one draw)
    px, py = u(-perspective, perspective), u(-perspective, perspective)
    angle, s = u(-degrees, degrees), u(1 - scale, 1 + scale)
    sx, sy = u(-shear, shear), u(-shear, shear)
    tx, ty = u(0.5 - translate, 0.5 + translate), u(0.5 - translate, 0.5 + translate)
    return make_matrix(in_hw, out_hw, angle, s, sx, sy, tx, ty, px, py), s


def warp(img: np.ndarray, M: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """uint8 `[h, w, 3]` mapped by `M` (input pixels to output pixels) onto `out_hw`, bilinear,
    grey 114 where nothing maps (Pillow; cv2.warpAffine / warpPerspective's job in ultralytics)."""
    h, w = out_hw
    if img.shape[:2] == (h, w) and np.allclose(M, np.eye(3), rtol=0, atol=1e-12):
        return img
    inv = np.linalg.inv(M)
    inv = inv / inv[2, 2]
    fill = (PAD_VALUE,) * 3
    src = Image.fromarray(np.ascontiguousarray(img))
    if np.allclose(M[2], [0, 0, 1], rtol=0, atol=0):
        out = src.transform((w, h), Image.Transform.AFFINE, tuple(inv[:2].ravel()),
                            resample=Image.Resampling.BILINEAR, fillcolor=fill)
    else:
        out = src.transform((w, h), Image.Transform.PERSPECTIVE, tuple(inv.ravel()[:8]),
                            resample=Image.Resampling.BILINEAR, fillcolor=fill)
    return np.asarray(out)


def transform_boxes(boxes: np.ndarray, M: np.ndarray) -> np.ndarray:
    """`[n, 4]` `(x1, y1, x2, y2)` -> the bounding boxes of their four corners mapped by `M`."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(b)
    corners = np.ones((n * 4, 3))
    corners[:, :2] = b[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
    xy = corners @ M.T
    xy = (xy[:, :2] / xy[:, 2:3]).reshape(n, 8)
    x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
    return np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], 1) if n else np.zeros((0, 4))


def box_candidates(before: np.ndarray, after: np.ndarray, wh_thr: float = 2.0, ar_thr: float = 20.0,
                   area_thr: float = 0.1, eps: float = 1e-16) -> np.ndarray:
    """Which boxes to keep after a transform: wider and taller than `wh_thr` pixels, more than
    `area_thr` of the area `before` (already scaled by the transform's scale), aspect ratio
    under `ar_thr`.

    >>> box_candidates(np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [0, 0, 10, 1]])).tolist()
    [True, False]
    """
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def transform_labels(img: np.ndarray, labels: np.ndarray, M: np.ndarray, s: float,
                     out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The image warped by `M` onto `out_hw`, and pixel labels `(class, x1, y1, x2, y2)` moved
    with it: corners mapped, clipped to the output, degenerate boxes dropped (`box_candidates`
    against the old box times `s`, the transform's scale)."""
    out = warp(img, M, out_hw)
    lb = np.array(labels, np.float64).reshape(-1, 5)
    if len(lb):
        new = transform_boxes(lb[:, 1:5], M)
        new[:, [0, 2]] = new[:, [0, 2]].clip(0, out_hw[1])
        new[:, [1, 3]] = new[:, [1, 3]].clip(0, out_hw[0])
        keep = box_candidates(lb[:, 1:5] * s, new)
        lb = np.concatenate([lb[keep, :1], new[keep]], 1)
    return out, lb


def perspective_pixels(img: np.ndarray, labels: np.ndarray, rng: np.random.Generator, out_hw: tuple[int, int],
                       degrees: float = 0.0, translate: float = 0.0, scale: float = 0.0, shear: float = 0.0,
                       perspective: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """`random_perspective` on pixel labels `(class, x1, y1, x2, y2)`; returns them in the output's pixels."""
    M, s = affine_matrix(rng, img.shape[:2], out_hw, degrees, translate, scale, shear, perspective)
    return transform_labels(img, labels, M, s, out_hw)


def random_perspective(img: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                       out_hw: tuple[int, int] | None = None, degrees: float = 0.0, translate: float = 0.0,
                       scale: float = 0.0, shear: float = 0.0,
                       perspective: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The random affine / perspective transform on an image and its normalised labels (module
    doc); `out_hw` defaults to the image's size. Boxes that become degenerate are dropped.

    >>> im = np.zeros((32, 32, 3), np.uint8); lb = np.array([[0, 0.5, 0.5, 0.25, 0.25]])
    >>> out, new = random_perspective(im, lb, np.random.default_rng(0))  # all ranges zero
    >>> bool((out == im).all()), new.tolist() == lb.tolist()
    (True, True)
    """
    out_hw = img.shape[:2] if out_hw is None else out_hw
    h, w = img.shape[:2]
    out, lb = perspective_pixels(img, to_pixels(labels, w, h), rng, out_hw, degrees, translate, scale, shear,
                                 perspective)
    return out, to_normalised(lb, out_hw[1], out_hw[0])


def mosaic_canvas(items: Sequence[tuple[np.ndarray, np.ndarray]], size: int,
                  centre: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The 2 size x 2 size canvas of four `(uint8 image, normalised labels)` around `centre`
    `(xc, yc)` (module doc), and their labels in its pixels `(class, x1, y1, x2, y2)`, clipped
    to it."""
    if len(items) != 4:
        raise ValueError(f"a mosaic takes 4 images, got {len(items)}")
    s = size
    xc, yc = centre
    canvas = np.full((2 * s, 2 * s, 3), PAD_VALUE, np.uint8)
    labels = []
    for k, (im, lb) in enumerate(items):
        ih, iw = im.shape[:2]
        if k == 0:    # up-left of the centre
            xa, ya, xa2, ya2 = max(xc - iw, 0), max(yc - ih, 0), xc, yc
            xb, yb = iw - (xa2 - xa), ih - (ya2 - ya)
        elif k == 1:  # up-right
            xa, ya, xa2, ya2 = xc, max(yc - ih, 0), min(xc + iw, 2 * s), yc
            xb, yb = 0, ih - (ya2 - ya)
        elif k == 2:  # down-left
            xa, ya, xa2, ya2 = max(xc - iw, 0), yc, xc, min(2 * s, yc + ih)
            xb, yb = iw - (xa2 - xa), 0
        else:         # down-right
            xa, ya, xa2, ya2 = xc, yc, min(xc + iw, 2 * s), min(2 * s, yc + ih)
            xb, yb = 0, 0
        canvas[ya:ya2, xa:xa2] = im[yb:yb + (ya2 - ya), xb:xb + (xa2 - xa)]
        labels.append(to_pixels(lb, iw, ih, xa - xb, ya - yb))
    lab = np.concatenate(labels, 0)
    lab[:, 1:5] = lab[:, 1:5].clip(0, 2 * s)
    return canvas, lab


def mosaic(items: Sequence[tuple[np.ndarray, np.ndarray]], size: int, rng: np.random.Generator,
           hyp: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Four `(uint8 image, normalised labels)` (long side `size`, as `resize_long_side` makes
    them) as one `size` x `size` training image and its normalised labels (module doc): the
    centre drawn from `rng` (two uniforms), then `random_perspective` with `hyp`'s ranges."""
    h = {**DEFAULT_AUGMENT, **(hyp or {})}
    centre = (int(rng.uniform(size / 2, 3 * size / 2)), int(rng.uniform(size / 2, 3 * size / 2)))
    canvas, lab = mosaic_canvas(items, size, centre)
    out, lab = perspective_pixels(canvas, lab, rng, (size, size), *(h[k] for k in GEOMETRY))
    return out, to_normalised(lab, size, size)
