"""The embedded detection set: coins cut from scikit-image's bundled `coins.png`, no network.

Source: `skimage/data/coins.png` (303 x 384 greyscale, 24 Greek coins in four rows of six), read
from the installed wheel and repeated to three channels.

Boxes: classical segmentation, no hand labels. An elevation map (Sobel magnitude), a watershed
from markers (pixels < 30: background, > 150: coin), holes filled, connected components of
area > 100 pixels: exactly 24, one per coin; each coin's box is its component's bounding box
(pixel rows `y0 <= y < y1`, columns `x0 <= x < x1`). `build()` checks that 24 are found.

Classes: 0 `small coin` (the component's equivalent diameter < 45 px), 1 `large coin` (>= 45
px): 14 small and 10 large coins in all. Every image is a crop at the photograph's own scale
(never resized here), so size is what tells the classes apart.

Held-out region: the top band, rows 0-84, holds the first row of coins (6: 3 small, 3 large)
and is validation only; training crops lie entirely in rows 85-302 (18 coins: 11 small, 7
large). Every coin lies wholly in one region (the first row ends at row 74, the second starts at
95), so no validation pixel is ever seen in training.

Images: 80 x 160 crops (`CROP`). A coin in a crop is labelled when at least 40% of its box is
inside (the box clipped to the crop); crop positions where some coin shows between 10% and 40%
are never used (neither an object nor background); under 10% it is left as background.
`N_TRAIN` = 512 training crops: positions drawn without replacement (seed 0) from every allowed
position, each flipped left-right and/or top-bottom with probability 1/2, its contrast scaled by
U(0.8, 1.2) around the mean, brightness shifted by U(-20, 20) and Gaussian noise of sigma
U(0, 4) added (uint8, clipped). `N_VAL` = 32 validation crops: allowed positions in the band,
spread evenly in order, unaugmented. Built in about a second and cached as one `.npz` under
`netdsl.files.cache_dir()` (written atomically), keyed by `RECIPE` and the photograph.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
from scipy import ndimage as ndi
from skimage import filters, measure, segmentation

from netdsl.errors import NetdslError
from netdsl.files import atomic_save_npz, cache_dir, fingerprint
from netdsl.tasks.detect.images import read_image

CLASSES = ("small coin", "large coin")
DIAMETER_SPLIT = 45.0  # px, equivalent diameter between the classes
VAL_ROWS = 85  # rows [0, 85) are held out for validation
CROP = (80, 160)  # h, w
N_TRAIN = 512
N_VAL = 32
KEEP = 0.4  # label a coin when at least this fraction of its box is in the crop
IGNORE = 0.1  # below this it is background; in between the crop position is not used
SEED = 0
RECIPE = "coins-v1"  # bump when anything below changes what is built, so caches rebuild
DESCRIPTION = (f"embedded coins (scikit-image coins.png): {N_TRAIN} training and {N_VAL} validation "
               f"{CROP[0]}x{CROP[1]} crops, classes {', '.join(CLASSES)}")


@dataclass
class Embedded:
    train_images: np.ndarray  # uint8 [N, 80, 160, 3]
    train_labels: list[np.ndarray]  # per image [n, 5] (class, cx, cy, w, h), normalised
    val_images: np.ndarray
    val_labels: list[np.ndarray]
    coins: np.ndarray  # [24, 5] (class, y0, x0, y1, x1) in the photograph's pixels


def photograph() -> np.ndarray:
    f = Path(skimage.data.__file__).parent / "coins.png"
    hint = "reinstall scikit-image, or pass a detection data YAML"
    if not f.is_file():
        raise NetdslError("scikit-image's bundled coins.png is missing", path=str(f), hint=hint)
    return read_image(f, hint)[:, :, 0]  # greyscale stored as grey: one channel is all of it


def segment_coins(grey: np.ndarray) -> np.ndarray:
    """`[n, 5]` rows `(class, y0, x0, y1, x1)`, sorted top to bottom then left to right."""
    markers = np.zeros(grey.shape, np.int32)
    markers[grey < 30] = 1
    markers[grey > 150] = 2
    mask = ndi.binary_fill_holes(segmentation.watershed(filters.sobel(grey), markers) == 2)
    rows = []
    for p in measure.regionprops(measure.label(mask)):
        if p.area > 100:
            cls = int(p.equivalent_diameter_area >= DIAMETER_SPLIT)
            rows.append([cls, *p.bbox])
    return np.array(sorted(rows, key=lambda r: (r[1], r[2])), np.int64).reshape(-1, 5)


def _crop_labels(coins: np.ndarray, y: int, x: int) -> np.ndarray | None:
    """Labels of the crop at (y, x), or None when some coin is ambiguously cut."""
    h, w = CROP
    b = coins[:, 1:].astype(np.float64)
    y0, x0 = np.maximum(b[:, 0], y), np.maximum(b[:, 1], x)
    y1, x1 = np.minimum(b[:, 2], y + h), np.minimum(b[:, 3], x + w)
    inside = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    frac = inside / ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    if np.any((frac > IGNORE) & (frac < KEEP)):
        return None
    k = frac >= KEEP
    out = np.stack([coins[k, 0], ((x0 + x1) / 2 - x)[k] / w, ((y0 + y1) / 2 - y)[k] / h,
                    (x1 - x0)[k] / w, (y1 - y0)[k] / h], 1)
    return out.astype(np.float32).reshape(-1, 5)


def _positions(coins: np.ndarray, top: int, bottom: int, width: int) -> list[tuple[int, int, np.ndarray]]:
    h, w = CROP
    out = []
    for y in range(top, bottom - h + 1):
        for x in range(0, width - w + 1):
            lb = _crop_labels(coins, y, x)
            if lb is not None:
                out.append((y, x, lb))
    return out


def build() -> Embedded:
    grey = photograph()
    coins = segment_coins(grey)
    if len(coins) != 24:
        raise NetdslError(f"segmenting coins.png found {len(coins)} coins, not 24",
                          hint="scikit-image's coins.png or its segmentation changed; report this")
    H, W = grey.shape
    h, w = CROP
    rng = np.random.default_rng(SEED)
    train_pos = _positions(coins, VAL_ROWS, H, W)
    pick = rng.choice(len(train_pos), N_TRAIN, replace=False)
    train_images, train_labels = [], []
    for j in pick:
        y, x, lb = train_pos[j]
        im = grey[y:y + h, x:x + w].astype(np.float32)
        lb = lb.copy()
        if rng.random() < 0.5:
            im, lb[:, 1] = im[:, ::-1], 1 - lb[:, 1]
        if rng.random() < 0.5:
            im, lb[:, 2] = im[::-1], 1 - lb[:, 2]
        gain, shift, sigma = rng.uniform(0.8, 1.2), rng.uniform(-20, 20), rng.uniform(0, 4)
        im = (im - im.mean()) * gain + im.mean() + shift + rng.normal(0, 1, im.shape) * sigma
        train_images.append(np.clip(im + 0.5, 0, 255).astype(np.uint8))
        train_labels.append(lb)
    val_pos = _positions(coins, 0, VAL_ROWS, W)
    chosen = [val_pos[round(k * (len(val_pos) - 1) / (N_VAL - 1))] for k in range(N_VAL)]
    val_images = [grey[y:y + h, x:x + w] for y, x, _ in chosen]
    rgb = lambda ims: np.repeat(np.stack(ims)[..., None], 3, axis=3)  # noqa: E731
    return Embedded(rgb(train_images), train_labels, rgb(val_images), [lb for _, _, lb in chosen], coins)


def _pack(labels: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.concatenate([np.full((len(lb), 1), i, np.float32), lb], 1)
                           for i, lb in enumerate(labels)], 0).reshape(-1, 6)


def _unpack(rows: np.ndarray, n: int) -> list[np.ndarray]:
    idx = rows[:, 0].astype(np.int64)
    return [rows[idx == i, 1:].astype(np.float32) for i in range(n)]


def load_embedded() -> Embedded:
    """The embedded set, from the cache when it is there (a damaged cache is rebuilt)."""
    key = f"detect-{RECIPE}-{fingerprint(photograph())}"
    f = cache_dir() / key / "coins.npz"
    if f.is_file():
        try:
            with np.load(f, allow_pickle=False) as z:
                ti, vi = z["train_images"], z["val_images"]
                return Embedded(ti, _unpack(z["train_labels"], len(ti)), vi, _unpack(z["val_labels"], len(vi)),
                                z["coins"])
        except Exception:  # ours, not the user's: rebuild
            pass
    e = build()
    atomic_save_npz(f, train_images=e.train_images, train_labels=_pack(e.train_labels),
                    val_images=e.val_images, val_labels=_pack(e.val_labels), coins=e.coins)
    return e
