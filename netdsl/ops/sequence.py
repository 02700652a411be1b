"""Sequences [T, D] (tokens, features), batch first in torch as `nn.MultiheadAttention(batch_first=True)`
takes them: `tokens` (an image's positions as tokens), `image(h, w)` (back to an image) and
`token(i)` (one token's features).

All three move data without weights and without copying: in torch each is a view of its input
(`flatten(2).transpose(1, 2)`, `transpose(1, 2).unflatten(2, (h, w))`, `x[:, i]`), so what changes
is how the result lies in memory: `tokens` of a contiguous image is a transposed ("ndt") sequence,
and `image` of a contiguous sequence a channels-last ("nhwc") image.
"""
from __future__ import annotations

from typing import Any

import sympy as sp

from netdsl.ops.allocs import Alloc, Layout, Mem
from netdsl.ops.base import Args, ArgSpec, Category, OpDef, RuleError, Shape
from netdsl.ops.saves import Need, Saves
from netdsl.ops.window import POINT, Windows, pick, pointwise


def _text(s: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, s)) + "]"


def _view(layout: Layout) -> Alloc:
    return Alloc(alias=True, layout=layout)


class _Relaid(OpDef):
    """A view whose result lies differently in memory: `_layout` says how, from the input's layout."""

    @staticmethod
    def _layout(layouts: tuple[str, ...]) -> Layout:
        raise NotImplementedError

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return Saves(alias=0, layout=self._layout(need.layouts))

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return pointwise(1)

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return _view(self._layout(m.layouts))


class Tokens(_Relaid):
    name = "tokens"
    doc = "tokens: an image [C, H, W] as a sequence [H*W, C] (token t is row t // W, column t % W)"
    category = Category.SHAPE
    ranks = (3,)
    rank_hint = "tokens makes a sequence from an image; a sequence or features are no image to read"

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        c, h, w = ins[0]
        return (sp.expand(h * w), c)

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Tokens", {}

    @staticmethod
    def _layout(layouts: tuple[str, ...]) -> Layout:
        # flatten(2) merges height and width (a view in either layout); the transpose of a
        # contiguous image's [N, C, H*W] is no longer contiguous, of a channels-last one it is
        return "nchw" if layouts[:1] == ("nhwc",) else "ndt"


class ToImage(_Relaid):
    name = "image"
    args = (ArgSpec("h", "int", minimum=1), ArgSpec("w", "int", minimum=1))
    doc = "image(h, w): a sequence [T, D] as an image [D, h, w], T == h*w (token t to row t // w, column t % w)"
    category = Category.SHAPE
    ranks = (2,)
    rank_hint = "image(h, w) lays a sequence's tokens out on a grid; an image needs no layout: use it as it is"

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        t, d = ins[0]
        if t != a.h * a.w:
            raise RuleError(None, f"image({a.h}, {a.w}) of a sequence of {t} tokens: the image [{d}, {a.h}, {a.w}] "
                            f"has {a.h * a.w} positions, the sequence [{t}, {d}] has {t} tokens",
                            "h*w must be the token count: the height and width the tokens were made from "
                            "(`tokens` of [C, H, W] makes H*W tokens)")

    def same_sizes(self, a: Args, ins: list[Shape]) -> list[tuple[sp.Expr, sp.Expr, str]]:
        return [(ins[0][0], sp.expand(a.h * a.w), "the token count and h*w")]

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (ins[0][1], a.h, a.w)

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "ToImage", dict(h=a.h, w=a.w)

    @staticmethod
    def _layout(layouts: tuple[str, ...]) -> Layout:
        # transpose(1, 2) then split the tokens (a view in every layout): a transposed ("ndt")
        # sequence comes back contiguous, a contiguous one channels-last
        return "nchw" if layouts[:1] == ("ndt",) else "nhwc"


class Token(OpDef):
    name = "token"
    args = (ArgSpec("i", "int"),)
    doc = "token(i): token i of a sequence [T, D] as features [D], x[:, i] (negative from the end)"
    category = Category.SHAPE
    ranks = (2,)
    rank_hint = "token(i) picks one token of a sequence; make a sequence first (tokens)"

    def check(self, a: Args, ins: list[tuple[int, ...]], image: tuple[int, ...] | None) -> None:
        t, d = ins[0]
        if not -t <= a.i < t:
            raise RuleError("i", f"token({a.i}) of a sequence [{t}, {d}]: the tokens are 0 to {t - 1} "
                            f"(or -{t} to -1 from the end)", "pick a token the sequence has: token(0) is the first "
                            "(ViT's class token), token(-1) the last")

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return (ins[0][1],)

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Token", dict(index=a.i)

    def saved(self, a: Args, ins: list[Shape], out: Shape, need: Need) -> Saves:
        return Saves(alias=0, layout="nchw")

    def windows(self, a: Args, ins: list[Shape], out: Shape) -> list[Windows]:
        return [(pick(a.i), POINT)]

    def allocates(self, a: Args, ins: list[Shape], out: Shape, m: Mem) -> Alloc:
        return _view("nchw")


OPS = (Tokens(), ToImage(), Token())
