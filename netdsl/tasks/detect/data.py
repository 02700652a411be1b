"""YOLO-format detection data, read as ultralytics v9.6.0 read it, in batches for `yolo_loss`.

Written from the format's description (not from ultralytics' GPL code).

Sources (`load_detection_data(source)`):
- `None` or `"embedded"`: the coins set built from scikit-image's bundled photograph
  (`netdsl.tasks.detect.embedded`), cached, no network;
- a data YAML (read with `yaml.safe_load` only) with `path`, `train`, `val`, `nc`, `names`:
  `path` is relative to the YAML's folder (absent: that folder), `train` and `val` relative to
  `path`; each is a folder of images (searched recursively), a `.txt` list of image paths
  (relative ones resolved against the list's folder) or a list of those. A `download:` key is
  ignored with a note: nothing is ever fetched;
- a folder holding `images/` and `labels/`: `images/train` and `images/val` when present, else
  every image in `images/` for both (with a note). `nc` is then the `nc=` argument, else one more
  than the largest class found; names `class0`, `class1`, ... unless `names=` is given.
`names:` is a list or a mapping with the keys 0..n-1; `nc` is at most `MAX_CLASSES`. Reading the
files and checking the labels: netdsl.tasks.detect.labels.


Batches: each image's long side is resized to `img`, then it is letterboxed to `img` x `img`
(grey 114); training sets are augmented as hyp.scratch.yaml says (`DEFAULT_AUGMENT`): a mosaic
of four images (probability `mosaic`) or the letterboxed image, either under a random affine
transform (`degrees`, `translate`, `scale`, `shear`, `perspective`), then HSV jitter and flips,
drawn from generators seeded with `(seed, epoch, index)` so an image's augmentation depends only
on those three numbers (`DetectionSet.item`). `DetectionSet.batches` yields
`(images [N, 3, img, img] float32 in [0, 1], targets [nt, 6])`, targets rows
`(image index in the batch, class, cx, cy, w, h)` normalised to the letterboxed image: what
`netdsl.tasks.detect.loss.yolo_loss` takes.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netdsl.errors import NetdslError
from netdsl.tasks.detect import augment as aug
from netdsl.tasks.detect import embedded
from netdsl.tasks.detect.images import read_image
from netdsl.tasks.detect.labels import IMAGE_SUFFIXES, MAX_CLASSES, big_number, from_folder, from_yaml, read_split

# Every image was decoded when the data was loaded, so a failure later is not the file's original state.
CHANGED_HINT = ("it decoded when the data was loaded: was it changed or removed since? restore it "
                "(a training run can then go on with --resume)")


# --- one dataset split -------------------------------------------------------------------------

@dataclass
class DetectionSet:
    """A split: images (files or in-memory uint8 `[h, w, 3]` arrays) and their labels, `[n, 5]`
    float32 rows `(class, cx, cy, w, h)` normalised to the original image."""

    images: list[Any]
    labels: list[np.ndarray]
    img: int = 640
    augment: bool = False
    hyp: dict[str, float] = field(default_factory=lambda: dict(aug.DEFAULT_AUGMENT))
    cache: bool = False
    sizes: list[tuple[int, int]] | None = None  # each image's upright (h, w) where loading found it
    _store: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def boxes(self) -> int:
        return sum(len(lb) for lb in self.labels)

    def size(self, i: int) -> tuple[int, int]:
        """Image i's upright `(h, w)`, without decoding it again where loading recorded it."""
        if self.sizes is not None:
            return self.sizes[i]
        im = self.read(i)
        return int(im.shape[0]), int(im.shape[1])

    def resized_bytes(self) -> int:
        """What caching every image resized to `img` (long side) takes in memory."""
        total = 0
        for i in range(len(self)):
            h, w = self.size(i)  # an in-memory image's own shape; a file's as loading found it
            r = self.img / max(h, w)
            total += max(1, round(h * r)) * max(1, round(w * r)) * 3
        return total

    def read(self, i: int) -> np.ndarray:
        """The original image i, uint8 `[h, w, 3]` RGB."""
        im = self.images[i]
        return im if isinstance(im, np.ndarray) else read_image(Path(im), CHANGED_HINT)

    def load_resized(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image i with its long side resized to `img` (uint8 `[h, w, 3]`, aspect kept) and its
        labels (normalised, so unchanged); kept in memory when `cache` is set."""
        if i in self._store:
            return self._store[i]
        out = aug.resize_long_side(self.read(i), self.img), self.labels[i]
        if self.cache:
            self._store[i] = out
        return out

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image i resized and letterboxed to `[img, img, 3]` uint8, and its labels normalised to
        that square."""
        resized, labels = self.load_resized(i)
        boxed, pad = aug.letterbox(resized, self.img)
        return boxed, aug.letterbox_labels(labels, resized.shape[:2], pad, self.img)

    def item(self, i: int, seed: int = 0, epoch: int = 0, mosaic: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Image i as training sees it: validation sets `load(i)`; training sets, drawn from
        `(seed, epoch, i)` only: with probability `mosaic` a mosaic of image i and three others
        (drawn with replacement), else `load(i)` under the random affine transform (ultralytics
        applies it to non-mosaic images too), then HSV jitter and flips. Geometry draws from
        `default_rng([seed, epoch, i, 1])`, colour and flips from `default_rng([seed, epoch, i])`,
        so turning geometry off leaves the colour and flip draws as they were. `mosaic=False`
        (ultralytics' close_mosaic epochs) never makes a mosaic; the mosaic's draw is still taken,
        so the rest of the image's draws are those of a non-mosaic image of the same epoch."""
        if not self.augment:
            return self.load(i)
        h = {**aug.DEFAULT_AUGMENT, **self.hyp}
        geo = np.random.default_rng([seed, epoch, i, 1])
        if geo.random() < h["mosaic"] and mosaic:
            others = geo.integers(0, len(self), 3)
            picks = [i, *(int(k) for k in others)]
            geo.shuffle(picks)
            im, lb = aug.mosaic([self.load_resized(k) for k in picks], self.img, geo, h)
        else:
            im, lb = self.load(i)
            im, lb = aug.random_perspective(im, lb, geo, None, *(h[k] for k in aug.GEOMETRY))
        rng = np.random.default_rng([seed, epoch, i])
        im = aug.augment_hsv(im, rng, h["hsv_h"], h["hsv_s"], h["hsv_v"])
        if rng.random() < h["flipud"]:
            im, lb = aug.flip_ud(im, lb)
        if rng.random() < h["fliplr"]:
            im, lb = aug.flip_lr(im, lb)
        return im, lb

    def batch(self, indices: Sequence[int] | np.ndarray, seed: int = 0, epoch: int = 0,
              mosaic: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        return collate([self.item(int(i), seed, epoch, mosaic) for i in indices])

    def order(self, seed: int = 0, epoch: int = 0, shuffle: bool | None = None) -> np.ndarray:
        """The epoch's image order: shuffled (by default for training sets) with
        `default_rng([seed, epoch])`, else 0, 1, 2, ..."""
        if self.augment if shuffle is None else shuffle:
            return np.random.default_rng([seed, epoch]).permutation(len(self))
        return np.arange(len(self))

    def batches(self, batch_size: int, *, shuffle: bool | None = None, seed: int = 0,
                epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image once, in batches (the last may be partial); shuffled (by default for
        training sets) with `default_rng([seed, epoch])`."""
        if batch_size < 1:
            raise NetdslError(f"batch size {batch_size} must be at least 1")
        order = self.order(seed, epoch, shuffle)
        for k in range(0, len(order), batch_size):
            yield self.batch(order[k:k + batch_size], seed, epoch)


def collate(items: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """`[(uint8 [s, s, 3], labels [n, 5])]` to `(images [N, 3, s, s] in [0, 1], targets [nt, 6])`."""
    images = torch.from_numpy(np.stack([im for im, _ in items])).permute(0, 3, 1, 2).float().div_(255.0)
    rows = [np.concatenate([np.full((len(lb), 1), j, np.float32), lb], 1) for j, (_, lb) in enumerate(items)]
    targets = torch.from_numpy(np.concatenate(rows, 0) if rows else np.zeros((0, 6), np.float32))
    return images.contiguous(), targets.reshape(-1, 6).float()


@dataclass
class DetectionData:
    train: DetectionSet
    val: DetectionSet
    nc: int
    names: list[str]
    description: str
    warnings: list[str] = field(default_factory=list)  # skipped images, dropped duplicates
    notes: list[str] = field(default_factory=list)  # ignored keys, a missing validation split

    @property
    def skipped(self) -> int:
        return sum(1 for w in self.warnings if w.endswith("(image skipped)"))


def _check_request(nc: int | None, img: int, stride: int) -> None:
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or not 1 <= nc <= MAX_CLASSES):
        shown = big_number(nc) if isinstance(nc, int) else f"{nc!r:.40}"
        raise NetdslError(f"{shown} classes asked for; netdsl takes 1 to {MAX_CLASSES:,}",
                          hint="the number of classes of the data and the network (NCLS)")
    if not isinstance(img, int) or img < stride or img % stride:
        up = max(stride, -(-int(img) // stride) * stride)
        raise NetdslError(f"image size {img} is not a multiple of the network's largest stride {stride}",
                          hint=f"use {up}")


# `cache=None` (the default): cache when every resized image of both splits fits in this many bytes,
# and in a quarter of the memory available now.
CACHE_BUDGET = 2 << 30


def _available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: the budget alone decides
        return 4 * CACHE_BUDGET


def choose_cache(data: DetectionData, cache: bool | None) -> DetectionData:
    """Both splits with `cache` set: as asked, or (None) when their resized images fit the budget.

    Augmentation reads four images per mosaic, each decoded and resized again without a cache:
    `bench/bench_vs_peer.py` measured that as a quarter of a training epoch at --img 128."""
    if cache is None:
        need = data.train.resized_bytes() + (data.val.resized_bytes() if data.val is not data.train else 0)
        cache = need <= min(CACHE_BUDGET, _available_memory() // 4)
    data.train.cache = data.val.cache = cache
    return data


def _embedded(img: int, nc: int | None, hyp: dict[str, float]) -> DetectionData:
    e = embedded.load_embedded()
    if nc is not None and nc != len(embedded.CLASSES):
        raise NetdslError(f"the embedded coins set has {len(embedded.CLASSES)} classes, not {nc}",
                          hint=f"build the network with NCLS={len(embedded.CLASSES)}")
    train = DetectionSet(list(e.train_images), e.train_labels, img, True, dict(hyp))
    val = DetectionSet(list(e.val_images), e.val_labels, img, False, dict(hyp))
    return DetectionData(train, val, len(embedded.CLASSES), list(embedded.CLASSES), embedded.DESCRIPTION)


def _files(path: Path, nc: int | None, names: Sequence[str] | None
           ) -> tuple[list[Path], list[Path], int | None, list[str] | None, list[str]]:
    """(training images, validation images, classes, names, notes) of a data YAML or folder."""
    if not path.exists():
        raise NetdslError("detection data path does not exist", path=str(path),
                          hint="a data YAML, a folder with images/ and labels/, or 'embedded'")
    class_names: list[str] | None
    if path.is_file():
        train_files, val_files, nc, class_names, notes = from_yaml(path, nc)
        if names is not None and list(names) != class_names:
            raise NetdslError("names= differs from the data YAML's names", path=str(path))
    else:
        train_files, val_files, notes = from_folder(path)
        class_names = list(names) if names is not None else None
        if nc is None and class_names is not None:
            nc = len(class_names)
    for split, files in (("training", train_files), ("validation", val_files)):
        if not files:
            raise NetdslError(f"no {split} images found", path=str(path),
                              hint=f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}")
    return train_files, val_files, nc, class_names, notes


def load_detection_data(source: str | os.PathLike | None = None, img: int = 640, *, stride: int = 32,
                        nc: int | None = None, names: Sequence[str] | None = None, skip_bad: bool = False,
                        cache: bool | None = None, hyp: dict[str, float] | None = None) -> DetectionData:
    """Resolve a data source into a training and a validation `DetectionSet` (see the module doc).

    `img`: the letterboxed size, a multiple of `stride` (the network's largest); `nc`/`names`:
    for a bare folder (with a YAML, `nc` must agree); `skip_bad`: skip and report bad images
    instead of failing; `cache`: keep decoded, resized images in memory (None: when they fit in
    `CACHE_BUDGET` and a quarter of the available memory; the splits' `cache` says which); `hyp`: overrides of
    `DEFAULT_AUGMENT` (`hsv_h`, `hsv_s`, `hsv_v`, `fliplr`, `flipud`, `degrees`, `translate`,
    `scale`, `shear`, `perspective`, `mosaic`).
    """
    _check_request(nc, img, stride)
    hyp = {**aug.DEFAULT_AUGMENT, **(hyp or {})}
    if source is None or str(source) == "embedded":
        return choose_cache(_embedded(img, nc, hyp), cache)
    path = Path(os.path.expanduser(str(source)))
    train_files, val_files, nc, class_names, notes = _files(path, nc, names)
    tr, tr_labels, warnings, tr_sizes = read_split(train_files, nc, skip_bad)
    if val_files == train_files:
        va, va_labels, va_sizes = tr, tr_labels, tr_sizes
    else:
        va, va_labels, w, va_sizes = read_split(val_files, nc, skip_bad)
        warnings += w
    for split, kept in (("training", tr), ("validation", va)):
        if not kept:
            raise NetdslError(f"every {split} image was bad and skipped", path=str(path),
                              notes=tuple(warnings[:5]), hint="fix the files the warnings name")
    if nc is None:
        nc = 1 + int(max((lb[:, 0].max() for lb in tr_labels + va_labels if len(lb)), default=0))
    if class_names is None:
        class_names = [f"class{i}" for i in range(nc)]
    elif len(class_names) != nc:
        raise NetdslError(f"{len(class_names)} names given for {nc} classes", path=str(path))
    desc = f"{len(tr)} training and {len(va)} validation images from {path}"
    return choose_cache(DetectionData(DetectionSet(tr, tr_labels, img, True, dict(hyp), sizes=tr_sizes),
                                      DetectionSet(va, va_labels, img, False, dict(hyp), sizes=va_sizes),
                                      nc, class_names, desc, warnings, notes), cache)
