"""Receptive fields of sequences: tokens laid on the image grid they came from.

A sequence `[T, D]` is a run of `Part`s along its tokens. A part that `tokens` made from an image
keeps the image's grid: its token j is the unit (row, column) = ((skip + j) // width,
(skip + j) % width) of the image's field, so a position-wise op (linear, layernorm, gelu, add) reads
what the patch under it reads. A part with no field reads nothing of the input (a learned tensor: a
class token, a position embedding); a part whose field has jump 0 on both axes is uniform (every
token reads the same region: after attention). An op's window along the tokens (`netdsl.ops.window`)
is a shift (`cat` along the tokens: the parts move), a window that reads the same tokens for every
output unit (`whole(T)`: attention; `pick(i)`: `token(i)`), or pointwise. `image(h, w)` lays the
tokens back on a grid `w` wide. Where the parts do not line up (a sum of sequences laid on different
grids, an image of tokens that are not one grid `w` wide), the union of what they read bounds it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy as sp

from netdsl.ops.window import Window, Windows
from netdsl.passes.receptive_axis import Field, compose, union

ZERO, ONE = sp.Integer(0), sp.Integer(1)
At = Callable[[sp.Expr], int]
Shape = tuple[sp.Expr, ...]


@dataclass(frozen=True)
class Part:
    """Tokens `start` .. `start + length - 1`; token `start + j` is grid unit `skip + j` of a grid
    `width` units wide over `field` (None: it reads nothing of the network's input)."""

    start: sp.Expr
    length: sp.Expr
    field: Field | None
    width: sp.Expr = ONE
    skip: sp.Expr = ZERO


@dataclass(frozen=True)
class Seq:
    """The regions a sequence's tokens read, part by part (see the module's docstring)."""

    parts: tuple[Part, ...]

    def token(self, t: int, at: At) -> Field | None:
        """The region token t reads, as a field of one unit (jump 0), or None."""
        for p in self.parts:
            if at(p.start) <= t < at(p.start + p.length):
                local = t - at(p.start)
                return _part_region(p, local, local, at)[0]
        raise IndexError(t)

    def main(self, at: At) -> Field | None:
        """The field the report shows: the part that reads the largest region (a class token's
        part reads none)."""
        fields = [p.field for p in self.parts if p.field is not None]
        return max(fields, key=lambda f: at(f[0].size) * at(f[1].size), default=None)


def _sym(x: sp.Expr | int) -> sp.Expr:
    return x if isinstance(x, sp.Basic) else sp.Integer(x)


def _rows_cols(rows: tuple[sp.Expr, sp.Expr], cols: tuple[sp.Expr, sp.Expr]) -> Windows:
    return (Window(1, ZERO, (_sym(rows[0]),), (_sym(rows[1]),)), Window(1, ZERO, (_sym(cols[0]),), (_sym(cols[1]),)))


def _part_region(p: Part, a: int, b: int, at: At) -> tuple[Field | None, bool]:
    """What tokens a .. b of part p (counted from the part's first) read, as a uniform field, and
    whether that is exact (a run of tokens that is not whole rows of the grid is bounded by them)."""
    if p.field is None:
        return None, True
    length, width = at(p.length), at(p.width)
    height = sp.cancel(p.length / p.width)
    if a == 0 and b == length - 1 and sp.expand(p.skip) == 0 and sp.expand(height * p.width - p.length) == 0:
        ws = _rows_cols((ZERO, sp.expand(height - 1)), (ZERO, sp.expand(p.width - 1)))  # the whole grid: a formula
        exact = True
    else:
        j0, j1 = at(p.skip) + a, at(p.skip) + b
        (r0, c0), (r1, c1) = divmod(j0, width), divmod(j1, width)
        exact = r0 == r1 or (c0 == 0 and c1 == width - 1)
        ws = _rows_cols((r0, r1), (c0, c1) if r0 == r1 else (0, width - 1))
    return (compose(p.field[0], ws[0], at), compose(p.field[1], ws[1], at)), exact


def _join(fields: Sequence[Field | None], at: At) -> tuple[Field | None, bool]:
    """The union of fields (None where none reads anything), and whether it is exact."""
    real = [f for f in fields if f is not None]
    if not real:
        return None, True
    (h, why_h), (w, why_w) = (union([f[k] for f in real], at) for k in (0, 1))
    return (h, w), not (why_h.startswith("jumps") or why_w.startswith("jumps"))


def reads(seq: Seq, lo: sp.Expr, hi: sp.Expr, tokens: sp.Expr, at: At) -> tuple[Field | None, bool]:
    """What tokens lo .. hi read together (negative from the end, as torch indexes)."""
    n = at(tokens)
    a, b = (at(x) + n if at(x) < 0 else at(x) for x in (lo, hi))
    got, exact = [], True
    for p in seq.parts:
        s, e = at(p.start), at(p.start + p.length) - 1
        if max(a, s) <= min(b, e):
            f, ok = _part_region(p, max(a, s) - s, min(b, e) - s, at)
            got.append(f)
            exact = exact and ok
    f, aligned = _join(got, at)
    return f, exact and aligned


def everything(seq: Seq, tokens: sp.Expr, at: At) -> tuple[Field | None, bool]:
    return reads(seq, ZERO, sp.expand(tokens - 1), tokens, at)


def grid(f: Field, image: Shape) -> Seq:
    """The sequence `tokens` makes of an image `[C, H, W]`: its units row by row."""
    _, h, w = image
    return Seq((Part(ZERO, sp.expand(h * w), f, w, ZERO),))


def _overlay(pieces: list[Part], length: sp.Expr, at: At) -> tuple[Seq, bool]:
    """The output's parts: between each two ends of the inputs' parts, the union of those that
    cover the tokens there (a `cat` tiles them; an `add` lays them over each other)."""
    cuts: dict[int, sp.Expr] = {}
    for x in (ZERO, length, *(p.start for p in pieces), *(sp.expand(p.start + p.length) for p in pieces)):
        if 0 <= at(x) <= at(length):
            cuts.setdefault(at(x), sp.expand(x))
    ends = [cuts[k] for k in sorted(cuts)]
    parts: list[Part] = []
    exact = True
    for b0, b1 in zip(ends, ends[1:]):
        n = sp.expand(b1 - b0)
        over = [Part(b0, n, p.field, p.width, sp.expand(p.skip + b0 - p.start)) for p in pieces
                if p.field is not None and at(p.start) <= at(b0) and at(p.start + p.length) >= at(b1)]
        if not over:
            parts.append(Part(b0, n, None))
        elif all(sp.expand(p.width - over[0].width) == 0 and sp.expand(p.skip - over[0].skip) == 0 for p in over):
            f, aligned = _join([p.field for p in over], at)
            parts.append(Part(b0, n, f, over[0].width, over[0].skip))
            exact = exact and aligned
        else:  # laid on different grids: every token reads the union of what they all read
            f, _ = _join([_part_region(p, 0, at(n) - 1, at)[0] for p in over], at)
            parts.append(Part(b0, n, f))
            # exact where one of them already reads that union with every token (attention's keys)
            exact = exact and any(_uniform(p.field) and _same(p.field, f, at) for p in over)
    return Seq(tuple(parts)), exact


def _uniform(f: Field | None) -> bool:
    return f is not None and all(sp.expand(a.p) == 0 for a in f)


def _same(f: Field | None, g: Field | None, at: At) -> bool:
    """Whether unit 0 of two fields reads the same pixels at the values in use."""
    if f is None or g is None:
        return f is g
    return all(at(a.starts[0]) == at(b.starts[0]) and at(a.ends[0]) == at(b.ends[0]) for a, b in zip(f, g))


def _as_image(seq: Seq, out: Shape, at: At) -> tuple[Field | None, bool]:
    """`image(h, w)`: unit (r, c) reads token r*w + c: exact where the tokens are one grid w wide
    (or all read the same region)."""
    _, h, w = out
    real = [p for p in seq.parts if p.field is not None]
    if len(seq.parts) == 1 and real and sp.expand(real[0].skip) == 0 and at(real[0].width) == at(w):
        return real[0].field, True
    f, exact = everything(seq, sp.expand(h * w), at)
    return f, exact and all(_uniform(p.field) for p in real) and len(real) == len(seq.parts)


def _tokens_to(seq: Seq, tokens: sp.Expr, w: Window, out_rank: int, out: Shape,
               at: At) -> tuple[list[Part] | Field | None, bool]:
    """What one sequence input gives the output under its window along the tokens: shifted parts
    (a sequence out), or a field (an image or features out)."""
    point = w.n == 1 and w.d == 1 and len(w.lo) == 1 and sp.expand(w.lo[0] - w.hi[0]) == 0
    if out_rank == 2 and point:
        by = sp.expand(-w.lo[0])
        return [Part(sp.expand(p.start + by), p.length, p.field, p.width, p.skip) for p in seq.parts], True
    if out_rank == 3 and point and w.lo[0] == 0:
        return _as_image(seq, out, at)
    if w.d == 0 and w.n == 1:
        f, exact = reads(seq, w.lo[0], w.hi[0], tokens, at)
    else:  # no rule along the tokens (a flatten): the whole sequence bounds it
        f, _ = everything(seq, tokens, at)
        exact = False
    if out_rank == 2:
        return [Part(ZERO, out[0], f)], exact
    return f, exact


def apply(ins: list[Shape], out: Shape, ws: list[Windows], regions: Sequence[Field | Seq | None],
          at: At, phase: At) -> tuple[Field | Seq | None, bool]:
    """An op whose input or output is a sequence: the output's regions, and whether they are exact."""
    pieces: list[Part] = []
    fields: list[Field | None] = []
    exact = True
    for shape, r, w in zip(ins, regions, ws):
        if r is None:
            continue
        if isinstance(r, Seq):
            got, ok = _tokens_to(r, shape[0], w[0], len(out), out, at)
            exact = exact and ok
        else:
            f = (compose(r[0], w[0], phase), compose(r[1], w[1], phase))
            got = (list(grid(f, shape).parts) if len(shape) == 3 else [Part(ZERO, out[0], f)]) if len(out) == 2 else f
        if isinstance(got, list):
            pieces += got
        else:
            fields.append(got)
    if len(out) == 2:
        if not pieces:
            return None, True
        seq, ok = _overlay(pieces, out[0], at)
        return (seq if any(p.field is not None for p in seq.parts) else None), exact and ok
    joined, aligned = _join(fields, at)
    return joined, exact and aligned
