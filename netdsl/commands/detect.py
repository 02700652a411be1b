"""`netdsl detect SPEC --weights FILE --source IMAGE|DIR`: run a detection network on images.

Builds the spec (its last layer a `detect` head), loads the weights, letterboxes each image as
ultralytics v9.6.0's detect.py does (scaled so its long side is `--img`, padded with grey only up
to multiples of the largest stride), keeps the boxes NMS keeps and writes into `--out` each image
with its boxes and labels (same file name; PNG for other formats) and `detections.json`. One line
per image, in the course's style: `bus.jpg: 640x480 4 persons, 1 bus` (the network's input size,
height x width, then the count per class by class index).

Everything is checked, read and computed before the output directory is made; the files are
written into a temporary sibling directory renamed into place at the end, so an error or an
interruption leaves no half-written run. torch is imported only when the command runs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from netdsl.commands.common import add_set_argument
from netdsl.errors import NetdslError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
WRITE_SUFFIXES = (".jpg", ".jpeg", ".png")
JSON_NAME = "detections.json"
FORMAT = "netdsl-detections-v1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Run a detection spec (one ending in `detect`) with trained weights on an image or a "
                     "directory of images; write the images with boxes and labels and detections.json.")
    p.add_argument("spec", help="path to a .net spec whose output is a detect head")
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="weights to load: darknet .weights, or a .pt/.pth state_dict or netdsl checkpoint")
    p.add_argument("--source", required=True, metavar="IMAGE|DIR", help="an image, or a directory of images")
    add_set_argument(p, "override a declared parameter (e.g. --set NCLS=2) (repeatable)")
    p.add_argument("--img", type=int, default=640, metavar="N",
                   help="inference size: the long side in pixels, a multiple of the largest stride (default 640)")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--max-det", type=int, default=300, metavar="N", help="detections per image at most (default 300)")
    p.add_argument("--names", metavar="FILE",
                   help="class names: a YAML file with `names:` (a list, or a mapping from index), "
                        "or a text file with one name per line (default class0, class1, ...)")
    p.add_argument("--out", metavar="DIR", help="output directory, new or empty (default: runs/detect-<timestamp>)")


# ---------------------------------------------------------------------------------------------- inputs

def find_images(source: str) -> list[Path]:
    """The image files named by `--source`: the file itself, or a directory's images by name."""
    p = Path(source)
    if not p.exists():
        raise NetdslError("source not found", path=source, hint="give an image file or a directory of images")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise NetdslError("no images in the source directory", path=source,
                              hint=f"images are files ending in {', '.join(IMAGE_SUFFIXES)}")
        return files
    if not p.is_file():
        raise NetdslError("the source is neither a file nor a directory", path=source)
    return [p]


def read_image(path: Path) -> Any:
    """uint8 `[H, W, 3]` (greyscale repeated, alpha dropped), or a NetdslError naming the file."""
    import warnings

    from netdsl.train.patches import read_rgb

    try:
        with warnings.catch_warnings():  # imageio's deprecated plugins warn while it looks for a reader
            warnings.simplefilter("ignore", DeprecationWarning)
            return read_rgb(path)
    except NetdslError as err:
        first = err.message.splitlines()[0].rstrip(" .:") if err.message else "cannot read image"
        raise NetdslError(first, path=str(path),
                          hint="check that it is an image file (PNG, JPEG, ...) and not truncated; "
                               "move other files out of --source") from None


