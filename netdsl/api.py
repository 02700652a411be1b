"""The public Python API: parse, shapes, build.

Every argument a caller passes is checked here, before any work: a wrong type or value is a
NetdslError that names the argument and says what to pass, never a TypeError from deep inside or
a value silently taken for something else (NaN for "no limit", a string of claims as file names).
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Union

from netdsl import ir
from netdsl.errors import NetdslError
from netdsl.parsing import parse_text, read_spec_file
from netdsl.passes.limits import DEFAULT_MAX_BYTES

if TYPE_CHECKING:  # torch stays out of parse/count
    from netdsl.backends.torch_module import CompiledNet
    from netdsl.concrete import ConcreteGraph
    from netdsl.freeze import Freeze
    from netdsl.passes.counts import CountResult
    from netdsl.passes.solve import SolveResult

Source = Union[str, os.PathLike]


def load(source: Source) -> tuple[str, str | None]:
    """(text, path) of a spec given as a path or as spec text."""
    if not isinstance(source, (str, os.PathLike)):
        raise NetdslError(f"the spec must be a path or the spec's text, not {_shown(source)}",
                          hint="pass a file name (str or pathlib.Path) or the text of a spec")
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


def _shown(value: object) -> str:
    """`str 'x'`, `float nan`, `None`: the type and a short repr, for messages."""
    if value is None:
        return "None"
    text = repr(value)
    return f"{type(value).__name__} {text[:37] + '...' if len(text) > 40 else text}"


def _whole(name: str, value: object, low: int, high: int | None, hint: str) -> int:
    """An integer argument from `low` to `high`: bool is not one (True would be 1), nor is 2.5 or '3'."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise NetdslError(f"{name} must be an integer, not {_shown(value)}", hint=hint)
    n = int(value)
    if n < low or (high is not None and n > high):
        rng = f"from {low:,} to {high:,}" if high is not None else f"at least {low:,}"
        raise NetdslError(f"{name}={n:,} is out of range: it must be {rng}", hint=hint)
    return n


def _max_bytes(value: object) -> int | None:
    """`max_bytes`: None (no limit) or a positive number of bytes. NaN compares false with every
    size, so it would lift the limit unasked; infinity is refused too: None says "no limit"."""
    hint = "pass a number of bytes, e.g. max_bytes=16 * 2**30, or max_bytes=None for no limit"
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        if not math.isfinite(value):
            raise NetdslError(f"max_bytes must be a finite number of bytes, not {_shown(value)}", hint=hint)
        if float(value).is_integer():
            value = int(value)
    return _whole("max_bytes", value, 1, None, hint)


def _claim_files(value: object) -> tuple[str, ...]:
    """`claims`: a list of claim files. A string is refused, not read as a list of one-letter names."""
    if isinstance(value, (str, os.PathLike)):
        what = "claim text" if isinstance(value, str) and ("claim " in value or "\n" in value) else "a single path"
        raise NetdslError(f"claims must be a list of claim files, not {what} ({_shown(value)})",
                          hint="pass claims=['net.claims'] (claims written as text go in a file, or in the spec)")
    if not isinstance(value, (list, tuple)):
        raise NetdslError(f"claims must be a list of claim files, not {_shown(value)}",
                          hint="pass claims=['net.claims'], or leave it out")
    for f in value:
        if not isinstance(f, (str, os.PathLike)):
            raise NetdslError(f"claims must name files (str or pathlib.Path), not {_shown(f)}",
                              hint="pass claims=['net.claims']")
    return tuple(os.fspath(f) for f in value)  # type: ignore[misc]


def analyse_text(text: str, path: str | None, params: dict[str, int] | None = None,
                 freeze: Freeze | None = None) -> ConcreteGraph:
    """Spec text to its concrete graph at the values in use (no torch): the front of every command."""
    from netdsl.freeze import Freeze, check_effect, check_reachable
    from netdsl.passes.shapes import analyse

    with located(path, text):
        spec = parse_text(text, path)
        if freeze:
            check_reachable(spec, freeze)
        cg = analyse(spec, params, freeze=freeze or Freeze())
        if freeze:
            check_effect(freeze, cg)
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


def shapes(source: Source, **params: int) -> ConcreteGraph:
    """The concrete graph: symbolic shapes of every tensor and layer, checked at the values in use.

    >>> r = shapes("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\\noutput = x |> maxpool(2)")
    >>> r.show(r.output_shape), r.at(r.output_shape)
    ([1, H/2, W/2], [1, 4, 4])
    """
    text, path = load(source)
    return analyse_text(text, path, _params(params))


def compile_spec(text: str, path: str | None, params: dict[str, int],
                 max_bytes: int | None = DEFAULT_MAX_BYTES,
                 freeze: Freeze | None = None) -> tuple[ConcreteGraph, CompiledNet]:
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
          freeze: int | str | list[str] | Freeze | None = None, freeze_bn: str | None = None,
          **params: int) -> CompiledNet:
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

    limit = _max_bytes(max_bytes)
    text, path = load(source)
    return compile_spec(text, path, _params(params), limit, as_freeze(freeze, freeze_bn))[1]


def count(source: Source, *, claims: list[str] | tuple[str, ...] = (), **params: int) -> CountResult:
    """Exact symbolic counts per layer and in total, and the verdicts of the spec's claims
    (its own, those of SPEC.claims next to it, and those of the files in `claims`). No torch.

    >>> c = count("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)")
    >>> c.total("weights"), c.total("connections"), c.value(c.total("outputs"))
    (9*C, 9*C*H*W, 256)
    """
    from netdsl.passes.claims import check_claims
    from netdsl.passes.counts import count_layers

    files = _claim_files(claims)
    text, path = load(source)
    result = count_layers(analyse_text(text, path, _params(params)))
    result.claims = check_claims(result, claim_sources(result.shapes.spec, text, path, files))
    return result


def claim_sources(spec: ir.Spec | None, text: str, path: str | None,
                  files: list[str] | tuple[str, ...] = (), sidecar: bool = True) -> list:
    """The spec's own claims, those of `SPEC.claims` next to it (if any), then those of `files`."""
    from netdsl.parsing import parse_claims_text
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


def solve(source: Source, max_value: int = 16, **params: int) -> SolveResult:
    """The values of the open arguments (`?`) that make every shape annotation hold for all H, W.

    >>> spec = "net T(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\\n"
    >>> r = solve(spec + "y: [C, H/2, W/2] = x |> conv(C, 3, stride=2, padding=?)\\noutput = y")
    >>> r.status, r.solutions
    ('unique', [(1,)])
    """
    from netdsl.passes.solve import MAX_VALUE_LIMIT
    from netdsl.passes.solve import solve as _solve

    top = _whole("max_value", max_value, 0, MAX_VALUE_LIMIT,
                 "the largest value tried where PyTorch sets no bound, e.g. max_value=16")
    text, path = load(source)
    with located(path, text):
        return _solve(parse_text(text, path), _params(params), top)
