"""torch modules for the sequence ops: an image's positions as tokens, tokens back to an image,
one token's features. Sequences are batch first, [N, T, D], as `nn.MultiheadAttention(batch_first=True)`
and torchvision's vision transformer take them.

Like `torch_layers`, whose `STANDALONE` lists them, each class here is copied by
`netdsl export --to python` into the file it writes: it names only `torch` and `nn`, and
`torch.fx`/`torch.export`/ONNX can trace it (shapes never read as Python integers).
"""
from __future__ import annotations

import torch
from torch import nn


class Tokens(nn.Module):
    """An image [N, C, H, W] as a sequence [N, H*W, C] (token t is row t // W, column t % W): a view,
    as torchvision's ViT makes its patch tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class ToImage(nn.Module):
    """A sequence [N, h*w, D] as an image [N, D, h, w] (token t to row t // w, column t % w): a view."""

    def __init__(self, h: int, w: int) -> None:
        super().__init__()
        self.h, self.w = h, w

    def extra_repr(self) -> str:
        return f"h={self.h}, w={self.w}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).unflatten(2, (self.h, self.w))


class Token(nn.Module):
    """Token `index` of a sequence [N, T, D] as features [N, D], `x[:, index]` (a view; negative
    from the end)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def extra_repr(self) -> str:
        return f"index={self.index}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]
