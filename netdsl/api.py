"""The public Python API: parse, shapes, build."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Union

from netdsl import ir
from netdsl.errors import NetdslError
from netdsl.parse import parse_text, read_spec_file
from netdsl.passes.lower import lower

if TYPE_CHECKING:  # torch stays out of parse/count
    from netdsl.backends.torch_module import CompiledNet
    from netdsl.passes.counts import CountResult
    from netdsl.passes.shapes import ShapeResult
    from netdsl.passes.solve import SolveResult

Source = Union[str, os.PathLike]
DEFAULT_MAX_BYTES = 8 * 2**30


def load(source: Source) -> tuple[str, str | None]:
    """(text, path) of a spec given as a path or as spec text."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                           and (source.endswith(".net") or os.path.exists(source))):
        path = str(Path(source))
        return read_spec_file(path), path
    return str(source), None


@contextmanager
def located(path: str | None, text: str) -> Iterator[None]:
    """Attach the spec's path and text to any NetdslError raised inside, for rendering."""
    try:
        yield
    except NetdslError as e:
        raise e.with_source(path, text) from None


def parse(source: Source) -> ir.Graph:
    """Parse and check a spec (a path or the text itself) into the lowered IR.

    >>> g = parse("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1) -> relu")
    >>> [op.op for op in g.nodes[0].layers]
    ['conv', 'relu']
    """
    text, path = load(source)
    with located(path, text):
        return lower(parse_text(text, path))


def shapes(source: Source | ir.Graph, **params: int) -> "ShapeResult":
    """Symbolic shapes of every tensor and layer, checked at the values in use.

    >>> r = shapes("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\\noutput = x |> maxpool(2)")
    >>> r.show(r.output_shape), r.at(r.output_shape)
    ([1, H/2, W/2], [1, 4, 4])
    """
    from netdsl.passes.shapes import infer_shapes

    if isinstance(source, ir.Graph):
        return infer_shapes(source, params)
    text, path = load(source)
    with located(path, text):
        return infer_shapes(lower(parse_text(text, path)), params)


def compile_spec(text: str, path: str | None, params: dict[str, int],
                 max_bytes: int | None = DEFAULT_MAX_BYTES) -> tuple[ir.Graph, "ShapeResult", "CompiledNet"]:
    """Parse, check, size and compile spec text: the one path every build takes.

    The memory estimate is checked before torch is even imported, so an absurd size is refused
    in a fraction of a second and nothing is allocated.
    """
    from netdsl.passes.limits import check_memory
    from netdsl.passes.shapes import infer_shapes

    with located(path, text):
        graph = lower(parse_text(text, path))
        shapes = infer_shapes(graph, params)
        check_memory(shapes, max_bytes)
        from netdsl.backends.torch_module import to_module

        return graph, shapes, to_module(graph, shapes)


def build(source: Source, *, max_bytes: int | None = DEFAULT_MAX_BYTES, **params: int) -> "CompiledNet":
    """Compile a spec into a torch.nn.Module; keyword arguments override its parameters.

    Networks whose estimated memory (parameters, buffers and one sample's activations) exceeds
    `max_bytes` (8 GiB by default) are refused before anything is allocated; None lifts the limit.

    >>> import torch
    >>> m = build("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)", C=6)
    >>> tuple(m(torch.zeros(2, 1, 8, 8)).shape)
    (2, 6, 8, 8)
    """
    text, path = load(source)
    return compile_spec(text, path, params, max_bytes)[2]


def count(source: Source, **params: int) -> "CountResult":
    """Exact symbolic counts per layer and in total, and the verdicts of the spec's claims
    (its own and those of SPEC.claims next to it). Never imports torch.

    >>> c = count("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)")
    >>> c.total("weights"), c.total("connections"), c.value(c.total("outputs"))
    (9*C, 9*C*H*W, 256)
    """
    from netdsl.passes.claims import check_claims, claim_sources
    from netdsl.passes.counts import count_layers
    from netdsl.passes.shapes import infer_shapes

    text, path = load(source)
    with located(path, text):
        graph = lower(parse_text(text, path))
        result = count_layers(infer_shapes(graph, params))
    result.claims = check_claims(result, claim_sources(graph, text, path))
    return result


def solve(source: Source, max_value: int = 16, **params: int) -> "SolveResult":
    """The values of the open arguments (`?`) that make every shape annotation hold for all H, W.

    >>> spec = "net T(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\\n"
    >>> r = solve(spec + "y: [C, H/2, W/2] = x |> conv(C, 3, stride=2, padding=?)\\noutput = y")
    >>> r.status, r.solutions
    ('unique', [(1,)])
    """
    from netdsl.passes.solve import solve as _solve

    text, path = load(source)
    with located(path, text):
        return _solve(lower(parse_text(text, path)), params, max_value)
