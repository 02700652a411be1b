"""Drawing detections on an image (matplotlib's Agg canvas, no window) and writing it with imageio.

`draw_detections(image, detections, names)` returns a new uint8 `[H, W, 3]` image of the same
size with one coloured box per detection and a "name 0.87" label on a filled background above it
(inside the box when there is no room above). Colours per class follow ultralytics' palette.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# ultralytics' plotting palette (hex), cycled by class index
PALETTE = ("FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
           "2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7")


def colour(cls: int) -> tuple[float, float, float]:
    """The class's colour as RGB in [0, 1]."""
    h = PALETTE[int(cls) % len(PALETTE)]
    return tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def label(cls: int, names: Sequence[str] | None) -> str:
    """The class's name, or "class<i>" when no name is known."""
    c = int(cls)
    return names[c] if names is not None and 0 <= c < len(names) else f"class{c}"


def draw_detections(image: np.ndarray, detections: Any, names: Sequence[str] | None = None) -> np.ndarray:
    """A copy of the uint8 `[H, W, 3]` image with the `[k, 6]` detections (x1, y1, x2, y2, conf,
    class; pixels) drawn as boxes with labels.

    >>> out = draw_detections(np.zeros((40, 60, 3), np.uint8), [[5, 5, 30, 30, 0.9, 0]], ["cat"])
    >>> out.shape, out.dtype.name, out[20, 5].tolist(), out[35, 50].tolist()
    ((40, 60, 3), 'uint8', [255, 56, 56], [0, 0, 0])
    """
    # matplotlib only when drawing: netdsl.commands.detect imports this module for `netdsl --help` too
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    image = np.asarray(image)
    h, w = image.shape[:2]
    if hasattr(detections, "detach"):
        detections = detections.detach().cpu().numpy()
    dets = np.asarray(detections, dtype=np.float64).reshape(-1, 6)
    dpi = 100
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image, interpolation="nearest", extent=(0, w, h, 0))  # pixel edges at integer coordinates
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    line = max(1.0, min(h, w) / 300) * 72 / dpi  # in points: about 1 pixel per 300 of the short side
    size = max(5.0, min(h, w) / 30) * 72 / dpi
    for x1, y1, x2, y2, conf, cls in dets.tolist():
        c = colour(int(cls))
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c, linewidth=line * 2,
                               joinstyle="miter"))
        above = y1 > size * dpi / 72 * 1.6
        ax.text(x1, y1, f"{label(int(cls), names)} {conf:.2f}", fontsize=size, color="white",
                va="bottom" if above else "top", ha="left", clip_on=True,
                bbox={"facecolor": c, "edgecolor": c, "pad": 0.5, "boxstyle": "square,pad=0.1"})
    canvas.draw()
    out = np.asarray(canvas.buffer_rgba())[:, :, :3]
    if out.shape[:2] != (h, w):  # Agg rounds the figure size; keep the image's own size exactly
        fixed = np.zeros((h, w, 3), np.uint8)
        fixed[:min(h, out.shape[0]), :min(w, out.shape[1])] = out[:h, :w]
        out = fixed
    return np.array(out, dtype=np.uint8)


def encode_image(image: np.ndarray, suffix: str) -> bytes:
    """The image encoded as PNG or JPEG (chosen by `suffix`, e.g. ".jpg") with imageio."""
    import imageio.v3 as iio  # as matplotlib above: not for `netdsl --help`

    ext = suffix.lower()
    if ext not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"cannot write {suffix!r} images; use .png, .jpg or .jpeg")
    pixels = np.asarray(image, dtype=np.uint8)
    if ext == ".png":
        return bytes(iio.imwrite("<bytes>", pixels, extension=ext))
    return bytes(iio.imwrite("<bytes>", pixels, extension=ext, quality=95))


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 `[H, W, 3]` image as PNG or JPEG (by the path's suffix)."""
    Path(path).write_bytes(encode_image(image, Path(path).suffix))
