"""`netdsl export SPEC --to onnx`: the compiled network as an ONNX model, checked before it is kept.

The network is compiled at the values in use, put in eval mode and exported with PyTorch's
exporter (`torch.export` and onnxscript, opset 17 or later). The batch axis is always dynamic;
an input size (`H`, `W`) is dynamic too where the spec allows any other value of it:

* the spec declares how it divides (`where H % 32 == 0` makes it 32*H_q; no condition, any H),
  and no other condition ties it (`H == 64` or `H == W` keep it fixed);
* no weight and no layer argument depends on it (a `linear` after `flatten` of an image does);
* the smallest size that keeps every tensor non-empty (and the spec's `H >= n` bounds) is found
  from the concrete graph's formulas and confirmed by analysing the spec there.

If PyTorch cannot trace a size as dynamic, or the result fails the check at a second size, the
sizes are fixed at the values in use and the message says so. The model is written to a
temporary file, checked with `onnx.checker` (full check) and run with onnxruntime against the
torch module (at the values in use and, when sizes are dynamic, at another valid size and
batch; outputs must agree within 1e-4, relative to their size), and only then put in place by
netdsl's one writer (`netdsl.train.files.atomic_write`: never over the spec or the weights read).
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
from typing import TYPE_CHECKING, Any

import sympy as sp

from netdsl import ir
from netdsl.errors import NetdslError

if TYPE_CHECKING:
    from torch import nn

    from netdsl.concrete import ConcreteGraph

MIN_OPSET = 17
DEFAULT_OPSET = 18
# onnxruntime against torch: |ort - torch| <= ATOL + RTOL * |torch|, element by element. Decoded
# detections are in input pixels (hundreds), where float32's own spacing is about 1e-5.
ATOL = 1e-4
RTOL = 1e-4
EXTRA = 'pip install "netdsl[onnx]"'
PACKAGES = ("onnx", "onnxscript", "onnxruntime")
_MAX_SEARCH = 64
_INT32 = 2**31 - 1
CHECK_MACS = 4 * 10**9  # the most a check at the spec's declared sizes may cost (one sample)  # analyses tried upward from the formulas' smallest size before giving up on it


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


# --- which sizes may vary ----------------------------------------------------------------------

@dataclass
class SizeAxis:
    """One named input size (`H` of `input x: [3, H = 224, W = 224]`) as the export treats it.

    `value = step * q + offset` for q >= 0 is every size the spec admits (`where H % step == offset`);
    `low`/`high` bound it (None: no bound). `reason` says why a size stays fixed (empty: dynamic).
    """

    input: str
    axis: int                 # the axis in the batched tensor: 2 for H of [N, C, H, W]
    name: str
    value: int
    step: int = 1
    offset: int = 0
    low: int = 1
    high: int | None = None
    trace_low: int = 2        # the smallest value PyTorch traces for (see `size_axes`)
    reason: str = ""

    @property
    def dynamic(self) -> bool:
        return not self.reason

    def text(self) -> str:
        if not self.dynamic:
            return f"{self.name} = {self.value}: {self.reason}"
        form = f"multiple of {self.step}" if self.step > 1 and self.offset == 0 else \
            (f"{self.step}k + {self.offset}" if self.step > 1 else "any size")
        upper = f" to {self.high}" if self.high is not None else ""
        return f"{self.name} ({form}, from {self.low}{upper})"


def _free(v: Any) -> set[sp.Symbol]:
    if isinstance(v, sp.Basic):
        return set(v.free_symbols)
    if isinstance(v, (tuple, list)):
        return set().union(*(_free(x) for x in v)) if v else set()
    return set()


def _bound(c: ir.Condition, name: str) -> tuple[str, int] | None:
    """`H >= 64`, `128 > H` and the like as ("low"|"high", inclusive bound)."""
    flip = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
    for lhs, rhs, op in ((c.left, c.right, c.op), (c.right, c.left, flip.get(c.op, c.op))):
        if isinstance(lhs, ir.Name) and lhs.id == name:
            k = ir.const_int(rhs)
            if k is None:
                return None
            return {">=": ("low", k), ">": ("low", k + 1), "<=": ("high", k), "<": ("high", k - 1)}.get(op)
    return None


def size_axes(cg: ConcreteGraph) -> list[SizeAxis]:
    """Every named input size of the network, with whether and how it may vary.

    >>> from netdsl.api import shapes
    >>> cg = shapes("net T(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 4 == 0\\noutput = x |> conv(C, 3, padding=1)")
    >>> [a.text() for a in size_axes(cg)]
    ['H (multiple of 4, from 4)', 'W (any size, from 1)']
    """
    from netdsl.passes.symbols import conditions_of, mod_assumption

    env, graph = cg.env, cg.graph
    assert graph is not None
    axes: list[SizeAxis] = []
    for inp in graph.inputs:
        for j, d in enumerate(inp.dims):
            axes.append(SizeAxis(inp.name, j + 2, d.name, int(env.values[d.name])))
    if not axes:
        return axes
    names = {a.name for a in axes}
    # Symbols a size shows up as inside the graph: itself, or its quotient H_q.
    inner: dict[str, set[sp.Symbol]] = {}
    for a in axes:
        s = env.symbols[a.name]
        form = env.fwd.get(s, s)
        inner[a.name] = {s} | set(form.free_symbols)
        if form.is_Integer:
            a.reason = f"the spec fixes {a.name}"
        elif form != s:
            q = next(iter(form.free_symbols))
            a.step, a.offset = int(form.coeff(q)), int(form.subs(q, 0))
    for c in conditions_of(graph):
        used = {n.id for side in (c.left, c.right) for n in ir.names_in(side)} & names
        if not used or mod_assumption(c) is not None:
            continue
        for n in used:
            b = _bound(c, n) if len(used) == 1 else None
            for a in (x for x in axes if x.name == n):
                if b is None:
                    a.reason = a.reason or f"the condition {ir.condition_text(c)} ties it"
                elif b[0] == "low":
                    a.low = max(a.low, b[1])
                else:
                    a.high = b[1] if a.high is None else min(a.high, b[1])
    # A size that decides weights or layer arguments cannot vary in one model.
    for item in cg.walk():
        c = item.counts
        used_syms = _free((c.weights, c.biases, c.norm_params, c.buffers)) | _free(tuple(getattr(item, "sym", item.args).values()))
        for a in axes:
            if a.dynamic and used_syms & inner[a.name]:
                a.reason = f"'{item.path}' depends on it"
    # Adaptive pooling to more than 1x1 picks its windows from the input size; PyTorch's ONNX
    # decomposition fixes them at the traced size without a guard (found wrong at other sizes).
    for layer in cg.layers:
        if layer.op.torch(layer.args, layer.in_at)[0].startswith("Adaptive") and any(v != 1 for v in layer.out_at[1:]):
            for a in axes:
                if a.dynamic and _free(layer.in_shape) & inner[a.name]:
                    a.reason = (f"'{layer.path}' ({layer.op.name} to {'x'.join(map(str, layer.out_at[1:]))}) "
                                "exports for one input size only")
    for note in cg.notes:  # a merge or annotation shown to hold at the values in use only
        if "values in use only" in note or "could not be shown equal" in note:
            for a in axes:
                a.reason = a.reason or "a shape check holds at the values in use only"
    for a in axes:
        if a.dynamic:
            a.low = _smallest(cg, a, inner[a.name]) or a.value
            # PyTorch treats a size of 1 as special (broadcasting) and fixes any size it may take that
            # value: it traces the range where every size that varies with this one is at least 2.
            traced = _smallest(cg, a, inner[a.name], least=2)
            if traced is None:
                a.reason = "PyTorch fixes sizes that may be 1, and every admissible value makes one 1"
            else:
                a.trace_low = max(traced, a.low)
    return axes


def _first(step: int, offset: int, at_least: int) -> int:
    """The smallest step*q + offset (q >= 0) that is >= at_least."""
    q = max(0, -(-(at_least - offset) // step))
    return step * q + offset


def _smallest(cg: ConcreteGraph, a: SizeAxis, syms: set[sp.Symbol], least: int = 1) -> int | None:
    """The smallest admissible value of the size at which every tensor size that depends on it is
    at least `least` (binary search on the formulas, the other sizes at their values in use);
    None if there is none up to its bound."""
    env = cg.env
    exprs: set[sp.Expr] = set()
    for st in _statements(cg.statements):
        exprs.update(x for x in st.shape if x.free_symbols & syms)
        for it in st.items:
            exprs.update(x for x in it.out_shape if x.free_symbols & syms)
        if st.merge is not None:
            exprs.update(x for x in st.merge.out_shape if x.free_symbols & syms)
    s = env.symbols[a.name]
    form = env.fwd.get(s, s)
    q = s if form == s else next(iter(form.free_symbols))

    def value(k: int) -> int:
        return a.step * k + a.offset

    def ok(k: int) -> bool:
        values = {**env.internal_values, q: sp.Integer(k if q is not s else value(k)), s: sp.Integer(value(k))}
        return value(k) >= least and all(bool(x.xreplace(values) >= least) for x in exprs)

    lo = (_first(a.step, a.offset, max(a.low, 1)) - a.offset) // a.step
    hi = max(lo, (a.value - a.offset) // a.step)
    for _ in range(_MAX_SEARCH):
        if ok(hi):
            break
        hi = 2 * hi + 1
        if a.high is not None and value(hi) > a.high:
            return None
    else:
        return None
    while lo < hi:  # sizes grow with the input: the first good one
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return value(hi)


def _statements(stmts: list) -> Iterator:
    from netdsl.concrete import Block

    for st in stmts:
        yield st
        for it in st.items:
            if isinstance(it, Block):
                yield from _statements(it.statements)


def _analyses(cg: ConcreteGraph, sizes: dict[str, int]) -> bool:
    """Whether the spec analyses cleanly with these input sizes (every rule of every layer)."""
    from netdsl.api import analyse_text

    path, text = cg.source
    if text is None:
        return True
    try:
        analyse_text(text, path, {**cg.env.values, **sizes})
    except NetdslError:
        return False
    return True


def _confirm_low(cg: ConcreteGraph, axes: list[SizeAxis]) -> None:
    """Raise each dynamic size's smallest value until the spec analyses there (rules the
    formulas do not show: a kernel larger than its padded input, a reflection pad)."""
    dyn = [a for a in axes if a.dynamic]
    for _ in range(_MAX_SEARCH):
        if not dyn or _analyses(cg, {a.name: a.low for a in dyn}):
            return
        for a in dyn:
            if a.low < a.value:
                a.low = _first(a.step, a.offset, a.low + 1)
    for a in dyn:
        a.low = a.value


def _second_sizes(axes: list[SizeAxis]) -> dict[str, int] | None:
    """Other valid values of the dynamic sizes for the check at a second size: a step or more up
    (down where a bound forbids it), each different from the others so that swapped axes show."""
    out: dict[str, int] = {}
    for a in axes:
        if not a.dynamic or a.name in out:
            continue
        for k in range(1, 2 + 2 * len(axes)):
            v = a.value + k * a.step
            if a.high is not None and v > a.high:
                v = a.value - k * a.step
                if v < a.low:
                    break
            if v not in out.values():
                out[a.name] = v
                break
    return out or None


def _declared_sizes(cg: ConcreteGraph, axes: list[SizeAxis]) -> dict[str, int] | None:
    """The spec's own default values of the dynamic sizes (the size it is meant for: 224 for the
    zoo), for one more check, when they differ from those in use and one sample there costs at
    most CHECK_MACS multiply-accumulates."""
    from netdsl.api import analyse_text

    dyn = {a.name for a in axes if a.dynamic}
    path, text = cg.source
    if not dyn or text is None:
        return None
    try:
        d = analyse_text(text, path, {k: v for k, v in cg.env.values.items() if k not in dyn})
    except NetdslError:
        return None
    sizes = {n: int(d.env.values[n]) for n in dyn}
    if all(sizes[a.name] == a.value for a in axes if a.dynamic):
        return None
    macs = sum(int(d.env.at(item.counts.macs)) for item in d.walk())
    return sizes if macs <= CHECK_MACS else None


# --- export ------------------------------------------------------------------------------------

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
    >>> cg = shapes("net T(C = 4)\\ninput x: [1, H = 8, W = 8] where H % 2 == 0\\noutput = x |> conv(C, 3, padding=1) -> maxpool(2)")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     r = export_model(cg, pathlib.Path(d) / "t.onnx")
    >>> r.inputs, r.outputs
    ([('x', ['batch', '1', 'H', 'W'])], [('output', ['batch', '4', 'H/2', 'floor(W/2)'])])
    >>> r.dynamic, r.max_diff < 1e-4
    (['H', 'W'], True)
    """
    from netdsl.train.files import check_output

    check_opset(opset)
    require_onnx()
    import torch

    from netdsl.passes.limits import DEFAULT_MAX_BYTES, check_memory

    out = Path(out)
    path, text = cg.source
    inputs = [p for p in (path, weights) if p is not None]
    check_output(out, inputs)
    origin = ""
    if model is None:
        from netdsl.api import located
        from netdsl.backends.torch_module import to_module

        with located(path, text or ""):
            check_memory(cg, DEFAULT_MAX_BYTES)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = to_module(cg)
        if weights is not None:
            from netdsl.weights import load_weights

            load_weights(model, weights)
            origin = f"from {weights}"
        else:
            origin = "a fresh initialisation (torch seed 0); --weights FILE exports trained ones"
    elif weights is not None:
        raise NetdslError("export_model takes a model or a weights file, not both")
    was_training = model.training
    model.eval()
    try:
        axes = size_axes(cg)
        _confirm_low(cg, axes)
        second = _second_sizes(axes)
        if any(a.dynamic for a in axes) and (second is None or not _analyses(cg, second)):
            for a in axes:
                a.reason = a.reason or "no second valid size to check it at"
            second = None
        report = _export(cg, model, out, opset, axes, second, check, inputs)
        report.weights = origin
        return report
    finally:
        model.train(was_training)


