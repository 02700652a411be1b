"""Where detection data lies and what its label files say: a data YAML, a folder of images/ and
labels/, the label files parsed and checked (see netdsl.tasks.detect.data for the format).

Images are read by `netdsl.tasks.detect.images`, as `netdsl detect` reads them (first frame, EXIF
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
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from netdsl.errors import NetdslError, Span
from netdsl.tasks.detect import images
from netdsl.tasks.detect.images import BAD_IMAGE_HINT

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
TOLERANCE = 1e-4  # how far outside [0, 1] a coordinate may be (rounding in converters); clipped
# Far above any public detection set (LVIS 1,203 classes, YOLO9000 9,418) and far below 2**24,
# where float32 labels stop holding every integer; a bound so that a typo such as `nc: 1e20` or a
# class `1e30` is an error, not a list of that many names.
MAX_CLASSES = 100_000
NAMES_HINT = "write names: [person, bicycle, ...] or names: {0: person, 1: bicycle, ...}"
LABEL_HINT = ("one object per line: class index, then the box's centre x, centre y, width and height, "
              "each a fraction of the image's width or height in [0, 1]")


# --- image and label files -----------------------------------------------------------------------------

def check_image(path: Path) -> tuple[int, int]:
    """`(h, w)` of an image that decodes in full (`netdsl.tasks.detect.images.check_image`: a header
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

        def fail(message: str, first: int = 0, last: int = -1, hint: str = LABEL_HINT, n: int = n,
                 fields: list[tuple[str, int, int]] = fields) -> NetdslError:  # this line's, bound now
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
    return _drop_duplicates(np.array(rows, np.float32).reshape(-1, 5), path)


def _drop_duplicates(labels: np.ndarray, path: Path) -> tuple[np.ndarray, list[str]]:
    """Exact duplicate rows dropped (as ultralytics did), with a warning naming the file."""
    if len(labels):
        _, first = np.unique(labels, axis=0, return_index=True)
        if len(first) < len(labels):
            return labels[np.sort(first)], [f"{path}: {len(labels) - len(first)} duplicate label rows dropped"]
    return labels, []


def _where(err: NetdslError) -> str:
    return f"{err.path}:{err.span.line}" if err.span is not None else str(err.path)


def _check(f: Path, nc: int | None) -> tuple[np.ndarray, list[str], tuple[int, int]] | NetdslError:
    try:
        hw = check_image(f)
        return (*parse_labels(label_path(f), nc), hw)
    except NetdslError as err:
        return err


def read_split(files: list[Path], nc: int | None, skip_bad: bool
               ) -> tuple[list[Path], list[np.ndarray], list[str], list[tuple[int, int]]]:
    """Decode every image and parse its labels: `(images kept, labels, warnings, upright (h, w)
    of each image kept)`, in file order.

    Threads share the decoding (Pillow releases the GIL while it decodes); the first bad file in
    order is the one reported, and the files after it are not checked."""
    kept: list[Path] = []
    labels: list[np.ndarray] = []
    warnings: list[str] = []
    sizes: list[tuple[int, int]] = []
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
            sizes.append(got[2])
    finally:
        pool.shutdown(cancel_futures=True)
    return kept, labels, warnings, sizes


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
    for entry in text.splitlines():
        entry = entry.strip()
        if entry:
            q = Path(entry)
            out.append(q if q.is_absolute() else p.parent / q)
    return out


def yaml_span(text: str, *keys: Any, value: bool = False) -> Span | None:
    """Where the entry at `keys` (mapping keys and list indices from the top) is in YAML text:
    a mapping entry's key and, on the same line, its value (`value`: the value alone). None when
    it cannot be found."""

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
    if first is None or node is None:
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


def big_number(n: int) -> str:
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
        raise fail(f"nc = {big_number(nc)} is beyond netdsl's limit of {MAX_CLASSES:,} classes", "nc",
                   "nc: is the number of classes, numbered from 0")
    if names is not None and len(names) != nc:
        raise fail(f"'names' has {len(names)} entries but nc is {nc}", "names", "give one name per class")
    return nc, names if names is not None else [f"class{i}" for i in range(nc)]


def from_yaml(path: Path, nc_arg: int | None) -> tuple[list[Path], list[Path], int, list[str], list[str]]:

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


def from_folder(root: Path) -> tuple[list[Path], list[Path], list[str]]:
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
