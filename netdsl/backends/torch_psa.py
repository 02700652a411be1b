"""YOLO11's position-sensitive attention (C2PSA's PSABlock) as two layers on its qkv map.

The qkv map is `[N, heads*(2*key_dim + head_dim), H, W]`: per head, `key_dim` query channels,
`key_dim` key channels, then `head_dim` value channels, every pixel a token.
`PSAttention(heads, key_dim)` is the attention itself: per head `v @ softmax(q^T k * key_dim^-0.5)^T`,
`[N, heads*head_dim, H, W]`. `PSValues(heads, key_dim)` is the values alone laid out as an image
(what the block's depthwise positional conv reads). Both compute in the order ultralytics 8.x's
`Attention.forward` does (the scale multiplies q before the product, softmax over the keys), so a
network made of them gives its results bit for bit. Sizes are read from the input with `-1` views,
so `torch.fx.symbolic_trace` follows them and an ONNX export keeps the batch and image size free.

`netdsl export --to python` copies these classes into the file it writes: they name only
`torch` and `nn`.
"""
from __future__ import annotations

import torch
from torch import nn


class PSAttention(nn.Module):
    """Multi-head attention over the pixels of a qkv map, no weights of its own.

    >>> m = PSAttention(2, 4)  # 2 heads, key_dim 4: 2*(2*4 + 8) = 32 channels, head_dim 8
    >>> m(torch.zeros(3, 32, 5, 6)).shape
    torch.Size([3, 16, 5, 6])
    """

    def __init__(self, heads: int, key_dim: int) -> None:
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        self.scale = key_dim ** -0.5

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        n, h, w = qkv.shape[0], qkv.shape[2], qkv.shape[3]
        kd = self.key_dim
        per_head = qkv.view(n, self.heads, -1, h * w)  # [N, heads, 2*kd + head_dim, tokens]
        q, k, v = per_head[:, :, :kd], per_head[:, :, kd:2 * kd], per_head[:, :, 2 * kd:]
        weights = ((q * self.scale).transpose(-2, -1) @ k).softmax(dim=-1)  # [N, heads, tokens, tokens]
        return (v @ weights.transpose(-2, -1)).view(n, -1, h, w)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, key_dim={self.key_dim}"


class PSValues(nn.Module):
    """The value channels of a qkv map, head after head: `[N, heads*head_dim, H, W]`.

    >>> PSValues(2, 4)(torch.zeros(3, 32, 5, 6)).shape
    torch.Size([3, 16, 5, 6])
    """

    def __init__(self, heads: int, key_dim: int) -> None:
        super().__init__()
        self.heads, self.key_dim = heads, key_dim

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        n, h, w = qkv.shape[0], qkv.shape[2], qkv.shape[3]
        # a copy unless there is one head (then the values are a channel range: a view)
        return qkv.view(n, self.heads, -1, h * w)[:, :, 2 * self.key_dim:].reshape(n, -1, h, w)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, key_dim={self.key_dim}"