def _names(cg: ConcreteGraph, outputs: Any) -> list[str]:
    """ONNX names of the flattened outputs: each output's name; a detect head's raw maps after
    its decoded boxes as NAME_raw0, NAME_raw1, ..."""
    import torch

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


def _flat(x: Any) -> list[Any]:
    import torch

    if isinstance(x, torch.Tensor):
        return [x]
    return [y for item in x for y in _flat(item)]


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


def _inputs(cg: ConcreteGraph, axes: list[SizeAxis], sizes: dict[str, int], batch: int, seed: int) -> tuple:
    import torch

    g = torch.Generator().manual_seed(seed)
    xs = []
    for t in cg.inputs:
        shape = [batch, *t.at]
        for a in axes:
            if a.input == t.name and a.name in sizes:
                shape[a.axis] = sizes[a.name]
        xs.append(torch.randn(*shape, generator=g))
    return tuple(xs)


def _trace_sizes(axes: list[SizeAxis]) -> dict[str, int]:
    """Sizes to trace at: the values in use, raised to PyTorch's traced range (no size 1 anywhere;
    a multiple of m at least 2m, or PyTorch fixes its quotient)."""
    out = {}
    for a in axes:
        if a.dynamic:
            v = max(a.value, a.trace_low)
            while (v - a.offset) // a.step < 2:
                v += a.step
            out[a.name] = v
    return out


