"""What one output unit of an op reads, per spatial axis: the op's rule for receptive fields.

Each op says, for each of its inputs, a `Window` along the height and one along the width
(`OpDef.windows`); `netdsl.passes.receptive` composes them along the graph. A window is periodic:
output unit `i = n*T + phi` (`0 <= phi < n`) reads the input units `d*T + lo[phi]` to
`d*T + hi[phi]`, both ends included. A sliding window is `n = 1` (`d` its stride); an op that
makes several output units per input unit (upsampling, a transposed convolution) has `n` phases,
whose regions differ; `d = 0` means every output unit reads the same units (a global pool).
Rows and columns outside the input (padding) are read as units past its ends: the pass keeps them,
and what is outside the network's input is cut off only when a region is compared with it.

An input that is a sequence `[T, D]` has one axis of units, its tokens: its pair is (the window
along the tokens, `POINT`), the features read like channels. Position-wise ops are `pointwise`;
self-attention reads `whole(T)`; `token(i)` is `pick(i)`; input k of a `cat` along the tokens is
`shift(o)`, o the tokens before it. The pass lays a sequence that `tokens` made on its image's grid
(token t is row t // W, column t % W), and `image(h, w)` (pointwise) lays it back.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

ZERO, ONE = sp.Integer(0), sp.Integer(1)


def _expr(x: sp.Expr | int) -> sp.Expr:
    return x if isinstance(x, sp.Basic) else sp.Integer(x)


@dataclass(frozen=True)
class Window:
    """Output unit `n*T + phi` reads input units `d*T + lo[phi]` .. `d*T + hi[phi]` of one axis.

    >>> sliding(3, 2, 1)  # a 3-wide window of stride 2, padding 1: unit T reads 2T-1 .. 2T+1
    Window(n=1, d=2, lo=(-1,), hi=(1,))
    """

    n: int
    d: sp.Expr
    lo: tuple[sp.Expr, ...]
    hi: tuple[sp.Expr, ...]


POINT = Window(1, ONE, (ZERO,), (ZERO,))
SAME = Window(1, ZERO, (ZERO,), (ZERO,))  # every output unit reads unit 0 (a broadcast size-1 axis)
Windows = tuple[Window, Window]  # height, width


def sliding(extent: sp.Expr, stride: sp.Expr, padding: sp.Expr) -> Window:
    """A sliding window (conv, pooling): `extent` is dilation*(kernel - 1) + 1."""
    return Window(1, _expr(stride), (sp.expand(-padding),), (sp.expand(extent - 1 - padding),))


def whole(size: sp.Expr) -> Window:
    """Every output unit reads the whole axis (a global pool, flatten, a softmax along it)."""
    return Window(1, ZERO, (ZERO,), (sp.expand(size - 1),))


def shift(by: sp.Expr) -> Window:
    """Output unit i reads input unit i - by (padding `by` before the axis)."""
    return Window(1, ONE, (sp.expand(-by),), (sp.expand(-by),))


def adaptive(size: sp.Expr, out: int) -> Window:
    """PyTorch's adaptive pooling of `size` units to `out`: unit i reads floor(i*size/out) ..
    ceil((i+1)*size/out) - 1; to one unit, the whole axis."""
    if out == 1:
        return whole(size)
    lo = tuple(sp.floor(sp.Rational(phi, out) * size) for phi in range(out))
    hi = tuple(sp.ceiling(sp.Rational(phi + 1, out) * size) - 1 for phi in range(out))
    return Window(out, _expr(size), lo, hi)


def nearest(f: int) -> Window:
    """Nearest upsampling by an integer factor: output unit i reads unit floor(i/f)."""
    return Window(f, ONE, (ZERO,) * f, (ZERO,) * f)


def bilinear(f: int, align_corners: bool) -> Window:
    """Bilinear upsampling by an integer factor. Without align_corners PyTorch reads the two
    neighbours of (i + 1/2)/f - 1/2: floor of it and the next (exact; at the borders it clamps to
    the input). With align_corners the source is i*(H - 1)/(f*H - 1), which lies in
    [i/f - (f - 1)/f, i/f]: the window is the two neighbours of either end (a bound, not exact)."""
    if align_corners:
        lo = tuple(sp.Integer(-1 if phi < f - 1 else 0) for phi in range(f))
        return Window(f, ONE, lo, (ONE,) * f)
    lo = tuple(sp.floor(sp.Rational(2 * phi + 1 - f, 2 * f)) for phi in range(f))
    return Window(f, ONE, lo, tuple(x + 1 for x in lo))


def transposed(kernel: sp.Expr, stride: int, padding: sp.Expr, dilation: sp.Expr) -> Window:
    """ConvTranspose2d: output o = s*T + phi reads the inputs i with o + p - dil*t = s*i for a
    kernel tap t in [0, k-1], i.e. ceil((phi + p - dil*(k-1))/s) .. floor((phi + p)/s) past s*T
    (every one of them for dilation 1; a bound with gaps for a larger dilation)."""
    lo = tuple(sp.ceiling((phi + padding - dilation * (kernel - 1)) / sp.Integer(stride)) for phi in range(stride))
    hi = tuple(sp.floor((phi + padding) / sp.Integer(stride)) for phi in range(stride))
    return Window(stride, ONE, lo, hi)


def pick(i: sp.Expr | int) -> Window:
    """Every output unit reads unit i of the axis (`token(i)`; negative from the end, as torch).

    >>> pick(0)
    Window(n=1, d=0, lo=(0,), hi=(0,))
    """
    return Window(1, ZERO, (_expr(i),), (_expr(i),))


def pointwise(count: int) -> list[Windows]:
    """Each output unit reads the same unit of every input (activations, norms, channel ops)."""
    return [(POINT, POINT)] * count


def broadcast(shape: tuple[sp.Expr, ...], out: tuple[sp.Expr, ...]) -> Windows:
    """An input of an element-wise merge: where its size 1 is stretched over a larger output
    (torch's broadcasting: an SE gate, a sequence of one token), every output unit reads its one unit."""
    if len(shape) == 2 and len(out) == 2:
        return (SAME if shape[0] == ONE and out[0] != ONE else POINT, POINT)
    if len(shape) != 3:
        return (POINT, POINT)
    h, w = (SAME if x == ONE and y != ONE else POINT for x, y in zip(shape[1:], out[1:]))
    return (h, w)
