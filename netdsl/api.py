"""The public Python API: parse, shapes, count, solve, build.

Every argument a caller passes is checked here, before any work: a wrong type or value is a
NetdslError that names the argument and says what to pass, never a TypeError from deep inside or
a value silently taken for something else (NaN for "no limit", a string of claims as file names).
"""
from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from netdsl import ir
from netdsl.errors import NetdslError, located
from netdsl.freeze import Freeze, as_freeze
from netdsl.limits import DEFAULT_MAX_BYTES
from netdsl.parsing import parse_claims_text, parse_text, read_spec_file
from netdsl.values import check_overrides

if TYPE_CHECKING:
    from netdsl.backends.torch_module import CompiledNet
    from netdsl.concrete import ConcreteGraph
    from netdsl.passes.claims import ClaimSource
    from netdsl.passes.counts import CountResult
    from netdsl.passes.diff import DiffResult
    from netdsl.passes.fit import FitResult
    from netdsl.passes.memory_model import Dtype, Optimizer
    from netdsl.passes.solve import SolveResult

Source = str | os.PathLike


def __getattr__(name: str) -> Any:
    """`analyse_text`, `lower_text` (netdsl.passes.front) and `compile_spec` (netdsl.backends.torch_build),
    re-exported on first use for callers of the top layer.

    The compiler's passes import SymPy (about 0.8 s), so this module imports them when an API
    function first runs: `import netdsl` and `netdsl --help` stay fast.
    """
    if name in ("analyse_text", "lower_text"):
        from netdsl.passes import front

        return getattr(front, name)
    if name == "compile_spec":
        from netdsl.backends import torch_build

        return torch_build.compile_spec
    raise AttributeError(f"module 'netdsl.api' has no attribute {name!r}")


def load(source: Source) -> tuple[str, str | None]:
    """(text, path) of a spec given as a path or as its text.

    A `pathlib.Path` (any os.PathLike) is a path. A str is a path when it names a file, or when
    it is one line that ends in `.net` or holds no space: spec text never does (it starts
    `net NAME` and has several lines). A path that names no file is a "no such file" error
    naming it, never spec text with a syntax error.

    >>> load("net T\\ninput x: [1, 2, 2]\\noutput = x")[1] is None
    True
    >>> load("specs/unet.nett")
    Traceback (most recent call last):
      ...
    netdsl.errors.NetdslError: specs/unet.nett: error: no such file: specs/unet.nett
      hint: check the path to the spec
    """
    if not isinstance(source, (str, os.PathLike)):
        raise NetdslError(f"the spec must be a path or the spec's text, not {_shown(source)}",
                          hint="pass a file name (str or pathlib.Path) or the text of a spec")
    if isinstance(source, str) and not _names_a_file(source):
        return source, None
    path = str(Path(source))
    return read_spec_file(path), path


def _names_a_file(text: str) -> bool:
    """Whether a str given as a spec is a file name rather than the spec's text."""
    if "\n" in text or not text.strip():
        return False
    return text.endswith(".net") or not any(c.isspace() for c in text) or os.path.exists(text)


def _params(params: Mapping[str, object]) -> dict[str, int]:
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
            value = math.floor(value)  # exact, as int() is, for a whole number
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
    return tuple(os.fspath(f) for f in value)


def parse(source: Source, **params: int) -> ir.Graph:
    """Parse and check a spec (a path or the text itself) into the lowered IR at the values in use.

    >>> g = parse("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1) -> relu")
    >>> [op.op for op in g.nodes[0].layers]
    ['conv', 'relu']
    """
    from netdsl.passes.front import lower_text  # SymPy on first use (see __getattr__'s docstring)

    text, path = load(source)
    return lower_text(text, path, _params(params))


def shapes(source: Source, **params: int) -> ConcreteGraph:
    """The concrete graph: symbolic shapes of every tensor and layer, checked at the values in use.

    >>> r = shapes("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\\noutput = x |> maxpool(2)")
    >>> r.show(r.output_shape), r.at(r.output_shape)
    ([1, H/2, W/2], [1, 4, 4])
    """
    from netdsl.passes.front import analyse_text  # SymPy on first use (see __getattr__'s docstring)

    text, path = load(source)
    return analyse_text(text, path, _params(params))