def read_names(path: str) -> list[str]:
    """Class names from a YAML file's `names:` (list, or mapping from 0..n-1) or a text file, one per line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NetdslError("names file not found", path=path, hint="check the path given to --names") from None
    except (OSError, UnicodeDecodeError) as err:
        raise NetdslError(f"cannot read the names file: {getattr(err, 'strerror', None) or err}", path=path,
                          hint="--names takes a UTF-8 YAML or text file") from None
    hint = "write `names: [person, bicycle, ...]` in YAML, or one name per line in a .txt file"
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise NetdslError(f"the names file is not valid YAML ({str(err).splitlines()[0]})", path=path,
                              hint=hint) from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict):
            if sorted(names) != list(range(len(names))):
                raise NetdslError("`names:` as a mapping must have the keys 0, 1, ..., n-1", path=path, hint=hint)
            names = [names[i] for i in range(len(names))]
        if not isinstance(names, list):
            raise NetdslError("the YAML file has no `names:` list", path=path, hint=hint)
        if not all(isinstance(n, (str, int, float)) and not isinstance(n, bool) for n in names):
            raise NetdslError("`names:` must hold plain names (strings)", path=path, hint=hint)
        names = [str(n).strip() for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names or not all(names):
        raise NetdslError("the names file lists no names" if not names else "a class name is empty",
                          path=path, hint=hint)
    return names


def check_out(out: Path) -> None:
    """`--out` must not exist, or be an empty directory (as `netdsl train --out`)."""
    for p in (out, *out.parents):
        if p.is_dir():
            break
        if p.exists() or p.is_symlink():
            msg = ("the output path is a file, not a directory" if p == out
                   else f"{p} is not a directory, so the output directory cannot be made inside it")
            raise NetdslError(msg, path=str(out), hint="choose another --out")
    if out.exists() and any(out.iterdir()):
        raise NetdslError("output directory already exists and is not empty", path=str(out),
                          hint="choose another --out")


def _check_numbers(args: argparse.Namespace) -> None:
    if args.img <= 0:
        raise NetdslError(f"--img {args.img}: give a positive size in pixels", hint="e.g. --img 640")
    for flag, v in (("--conf", args.conf), ("--iou", args.iou)):
        if not (math.isfinite(v) and 0 <= v <= 1):
            raise NetdslError(f"{flag} {v}: give a number between 0 and 1", hint=f"e.g. {flag} 0.25")
    if args.max_det <= 0:
        raise NetdslError(f"--max-det {args.max_det}: give a positive number", hint="e.g. --max-det 300")


# ---------------------------------------------------------------------------------------------- output

def summary(counts: dict[int, int], names: list[str] | None) -> str:
    """`4 persons, 1 bus` (by class index), or `(no detections)`.

    >>> summary({0: 4, 5: 1}, ["person", "bicycle", "car", "motorcycle", "airplane", "bus"])
    '4 persons, 1 bus'
    >>> summary({}, None), summary({1: 2}, None)
    ('(no detections)', '2 class1s')
    """
    from netdsl.detection.draw import label

    if not counts:
        return "(no detections)"
    return ", ".join(f"{n} {label(c, names)}{'s' * (n > 1)}" for c, n in sorted(counts.items()))


def _output_name(src: Path, used: set[str]) -> str:
    name = src.name if src.suffix.lower() in WRITE_SUFFIXES else src.stem + ".png"
    if name == JSON_NAME or name in used:
        name = f"{Path(name).stem}-{len(used)}{Path(name).suffix}"
    used.add(name)
    return name


def run(args: argparse.Namespace) -> int:
    from netdsl.api import load
    from netdsl.commands.common import parse_sets

    _check_numbers(args)
    text, spec_path = load(args.spec)
    overrides = parse_sets(args.sets)
    files = find_images(args.source)
    names = read_names(args.names) if args.names else None
    out = Path(args.out) if args.out else Path("runs") / f"detect-{time.strftime('%Y%m%d-%H%M%S')}"
    check_out(out)
    weights = args.weights
    if not Path(weights).is_file():
        raise NetdslError("no such weights file" if not Path(weights).exists() else "the weights path is not a file",
                          path=weights, hint="check the path given to --weights")

    images = [read_image(f) for f in files]

    import torch  # noqa: F401 - the first heavy import, once every cheap check has passed

    from netdsl.api import compile_spec
    from netdsl.detection.predict import detect_head, predict
    from netdsl.weights import load_weights

    _, model = compile_spec(text, spec_path, overrides)
    try:
        head = detect_head(model)
    except ValueError:
        raise NetdslError("the spec's output is not a detect head", path=spec_path,
                          hint="netdsl detect runs specs whose last layer is `detect(...)`") from None
    stride = max(head.strides)
    if args.img % stride:
        lower, upper = args.img // stride * stride, -(-args.img // stride) * stride
        raise NetdslError(f"--img {args.img} is not a multiple of the network's largest stride {stride}",
                          hint=f"use --img {upper}" + (f" or --img {lower}" if lower else ""))
    if names is not None and len(names) != head.classes:
        raise NetdslError(f"the names file lists {len(names)} names but the network has {head.classes} classes",
                          path=args.names, hint="set the class count with --set NCLS=... or fix the names file")
    load_weights(model, weights)  # a file for another class count is refused here, naming the tensor

    shapes: list[tuple[int, int]] = []
    dets = predict(model, images, img=args.img, conf=args.conf, iou=args.iou, max_det=args.max_det,
                   auto=True, shapes=shapes)

    from netdsl.detection.draw import draw_detections, encode_image, label

    used: set[str] = set()
    entries, encoded, lines = [], [], []
    for f, im, det, (h, w) in zip(files, images, dets, shapes):
        det = det.numpy()
        classes = det[:, 5].astype(int).tolist()
        counts = {c: classes.count(c) for c in sorted(set(classes))}
        name = _output_name(f, used)
        encoded.append((name, encode_image(draw_detections(im, det, names), Path(name).suffix)))
        entries.append({
            "source": str(f), "output": name, "height": int(im.shape[0]), "width": int(im.shape[1]),
            "input_size": [h, w],
            "detections": [{"class": int(c), "name": label(int(c), names), "confidence": round(float(s), 6),
                            "box": [round(float(v), 3) for v in (x1, y1, x2, y2)]}
                           for x1, y1, x2, y2, s, c in det.tolist()],
        })
        lines.append(f"{f.name}: {h}x{w} {summary(counts, names)}")
    report = {"format": FORMAT, "spec": spec_path, "sets": overrides, "weights": weights, "img": args.img,
              "conf": args.conf, "iou": args.iou, "max_det": args.max_det, "classes": head.classes,
              "names": names or [label(c, None) for c in range(head.classes)],
              "box_format": "x1, y1, x2, y2 in the source image's pixels", "images": entries}
    _write_all(out, encoded, json.dumps(report, indent=2) + "\n")
    for line in lines:
        print(line)
    print(f"results saved to {out}", file=sys.stderr)
    return 0


def _write_all(out: Path, files: list[tuple[str, bytes]], report: str) -> None:
    """Write everything into a temporary sibling of `out`, then move it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, data in files:
            (tmp / name).write_bytes(data)
        (tmp / JSON_NAME).write_text(report, encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; run outputs are meant to be shared
        if out.exists():
            out.rmdir()  # empty (checked before); rmdir refuses if something appeared since
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
