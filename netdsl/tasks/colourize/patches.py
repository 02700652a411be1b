"""Cutting colour photographs into 32x32 patches: the embedded default data set and `--data DIR`.

Each image is resized so its short side is 128, 160 and 192 pixels (a 32-pixel patch then shows an
object or a large part of one, like a CIFAR image, rather than texture). A band of a quarter of
every image's rows is kept for validation and the rest for training (patches never straddle the
band), so validation pixels are never seen in training, even across the three scales or the two
views of the stereo pair (whose views differ by a horizontal shift only, so they share one band).
The band sits at a different height in different images, so validation is not all sky or all
floor. Patch positions are drawn from a stride-4 grid with a fixed seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import skimage.data
from skimage.transform import resize

from netdsl.errors import NetdslError

PATCH = 32
SCALES = (128, 160, 192)
VAL_FRACTION = 0.25
STRIDE = 4
RECIPE = "patches-v2"  # bump when anything below changes what is cut, so caches rebuild

# Colour photographs that scikit-image ships inside its wheel (no pooch download needed).
# Each with where its validation band starts, as a fraction of the height.
EMBEDDED_IMAGES = (
    ("astronaut.png", 0.75), ("chelsea.png", 0.0), ("coffee.png", 0.5), ("rocket.jpg", 0.25),
    ("motorcycle_left.png", 0.75), ("motorcycle_right.png", 0.75), ("hubble_deep_field.jpg", 0.0),
)
BANDS = (0.75, 0.0, 0.5, 0.25)  # for --data DIR: cycled over the sorted files
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class Patches:
    train: np.ndarray  # uint8 [N, 32, 32, 3]
    val: np.ndarray


def skimage_data_dir() -> Path:
    return Path(skimage.data.__file__).parent


def embedded_files() -> list[Path]:
    root = skimage_data_dir()
    files = [root / name for name, _ in EMBEDDED_IMAGES]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise NetdslError(f"scikit-image's bundled images are missing: {', '.join(missing)}",
                          path=str(root), hint="reinstall scikit-image, or pass --data PATH")
    return files


def read_rgb(path: Path) -> np.ndarray:
    """uint8 `[H, W, 3]`; greyscale is repeated, alpha dropped (photos only, no compositing)."""
    try:
        img = np.asarray(iio.imread(path))
    except Exception as err:  # imageio raises many types for unreadable files
        raise NetdslError(f"cannot read image: {err}", path=str(path)) from None
    if img.ndim == 3 and img.shape[0] in (1, 2) and img.shape[-1] in (3, 4):
        img = img[0]  # first frame of an animation or a multipage file
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise NetdslError(f"unsupported image layout {list(img.shape)}", path=str(path))
    img = img[:, :, :3]
    if img.dtype != np.uint8:
        top = 65535.0 if img.dtype == np.uint16 else (1.0 if img.dtype.kind == "f" else 255.0)
        img = np.clip(img.astype(np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return img


def _resize(img: np.ndarray, short: int) -> np.ndarray:
    h, w = img.shape[:2]
    f = short / min(h, w)
    if f >= 1:  # never upsample: blown-up pixels are not what a photo of the object looks like
        return img
    shape = (max(PATCH, round(h * f)), max(PATCH, round(w * f)))
    out = resize(img, shape, order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _grid(h: int, w: int, top: int, bottom: int) -> list[tuple[int, int]]:
    ys = range(top, bottom - PATCH + 1, STRIDE)
    xs = range(0, w - PATCH + 1, STRIDE)
    return [(y, x) for y in ys for x in xs]


def cut(images: list[np.ndarray], n_train: int, n_val: int, bands: list[float] | None = None,
        seed: int = 0) -> Patches:
    """Up to `n_train`/`n_val` patches, positions drawn without replacement from all images' grids;
    `bands[i]` is where image i's validation band starts (fraction of its height)."""
    if bands is None:
        bands = [BANDS[i % len(BANDS)] for i in range(len(images))]
    scaled: list[np.ndarray] = []
    train_pos: list[tuple[int, int, int]] = []
    val_pos: list[tuple[int, int, int]] = []
    small: list[np.ndarray | None] = []
    for img, band in zip(images, bands):
        h, w = img.shape[:2]
        if min(h, w) < 2 * PATCH:  # too small to split by region: the whole image is one patch
            small.append(_resize(img, PATCH)[:PATCH, :PATCH] if min(h, w) >= PATCH else None)
            continue
        for short in SCALES:
            s = _resize(img, short)
            if scaled and s.shape == scaled[-1].shape and np.array_equal(s, scaled[-1]):
                continue  # a small image that was not resized gives the same grid at every scale
            i = len(scaled)
            scaled.append(s)
            sh, sw = s.shape[:2]
            hv = max(PATCH, round(sh * VAL_FRACTION))
            top = min(round(sh * band), sh - hv)
            val_pos += [(i, y, x) for y, x in _grid(sh, sw, top, top + hv)]
            train_pos += [(i, y, x) for y, x in _grid(sh, sw, 0, top) + _grid(sh, sw, top + hv, sh)]
    rng = np.random.default_rng(seed)
    tr = [scaled[i][y:y + PATCH, x:x + PATCH] for i, y, x in _choose(rng, train_pos, n_train)]
    va = [scaled[i][y:y + PATCH, x:x + PATCH] for i, y, x in _choose(rng, val_pos, n_val)]
    # Whole small images (e.g. a folder of 32x32 thumbnails): every sixth goes to validation.
    tiny = [p for p in small if p is not None]
    tr += [p for j, p in enumerate(tiny) if j % 6 != 5]
    va += [p for j, p in enumerate(tiny) if j % 6 == 5]
    empty = np.zeros((0, PATCH, PATCH, 3), np.uint8)
    return Patches(np.stack(tr) if tr else empty, np.stack(va) if va else empty)


def _choose(rng: np.random.Generator, pos: list, n: int) -> list:
    if len(pos) <= n:
        return [pos[i] for i in rng.permutation(len(pos))]
    return [pos[i] for i in rng.choice(len(pos), n, replace=False)]


def folder_files(root: Path) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise NetdslError("no images found in the data folder", path=str(root),
                          hint=f"expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))}, "
                               "or a CIFAR-10 folder")
    return files