def _unused(cg: ConcreteGraph, strict: object) -> None:
    """Warn (UnusedTensorWarning) for each tensor nothing reads; `strict=True`: the first is an error."""
    from netdsl.passes.unused import UnusedTensorWarning, check_unused

    if not isinstance(strict, bool):
        raise NetdslError(f"strict must be True or False, not {_shown(strict)}",
                          hint="strict=True makes a tensor that nothing reads an error")
    for u in check_unused(cg, strict):
        warnings.warn(UnusedTensorWarning(u.render(*cg.source)), stacklevel=3)


def build(source: Source, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
          freeze: int | str | list[str] | Freeze | None = None, freeze_bn: str | None = None,
          strict: bool = False, **params: int) -> CompiledNet:
    """Compile a spec into a torch.nn.Module; keyword arguments override its parameters.

    Networks whose estimated memory (parameters, buffers and one sample's activations) exceeds
    `max_bytes` (8 GiB by default) are refused before anything is allocated; None lifts the limit.
    `freeze` freezes the first N top-level statements (an int) or the statements, labels and
    blocks named (a name or a list), on top of the spec's own `@freeze`; `freeze_bn` is "train"
    (frozen BatchNorm keeps updating its statistics in training mode, the default) or "eval".
    A tensor that nothing reads is a `netdsl.passes.unused.UnusedTensorWarning`, an error with
    `strict=True`.

    >>> import torch
    >>> m = build("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)", C=6)
    >>> tuple(m(torch.zeros(2, 1, 8, 8)).shape)
    (2, 6, 8, 8)
    """
    from netdsl.backends.torch_build import compile_spec  # SymPy, then torch, on first use

    limit = _max_bytes(max_bytes)
    text, path = load(source)
    cg, model = compile_spec(text, path, _params(params), limit, as_freeze(freeze, freeze_bn))
    _unused(cg, strict)
    return model


def count(source: Source, *, claims: list[str] | tuple[str, ...] = (), strict: bool = False,
          **params: int) -> CountResult:
    """Exact symbolic counts per layer and in total, and the verdicts of the spec's claims
    (its own, those of SPEC.claims next to it, and those of the files in `claims`). No torch.
    A tensor that nothing reads is an `UnusedTensorWarning`, an error with `strict=True`.

    The memory metrics (`saved_bytes`, `peak_bytes`, `param_bytes`, `buffer_bytes`, `train_bytes`)
    are totals too, in bytes for a batch of `c.batch` (`N`; `N=8` sets its value, default 1);
    `c.total(metric, options=MemoryOptions(dtype="bf16", optimizer="sgd"))` picks the dtype and
    optimizer (`netdsl.passes.memory_model`), `c.memory(options).layers` has them per layer and
    `c.receptive()` the receptive fields (internal symbols: `c.show` gives the user's).

    >>> c = count("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)")
    >>> c.total("weights"), c.total("connections"), c.value(c.total("outputs"))
    (9*C, 9*C*H*W, 256)
    >>> c = count("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)", N=2)
    >>> c.batch, c.value(c.total("param_bytes")), c.value(c.total("saved_bytes"))
    (N, 160, 512)
    """
    from netdsl.passes.claims import check_claims  # SymPy on first use (see __getattr__'s docstring)
    from netdsl.passes.count_memory import analyse_with_batch
    from netdsl.passes.counts import count_layers

    files = _claim_files(claims)
    text, path = load(source)
    cg, batch_value = analyse_with_batch(text, path, _params(params))
    _unused(cg, strict)
    result = count_layers(cg, batch_value)
    result.claims = check_claims(result, claim_sources(result.shapes.spec, text, path, files))
    return result


