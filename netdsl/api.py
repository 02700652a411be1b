"""The public Python API: parse, shapes, build."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Union

from netdsl import ir
from netdsl.errors import NetdslError
from netdsl.parse import parse_text, read_spec_file
from netdsl.passes.limits import DEFAULT_MAX_BYTES

if TYPE_CHECKING:  # torch stays out of parse/count
    from netdsl.backends.torch_module import CompiledNet
    from netdsl.freeze import Freeze
    from netdsl.concrete import ConcreteGraph
    from netdsl.passes.counts import CountResult
    from netdsl.passes.solve import SolveResult

Source = Union[str, os.PathLike]


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


def _params(params: dict[str, object]) -> dict[str, int]:
    from netdsl.values import check_overrides

    return check_overrides(params)


def analyse_text(text: str, path: str | None, params: dict[str, int] | None = None,
                 freeze: "Freeze | None" = None) -> "ConcreteGraph":
    """Spec text to its concrete graph at the values in use (no torch): the front of every command."""
    from netdsl.freeze import Freeze
    from netdsl.passes.shapes import analyse

    with located(path, text):
        cg = analyse(parse_text(text, path), params, freeze=freeze or Freeze())
    cg.source = (path, text)
    return cg


def parse(source: Source, **params: int) -> ir.Graph:
    """Parse and check a spec (a path or the text itself) into the lowered IR at the values in use.

    >>> g = parse("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1) -> relu")
    >>> [op.op for op in g.nodes[0].layers]
    ['conv', 'relu']
    """
    text, path = load(source)
    return lower_text(text, path, _params(params))


def lower_text(text: str, path: str | None, params: dict[str, int] | None = None) -> ir.Graph:
    """Spec text to the lowered IR at the values in use (blocks and repetition expanded; no shapes)."""
    from netdsl.passes.lower import check_header, lower
    from netdsl.passes.symbols import make_env

    with located(path, text):
        spec = parse_text(text, path)
        check_header(spec)
        return lower(spec, make_env(spec, params).values)


def shapes(source: Source, **params: int) -> "ConcreteGraph":
    """The concrete graph: symbolic shapes of every tensor and layer, checked at the values in use.

    >>> r = shapes("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\\noutput = x |> maxpool(2)")
    >>> r.show(r.output_shape), r.at(r.output_shape)
    ([1, H/2, W/2], [1, 4, 4])
    """
    text, path = load(source)
    return analyse_text(text, path, _params(params))


def compile_spec(text: str, path: str | None, params: dict[str, int],
                 max_bytes: int | None = DEFAULT_MAX_BYTES,
                 freeze: "Freeze | None" = None) -> tuple["ConcreteGraph", "CompiledNet"]:
    """Parse, check, size and compile spec text: the one path every build takes.

    The memory estimate is checked before torch is even imported, so an absurd size is refused
    in a fraction of a second and nothing is allocated.
    """
    from netdsl.passes.limits import check_memory

    cg = analyse_text(text, path, params, freeze)
    with located(path, text):
        check_memory(cg, max_bytes)
        from netdsl.backends.torch_module import to_module

        return cg, to_module(cg)


def build(source: Source, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
          freeze: "int | str | list[str] | Freeze | None" = None, freeze_bn: str | None = None,
          **params: int) -> "CompiledNet":
    """Compile a spec into a torch.nn.Module; keyword arguments override its parameters.

    Networks whose estimated memory (parameters, buffers and one sample's activations) exceeds
    `max_bytes` (8 GiB by default) are refused before anything is allocated; None lifts the limit.
    `freeze` freezes the first N top-level statements (an int) or the statements, labels and
    blocks named (a name or a list), on top of the spec's own `@freeze`; `freeze_bn` is "train"
    (frozen BatchNorm keeps updating its statistics in training mode, the default) or "eval".

    >>> import torch
    >>> m = build("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)", C=6)
    >>> tuple(m(torch.zeros(2, 1, 8, 8)).shape)
    (2, 6, 8, 8)
    """
    from netdsl.freeze import as_freeze

    text, path = load(source)
    return compile_spec(text, path, _params(params), max_bytes, as_freeze(freeze, freeze_bn))[1]


def count(source: Source, *, claims: list[str] | tuple[str, ...] = (), **params: int) -> "CountResult":
    """Exact symbolic counts per layer and in total, and the verdicts of the spec's claims
    (its own, those of SPEC.claims next to it, and those of the files in `claims`). No torch.

    >>> c = count("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)")
    >>> c.total("weights"), c.total("connections"), c.value(c.total("outputs"))
    (9*C, 9*C*H*W, 256)
    """
    from netdsl.passes.claims import check_claims
    from netdsl.passes.counts import count_layers

    text, path = load(source)
    result = count_layers(analyse_text(text, path, _params(params)))
    result.claims = check_claims(result, claim_sources(result.shapes.spec, text, path, claims))
    return result


def claim_sources(spec: ir.Spec | None, text: str, path: str | None,
                  files: list[str] | tuple[str, ...] = (), sidecar: bool = True) -> list:
    """The spec's own claims, those of `SPEC.claims` next to it (if any), then those of `files`."""
    from netdsl.parse import parse_claims_text
    from netdsl.passes.claims import ClaimSource

    out = [ClaimSource(c, path, text) for c in (spec.claims if spec is not None else [])]
    paths: list[str] = []
    if sidecar and path is not None:
        side = Path(path).with_suffix(".claims")
        if side.is_file():
            paths.append(str(side))
    paths += [f for f in files if f not in paths]
    for p in paths:
        ctext = read_spec_file(p)
        out += [ClaimSource(c, p, ctext) for c in parse_claims_text(ctext, p)]
    return out


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
        return _solve(parse_text(text, path), _params(params), max_value)
