"""`netdsl export SPEC --to onnx`: the compiled network as an ONNX model, checked before it is kept.

The network is compiled at the values in use, put in eval mode and exported with PyTorch's
exporter (`torch.export` and onnxscript, opset 17 or later). The batch axis is always dynamic;
an input size (`H`, `W`) is dynamic too where the spec allows any other value of it:

* the spec declares how it divides (`where H % 32 == 0` makes it 32*H_q; no condition, any H),
  and no other condition ties it (`H == 64` or `H == W` keep it fixed);
* no weight and no layer argument depends on it (a `linear` after `flatten` of an image does);
* the smallest size that keeps every tensor non-empty (and the spec's `H >= n` bounds) is found
  from the concrete graph's formulas and confirmed by analysing the spec there.

Which sizes may vary is `onnx_axes`; how torch.export is told and how the written model names
them is `onnx_dims`; the check against torch is `onnx_check`.

If PyTorch cannot trace a size as dynamic, or the result fails the check at a second size, the
sizes are fixed at the values in use and the message says so. The model is written to a
temporary file, checked with `onnx.checker` (full check) and run with onnxruntime against the
torch module (at the values in use and, when sizes are dynamic, at another valid size and
batch; outputs must agree within 1e-4, relative to their size), and only then put in place by
netdsl's one writer (`netdsl.files.atomic_write`: never over the spec or the weights read).
An opset the installed onnx does not know is refused, and the opset written is checked.

Weights are the compiled module's fresh initialisation (seeded: the same spec gives the same
file), unless a module is passed in (`model=`), e.g. one with weights loaded.

The optional packages `onnx`, `onnxscript` and `onnxruntime` come with `pip install "netdsl[onnx]"`;
without them the export stops with a NetdslError saying so (the CLI's exit status 2).
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netdsl.backends.onnx_axes import SizeAxis, analyses, confirm_low, second_sizes, size_axes
from netdsl.backends.onnx_check import ATOL, Failed, check_against_torch, example_inputs, first_line
from netdsl.backends.onnx_dims import dynamic_shapes, rename_dims, size_symbols, trace_sizes
from netdsl.backends.torch_module import to_module
from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError, located
from netdsl.files import atomic_write, check_output, is_stream
from netdsl.limits import DEFAULT_MAX_BYTES
from netdsl.passes.memory import check_memory
from netdsl.weights import load_weights

MIN_OPSET = 17
DEFAULT_OPSET = 18
EXTRA = 'pip install "netdsl[onnx]"'
PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def check_opset(opset: int, what: str = "opset") -> None:
    """Refuse an opset the exporter would not write: below 17, or newer than the installed onnx
    package knows (PyTorch's exporter then quietly writes its default opset instead)."""
    if opset < MIN_OPSET:
        raise NetdslError(f"{what} {opset}: netdsl exports opset {MIN_OPSET} or later",
                          hint=f"use opset {DEFAULT_OPSET} (the default)")
    try:
        from onnx.defs import onnx_opset_version
    except ImportError:  # require_onnx says what to install
        return
    newest = onnx_opset_version()
    if opset > newest:
        raise NetdslError(f"{what} {opset}: the installed onnx package knows opsets up to {newest}",
                          hint=f"use an opset from {MIN_OPSET} to {newest} (default {DEFAULT_OPSET})")


def require_onnx() -> None:
    """Import the optional ONNX packages, or say how to install them.

    >>> require_onnx()  # with the extra installed: nothing to say
    """
    missing = []
    for name in PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise NetdslError(f"exporting to ONNX needs the optional package{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(missing)}, which {'are' if len(missing) > 1 else 'is'} not installed",
                          hint=f"{EXTRA}  (installs onnx, onnxscript and onnxruntime)")


# --- export ---------------------------------------------------------------------------------------

@dataclass
class OnnxExport:
    """What `export_model` wrote and checked."""

    path: Path
    opset: int
    inputs: list[tuple[str, list[str]]]        # ONNX input names and dims (numbers or names)
    outputs: list[tuple[str, list[str]]]
    axes: list[SizeAxis]
    fallback: str = ""                         # why dynamic sizes were given up, if they were
    checks: list[tuple[str, float]] = field(default_factory=list)  # ("2x3x64x64", max |ort - torch|)
    weights: str = ""                          # where the weights come from, when not from the caller

    @property
    def dynamic(self) -> list[str]:
        return [a.name for a in self.axes if a.dynamic]

    @property
    def max_diff(self) -> float:
        return max((d for _, d in self.checks), default=0.0)

    def message(self) -> str:
        def sig(items: list[tuple[str, list[str]]]) -> str:
            return ", ".join(f"{n} [{', '.join(d)}]" for n, d in items)

        lines = [f"wrote {self.path} (ONNX opset {self.opset})",
                 f"  inputs:  {sig(self.inputs)}",
                 f"  outputs: {sig(self.outputs)}",
                 "  dynamic: batch" + "".join(f", {a.text()}" for a in self.axes if a.dynamic)]
        groups: dict[str, list[SizeAxis]] = {}
        for a in self.axes:
            if not a.dynamic:
                groups.setdefault(a.reason, []).append(a)
        for reason, group in groups.items():
            lines.append(f"  fixed:   {', '.join(f'{a.name} = {a.value}' for a in group)}: {reason}")
        if self.checks:
            lines.append("  checked: onnx.checker; onnxruntime = torch at " + ", ".join(s for s, _ in self.checks)
                         + f" (max |difference| {self.max_diff:.2g}; limit {ATOL:g}, relative above 1)")
        if self.weights:
            lines.append(f"  weights: {self.weights}")
        return "\n".join(lines)


def export_onnx(cg: ConcreteGraph, out: Path | str, opset: int = DEFAULT_OPSET,
                model: nn.Module | None = None, weights: str | None = None) -> str:
    """Write the network as an ONNX model at `out` (checked first); return the message to print.

    See `export_model` for what is written and checked.
    """
    return export_model(cg, out, opset, model, weights=weights).message()


def export_model(cg: ConcreteGraph, out: Path | str, opset: int = DEFAULT_OPSET,
                 model: nn.Module | None = None, check: bool = True, weights: str | None = None) -> OnnxExport:
    """Export, check and write the network; what was done, for the message and for tests.

    The module is `model` if given, else the spec compiled at the values in use, its weights a
    fresh initialisation (torch seed 0) or read from the file `weights` (`netdsl.weights.load_weights`:
    darknet `.weights`, or a `.pt`/`.pth` state_dict or checkpoint).

    >>> import tempfile, pathlib
    >>> from netdsl.api import shapes
    >>> cg = shapes("net T(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 2 == 0\\n"
    ...             "output = x |> conv(C, 3, padding=1) -> maxpool(2)")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     r = export_model(cg, pathlib.Path(d) / "t.onnx")
    >>> r.inputs, r.outputs
    ([('x', ['batch', '1', 'H', 'W'])], [('output', ['batch', '4', 'H/2', 'floor(W/2)'])])
    >>> r.dynamic, r.max_diff < 1e-4
    (['H', 'W'], True)
    """
    check_opset(opset)
    require_onnx()
    out = Path(out)
    inputs = [p for p in (cg.source[0], weights) if p is not None]
    check_output(out, inputs)
    origin = ""
    if model is None:
        model, origin = _compiled(cg, weights)
    elif weights is not None:
        raise NetdslError("export_model takes a model or a weights file, not both")
    was_training = model.training
    model.eval()
    try:
        axes = size_axes(cg)
        confirm_low(cg, axes)
        second = second_sizes(axes)
        if any(a.dynamic for a in axes) and (second is None or not analyses(cg, second)):
            for a in axes:
                a.reason = a.reason or "no second valid size to check it at"
            second = None
        report = _export(cg, model, out, opset, axes, second, check, inputs)
        report.weights = origin
        return report
    finally:
        model.train(was_training)


def _compiled(cg: ConcreteGraph, weights: str | None) -> tuple[nn.Module, str]:
    """The spec compiled at the values in use, its weights a fresh initialisation (torch seed 0)
    or read from `weights`; and where the weights come from, for the message."""
    path, text = cg.source
    with located(path, text or ""):
        check_memory(cg, DEFAULT_MAX_BYTES)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = to_module(cg)
    if weights is None:
        return model, "a fresh initialisation (torch seed 0); --weights FILE exports trained ones"
    load_weights(model, weights)
    return model, f"from {weights}"


def _names(cg: ConcreteGraph, outputs: Any) -> list[str]:
    """ONNX names of the flattened outputs: each output's name; a detect head's raw maps after
    its decoded boxes as NAME_raw0, NAME_raw1, ..."""
    def leaves(x: Any) -> list[Any]:
        if isinstance(x, torch.Tensor):
            return [x]
        return [y for item in x for y in leaves(item)]

    per = [outputs] if len(cg.outputs) == 1 else list(outputs)
    names: list[str] = []
    for t, value in zip(cg.outputs, per):
        n = len(leaves(value))
        names += [t.name] + [f"{t.name}_raw{i}" for i in range(n - 1)]
    return names


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines, warnings and log records stay out of the command's output."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript",
                                               "torch.fx.experimental.symbolic_shapes", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export(cg: ConcreteGraph, model: nn.Module, out: Path, opset: int, axes: list[SizeAxis],
            second: dict[str, int] | None, check: bool, inputs: list[str]) -> OnnxExport:
    fallback = ""
    want_dynamic = any(a.dynamic for a in axes)
    tmpdir = _scratch(out)
    try:
        tmp = tmpdir / out.name
        attempts = [True, False] if want_dynamic else [False]
        for dynamic in attempts:
            try:
                names = _write(cg, model, tmp, opset, axes, dynamic)
                _check_opset_written(tmp, opset)
                report = OnnxExport(out, opset, *_signature(tmp), axes=axes)
                if check:
                    report.checks = check_against_torch(cg, model, tmp, axes, names, second if dynamic else None)
                break
            except Failed as e:
                if not dynamic:
                    raise e.error from None
                fallback = e.reason
                for a in axes:
                    a.reason = a.reason or fallback
                for f in tmpdir.iterdir():
                    f.unlink()
        report.fallback = fallback
        _keep(tmpdir, out, inputs)
        return report
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _scratch(out: Path) -> Path:
    """A temp folder for the export: beside `out` (the model is big; no other file system's room is
    needed), or the system's for a FIFO or device given as `out`."""
    where = None if is_stream(out) else (out.parent if str(out.parent) else Path("."))
    try:
        if where is not None:
            where.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=where))
    except OSError as e:
        raise NetdslError(f"cannot write the file: {e.strerror or e}", path=str(out),
                          hint="check the folder, its permissions and the free space") from None


