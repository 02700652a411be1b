"""The public Python API: parse, shapes, build."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

from netdsl import ir
from netdsl.errors import NetdslError
from netdsl.parse import parse_text, read_spec_file
from netdsl.passes.lower import lower

if TYPE_CHECKING:  # torch stays out of parse/count
    from netdsl.backends.torch_module import CompiledNet
    from netdsl.passes.shapes import ShapeResult

Source = Union[str, os.PathLike]


def load(source: Source) -> tuple[str, str | None]:
    """(text, path) of a spec given as a path or as spec text."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                           and (source.endswith(".net") or os.path.exists(source))):
        path = str(Path(source))
        return read_spec_file(path), path
    return str(source), None


def _guard(path: str | None, text: str):
    class _Ctx:
        def __enter__(self) -> None:
            return None

        def __exit__(self, et, e, tb) -> bool:
            if isinstance(e, NetdslError):
                e.with_source(path, text)
            return False
    return _Ctx()


def parse(source: Source) -> ir.Graph:
    """Parse and check a spec (a path or the text itself) into the lowered IR.

    >>> g = parse("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1) -> relu")
    >>> [op.op for op in g.nodes[0].layers]
    ['conv', 'relu']
    """
    text, path = load(source)
    spec = parse_text(text, path)
    with _guard(path, text):
        return lower(spec)


def shapes(source: Source | ir.Graph, **params: int) -> "ShapeResult":
    """Symbolic shapes of every tensor and layer, checked at the values in use.

    >>> r = shapes("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 2 == 0\\noutput = x |> maxpool(2)")
    >>> r.show(r.output_shape), r.at(r.output_shape)
    ([1, H/2, W/2], [1, 4, 4])
    """
    from netdsl.passes.shapes import infer_shapes

    if isinstance(source, ir.Graph):
        return infer_shapes(source, params)
    text, path = load(source)
    graph = parse(source) if path else parse(text)
    with _guard(path, text):
        return infer_shapes(graph, params)


def build(source: Source, **params: int) -> "CompiledNet":
    """Compile a spec into a torch.nn.Module; keyword arguments override its parameters.

    >>> import torch
    >>> m = build("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)", C=6)
    >>> tuple(m(torch.zeros(2, 1, 8, 8)).shape)
    (2, 6, 8, 8)
    """
    from netdsl.backends.torch_module import to_module

    text, path = load(source)
    with _guard(path, text):
        graph = parse_text(text, path)
        g = lower(graph)
        from netdsl.passes.shapes import infer_shapes

        return to_module(g, infer_shapes(g, params))
