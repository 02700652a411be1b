"""torch modules for ops that reproduce darknet layers (netdsl.ops.darknet); found by name through
`netdsl.backends.torch_layers`, and standalone (torch only) so that the Python export copies them."""
from __future__ import annotations

import torch
from torch import nn


class Reorg(nn.Module):
    """darknet's [reorg] (`reorg_cpu` with forward=0): the input buffer read as `[C/s², H*s, W*s]`,
    each s x s cell's values sent to channel `(dy*s + dx)*C/s² + c`, the `[C, H, W]` buffer so made
    read as `[C*s², H/s, W/s]`."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = self.stride
        cells = x.reshape(n, c // (s * s), h, s, w, s).permute(0, 3, 5, 1, 2, 4)
        return cells.reshape(n, c * s * s, h // s, w // s)
