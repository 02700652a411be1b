"""YOLO-format detection data, read as ultralytics v9.6.0 read it, in batches for `yolo_loss`.

Written from the format's description (not from ultralytics' GPL code).

Sources (`load_detection_data(source)`):
- `None` or `"embedded"`: the coins set built from scikit-image's bundled photograph
  (`netdsl.detection.embedded`), cached, no network;
- a data YAML (read with `yaml.safe_load` only) with `path`, `train`, `val`, `nc`, `names`:
  `path` is relative to the YAML's folder (absent: that folder), `train` and `val` relative to
  `path`; each is a folder of images (searched recursively), a `.txt` list of image paths
  (relative ones resolved against the list's folder) or a list of those. A `download:` key is
  ignored with a note: nothing is ever fetched;
- a folder holding `images/` and `labels/`: `images/train` and `images/val` when present, else
  every image in `images/` for both (with a note). `nc` is then the `nc=` argument, else one more
  than the largest class found; names `class0`, `class1`, ... unless `names=` is given.

Labels: for `.../images/.../x.jpg` the file `.../labels/.../x.txt` (the last `images` folder of the
path replaced by `labels`), one `class cx cy w h` line per object, normalised to [0, 1]; blank
lines are skipped; an empty or missing file is a background image. Anything else is a
`NetdslError` naming `file:line`: wrong number of fields, a non-number, a class that is not an
integer in [0, nc), a coordinate outside [0, 1] (up to `TOLERANCE`, then clipped), a box of zero
width or height; and, naming the file, an unreadable image or label file, no images at all. With
`skip_bad=True` each bad image (its own or its label file's fault) is skipped and reported in
`DetectionData.warnings`; exact duplicate label rows are dropped with a warning, as ultralytics did.

Batches: each image's long side is resized to `img`, then it is letterboxed to `img` x `img`
(grey 114); training sets are augmented as hyp.scratch.yaml says (`DEFAULT_AUGMENT`): a mosaic
of four images (probability `mosaic`) or the letterboxed image, either under a random affine
transform (`degrees`, `translate`, `scale`, `shear`, `perspective`), then HSV jitter and flips,
drawn from generators seeded with `(seed, epoch, index)` so an image's augmentation depends only
on those three numbers (`DetectionSet.item`). `DetectionSet.batches` yields
`(images [N, 3, img, img] float32 in [0, 1], targets [nt, 6])`, targets rows
`(image index in the batch, class, cx, cy, w, h)` normalised to the letterboxed image: what
`netdsl.detection.loss.yolo_loss` takes.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from netdsl.detection import augment as aug
from netdsl.errors import NetdslError, Span

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
TOLERANCE = 1e-4  # how far outside [0, 1] a coordinate may be (rounding in converters); clipped
LABEL_HINT = ("one object per line: class index, then the box's centre x, centre y, width and height, "
              "each a fraction of the image's width or height in [0, 1]")


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
    _store: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def boxes(self) -> int:
        return sum(len(lb) for lb in self.labels)

    def read(self, i: int) -> np.ndarray:
        """The original image i, uint8 `[h, w, 3]` RGB."""
        im = self.images[i]
        return im if isinstance(im, np.ndarray) else read_image(Path(im))

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

    def item(self, i: int, seed: int = 0, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Image i as training sees it: validation sets `load(i)`; training sets, drawn from
        `(seed, epoch, i)` only: with probability `mosaic` a mosaic of image i and three others
        (drawn with replacement), else `load(i)` under the random affine transform (ultralytics
        applies it to non-mosaic images too), then HSV jitter and flips. Geometry draws from
        `default_rng([seed, epoch, i, 1])`, colour and flips from `default_rng([seed, epoch, i])`,
        so turning geometry off leaves the colour and flip draws as they were."""
        if not self.augment:
            return self.load(i)
        h = {**aug.DEFAULT_AUGMENT, **self.hyp}
        geo = np.random.default_rng([seed, epoch, i, 1])
        if geo.random() < h["mosaic"]:
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

    def batch(self, indices: Sequence[int], seed: int = 0, epoch: int = 0) -> tuple["torch.Tensor", "torch.Tensor"]:
        return collate([self.item(int(i), seed, epoch) for i in indices])

    def order(self, seed: int = 0, epoch: int = 0, shuffle: bool | None = None) -> np.ndarray:
        """The epoch's image order: shuffled (by default for training sets) with
        `default_rng([seed, epoch])`, else 0, 1, 2, ..."""
        if self.augment if shuffle is None else shuffle:
            return np.random.default_rng([seed, epoch]).permutation(len(self))
        return np.arange(len(self))

    def batches(self, batch_size: int, *, shuffle: bool | None = None, seed: int = 0,
                epoch: int = 0) -> Iterator[tuple["torch.Tensor", "torch.Tensor"]]:
        """Every image once, in batches (the last may be partial); shuffled (by default for
        training sets) with `default_rng([seed, epoch])`."""
        if batch_size < 1:
            raise NetdslError(f"batch size {batch_size} must be at least 1")
        order = self.order(seed, epoch, shuffle)
        for k in range(0, len(order), batch_size):
            yield self.batch(order[k:k + batch_size], seed, epoch)


