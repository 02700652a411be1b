"""What an op is: its arguments, PyTorch's rules, its shape rule, its counts and its torch module.

Each file in this package defines ops by subclassing `OpDef`; `netdsl.ops.REGISTRY` collects them.
The passes never special-case an op by name: shapes call `check` and `shape`, counts call
`counts`, the torch backend calls `torch`, solve calls `search_range`, export reads `torch` too.
SymPy is imported here (shape rules are symbolic); torch never is (`torch` names a class).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import sympy as sp

from netdsl.symbolic import always_nonnegative

Shape = tuple[sp.Expr, ...]
ArgType = Literal["int", "float", "bool", "str", "ints", "intlists"]
ZERO = sp.Integer(0)


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


class OpDef:
    """One builtin op. Subclasses set the class attributes and override the rules they need."""

    name: str = ""
    args: tuple[ArgSpec, ...] = ()
    doc: str = ""
    # What the totals' conventions group it with: conv, linear, pool, upsample, norm,
    # activation, shape (reshapes that copy nothing worth counting), merge.
    category: str = "activation"
    ranks: tuple[int, ...] | None = (3,)  # input ranks it accepts; None: any

    def arg(self, name: str) -> ArgSpec | None:
        return next((a for a in self.args if a.name == name), None)

    def check(self, a: Args, in_shape: tuple[int, ...]) -> None:
        """PyTorch's rules on the arguments at the values in use; raise RuleError."""

    def search_range(self, arg: str, a: Args) -> tuple[int, int, str] | None:
        """For `solve`: the inclusive range PyTorch allows for an open argument, given the
        arguments already known (plain ints); None: no bound but the argument's minimum."""
        return None

    def shape(self, a: Args, s: Shape) -> Shape:
        return s

    def counts(self, a: Args, s_in: Shape, s_out: Shape) -> Counts:
        return Counts()

    def connections(self, a: Args, s_in: Shape, s_out: Shape, c: Counts) -> sp.Expr:
        """The seed's "connections": MACs for layers with weights, one per output unit otherwise."""
        return c.macs if self.category in ("conv", "linear") else units(s_out)

    def torch(self, a: Args, in_shape: tuple[int, ...]) -> tuple[str, dict[str, Any]]:
        """The torch.nn class name and its keyword arguments (the backend and export read this)."""
        raise NotImplementedError(self.name)


# --- shared rules ----------------------------------------------------------------------------

def window_out(x: sp.Expr, k: sp.Expr, s: sp.Expr, p: sp.Expr, d: sp.Expr = sp.Integer(1),
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