def _keep(tmpdir: Path, out: Path, inputs: list[str]) -> None:
    """Move the checked files into place with netdsl's one writer; data files first, the model
    last: a reader never finds a model without its data."""
    files = sorted(tmpdir.iterdir(), key=lambda p: p.name == out.name)
    if len(files) > 1 and is_stream(out):
        raise NetdslError(f"cannot write the model here: it keeps its weights in {len(files) - 1} more file(s) "
                          "beside it, and a FIFO or device has no folder for them", path=str(out),
                          hint="write the model to a file")
    for f in files:
        with open(f, "rb") as src:
            atomic_write(out.parent / f.name, lambda fh: shutil.copyfileobj(src, fh), inputs=inputs)


def _check_opset_written(tmp: Path, opset: int) -> None:
    import onnx  # the optional extra: imported when an export runs

    model = onnx.load(str(tmp), load_external_data=False)
    written = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if written != [opset]:
        raise NetdslError(f"PyTorch's exporter wrote opset {written[0] if written else '(none)'}, not the {opset} "
                          "asked for", hint=f"use opset {DEFAULT_OPSET} (the default)")


def _write(cg: ConcreteGraph, model: nn.Module, tmp: Path, opset: int, axes: list[SizeAxis],
           dynamic: bool) -> list[str]:
    sizes = trace_sizes(axes) if dynamic else {}
    example = example_inputs(cg, axes, sizes, batch=2, seed=0)
    with torch.no_grad():
        names = _names(cg, model(*example))
    what = "with dynamic sizes" if dynamic else "at fixed sizes"
    try:
        with _quiet():
            shapes = dynamic_shapes(cg, axes, dynamic)
            params = inspect.signature(model.forward).parameters.values()
            varargs = next((p.name for p in params if p.kind is inspect.Parameter.VAR_POSITIONAL), None)
            ep = torch.export.export(model, example, dynamic_shapes={varargs: shapes} if varargs else shapes,
                                     strict=False)
            program = torch.onnx.export(ep, example, dynamo=True, opset_version=opset, verbose=False,
                                        input_names=[t.name for t in cg.inputs], output_names=names)
            assert program is not None
            rename_dims(program, size_symbols(cg, ep, axes))
            program.save(str(tmp))
    except Exception as e:  # noqa: BLE001 - the exporter's failures are of many types
        raise Failed(f"PyTorch's exporter cannot keep them dynamic (torch.export: {first_line(e)})",
                      NetdslError(f"PyTorch's ONNX exporter failed {what}: {first_line(e)}",
                                  hint="run with --debug for the traceback; the torch module itself still builds")) from e
    return names


def _signature(tmp: Path) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    import onnx  # the optional extra: imported when an export runs

    m = onnx.load(str(tmp), load_external_data=False)

    def dims(v: Any) -> list[str]:
        return [d.dim_param or str(d.dim_value) for d in v.type.tensor_type.shape.dim]

    return [(v.name, dims(v)) for v in m.graph.input], [(v.name, dims(v)) for v in m.graph.output]
