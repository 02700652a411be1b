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
`names:` is a list or a mapping with the keys 0..n-1; `nc` is at most `MAX_CLASSES`.

Images are read by `netdsl.detection.images`, as `netdsl detect` reads them (first frame, EXIF
orientation, 16 bits scaled to 8). Every image is decoded in full when the data is loaded (and the
pixels dropped): a header check passes truncated JPEGs that would then fail mid-epoch.

Labels: for `.../images/.../x.jpg` the file `.../labels/.../x.txt` (the last `images` folder of the
path replaced by `labels`), one `class cx cy w h` line per object, normalised to [0, 1]; blank
lines are skipped; an empty or missing file is a background image. Anything else is a
`NetdslError` naming `file:line`: wrong number of fields, a non-number, a class that is not an
integer in [0, nc) (below `MAX_CLASSES`), a coordinate outside [0, 1] (up to `TOLERANCE`, then
clipped), a box of zero width or height; and, naming the file, an image that does not decode, an
unreadable label file, no images at all. With `skip_bad=True` each bad image (its own or its label
file's fault; running out of memory is neither) is skipped and reported in
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
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from netdsl.detection import augment as aug
from netdsl.detection import images
from netdsl.detection.images import BAD_IMAGE_HINT, read_image
from netdsl.errors import NetdslError, Span

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
TOLERANCE = 1e-4  # how far outside [0, 1] a coordinate may be (rounding in converters); clipped
# Far above any public detection set (LVIS 1,203 classes, YOLO9000 9,418) and far below 2**24,
# where float32 labels stop holding every integer; a bound so that a typo such as `nc: 1e20` or a
# class `1e30` is an error, not a list of that many names.
MAX_CLASSES = 100_000
NAMES_HINT = "write names: [person, bicycle, ...] or names: {0: person, 1: bicycle, ...}"
# Every image was decoded when the data was loaded, so a failure later is not the file's original state.
CHANGED_HINT = ("it decoded when the data was loaded: was it changed or removed since? restore it "
                "(a training run can then go on with --resume)")
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

    def batch(self, indices: Sequence[int], seed: int = 0, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return collate([self.item(int(i), seed, epoch) for i in indices])

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

def check_image(path: Path) -> tuple[int, int]:
    """`(h, w)` of an image that decodes in full (`netdsl.detection.images.check_image`: a header
    check passes truncated JPEGs that then fail mid-epoch) and is large enough to hold an object."""
    h, w = images.check_image(path)
    if h < 2 or w < 2:
        raise NetdslError(f"image is {w}x{h} pixels, too small to hold an object", path=str(path),
                          hint=BAD_IMAGE_HINT)
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
                               path=str(path), source=text, breaks="python")

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
        if c >= MAX_CLASSES:
            raise fail(f"class {fields[0][0]} is beyond netdsl's limit of {MAX_CLASSES:,} classes", 0, 0,
                       hint="classes are numbered from 0 up to the number of classes minus one")
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


def _check(f: Path, nc: int | None) -> tuple[np.ndarray, list[str]] | NetdslError:
    try:
        check_image(f)
        return parse_labels(label_path(f), nc)
    except NetdslError as err:
        return err


def read_split(files: list[Path], nc: int | None, skip_bad: bool) -> tuple[list[Path], list[np.ndarray], list[str]]:
    """Decode every image and parse its labels: `(images kept, labels, warnings)`, in file order.

    Threads share the decoding (Pillow releases the GIL while it decodes); the first bad file in
    order is the one reported, and the files after it are not checked."""
    kept: list[Path] = []
    labels: list[np.ndarray] = []
    warnings: list[str] = []
    pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1))
    try:
        for f, got in zip(files, pool.map(lambda f: _check(f, nc), files)):
            if isinstance(got, NetdslError):
                if not skip_bad or isinstance(got, images.NotEnoughMemory):
                    raise got
                warnings.append(f"{_where(got)}: {got.message} (image skipped)")
                continue
            kept.append(f)
            labels.append(got[0])
            warnings += got[1]
    finally:
        pool.shutdown(cancel_futures=True)
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
        return _listed_images(p, key)
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        return [p]
    raise NetdslError(f"'{key}' path does not exist: {p}", path=str(origin),
                      hint="paths in a data YAML are relative to its 'path:', which is relative to the YAML's folder")


def _listed_images(p: Path, key: str) -> list[Path]:
    """The image paths a `.txt` list names, one a line; relative ones against the list's folder."""
    hint = f"a '{key}:' list file is UTF-8 text, one image path a line"
    try:
        data = p.read_bytes()
    except OSError as err:
        raise NetdslError(f"cannot read the image list: {err.strerror or err}", path=str(p), hint=hint) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = len(data[data.rfind(b"\n", 0, err.start) + 1:err.start].decode("utf-8", "replace")) + 1
        raise NetdslError(f"the image list is not UTF-8 text (byte 0x{data[err.start]:02x})",
                          Span(line, column, line, column + 1), hint, path=str(p),
                          source=data.decode("utf-8", errors="replace")) from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            q = Path(line)
            out.append(q if q.is_absolute() else p.parent / q)
    return out


