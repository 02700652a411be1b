"""Every task's figures are written the same way: matplotlib's object API with the Agg canvas (no
pyplot global state, no display needed), saved as PNG through netdsl's atomic writer."""
from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from netdsl.files import atomic_write


def save(fig: Figure, path: Path) -> None:
    """Write `fig` to `path` as PNG (110 dpi, tight), atomically."""
    FigureCanvasAgg(fig)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
