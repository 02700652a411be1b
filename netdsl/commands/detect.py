"""`netdsl detect SPEC --weights FILE --source IMAGE|DIR`: run a detection network on images.

Builds the spec (its last layer a `detect` or `detect_v8` head), loads the weights, letterboxes each image as
ultralytics v9.6.0's detect.py does (scaled so its long side is `--img`, padded with grey only up
to multiples of the largest stride), keeps the boxes NMS keeps and writes into `--out` each image
with its boxes and labels (same file name, PNG for other formats, a distinct name for each input
where two would collide: `output_names`) and `detections.json`. One line
per image, in the course's style: `bus.jpg: 640x480 4 persons, 1 bus` (the network's input size,
height x width, then the count per class by class index).

Everything is checked, read and computed before the output directory is made (whether it can be
made is tried first; `--img` is held to build's memory limit, `--max-memory`); the files are
written into a temporary sibling directory renamed into place at the end, so an error or an
interruption leaves no half-written run. torch is imported only when the command runs.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from netdsl.api import compile_spec, load
from netdsl.commands.build import max_memory_bytes
from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError
from netdsl.files import check_writable
from netdsl.passes.memory import check_memory, gib
from netdsl.tasks.detect import images as image_io
from netdsl.tasks.detect.checks import classes_fix
from netdsl.tasks.detect.draw import draw_detections, encode_image, label
from netdsl.tasks.detect.labels import parse_names
from netdsl.values import parse_sets

if TYPE_CHECKING:  # torch, imported only once every cheap check has passed (and never for --help)
    from torch import nn

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
WRITE_SUFFIXES = (".jpg", ".jpeg", ".png")
JSON_NAME = "detections.json"
FORMAT = "netdsl-detections-v1"
DECODE_BATCH = 8  # images decoded at once (predict's batch)


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


READ_HINT = "check that it is an image file (PNG, JPEG, ...) and not truncated; move other files out of --source"


def read_image(path: Path) -> Any:
    """uint8 `[H, W, 3]` RGB as training reads it (`netdsl.tasks.detect.images`), or a NetdslError naming the file."""
    return image_io.read_image(path, READ_HINT)


def check_image(path: Path) -> None:
    """Decode the file in full and keep nothing (pixels are read a batch at a time), or a NetdslError."""
    image_io.check_image(path, READ_HINT)


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
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise NetdslError(f"the names file is not valid YAML ({str(err).splitlines()[0]})", path=path,
                              hint=hint) from None
        if not isinstance(data, dict) or data.get("names") is None:
            raise NetdslError("the YAML file has no `names:` list", path=path, hint=hint)
        names = parse_names(data["names"], path, text)
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
    check_writable(out, beside=True)  # the results are built beside it, then renamed into place


def _check_numbers(args: argparse.Namespace) -> None:
    if args.img <= 0:
        raise NetdslError(f"--img {args.img}: give a positive size in pixels", hint="e.g. --img 640")
    for flag, v in (("--conf", args.conf), ("--iou", args.iou)):
        if v is not None and not (math.isfinite(v) and 0 <= v <= 1):  # --iou None: the head's own
            raise NetdslError(f"{flag} {v}: give a number between 0 and 1", hint=f"e.g. {flag} 0.25")
    if args.max_det <= 0:
        raise NetdslError(f"--max-det {args.max_det}: give a positive number", hint="e.g. --max-det 300")


def check_img_memory(cg: ConcreteGraph, img: int, max_bytes: int) -> None:
    """Refuse an `--img` at which the network would need more than `max_bytes`, by build's
    estimate (parameters and buffers, and every layer's output for one image: `check_memory`)
    taken at the spec's input size and its activations scaled to `img` x `img`, the largest
    letterboxed input: a convolutional network's outputs grow with the input's area."""
    est = check_memory(cg, None)
    h, w = cg.inputs[0].at[-2:]
    acts = -(-est.activation_bytes * img * img // (h * w))  # exact integers: --img 99999999984 cannot overflow
    if est.parameter_bytes + acts > max_bytes:
        raise NetdslError(f"--img {img}: the network needs about {gib(est.parameter_bytes + acts)} at {img}x{img} "
                          f"(activations per image {gib(acts)}); the limit is {gib(max_bytes)}",
                          hint=f"use a smaller --img (the spec's own size is {h}x{w}), "
                               "or raise the limit with --max-memory GIB")


# ---------------------------------------------------------------------------------------------- output

def summary(counts: dict[int, int], names: list[str] | None) -> str:
    """`4 persons, 1 bus` (by class index), or `(no detections)`.

    >>> summary({0: 4, 5: 1}, ["person", "bicycle", "car", "motorcycle", "airplane", "bus"])
    '4 persons, 1 bus'
    >>> summary({}, None), summary({1: 2}, None)
    ('(no detections)', '2 class1s')
    """
    if not counts:
        return "(no detections)"
    return ", ".join(f"{n} {label(c, names)}{'s' * (n > 1)}" for c, n in sorted(counts.items()))


def output_names(files: list[Path]) -> list[str]:
    """A distinct output file name per input, decided from the whole list (so the same folder
    always gives the same names) and compared case-insensitively (as macOS and Windows compare).

    An input keeps its own name (`x.bmp` and other formats not written become `x.png`) when no
    other input wants it; of those that do, the one named so already keeps it (`a.png` over
    `a.bmp`), the others take their full name plus `.png` (`a.bmp.png`), or, if that is taken
    too, the first free `stem-N` (N = 2, 3, ...). Every name given earlier is reserved first, so
    a made-up name never takes one that belongs to another input, nor `detections.json`.

    >>> output_names([Path("a-2.png"), Path("a.bmp"), Path("a.png")])
    ['a-2.png', 'a.bmp.png', 'a.png']
    >>> output_names([Path("A.png"), Path("a.png"), Path("a.tif")])
    ['A.png', 'a-2.png', 'a.tif.png']
    """
    natural = [f.name if f.suffix.lower() in WRITE_SUFFIXES else f.stem + ".png" for f in files]
    wanted = Counter(n.casefold() for n in natural)
    taken = {JSON_NAME.casefold()}
    out: list[str | None] = [None] * len(files)

    def give(i: int, name: str) -> bool:
        if name.casefold() in taken:
            return False
        taken.add(name.casefold())
        out[i] = name
        return True

    for i, name in enumerate(natural):  # nobody else wants it
        if wanted[name.casefold()] == 1:
            give(i, name)
    for i, name in enumerate(natural):  # wanted by several: the input already named so, first in order
        if out[i] is None and files[i].name == name:
            give(i, name)
    for i, name in enumerate(natural):
        if out[i] is not None:
            continue
        if files[i].name != name and give(i, files[i].name + ".png"):  # converted: the name says from what
            continue
        stem, suffix = Path(name).stem, Path(name).suffix
        next(n for n in itertools.count(2) if give(i, f"{stem}-{n}{suffix}"))
    return [n for n in out if n is not None]


def run(args: argparse.Namespace) -> int:
    _check_numbers(args)
    max_bytes = max_memory_bytes(getattr(args, "max_memory", None))
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
    for f in files:
        check_image(f)
    model, classes, iou = _model(args, text, spec_path, overrides, max_bytes, names)
    args = argparse.Namespace(**{**vars(args), "iou": iou})  # the threshold used, not None
    entries, encoded, lines = _results(model, files, names, args)
    report = {"format": FORMAT, "spec": spec_path, "sets": overrides, "weights": weights, "img": args.img,
              "conf": args.conf, "iou": args.iou, "max_det": args.max_det, "classes": classes,
              "names": names or [label(c, None) for c in range(classes)],
              "box_format": "x1, y1, x2, y2 in the source image's pixels", "images": entries}
    _write_all(out, encoded, json.dumps(report, indent=2) + "\n")
    for line in lines:
        print(line)
    print(f"results saved to {out}", file=sys.stderr)
    return 0


def _model(args: argparse.Namespace, text: str, spec_path: str | None, overrides: dict[str, int], max_bytes: int,
           names: list[str] | None) -> tuple[nn.Module, int, float]:
    """The network with its weights, its class count and the NMS IoU threshold (`--iou`, else its
    head's: 0.45 for `detect`, 0.7 for `detect_v8`); refused before the weights are read when its
    head, its stride or its memory at `--img` does not fit the request."""
    import torch

    from netdsl.tasks.detect.predict import detect_head, protocol  # torch: the first heavy import
    from netdsl.weights import load_weights  # torch

    cg, model = compile_spec(text, spec_path, overrides, max_bytes)
    try:
        head = detect_head(model)
    except ValueError:
        raise NetdslError("the spec's output is not a detect head", path=spec_path,
                          hint="netdsl detect runs specs whose last layer is `detect(...)` or "
                               "`detect_v8(...)`") from None
    stride = max(head.strides)
    if args.img % stride:
        lower, upper = args.img // stride * stride, -(-args.img // stride) * stride
        raise NetdslError(f"--img {args.img} is not a multiple of the network's largest stride {stride}",
                          hint=f"use --img {upper}" + (f" or --img {lower}" if lower else ""))
    check_img_memory(cg, args.img, max_bytes)
    if names is not None and len(names) != head.classes:
        _, fix = classes_fix(text, spec_path or args.spec, len(names), "--set can change")  # the fix for this spec, not NCLS's
        raise NetdslError(f"the names file lists {len(names)} names but the network has {head.classes} classes",
                          path=args.names, hint=f"fix the names file (one name per class), or give the network "
                                                f"{len(names)} classes: {fix}")
    load_weights(model, args.weights)  # a file for another class count is refused here, naming the tensor
    # channels_last: yolov3-tiny's image at 320x640 in 41 ms instead of 60 (predict follows the layout)
    model.to(memory_format=torch.channels_last)
    return model, int(head.classes), protocol(model).iou if args.iou is None else args.iou


def _results(model: nn.Module, files: list[Path], names: list[str] | None, args: argparse.Namespace
             ) -> tuple[list[dict[str, Any]], list[tuple[str, bytes]], list[str]]:
    """(report entries, drawn images as (name, bytes), printed lines), one of each per image."""
    outputs = dict(zip(files, output_names(files)))
    entries, encoded, lines = [], [], []
    for f, im, det, (h, w) in _detections(model, files, args):
        det = det.numpy()
        classes = det[:, 5].astype(int).tolist()
        counts = {c: classes.count(c) for c in sorted(set(classes))}
        name = outputs[f]
        encoded.append((name, encode_image(draw_detections(im, det, names), Path(name).suffix)))
        entries.append({
            "source": str(f), "output": name, "height": int(im.shape[0]), "width": int(im.shape[1]),
            "input_size": [h, w],
            "detections": [{"class": int(c), "name": label(int(c), names), "confidence": round(float(s), 6),
                            "box": [round(float(v), 3) for v in (x1, y1, x2, y2)]}
                           for x1, y1, x2, y2, s, c in det.tolist()],
        })
        lines.append(f"{f.name}: {h}x{w} {summary(counts, names)}")
    return entries, encoded, lines


def _detections(model: Any, files: list[Path], args: argparse.Namespace) -> Iterator[tuple[Path, Any, Any, Any]]:
    """`(file, pixels, detections, letterboxed (h, w))` per image, decoding `DECODE_BATCH` files at a
    time: memory holds a batch of pictures, not a folder's."""
    from netdsl.tasks.detect.predict import predict  # torch

    for k in range(0, len(files), DECODE_BATCH):
        chunk = files[k:k + DECODE_BATCH]
        images = [read_image(f) for f in chunk]
        shapes: list[tuple[int, int]] = []
        dets = predict(model, images, img=args.img, conf=args.conf, iou=args.iou, max_det=args.max_det,
                       auto=True, shapes=shapes)
        yield from zip(chunk, images, dets, shapes)
        del images, dets  # before the next batch is decoded, not after


def _write_all(out: Path, files: list[tuple[str, bytes]], report: str) -> None:
    """Write everything into a temporary sibling of `out`, then move it into place; a place that
    became unwritable since `check_out` is a NetdslError (the partial files removed)."""
    try:
        _write_into_place(out, files, report)
    except OSError as err:
        raise NetdslError(f"cannot write the results: {err.strerror or err}", path=str(out),
                          hint="choose another --out") from None


def _write_into_place(out: Path, files: list[tuple[str, bytes]], report: str) -> None:
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
