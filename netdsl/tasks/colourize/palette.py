"""The colour palette: deterministic k-means on training pixels, or a given `.npy` file; and the
course's labelling (each pixel's class is its nearest palette colour by RGB distance).

Colours live in the course's units: 8-bit values divided by 256, so in [0, 1).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from netdsl.errors import NetdslError

MAX_PIXEL = 256.0
KMEANS_SAMPLE = 100_000
KMEANS_ITERS = 40


def kmeans_palette(rgb: np.ndarray, k: int = 24, seed: int = 0) -> np.ndarray:
    """`k` colours from uint8 pixels `[..., 3]`: k-means++ seeding then fixed Lloyd iterations, all
    from one seeded generator and in float64, so the same pixels always give the same palette."""
    pixels = rgb.reshape(-1, 3)
    rng = np.random.default_rng(seed)
    if len(pixels) > KMEANS_SAMPLE:
        pixels = pixels[rng.choice(len(pixels), KMEANS_SAMPLE, replace=False)]
    x = pixels.astype(np.float64) / MAX_PIXEL
    packed = (pixels[:, 0].astype(np.int64) << 16) | (pixels[:, 1].astype(np.int64) << 8) | pixels[:, 2]
    if len(np.unique(packed)) < k:
        raise NetdslError(f"the training images have fewer than {k} distinct colours; "
                          "k-means cannot find that many", hint="pass a smaller --colours")
    centres = np.empty((k, 3))
    centres[0] = x[rng.integers(len(x))]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for i in range(1, k):
        # k-means++: pick far-away pixels first, so rare but distinct colours still get a centre
        centres[i] = x[rng.choice(len(x), p=d2 / d2.sum())]
        d2 = np.minimum(d2, ((x - centres[i]) ** 2).sum(1))
    for _ in range(KMEANS_ITERS):
        assign = _nearest(x, centres)
        counts = np.bincount(assign, minlength=k)
        sums = np.stack([np.bincount(assign, weights=x[:, c], minlength=k) for c in range(3)], 1)
        if (counts == 0).any():
            served = ((x - centres[assign]) ** 2).sum(1)
            for empty in np.flatnonzero(counts == 0):  # an emptied cluster takes the worst-served pixel
                i = int(empty)
                far = int(served.argmax())
                sums[i], counts[i] = x[far], 1
                assign[far] = i
                # Several clusters emptied at once must not all take the same colour (they would
                # become equal centres): that pixel's colour is served now.
                served[(x == x[far]).all(1)] = -1.0
        centres = sums / counts[:, None]
    # Sort dark to light so a palette reads the same in plots whatever order k-means ended in.
    order = np.lexsort((centres[:, 2], centres[:, 1], centres[:, 0], centres.sum(1)))
    out = centres[order].astype(np.float32)
    # Seeding picks distinct colours and the loop above keeps them apart, so this should not happen;
    # should it ever (float32 rounding), it is an error, not a silent dedupe: the palette size is
    # what --colours asked for and what the model's output channels must match.
    if len(np.unique(out, axis=0)) < k:
        raise NetdslError(f"k-means found fewer than {k} distinct colours in the training images",
                          hint="pass a smaller --colours, or give a --palette")
    return out


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # |x - c|^2 without the |x|^2 term, which is the same for every centre; the product is done
    # as three broadcast multiply-adds because numpy's matmul is slow for an inner size of 3
    d = (centres * centres).sum(1)[None, :] - 2 * (x[:, 0:1] * centres[None, :, 0] + x[:, 1:2] * centres[None, :, 1]
                                                   + x[:, 2:3] * centres[None, :, 2])
    return d.argmin(1)


def labels(rgb: np.ndarray, palette: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Index of the nearest palette colour for each uint8 pixel of `rgb [N, H, W, 3]` -> int64
    `[N, H, W]`. Chunked: a full distance table for 5000 patches would be gigabytes."""
    flat = rgb.reshape(-1, 3)
    out = np.empty(len(flat), dtype=np.int64)
    p = palette.astype(np.float32)
    # argmin |x - p|^2 = argmin (|p|^2 - 2 x.p): one matrix product per chunk
    p2 = (p * p).sum(1)[None, :]
    for start in range(0, len(flat), chunk):
        x = flat[start:start + chunk].astype(np.float32) / np.float32(MAX_PIXEL)
        out[start:start + chunk] = (p2 - 2 * (x @ p.T)).argmin(1)
    return out.reshape(rgb.shape[:-1])


def load_palette(path: str | Path) -> np.ndarray:
    """A `[K, 3]` (or the course's `[1, K, 3]`) array of colours in [0, 1] from a `.npy` file."""
    p = Path(path)
    try:
        raw = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise NetdslError("palette file not found", path=str(p)) from None
    except ValueError as err:  # object arrays need pickle, which we never allow
        raise NetdslError(f"cannot read the palette: {err}", path=str(p),
                          hint="save it as a plain numeric array: np.save(path, colours.astype('float32'))") from None
    except OSError as err:
        raise NetdslError(f"cannot read the palette: {err}", path=str(p)) from None
    if not isinstance(raw, np.ndarray):
        raise NetdslError("the palette file holds several arrays; expected one [K, 3] array", path=str(p))
    arr = raw
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 4 and arr.shape[2:] == (1, 1):
        arr = arr[:, :, 0, 0]
    if arr.ndim != 2 or arr.shape[1] != 3 or not 2 <= arr.shape[0] <= 256:
        raise NetdslError(f"palette has shape {list(raw.shape)}; expected [K, 3] with 2 <= K <= 256",
                          path=str(p), hint="one RGB row per colour, values in [0, 1]")
    # Real numbers only: a complex palette would lose its imaginary part in astype, a bool one is no colour.
    if arr.dtype.kind not in "fiu":
        raise NetdslError(f"palette values must be real numbers, not {arr.dtype}", path=str(p),
                          hint="save it as a plain float array: np.save(path, colours.astype('float32'))")
    if not np.isfinite(arr).all():
        raise NetdslError("palette values must be finite numbers", path=str(p))
    if arr.min() < 0 or arr.max() > 1:
        raise NetdslError(f"palette values span [{arr.min():g}, {arr.max():g}]; expected [0, 1]",
                          path=str(p), hint="colours are 8-bit values divided by 256, as in the course")
    out = arr.astype(np.float32)
    # Two equal colours would make two classes no pixel can tell apart (the nearest colour is always
    # the first of them): refuse, naming them. Compared as float32, the precision training uses.
    _, first, inverse = np.unique(out, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    dups = [(int(first[g]), i) for i, g in enumerate(inverse) if first[g] != i]
    if dups:
        shown = "; ".join(f"colour {b} equals colour {a}" for a, b in dups[:5]) + ("; ..." if len(dups) > 5 else "")
        raise NetdslError(f"the palette has {len(dups)} repeated colour{'s' if len(dups) > 1 else ''} ({shown})",
                          path=str(p), hint="every palette colour must be distinct; drop the repeats")
    return out
