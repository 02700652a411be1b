"""What an op is: its arguments, arity, PyTorch's rules, shape rule, counts and torch module.

Each file in this package defines ops by subclassing `OpDef`; `netdsl.ops.REGISTRY` collects them
(`build_registry` checks each). Nothing outside this package tests an op's name: shapes call
`check` and `shape`, counts call `counts`, solve calls `search_range`, the torch backend calls
`module` and `combine`, export reads `module` and `source`, weights read `darknet_role`.
SymPy is imported here (shape rules are symbolic); torch never is (`module` names a class).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from types import ModuleType
from typing import Any, Literal

import sympy as sp

from netdsl.ops.allocs import Alloc, Mem
from netdsl.ops.saves import Need, Saves
from netdsl.ops.window import Windows
from netdsl.symbolic import always_nonnegative

Shape = tuple[sp.Expr, ...]
ArgType = Literal["int", "float", "bool", "str", "ints", "intlists", "floats"]
ZERO = sp.Integer(0)
ONE = sp.Integer(1)


@dataclass(frozen=True)
class ArgSpec:
    name: str
    type: ArgType
    default: int | float | bool | str | None = None  # None: required
    choices: tuple[str, ...] = ()
    # Where the default is another argument's value (a pool's stride is its kernel size).
    default_from: str | None = None
    minimum: int | None = None
    # Inclusive bounds for float arguments, as PyTorch enforces them.
    fmin: float | None = None
    fmax: float | None = None
    pair: bool = False    # may be written `(h, w)`; held as a pair either way
    inf_ok: bool = False  # a float that may be inf or -inf (a padding value)

    @property
    def required(self) -> bool:
        return self.default is None and self.default_from is None


class RuleError(Exception):
    """A PyTorch rule an op's arguments break; the shape pass adds the place (the argument's span)."""

    def __init__(self, arg: str | None, message: str, hint: str) -> None:
        super().__init__(message)
        self.arg, self.message, self.hint = arg, message, hint


class Unmodelled(NotImplementedError):
    """A case whose memory torch computes in a way netdsl's rules do not model (attention with
    dropout trains through another kernel): the metric is left out with this message and hint,
    never given a stand-in figure."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


@dataclass(frozen=True)
class Counts:
    """Per sample. `macs` are multiply-accumulates (the seed's "connections" for every layer)."""

    weights: sp.Expr = ZERO
    biases: sp.Expr = ZERO
    norm_params: sp.Expr = ZERO
    buffers: sp.Expr = ZERO
    macs: sp.Expr = ZERO


class Args(dict):
    """Argument values by name, readable as attributes: ints are SymPy expressions (or pairs of
    them) in the shape and count rules, plain ints (or pairs) in `check` and `torch`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def units(s: Shape) -> sp.Expr:
    return sp.expand(sp.Mul(*s))


def scalar(v: Any) -> Any:
    """A pair with equal halves as one value, as PyTorch users write it."""
    if isinstance(v, tuple) and len(v) == 2 and v[0] == v[1]:
        return v[0]
    return v


class Category(str, Enum):
    """What the totals' conventions group an op with (the value is what reports and JSON show).

    A str: it compares, hashes and prints as its value, so outputs read as before the enum.
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    CONV = "conv"
    LINEAR = "linear"
    POOL = "pool"
    UPSAMPLE = "upsample"
    NORM = "norm"
    ACTIVATION = "activation"
    SHAPE = "shape"  # reshapes that copy nothing worth counting
    MERGE = "merge"


DarknetRole = Literal["conv", "bn", "head"]
# Why a merge's inputs usually differ in size: the layers that made them.
STRIDES_HINT = "check the strides, paddings and output_padding of the layers that made them"


