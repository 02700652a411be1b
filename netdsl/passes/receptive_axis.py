"""The algebra of receptive fields along one axis: a tensor's units and the input pixels they read.

`Axis` holds, for one axis of one tensor, which pixels of the network's input each unit reads
(periodic: unit `q*t + phi` reads `starts[phi] + t*p` .. `ends[phi] + t*p`); `compose` applies an
op's `Window` to it and `union` joins the regions of a merge's inputs. `passes.receptive` walks the
graph with them, `passes.receptive_seq` lays sequences of tokens over them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import lcm

import sympy as sp

from netdsl.ops.window import Window


@dataclass(frozen=True)
class Axis:
    """One axis of a tensor: unit `q*t + phi` reads input pixels `starts[phi] + t*p` .. `ends[phi] + t*p`."""

    p: sp.Expr
    q: int
    starts: tuple[sp.Expr, ...]
    ends: tuple[sp.Expr, ...]

    @property
    def jump(self) -> sp.Expr:
        return sp.expand(self.p / self.q)

    @property
    def size(self) -> sp.Expr:
        sizes = list(dict.fromkeys(sp.expand(e - s + 1) for s, e in zip(self.starts, self.ends)))
        return sizes[0] if len(sizes) == 1 else sp.Max(*sizes)

    def unit(self, m: sp.Expr, at: Callable[[sp.Expr], int], end: bool) -> sp.Expr:
        """Where the region of unit `m` (an expression) starts, or ends."""
        ends = self.ends if end else self.starts
        if self.q == 1:
            return sp.expand(ends[0] + m * self.p)
        phase = int(m) % self.q if m.is_Integer else at(m) % self.q
        return sp.expand(ends[phase] + (m - phase) / self.q * self.p)


IMAGE = Axis(sp.Integer(1), 1, (sp.Integer(0),), (sp.Integer(0),))
Field = tuple[Axis, Axis]


def _reduce(p: sp.Expr, q: int, starts: list[sp.Expr], ends: list[sp.Expr]) -> Axis:
    """The shortest period that describes the same regions."""
    for q2 in range(1, q):
        if q % q2:
            continue
        step = sp.expand(p * q2 / q)
        if all(sp.expand(xs[k + q2] - xs[k] - step) == 0 for xs in (starts, ends) for k in range(q - q2)):
            return Axis(step, q2, tuple(starts[:q2]), tuple(ends[:q2]))
    return Axis(sp.expand(p), q, tuple(starts), tuple(ends))


def compose(a: Axis, w: Window, at: Callable[[sp.Expr], int]) -> Axis:
    """The regions of an op's output units, from its input's regions and the op's window."""
    starts, ends = [], []
    for phi in range(w.n * a.q):
        base = w.d * (phi // w.n)
        starts.append(a.unit(sp.expand(base + w.lo[phi % w.n]), at, False))
        ends.append(a.unit(sp.expand(base + w.hi[phi % w.n]), at, True))
    return _reduce(w.d * a.p, w.n * a.q, starts, ends)


def _period(a: Axis, q: int) -> Axis:
    k = q // a.q
    return Axis(sp.expand(a.p * k), q, tuple(sp.expand(a.starts[i % a.q] + (i // a.q) * a.p) for i in range(q)),
                tuple(sp.expand(a.ends[i % a.q] + (i // a.q) * a.p) for i in range(q)))


def union(axes: list[Axis], at: Callable[[sp.Expr], int]) -> tuple[Axis, str]:
    """The union of several inputs' regions along one axis, and what is not aligned ("" if all are)."""
    if len(axes) == 1:
        return axes[0], ""
    q = lcm(*(a.q for a in axes))
    same = [_period(a, q) for a in axes]
    if any(sp.expand(b.p - same[0].p) != 0 for b in same[1:]):
        jumps = ", ".join(dict.fromkeys(str(a.jump) for a in axes))
        return max(axes, key=lambda a: at(a.size)), f"jumps {jumps}"
    starts = [sp.Min(*(b.starts[k] for b in same)) for k in range(q)]
    ends = [sp.Max(*(b.ends[k] for b in same)) for k in range(q)]
    centres = {sp.expand(b.starts[0] + b.ends[0]) for b in same}
    return _reduce(same[0].p, q, starts, ends), ("" if len(centres) == 1 else "centres differ")
