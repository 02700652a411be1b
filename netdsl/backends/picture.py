"""`netdsl export SPEC --to dot|svg|png`: the network as a picture, drawn by Graphviz.

netdsl writes Graphviz's `dot` language itself (no Python package needed) from the concrete graph:

* a top-level statement is one box with a row per layer: the layer as the spec would write it
  (at the values in use), its output shape in the spec's symbols (`[64, H/2, W/2]`) and at the
  values in use (`64×112×112`), and its parameter count. A call of a sequence block (`cba(32, 3)`)
  is one row, the call as written, its layers listed under it;
* a graph-block call (`basic(64)`, `res(256)`) is a frame around its own statements, each a
  compact box with its layers on one line; identical repeats (`res(256) * 8`) share one frame
  marked `× 8`, so a ResNet fits on a page. `--expand` draws every layer and every repeat;
* `cat`, `add` and the other merges are small round nodes; their inputs other than the main
  path (the one produced last) are skip connections, drawn as coloured edges labelled with the
  tensor's name. Inputs are ovals; output boxes have a heavy border.

`svg` and `png` run Graphviz's `dot` program (a system package: `apt-get install graphviz`,
`brew install graphviz`, `conda install graphviz`); without it the `.dot` text is written next to
the requested file and the message says how to render it. Every file is written through a
temporary file and renamed.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from netdsl.backends.picture_draw import Drawing
from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError
from netdsl.files import atomic_write, is_stream

INSTALL = ("Graphviz is a system package: `apt-get install graphviz` (Debian, Ubuntu), "
           "`brew install graphviz` (macOS), `conda install graphviz`, or https://graphviz.org/download/")
RENDER_TIMEOUT = 300  # seconds; a network of thousands of layers takes dot a while


def find_dot() -> str | None:
    """Graphviz's `dot` program, if it is installed (tests replace this to pretend it is not)."""
    return shutil.which("dot")


def to_dot(cg: ConcreteGraph, expand: bool = False) -> str:
    """The network as Graphviz `dot` text (see the module's docstring for what is drawn).

    >>> from netdsl.api import shapes
    >>> cg = shapes("net T(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\\n"
    ...             "y = x |> conv(C, 3, padding=1) -> relu\\noutput = cat(x, y) |> maxpool(2)")
    >>> text = to_dot(cg)
    >>> text.startswith('digraph "T" {'), "[C + 1, H/2, W/2]" in text, "5×4×4" in text
    (True, True, True)
    """
    return Drawing(cg, expand).draw()


# --- files ---------------------------------------------------------------------------------------

def _atomic(path: Path, data: bytes, inputs: list[str], replace: bool = True) -> None:
    atomic_write(path, lambda fh: fh.write(data), inputs=inputs, replace=replace)


def _same_content(path: Path, data: bytes) -> bool:
    """Whether the regular file at `path` holds exactly `data` (read no further than its size)."""
    try:
        if not path.is_file() or path.stat().st_size != len(data):
            return False
        with open(path, "rb") as fh:
            return fh.read(len(data) + 1) == data
    except OSError:
        return False


def render(dot_text: str, fmt: str, dot: str) -> bytes:
    """Run Graphviz's `dot` on the text; the picture's bytes."""
    try:
        done = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True,
                              timeout=RENDER_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetdslError(f"Graphviz's dot could not render the picture: {e}",
                          hint="export --to dot and render the file yourself") from e
    if done.returncode != 0 or not done.stdout:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise NetdslError(f"Graphviz's dot failed (exit status {done.returncode}): {err[-1] if err else 'no output'}",
                          hint="export --to dot and render the file yourself, or update Graphviz")
    return done.stdout


def _dot_instead(out: Path, fmt: str, data: bytes, inputs: list[str]) -> str:
    """Without Graphviz: the dot text beside `out`, never over a file the user has there."""
    dot_path = out.with_suffix(".dot")
    missing = f"Graphviz's `dot` program is not installed, so no {fmt} was drawn"
    if is_stream(out):  # a FIFO or device has no folder to leave the text in
        raise NetdslError(f"{missing} to {out}", path=str(out), hint=f"{INSTALL}; or export --to dot")
    if _same_content(dot_path, data):
        done = f"{dot_path} already holds its dot text"
    else:
        try:
            _atomic(dot_path, data, inputs, replace=False)
        except NetdslError as e:
            raise NetdslError(f"{missing}, and the dot text was not written either: {e.message}",
                              path=str(dot_path), hint=f"export --to dot -o OTHER.dot and render that, or install "
                                                       f"Graphviz: {INSTALL}") from None
        done = f"wrote {dot_path} instead"
    return (f"{missing}: {done}.\n"
            f"  Render it with `dot -T{fmt} {dot_path} -o {out}` once Graphviz is installed.\n  {INSTALL}")


def write_picture(cg: ConcreteGraph, out: Path | str, fmt: str, expand: bool = False) -> str:
    """Write the picture (`fmt` dot, svg or png) at `out`; return the message to print.

    Without Graphviz, svg and png leave the `.dot` text next to `out` and say how to render it;
    a different file already there under that name is kept, and that is an error. The spec
    (`cg.source`) is never overwritten.

    >>> import tempfile, pathlib
    >>> from netdsl.api import shapes
    >>> cg = shapes("net T(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     print(write_picture(cg, pathlib.Path(d) / "t.dot", "dot").split(d)[1])
    /t.dot (Graphviz dot text; render it with `dot -Tsvg t.dot -o t.svg`)
    """
    if fmt not in ("dot", "svg", "png"):
        raise NetdslError(f"no picture format '{fmt}'", hint="use dot, svg or png")
    out = Path(out)
    inputs = [cg.source[0]] if cg.source[0] else []
    text = to_dot(cg, expand)
    if fmt == "dot":
        _atomic(out, text.encode("utf-8"), inputs)
        return f"wrote {out} (Graphviz dot text; render it with `dot -Tsvg {out.name} -o {out.with_suffix('.svg').name}`)"
    dot = find_dot()
    if dot is None:
        return _dot_instead(out, fmt, text.encode("utf-8"), inputs)
    _atomic(out, render(text, fmt, dot), inputs)
    return f"wrote {out}"