class OpDef:
    """One op: a single-input layer (conv, relu), a merge (cat, add) or a head (detect).

    Subclasses set `name`, `category` and the arity, and override `shape` and the rules they need;
    `build_registry` refuses a subclass that leaves out what every op must say. Every method takes
    the inputs as a list, one entry per input, whatever the arity.
    """

    name: str = ""
    args: tuple[ArgSpec, ...] = ()
    doc: str = ""
    category: Category  # required: no default, so a typo cannot drop an op from the totals
    min_inputs: int = 1
    max_inputs: int | None = 1  # None: any number
    ranks: tuple[int, ...] | None = (3,)  # input ranks a single-input op accepts; None: any
    final = False  # its result is one of the network's outputs, and nothing follows it
    # A statement-starting op whose module is its statement's own, registered under the statement's
    # name (attention_qkv): no layers may follow it in that statement.
    alone = False
    # Its place in darknet's .weights format: a [convolutional]'s conv, the batchnorm after one,
    # or a detect head's per-level convolutions; None: darknet's format has no place for it.
    darknet_role: DarknetRole | None = None
    running_stats = False  # keeps running statistics in training mode (`--freeze-bn eval` stops that)
    # Its parameters never train (its module makes them with requires_grad False: detect_v8's DFL
    # bins): no gradient, no optimizer state, whatever `@freeze` says.
    fixed_params = False
    task: str | None = None  # the training task a network with this op as an output is trained as
    # (what, hint) for the error when a merge's inputs differ in the axes it matches (the whole hint)
    mismatch_text: tuple[str, str] = ("shapes", STRIDES_HINT)
    symbol = ""  # how a picture marks a merge in its circle ("+" for add); empty: the op's name
    rank_hint = ""  # the hint when its input has a rank it does not take; empty: the shape pass's own

    @property
    def starts_statement(self) -> bool:
        """Written `x = op(a, b, ...)` rather than in a chain `-> op(...)`."""
        return self.max_inputs != 1

    def arg(self, name: str) -> ArgSpec | None:
        return next((a for a in self.args if a.name == name), None)

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        """PyTorch's rules on the arguments at the values in use (`image`: the network's first
        image input at the values in use); raise RuleError."""

    def search_range(self, arg: str, a: Args) -> tuple[int, int, str] | None:
        """For `solve`: the inclusive range PyTorch allows for an open argument, given the
        arguments already known (plain ints); None: no bound but the argument's minimum."""
        return None

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        """The output shape (per sample) from the input shapes; every op must give its own."""
        raise NotImplementedError(self.name)

    def counts(self, a: Args, ins: list[Shape], out: Shape) -> Counts:
        return Counts()

    def connections(self, a: Args, ins: list[Shape], out: Shape, c: Counts) -> sp.Expr:
        """The seed's "connections": MACs for layers with weights, one per output unit otherwise."""
        return c.macs if self.category in (Category.CONV, Category.LINEAR) else units(out)

    def param_tensors(self, a: Args, inputs: int, c: Counts) -> int:
        """How many parameter tensors its module holds (Adam keeps a `step` tensor for each): one
        per kind it counts (weight, bias; a normalisation's weight and bias), per input for a
        merge with weights (a head with a convolution per map). An op whose module holds others
        (attention's in- and out-projections) says so."""
        levels = max(inputs, 1) if self.max_inputs != 1 else 1
        return levels * int((c.weights != 0) + (c.biases != 0)) + 2 * int(c.norm_params != 0)

    def match_axes(self, rank: int) -> Sequence[int]:
        """The per-sample axes whose sizes all inputs must share."""
        return range(rank)

    def bind(self, a: Args, ins: list[Shape]) -> OpDef:
        """This op with its arguments and input shapes fixed, for the rules that read neither
        (`match_axes`, `mismatch_text`, `combine`, `source`): `cat(..., dim=2)` joins another axis.
        The shape pass keeps the bound op in the concrete graph; most ops are their own."""
        return self

    def same_sizes(self, a: Args, ins: list[Shape]) -> list[tuple[sp.Expr, sp.Expr, str]]:
        """Sizes a layer needs equal, (a, b, what they are): `check` refuses them where they differ
        at the values in use; the shape pass notes where they are equal only there."""
        return []

    def stretches(self, a: sp.Expr, b: sp.Expr) -> bool:
        """Whether two inputs' unequal sizes `a` and `b` of one matched axis still combine (torch's
        broadcasting: one of them is 1); False: they must be equal."""
        return False

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]] | None:
        """The module computing the op: a class name (in torch.nn, else in netdsl's torch layers)
        and its keyword arguments; None for an op without weights that `combine` computes. A
        statement-starting op's module takes every input."""
        return None

    def combine(self, xs: list[Any], torch: ModuleType) -> Any:
        """The inputs of a statement-starting op without a module, combined into one tensor.
        The backend hands in the torch module: netdsl.ops never imports torch."""
        raise NotImplementedError(self.name)

    def source(self, inputs: list[str]) -> str:
        """The Python expression `combine` computes, over input variables named `inputs`; for an
        op with a module, the arguments it is called with."""
        return ", ".join(inputs)

    def node_path(self, statement_path: str) -> str:
        """The concrete graph's path of a statement-starting op: a final op is its statement's
        module; the others are named after their statement, `x(cat)`."""
        return statement_path if self.final else f"{statement_path}({self.name})"

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        """What autograd keeps for backward when this op runs in a training-mode forward (see
        `netdsl.ops.saves`); `passes.saved` calls it only where the op has an autograd node. Every
        op measures and states its own: an op without a rule is an error there, never a guess."""
        raise NotImplementedError(f"op '{self.name}' has no rule for what autograd saves")

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        """For each input, the units one output unit reads along the height and the width (see
        `netdsl.ops.window`); `passes.receptive` composes them into receptive fields. An op
        without a rule is an error there, never a guess."""
        raise NotImplementedError(f"op '{self.name}' has no receptive-field rule (windows)")

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        """What an eval forward of this op allocates under no_grad, as aten ops see it (see
        `netdsl.ops.allocs`); `passes.peak` adds it to the live set. An op without a rule is an
        error there, never a guess."""
        raise NotImplementedError(f"op '{self.name}' has no rule for what an eval forward allocates")