def claim_sources(spec: ir.Spec | None, text: str, path: str | None,
                  files: list[str] | tuple[str, ...] = (), sidecar: bool = True) -> list[ClaimSource]:
    """The spec's own claims, those of `SPEC.claims` next to it (if any), then those of `files`."""
    from netdsl.passes.claims import ClaimSource  # SymPy on first use (see __getattr__'s docstring)

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
    from netdsl.passes.solve import MAX_VALUE_LIMIT  # SymPy on first use (see __getattr__'s docstring)
    from netdsl.passes.solve import solve as _solve

    top = _whole("max_value", max_value, 0, MAX_VALUE_LIMIT,
                 "the largest value tried where PyTorch sets no bound, e.g. max_value=16")
    text, path = load(source)
    with located(path, text):
        return _solve(parse_text(text, path), _params(params), top)


def fit(source: Source, memory: int | str, *, solve_for: str | None = None, mode: str = "train",
        dtype: str = "fp32", optimizer: str = "adam", **params: int) -> FitResult:
    """The largest batch (or, `solve_for="H"` / `"H,W"`, input size) whose exact memory fits
    `memory` bytes (an int, or text such as "24GiB"): `train_bytes` for `mode="train"`, `peak_bytes`
    plus parameters and buffers for `mode="infer"`. Keyword arguments override the spec's values,
    and `N=16` sets the batch when solving for a size. `answer` is None when nothing fits; a budget
    below the parameters alone is an error. No torch.

    >>> r = fit("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, 3, padding=1)", "1MiB")
    >>> r.solved, r.answer, r.at_answer, r.budget, r.at_next
    ('256*N + 648', 4093, 1048456, 1048576, 1048712)
    """
    from netdsl.passes.fit import fit_text  # SymPy on first use (see __getattr__'s docstring)
    from netdsl.passes.fit_search import parse_budget
    from netdsl.passes.memory_model import DTYPES, OPTIMIZERS, MemoryOptions

    budget = parse_budget(memory)
    if dtype not in DTYPES or optimizer not in OPTIMIZERS:
        bad, name, ok = (dtype, "dtype", DTYPES) if dtype not in DTYPES else (optimizer, "optimizer", OPTIMIZERS)
        raise NetdslError(f"{name} must be one of {', '.join(ok)}, not {_shown(bad)}", hint=f"e.g. {name}={list(ok)[0]!r}")
    if solve_for is not None and not isinstance(solve_for, str):
        raise NetdslError(f"solve_for must be a name such as 'N', 'H' or 'H,W', not {_shown(solve_for)}",
                          hint="solve_for='N' (the batch), 'H' or 'H,W'")
    text, path = load(source)
    with located(path, text):
        return fit_text(text, path, _params(params), budget, solve_for, mode,
                        MemoryOptions(cast("Dtype", dtype), cast("Optimizer", optimizer)))


def diff(a: Source, b: Source, *, params_a: Mapping[str, object] | None = None,
         params_b: Mapping[str, object] | None = None, dtype: str = "fp32", optimizer: str = "adam",
         **params: int) -> DiffResult:
    """Compare two specs: every total of `count` (memory included, for a batch `N`) and the
    outputs' receptive fields of each, as formulas with B - A, and the layers matched by module
    path. Keyword arguments set names of both specs (and the batch `N`); `params_a`/`params_b`
    set one side's. A name only one spec has is an error unless set for that side. No torch.

    >>> t = "net T(C = 4)\\ninput x: [1, H = 8, W = 8]\\noutput = x |> conv(C, {k}, padding={p}) -> relu"
    >>> d = diff(t.format(k=3, p=1), t.format(k=5, p=2), N=2)
    >>> w = d.totals["weights"]
    >>> w.a, w.b, w.difference, w.value_difference, [x.name for x in d.matched if x.changed]
    (9*C, 25*C, 16*C, 64, ['output.0'])
    """
    from netdsl.passes.count_memory import memory_options  # SymPy on first use (see __getattr__'s docstring)
    from netdsl.passes.diff import Source as DiffSource
    from netdsl.passes.diff import diff_sources

    options = memory_options(dtype, optimizer)
    sides = []
    for source, own in ((a, params_a), (b, params_b)):
        text, path = load(source)
        sides.append(DiffSource(text, path, _params(own or {})))
    return diff_sources(sides[0], sides[1], _params(params), options=options)
