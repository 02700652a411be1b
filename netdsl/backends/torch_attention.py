"""Multi-head attention layers: `nn.MultiheadAttention` (batch first) as the ops use it.

`SelfAttention` is `attention(heads)`: one sequence `[N, T, D]` as query, key and value.
`QKVAttention` is `attention_qkv(q, k, v, heads=)`: three sequences. Both are subclasses of
`nn.MultiheadAttention(batch_first=True)` and keep its parameters and their names
(`in_proj_weight`, `in_proj_bias`, `out_proj.weight`, `out_proj.bias`), so torchvision's and
ultralytics' state_dicts load. `forward` computes what torch's own computes with
`need_weights=False` (in-projection, `scaled_dot_product_attention`, out-projection), written out
so that `torch.fx.symbolic_trace` can follow it (torch's forward branches on its inputs) and so that
eval mode runs the same kernels as training (torch's forward switches to a fused kernel there).

`netdsl export --to python` copies these classes into the file it writes: they name only
`torch` and `nn`.
"""
from __future__ import annotations

import torch
from torch import nn


class SelfAttention(nn.MultiheadAttention):
    """Self-attention over a batch-first sequence.

    >>> m = SelfAttention(8, 2)
    >>> m(torch.zeros(3, 5, 8)).shape
    torch.Size([3, 5, 8])
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n, t, heads = x.shape[0], x.shape[1], self.num_heads
        qkv = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(n, t, 3, heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2],
                                                          dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(n, t, self.embed_dim))


class QKVAttention(nn.MultiheadAttention):
    """Attention of queries `q` `[N, Tq, D]` over keys `k` and values `v` `[N, Tk, D]`.

    >>> m = QKVAttention(8, 2)
    >>> m(torch.zeros(3, 5, 8), torch.zeros(3, 7, 8), torch.zeros(3, 7, 8)).shape
    torch.Size([3, 5, 8])
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, batch_first=True)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n, tq, tk, heads = q.shape[0], q.shape[1], k.shape[1], self.num_heads
        w = self.in_proj_weight.chunk(3)
        b = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        q = nn.functional.linear(q, w[0], b[0]).view(n, tq, heads, self.head_dim).transpose(1, 2)
        k = nn.functional.linear(k, w[1], b[1]).view(n, tk, heads, self.head_dim).transpose(1, 2)
        v = nn.functional.linear(v, w[2], b[2]).view(n, tk, heads, self.head_dim).transpose(1, 2)
        out = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(n, tq, self.embed_dim))