def _overrides(op: OpDef, method: str) -> bool:
    return getattr(type(op), method) is not getattr(OpDef, method)


def validate(op: OpDef) -> None:
    """Raise TypeError where `op` leaves out what every op must say."""
    what = f"op {type(op).__name__} ({op.name or 'no name'})"
    if not op.name or not isinstance(op.name, str):
        raise TypeError(f"{what}: no name")
    if not isinstance(getattr(op, "category", None), Category):
        raise TypeError(f"{what}: category must be a Category, got {getattr(op, 'category', None)!r}")
    if not _overrides(op, "shape"):
        raise TypeError(f"{what}: no shape rule (override shape)")
    lo, hi = op.min_inputs, op.max_inputs
    if not isinstance(lo, int) or lo < 1 or (hi is not None and (not isinstance(hi, int) or hi < lo)):
        raise TypeError(f"{what}: bad arity min_inputs={lo!r}, max_inputs={hi!r}")
    if not op.starts_statement and not _overrides(op, "module"):
        raise TypeError(f"{what}: a single-input op needs a module (override module)")
    if op.starts_statement and not (_overrides(op, "module") or _overrides(op, "combine")):
        raise TypeError(f"{what}: a multi-input op needs a module or a combine")


def build_registry(ops: Iterable[OpDef]) -> dict[str, OpDef]:
    """Name -> op, each validated; raises TypeError on an invalid op or a name given twice."""
    out: dict[str, OpDef] = {}
    for op in ops:
        validate(op)
        if op.name in out:
            raise TypeError(f"two ops named '{op.name}'")
        out[op.name] = op
    return out


# --- shared rules ----------------------------------------------------------------------------

def window_out(x: sp.Expr, k: sp.Expr, s: sp.Expr, p: sp.Expr, d: sp.Expr = ONE,
               ceil: bool = False) -> sp.Expr:
    """PyTorch's output size of a sliding window (conv and pooling), floor or ceil mode.

    In ceil mode PyTorch drops a last window that would start inside the right padding; that
    correction is decided for every admissible size where possible, else kept as a Piecewise.
    """
    e = d * (k - 1) + 1  # the window's extent
    span = x + 2 * p - e
    if not ceil:
        return sp.floor(sp.expand(span / s)) + 1
    out = sp.floor(sp.expand((span + s - 1) / s)) + 1
    # The last window starts at (out - 1)*s, which lies in [span, span + s - 1]; it starts inside
    # the right padding when (out - 1)*s >= x + p. With a = (out - 1)*s - span in [0, s - 1] that
    # is a >= e - p (>= 1, PyTorch's padding rule), so it never happens when s <= e - p: the
    # common case (a 3x3 window of stride 2), decided without looking at x at all.
    if bool(sp.Le(s, e - p)) if (s - e + p).is_number else False:
        return out
    starts_in_padding = sp.expand((out - 1) * s - x - p)
    verdict = always_nonnegative(starts_in_padding)
    if verdict is not None:
        return out - 1 if verdict else out
    a = sp.expand((out - 1) * s - span)
    return out - sp.Min(1, sp.floor(a / (e - p)))


def pool_padding_rule(a: Args) -> None:
    """PyTorch: pooling padding at most half the kernel, whatever the dilation."""
    for axis, p, k in zip(("height", "width"), a.padding, a.kernel):
        if p > k // 2:
            raise RuleError("padding", f"padding={p} must be at most half the kernel ({k} // 2 = {k // 2})"
                            + ("" if a.padding[0] == a.padding[1] and a.kernel[0] == a.kernel[1] else f" ({axis})"),
                            "PyTorch's rule for pooling: padding <= kernel // 2, whatever the dilation")


def pool_padding_range(arg: str, a: Args) -> tuple[int, int, str] | None:
    if arg == "padding" and isinstance(a.get("kernel"), tuple):
        k = min(a.kernel)
        return 0, k // 2, "PyTorch: pooling padding <= kernel // 2"
    return None
