"""One image reader for detection: training data (`netdsl.tasks.detect.data`) and inference
(`netdsl detect`, `netdsl.tasks.detect.predict`) turn files and arrays into pixels here, so a file
means the same pixels to both.

A file is read with Pillow: its first frame (of an animated GIF, a multipage TIFF), turned upright
by its EXIF orientation as OpenCV's `imread` turns it (ultralytics v9.6.0 trains and detects on
what `imread` returns, so YOLO labels describe the upright picture), then made uint8 `[h, w, 3]` RGB:
- greyscale of any depth repeated to three channels; alpha dropped (not composited: what lies
  behind a transparent pixel is unknown, and photos have none); palettes expanded;
- 16 bits to 8 as `round(v * 255 / 65535)`, full scale to full scale (30000 -> 117). Pillow reads
  16-bit RGB(A) PNGs as their high bytes (`v >> 8`, as OpenCV does), at most 1 away from that;
- 32-bit integer pixels (Pillow's mode `I`, which some 16-bit files open as) as 16-bit when they
  fit 16 bits; floating-point pixels (mode `F`) and wider integers are refused: nothing says what
  range they span.
Arrays (`as_rgb`) follow the same rules by dtype: uint8 as is, uint16 scaled as above, bool as
0/255, any other dtype taken to hold 0..255 (rounded, clipped); `[h, w]`, `[h, w, 1]` and
`[h, w, 2]` (grey+alpha) are greyscale, `[h, w, 4]` loses its alpha.

Failures are `NetdslError`s naming the file. Running out of memory while decoding is said to be
that, with the image's size, never blamed on the file.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.errors import NetdslError

BAD_IMAGE_HINT = "replace or delete the file, or pass --skip-bad (skip_bad=True) to skip it"
ORIENTATION = 0x0112  # EXIF tag: how the stored pixels must be turned to stand upright
# EXIF orientation -> the Pillow `Transpose` that makes the picture upright (as `ImageOps.exif_transpose`)
TURNS = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
         6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}
SIDEWAYS = {"TRANSPOSE", "ROTATE_270", "TRANSVERSE", "ROTATE_90"}  # these swap height and width


class NotEnoughMemory(NetdslError):
    """Decoding ran out of memory: the file is not at fault (`skip_bad` must not skip it)."""


def read_image(path: Path, hint: str = BAD_IMAGE_HINT) -> np.ndarray:
    """The file's pixels, uint8 `[h, w, 3]` RGB upright (see the module doc); a NetdslError naming it."""
    return _decode(Path(path), hint, draft=False)[0]


def check_image(path: Path, hint: str = BAD_IMAGE_HINT) -> tuple[int, int]:
    """The upright `(h, w)` of an image that `read_image` will read, else its NetdslError.

    Decodes the whole file and discards the pixels: a header check (Pillow's `verify`) passes
    truncated and corrupt JPEGs that then fail mid-training. JPEGs decode at 1/8 scale (libjpeg's
    DCT scaling): every byte of the entropy-coded data is still read, at a fraction of the cost."""
    return _decode(Path(path), hint, draft=True)[1]


def _decode(path: Path, hint: str, draft: bool) -> tuple[np.ndarray, tuple[int, int]]:
    from PIL import Image  # Pillow only when decoding: netdsl.commands.detect imports this module for `--help` too

    size = ""  # "W x H " once the header is read, for the out-of-memory message
    try:
        with Image.open(path) as im:  # the first frame of a multi-frame file
            turn = TURNS.get(_orientation(im))
            w, h = im.size
            size = f"{w}x{h} "
            upright = (w, h) if turn in SIDEWAYS else (h, w)
            if draft and im.format == "JPEG":
                im.draft(None, (1, 1))  # the smallest DCT scale, 1/8
            im.load()
            pixels = pil_to_rgb(im.transpose(getattr(Image.Transpose, turn)) if turn else im)
    except MemoryError:
        raise NotEnoughMemory(f"not enough memory to decode this {size}image", path=str(path),
                              hint="the file is not at fault: free memory, or load fewer images at once "
                                   "(a smaller batch, no --cache)") from None
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for damaged files
        raise NetdslError(f"cannot read image: {err}", path=str(path), hint=hint) from None
    return pixels, upright


def _orientation(im: Any) -> Any:
    try:
        return im.getexif().get(ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - damaged EXIF: the pixels may still be fine, as OpenCV reads them
        return 1


def pil_to_rgb(im: Any) -> np.ndarray:
    """A loaded Pillow image as uint8 `[h, w, 3]` RGB; ValueError for pixels of unknown range."""
    if im.mode == "F":
        raise ValueError("floating-point pixels (mode F) have no known range; save it with 8 or 16 bits")
    if im.mode == "I" or im.mode.startswith("I;16"):
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError("integer pixels beyond 16 bits have no known range; save it with 8 or 16 bits")
        return as_rgb(a.astype(np.uint16))
    if im.mode != "RGB":
        with warnings.catch_warnings():  # "palette images with transparency...": alpha is dropped anyway
            warnings.simplefilter("ignore", UserWarning)
            im = im.convert("RGB")
    return np.array(im)  # writable (np.asarray of a Pillow image is not): torch.from_numpy warns on read-only


def as_rgb(image: Any) -> np.ndarray:
    """An array as uint8 `[h, w, 3]` RGB by the module doc's rules, or ValueError.

    >>> as_rgb(np.full((1, 2), 30000, np.uint16)).tolist()
    [[[117, 117, 117], [117, 117, 117]]]
    >>> as_rgb(np.array([[[10, 255]]], np.uint8)).tolist()  # grey + alpha
    [[[10, 10, 10]]]
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (1, 2):
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected an [H, W, 3] image, got shape {list(a.shape)}")
    a = to_uint8(a if a.ndim == 2 else a[:, :, :3])
    return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a)


def to_uint8(a: np.ndarray) -> np.ndarray:
    """Pixels as uint8: uint16 scaled full scale to full scale (rounded), bool as 0/255, any
    other dtype taken to hold 0..255 (rounded, clipped, NaN as 0)."""
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind == "u" and a.dtype.itemsize == 2:  # either byte order
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    return np.clip(np.rint(np.nan_to_num(a.astype(np.float64))), 0, 255).astype(np.uint8)