def collate(items: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple["torch.Tensor", "torch.Tensor"]:
    """`[(uint8 [s, s, 3], labels [n, 5])]` to `(images [N, 3, s, s] in [0, 1], targets [nt, 6])`."""
    import torch

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


# --- reading files -----------------------------------------------------------------------------

def read_image(path: Path) -> np.ndarray:
    """uint8 `[h, w, 3]` RGB (greyscale repeated, alpha dropped); a NetdslError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert("RGB")
            return np.asarray(im)
    except Exception as err:  # PIL raises many types for damaged files
        raise NetdslError(f"cannot read image: {err}", path=str(path),
                          hint="replace or delete the file (or pass skip_bad=True to skip it)") from None


def check_image(path: Path) -> tuple[int, int]:
    """`(h, w)` from the header after PIL's integrity check, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
            w, h = im.size
    except Exception as err:
        raise NetdslError(f"cannot read image: {err}", path=str(path),
                          hint="replace or delete the file (or pass skip_bad=True to skip it)") from None
    if h < 2 or w < 2:
        raise NetdslError(f"image is {w}x{h} pixels, too small to hold an object", path=str(path),
                          hint="replace or delete the file (or pass skip_bad=True to skip it)")
    return h, w


def label_path(image: Path) -> Path:
    """`.../images/a/b.jpg` -> `.../labels/a/b.txt`: the last `images` folder becomes `labels`.

    >>> label_path(Path('/d/images/train/x.jpg')).as_posix()
    '/d/labels/train/x.txt'
    """
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def parse_labels(path: Path, nc: int | None) -> tuple[np.ndarray, list[str]]:
    """`([n, 5] float32, warnings)` from a label file; missing or empty: `[0, 5]`.

    A NetdslError at `path:line` for a malformed line; `nc` None: no upper bound on classes."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return np.zeros((0, 5), np.float32), []
    except (OSError, UnicodeDecodeError) as err:
        raise NetdslError(f"cannot read label file: {err}", path=str(path),
                          hint="label files are UTF-8 text, one 'class cx cy w h' line per object") from None
    rows: list[list[float]] = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = [(m.group(), m.start() + 1, m.end() + 1) for m in re.finditer(r"\S+", line)]
        if not fields:
            continue

        def fail(message: str, first: int = 0, last: int = -1, hint: str = LABEL_HINT) -> NetdslError:
            return NetdslError(message, Span(n, fields[first][1], n, fields[last][2]), hint,
                               path=str(path), source=text)

        if len(fields) != 5:
            extra = " (polygon segments are not supported)" if len(fields) > 6 else ""
            raise fail(f"expected 5 fields 'class cx cy w h', got {len(fields)}{extra}")
        values = []
        for k, (tok, _, _) in enumerate(fields):
            try:
                v = float(tok)
            except ValueError:
                v = float("nan")
            if not np.isfinite(v):
                raise fail(f"{tok!r} is not a number", k, k)
            values.append(v)
        c = values[0]
        if c != int(c) or c < 0 or (nc is not None and c >= nc):
            what = f"in [0, {nc})" if nc is not None else "a non-negative integer"
            raise fail(f"class {fields[0][0]} is not {what}", 0, 0,
                       hint=f"the data set has {nc} classes, numbered from 0" if nc is not None
                       else "classes are integers numbered from 0")
        for k in range(1, 5):
            if not -TOLERANCE <= values[k] <= 1 + TOLERANCE:
                name = ("cx", "cy", "w", "h")[k - 1]
                raise fail(f"{name} = {fields[k][0]} is outside [0, 1]", k, k,
                           hint="coordinates are fractions of the image's width and height; "
                                "divide pixel values by the image size")
        if values[3] <= 0 or values[4] <= 0:
            raise fail("box has zero width or height", 3, 4,
                       hint="drop the line, or give the object's real width and height")
        rows.append([c] + [min(max(v, 0.0), 1.0) for v in values[1:]])
    labels = np.array(rows, np.float32).reshape(-1, 5)
    warnings: list[str] = []
    if len(labels):
        _, first = np.unique(labels, axis=0, return_index=True)
        if len(first) < len(labels):
            warnings.append(f"{path}: {len(labels) - len(first)} duplicate label rows dropped")
            labels = labels[np.sort(first)]
    return labels, warnings


def _where(err: NetdslError) -> str:
    return f"{err.path}:{err.span.line}" if err.span is not None else str(err.path)


def read_split(files: list[Path], nc: int | None, skip_bad: bool) -> tuple[list[Path], list[np.ndarray], list[str]]:
    """Check every image and parse its labels: `(images kept, labels, warnings)`."""
    kept: list[Path] = []
    labels: list[np.ndarray] = []
    warnings: list[str] = []
    for f in files:
        try:
            check_image(f)
            lb, warn = parse_labels(label_path(f), nc)
        except NetdslError as err:
            if not skip_bad:
                raise
            warnings.append(f"{_where(err)}: {err.message} (image skipped)")
            continue
        kept.append(f)
        labels.append(lb)
        warnings += warn
    return kept, labels, warnings


# --- sources -----------------------------------------------------------------------------------

def _images_in(entry: Any, base: Path, origin: Path, key: str) -> list[Path]:
    if isinstance(entry, (list, tuple)):
        return [f for e in entry for f in _images_in(e, base, origin, key)]
    if not isinstance(entry, str):
        raise NetdslError(f"'{key}' must be a path or a list of paths, not {type(entry).__name__}",
                          path=str(origin))
    p = Path(os.path.expanduser(entry))
    p = p if p.is_absolute() else base / p
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if p.is_file() and p.suffix.lower() == ".txt":
        out = []
        for line in p.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                q = Path(line)
                out.append(q if q.is_absolute() else p.parent / q)
        return out
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        return [p]
    raise NetdslError(f"'{key}' path does not exist: {p}", path=str(origin),
                      hint="paths in a data YAML are relative to its 'path:', which is relative to the YAML's folder")


def _names(raw: Any, nc: int, origin: Path) -> list[str]:
    if raw is None:
        return [f"class{i}" for i in range(nc)]
    if isinstance(raw, dict):
        try:
            raw = [raw[k] for k in sorted(raw, key=int)]
        except (TypeError, ValueError):
            raise NetdslError("'names' as a mapping must have integer keys", path=str(origin)) from None
    if not isinstance(raw, (list, tuple)):
        raise NetdslError("'names' must be a list of class names", path=str(origin))
    if len(raw) != nc:
        raise NetdslError(f"'names' has {len(raw)} entries but nc is {nc}", path=str(origin),
                          hint="give one name per class")
    return [str(n) for n in raw]


def _from_yaml(path: Path, nc_arg: int | None) -> tuple[list[Path], list[Path], int, list[str], list[str]]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise NetdslError(f"cannot read data YAML: {err}", path=str(path)) from None
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        span = Span(mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 2) if mark else None
        raise NetdslError(f"invalid YAML: {getattr(err, 'problem', None) or err}", span, path=str(path),
                          source=text) from None
    if not isinstance(cfg, dict):
        raise NetdslError("a data YAML must be a mapping with train, val, nc and names", path=str(path))
    notes = []
    if cfg.get("download"):
        notes.append(f"{path}: the 'download:' key is ignored; netdsl never fetches data")
    missing = [k for k in ("train", "val") if not cfg.get(k)]
    if missing:
        raise NetdslError(f"the data YAML has no '{missing[0]}' entry", path=str(path),
                          hint="train: and val: name image folders or .txt lists, relative to path:")
    nc = cfg.get("nc")
    if nc is None and cfg.get("names") is not None:
        nc = len(cfg["names"])
    if not isinstance(nc, int) or isinstance(nc, bool) or nc < 1:
        raise NetdslError(f"'nc' must be a positive integer, not {nc!r}", path=str(path))
    if nc_arg is not None and nc_arg != nc:
        raise NetdslError(f"the data YAML has nc = {nc}, but {nc_arg} classes were asked for", path=str(path),
                          hint=f"build the network with NCLS={nc}")
    names = _names(cfg.get("names"), nc, path)
    root = Path(os.path.expanduser(str(cfg.get("path") or "")))
    root = root if root.is_absolute() else path.parent / root
    try:
        train = _images_in(cfg["train"], root, path, "train")
        val = _images_in(cfg["val"], root, path, "val")
    except NetdslError as err:
        if cfg.get("download"):
            err.notes = (*err.notes, "the YAML's download: entry says where the data comes from; "
                                     "fetch it yourself, netdsl never downloads")
        raise
    return train, val, nc, names, notes


def _from_folder(root: Path) -> tuple[list[Path], list[Path], list[str]]:
    images = root / "images"
    if not images.is_dir():
        raise NetdslError("a detection data folder must hold images/ and labels/", path=str(root),
                          hint="or pass a data YAML (train:, val:, nc:, names:)")
    find = lambda d: sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())  # noqa: E731
    if (images / "train").is_dir():
        train = find(images / "train")
        if (images / "val").is_dir():
            return train, find(images / "val"), []
        return train, train, [f"{root}: no images/val: validating on the training images"]
    every = find(images)
    return every, every, [f"{root}: no images/train and images/val: training and validating on every image"]


def load_detection_data(source: str | os.PathLike | None = None, img: int = 640, *, stride: int = 32,
                        nc: int | None = None, names: Sequence[str] | None = None, skip_bad: bool = False,
                        cache: bool = False, hyp: dict[str, float] | None = None) -> DetectionData:
    """Resolve a data source into a training and a validation `DetectionSet` (see the module doc).

    `img`: the letterboxed size, a multiple of `stride` (the network's largest); `nc`/`names`:
    for a bare folder (with a YAML, `nc` must agree); `skip_bad`: skip and report bad images
    instead of failing; `cache`: keep decoded, resized images in memory; `hyp`: overrides of
    `DEFAULT_AUGMENT` (`hsv_h`, `hsv_s`, `hsv_v`, `fliplr`, `flipud`, `degrees`, `translate`,
    `scale`, `shear`, `perspective`, `mosaic`).
    """
    if not isinstance(img, int) or img < stride or img % stride:
        up = max(stride, -(-int(img) // stride) * stride)
        raise NetdslError(f"image size {img} is not a multiple of the network's largest stride {stride}",
                          hint=f"use {up}")
    hyp = {**aug.DEFAULT_AUGMENT, **(hyp or {})}
    notes: list[str] = []
    if source is None or str(source) == "embedded":
        from netdsl.detection import embedded

        e = embedded.load_embedded()
        if nc is not None and nc != len(embedded.CLASSES):
            raise NetdslError(f"the embedded coins set has {len(embedded.CLASSES)} classes, not {nc}",
                              hint=f"build the network with NCLS={len(embedded.CLASSES)}")
        train = DetectionSet(list(e.train_images), e.train_labels, img, True, dict(hyp), cache)
        val = DetectionSet(list(e.val_images), e.val_labels, img, False, dict(hyp), cache)
        return DetectionData(train, val, len(embedded.CLASSES), list(embedded.CLASSES), embedded.DESCRIPTION)
    path = Path(os.path.expanduser(str(source)))
    if not path.exists():
        raise NetdslError("detection data path does not exist", path=str(path),
                          hint="a data YAML, a folder with images/ and labels/, or 'embedded'")
    if path.is_file():
        train_files, val_files, nc, class_names, notes = _from_yaml(path, nc)
        if names is not None and list(names) != class_names:
            raise NetdslError("names= differs from the data YAML's names", path=str(path))
    else:
        train_files, val_files, notes = _from_folder(path)
        class_names = list(names) if names is not None else None
        if nc is None and class_names is not None:
            nc = len(class_names)
    for split, files in (("training", train_files), ("validation", val_files)):
        if not files:
            raise NetdslError(f"no {split} images found", path=str(path),
                              hint=f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}")
    tr, tr_labels, warnings = read_split(train_files, nc, skip_bad)
    if val_files == train_files:
        va, va_labels = tr, tr_labels
    else:
        va, va_labels, w = read_split(val_files, nc, skip_bad)
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
    return DetectionData(DetectionSet(tr, tr_labels, img, True, dict(hyp), cache),
                         DetectionSet(va, va_labels, img, False, dict(hyp), cache),
                         nc, class_names, desc, warnings, notes)