def _batch_name(cg: ConcreteGraph, axes: list[SizeAxis]) -> str:
    taken = {a.name for a in axes} | {t.name for t in cg.inputs}
    return next(n for n in ("batch", "N", "batch_", "batch__") if n not in taken)


def _dynamic_shapes(cg: ConcreteGraph, axes: list[SizeAxis], dynamic: bool) -> tuple:
    from torch.export import Dim

    batch = Dim(_batch_name(cg, axes), min=1)
    dims: dict[str, Any] = {}
    for a in axes:
        if not (dynamic and a.dynamic) or a.name in dims:
            continue
        top = a.high if a.high is not None else _INT32
        if a.step == 1:
            dims[a.name] = Dim(a.name, min=a.trace_low, max=top)
        else:
            qlow = max(-(-(a.trace_low - a.offset) // a.step), 2)
            q = Dim(f"{a.name}_q", min=qlow, max=(top - a.offset) // a.step)
            dims[a.name] = a.step * q + a.offset if a.offset else a.step * q
    spec = []
    for t in cg.inputs:
        d: dict[int, Any] = {0: batch}
        for a in axes:
            if a.input == t.name and a.name in dims:
                d[a.axis] = dims[a.name]
        spec.append(d)
    return tuple(spec)


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
                    report.checks = _check(cg, model, tmp, axes, names, second if dynamic else None)
                break
            except _Failed as e:
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
    from netdsl.train.files import is_stream

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
    from netdsl.train.files import atomic_write, is_stream

    files = sorted(tmpdir.iterdir(), key=lambda p: p.name == out.name)
    if len(files) > 1 and is_stream(out):
        raise NetdslError(f"cannot write the model here: it keeps its weights in {len(files) - 1} more file(s) "
                          "beside it, and a FIFO or device has no folder for them", path=str(out),
                          hint="write the model to a file")
    for f in files:
        with open(f, "rb") as src:
            atomic_write(out.parent / f.name, lambda fh: shutil.copyfileobj(src, fh), inputs=inputs)


def _check_opset_written(tmp: Path, opset: int) -> None:
    import onnx

    model = onnx.load(str(tmp), load_external_data=False)
    written = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if written != [opset]:
        raise NetdslError(f"PyTorch's exporter wrote opset {written[0] if written else '(none)'}, not the {opset} "
                          "asked for", hint=f"use opset {DEFAULT_OPSET} (the default)")


class _Failed(Exception):
    def __init__(self, reason: str, error: NetdslError) -> None:
        super().__init__(reason)
        self.reason, self.error = reason, error


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line.split(" For more information")[0][:300]


def _write(cg: ConcreteGraph, model: nn.Module, tmp: Path, opset: int, axes: list[SizeAxis],
           dynamic: bool) -> list[str]:
    import torch

    sizes = _trace_sizes(axes) if dynamic else {}
    example = _inputs(cg, axes, sizes, batch=2, seed=0)
    with torch.no_grad():
        names = _names(cg, model(*example))
    what = "with dynamic sizes" if dynamic else "at fixed sizes"
    try:
        with _quiet():
            shapes = _dynamic_shapes(cg, axes, dynamic)
            params = inspect.signature(model.forward).parameters.values()
            varargs = next((p.name for p in params if p.kind is inspect.Parameter.VAR_POSITIONAL), None)
            ep = torch.export.export(model, example, dynamic_shapes={varargs: shapes} if varargs else shapes,
                                     strict=False)
            program = torch.onnx.export(ep, example, dynamo=True, opset_version=opset, verbose=False,
                                        input_names=[t.name for t in cg.inputs], output_names=names)
            assert program is not None
            _rename_dims(program, _symbols(cg, ep, axes))
            program.save(str(tmp))
    except Exception as e:  # noqa: BLE001 - the exporter's failures are of many types
        raise _Failed(f"PyTorch's exporter cannot keep them dynamic (torch.export: {_first_line(e)})",
                      NetdslError(f"PyTorch's ONNX exporter failed {what}: {_first_line(e)}",
                                  hint="run with --debug for the traceback; the torch module itself still builds")) from e
    return names


def _symbols(cg: ConcreteGraph, ep: Any, axes: list[SizeAxis]) -> dict[str, sp.Expr]:
    """PyTorch's size symbols (`s77`, `s20`) by name, in the spec's terms: the batch, and
    H_q = (H - r)/m for a size traced as m*H_q + r."""
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    batch = sp.Symbol(_batch_name(cg, axes))
    out: dict[str, sp.Expr] = {}
    for t, name in zip(cg.inputs, ep.graph_signature.user_inputs):
        shape = nodes[name].meta["val"].shape
        want: dict[int, sp.Expr] = {0: batch}
        want.update({a.axis: sp.Symbol(a.name) for a in axes if a.input == t.name})
        for axis, dim in enumerate(shape):
            expr = getattr(getattr(dim, "node", None), "expr", None)
            if not isinstance(expr, sp.Expr) or axis not in want or len(expr.free_symbols) != 1:
                continue
            s = next(iter(expr.free_symbols))
            slope, const = expr.coeff(s), expr.subs(s, 0)
            if expr == sp.expand(slope * s + const) and slope != 0:
                out[s.name] = sp.expand((want[axis] - const) / slope)
    return out


def _rename_dims(program: Any, symbols: dict[str, sp.Expr]) -> None:
    """Write every symbolic dimension of the ONNX graph in the spec's names (`32*s20` becomes `H`,
    `15*s20*s33` becomes `15*H*W/1024`). The texts come from the sizes PyTorch traced (never
    parsed back from text); one it did not trace keeps PyTorch's text."""
    if not symbols:
        return
    try:
        import onnx_ir as oir
    except ImportError:  # older onnxscript bundles it
        from onnxscript import ir as oir  # type: ignore[no-redef]
    texts: dict[str, str] = {}
    for ep in {id(p): p for p in (getattr(program, "exported_program", None),) if p is not None}.values():
        for node in ep.graph.nodes:
            for v in _flat_meta(node.meta.get("val")):
                for dim in getattr(v, "shape", ()):
                    expr = getattr(getattr(dim, "node", None), "expr", None)
                    if isinstance(expr, sp.Expr) and str(expr) not in texts:
                        texts[str(expr)] = _in_spec_terms(expr, symbols)
    graph = program.model.graph
    values = [*graph.inputs, *graph.outputs]
    for node in oir.traversal.RecursiveGraphIterator(graph):
        values.extend(node.outputs)
    for v in values:
        shape = v.shape
        if shape is None or not any(isinstance(d, oir.SymbolicDim) for d in shape):
            continue
        v.shape = oir.Shape([oir.SymbolicDim(texts.get(d.value, d.value))
                             if isinstance(d, oir.SymbolicDim) and d.value else d for d in shape])


def _flat_meta(v: Any) -> list[Any]:
    if isinstance(v, (list, tuple)):
        return [y for x in v for y in _flat_meta(x)]
    return [v]


_TORCH_FUNCTIONS = {"FloorDiv": lambda e: sp.floor(e.args[0] / e.args[1]),
                    "CleanDiv": lambda e: e.args[0] / e.args[1],
                    "CeilDiv": lambda e: sp.ceiling(e.args[0] / e.args[1])}


def _in_spec_terms(expr: sp.Expr, symbols: dict[str, sp.Expr]) -> str:
    subs = {s: symbols[s.name] for s in expr.free_symbols if isinstance(s, sp.Symbol) and s.name in symbols}
    if len(subs) != len(expr.free_symbols):
        return str(expr)
    new = expr.xreplace(subs)
    for name, rule in _TORCH_FUNCTIONS.items():  # torch's own integer functions, as SymPy writes them
        new = new.replace(lambda e, n=name: type(e).__name__ == n and len(e.args) == 2, rule)
    plain = all(isinstance(a, (sp.Add, sp.Mul, sp.Pow, sp.Symbol, sp.Number)) for a in sp.preorder_traversal(new))
    return str(sp.expand(new) if plain else new)


def _signature(tmp: Path) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    import onnx

    m = onnx.load(str(tmp), load_external_data=False)

    def dims(v: Any) -> list[str]:
        return [d.dim_param or str(d.dim_value) for d in v.type.tensor_type.shape.dim]

    return [(v.name, dims(v)) for v in m.graph.input], [(v.name, dims(v)) for v in m.graph.output]


def _check(cg: ConcreteGraph, model: nn.Module, tmp: Path, axes: list[SizeAxis], names: list[str],
           second: dict[str, int] | None) -> list[tuple[str, float]]:
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except Exception as e:  # noqa: BLE001
        raise _Failed(f"onnx.checker rejects the dynamic model ({_first_line(e)})",
                      NetdslError(f"onnx.checker rejects the exported model: {_first_line(e)}",
                                  hint="this is a bug in netdsl or PyTorch's exporter; please report it")) from e
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(tmp), opts, providers=["CPUExecutionProvider"])
    runs = [({}, 2, 1)]
    if second:
        runs.append((second, 3, 2))
        least = {a.name: a.low for a in axes if a.dynamic}
        if any(least[a.name] != a.value for a in axes if a.dynamic):
            runs.append((least, 1, 3))
        declared = _declared_sizes(cg, axes)
        if declared is not None and declared not in (second, least):
            runs.append((declared, 1, 4))
    results = []
    for sizes, batch, seed in runs:
        xs = _inputs(cg, axes, sizes, batch, seed)
        with torch.no_grad():
            want = [t.numpy() for t in _flat(model(*xs))]
        try:
            got = session.run(names, {t.name: x.numpy() for t, x in zip(cg.inputs, xs)})
        except Exception as e:  # noqa: BLE001
            raise _Failed(f"onnxruntime fails at {_shape_text(xs)} ({_first_line(e)})",
                          NetdslError(f"onnxruntime cannot run the exported model: {_first_line(e)}",
                                      hint="this is a bug in netdsl or PyTorch's exporter; please report it")) from e
        worst = 0.0
        for n, w, g in zip(names, want, got):
            if w.shape != g.shape or not np.allclose(g, w, rtol=RTOL, atol=ATOL):
                diff = float(np.abs(g - w).max()) if w.shape == g.shape else float("inf")
                detail = f"output '{n}' differs from torch at {_shape_text(xs)}: " + \
                    (f"max |difference| {diff:.3g}" if w.shape == g.shape else f"shape {g.shape} != {w.shape}")
                raise _Failed(detail, NetdslError(f"the exported model's {detail}",
                                                  hint="this is a bug in netdsl or PyTorch's exporter; please report it"))
            worst = max(worst, float(np.abs(g - w).max()) if w.size else 0.0)
        results.append((_shape_text(xs), worst))
    return results


def _shape_text(xs: tuple) -> str:
    return " + ".join("x".join(str(d) for d in x.shape) for x in xs)