def yaml_span(text: str, *keys: Any, value: bool = False) -> Span | None:
    """Where the entry at `keys` (mapping keys and list indices from the top) is in YAML text:
    a mapping entry's key and, on the same line, its value (`value`: the value alone). None when
    it cannot be found."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    first = None  # the key (or list item) node where the entry starts
    for k in keys:
        if isinstance(node, yaml.MappingNode):
            hit = next((kv for kv in node.value if isinstance(kv[0], yaml.ScalarNode) and kv[0].value == str(k)), None)
            if hit is None:
                return None
            first, node = hit
        elif isinstance(node, yaml.SequenceNode) and isinstance(k, int) and 0 <= k < len(node.value):
            first = node = node.value[k]
        else:
            return None
    if first is None:
        return None
    start = (node if value else first).start_mark
    end = node.end_mark if node.end_mark.line == start.line else first.end_mark
    return Span(start.line + 1, start.column + 1, start.line + 1, max(end.column, start.column + 1) + 1)


def parse_names(raw: Any, path: str, text: str | None = None, key: str = "names") -> list[str]:
    """A YAML `names:` value as class names: a list, or a mapping with the integer keys 0..n-1
    (as ultralytics writes them), at most `MAX_CLASSES`, each a plain string or number. Anything
    else is a NetdslError at its place in `text` (the YAML file at `path`) when that is given."""
    def fail(message: str, *where: Any) -> NetdslError:
        span = yaml_span(text, key, *where) if text is not None else None
        return NetdslError(message, span, NAMES_HINT, path=path, source=text, breaks="yaml")

    if isinstance(raw, dict):
        bad = next((k for k in raw if not isinstance(k, int) or isinstance(k, bool)), None)
        if bad is not None:
            raise fail(f"'{key}' as a mapping needs the integer keys 0, 1, ..., n-1, not {bad!r:.40}", bad)
        missing = next((i for i in range(min(len(raw), MAX_CLASSES + 1)) if i not in raw), None)
        if missing is not None:
            raise fail(f"'{key}' as a mapping needs the keys 0 to {len(raw) - 1}; {missing} is missing")
        raw = [raw[i] for i in range(len(raw))]
    if not isinstance(raw, (list, tuple)):
        raise fail(f"'{key}' must be a list of class names or a mapping from 0, 1, ..., "
                   f"not {type(raw).__name__} {raw!r:.40}")
    if len(raw) > MAX_CLASSES:
        raise fail(f"'{key}' lists {len(raw):,} names, beyond netdsl's limit of {MAX_CLASSES:,} classes")
    for i, n in enumerate(raw):
        if not isinstance(n, (str, int, float)) or isinstance(n, bool) or not str(n).strip():
            raise fail(f"'{key}' must hold plain names (strings); entry {i} is {n!r:.40}",
                       *([i] if isinstance(raw, list) else []))
    return [str(n).strip() for n in raw]


def _big(n: int) -> str:
    """An integer short enough for a message: `100000000000000000000` -> `1.00e+20`."""
    s = str(n)
    return s if len(s) <= 15 else f"{s[0]}.{s[1:3]}e+{len(s) - 1}"


def _classes(cfg: dict[Any, Any], path: Path, text: str) -> tuple[int, list[str]]:
    """`nc` and the class names of a data YAML: `nc:`, `names:` or both (then they must agree);
    names `class0`, `class1`, ... when only `nc:` is given."""
    def fail(message: str, key: str, hint: str) -> NetdslError:
        return NetdslError(message, yaml_span(text, key), hint, path=str(path), source=text, breaks="yaml")

    names = parse_names(cfg["names"], str(path), text) if cfg.get("names") is not None else None
    nc = cfg.get("nc", len(names) if names is not None else None)
    if not isinstance(nc, int) or isinstance(nc, bool) or nc < 1:
        raise fail(f"'nc' must be a positive integer, not {nc!r:.40}", "nc",
                   "nc: is the number of classes (or give names: and leave nc: out)")
    if nc > MAX_CLASSES:
        raise fail(f"nc = {_big(nc)} is beyond netdsl's limit of {MAX_CLASSES:,} classes", "nc",
                   "nc: is the number of classes, numbered from 0")
    if names is not None and len(names) != nc:
        raise fail(f"'names' has {len(names)} entries but nc is {nc}", "names", "give one name per class")
    return nc, names if names is not None else [f"class{i}" for i in range(nc)]


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
                          source=text, breaks="yaml") from None
    if not isinstance(cfg, dict):
        raise NetdslError("a data YAML must be a mapping with train, val, nc and names", path=str(path))
    notes = []
    if cfg.get("download"):
        notes.append(f"{path}: the 'download:' key is ignored; netdsl never fetches data")
    missing = [k for k in ("train", "val") if not cfg.get(k)]
    if missing:
        raise NetdslError(f"the data YAML has no '{missing[0]}' entry", path=str(path),
                          hint="train: and val: name image folders or .txt lists, relative to path:")
    nc, names = _classes(cfg, path, text)
    if nc_arg is not None and nc_arg != nc:
        raise NetdslError(f"the data YAML has nc = {nc}, but {nc_arg} classes were asked for", path=str(path),
                          hint=f"build the network with NCLS={nc}")
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
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or not 1 <= nc <= MAX_CLASSES):
        shown = _big(nc) if isinstance(nc, int) else f"{nc!r:.40}"
        raise NetdslError(f"{shown} classes asked for; netdsl takes 1 to {MAX_CLASSES:,}",
                          hint="the number of classes of the data and the network (NCLS)")
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
