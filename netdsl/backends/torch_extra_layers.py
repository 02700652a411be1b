"""torch modules for the channel, gating and ConvNeXt ops that torch.nn lacks (or lays out
channels-last only): channel slices, chunks and shuffle, stochastic depth, LayerNorm and Linear
over the channels of an image, layer scale.

Like `torch_layers`, whose `STANDALONE` lists them, each class here is copied by
`netdsl export --to python` into the file it writes: it names only `torch` and `nn`, and
`torch.fx`/`torch.export` can trace it (no Python branching on tensor values).
"""
from __future__ import annotations

import torch
from torch import nn


class ChannelSlice(nn.Module):
    """Channels start..stop-1 of the input, `x[:, start:stop]` (a view: no copy)."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start, self.stop = start, stop

    def extra_repr(self) -> str:
        return f"start={self.start}, stop={self.stop}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start:self.stop]


class ChannelChunk(nn.Module):
    """The index-th of `chunks` equal parts of the channels, exactly `x.chunk(chunks, 1)[index]`."""

    def __init__(self, index: int, chunks: int) -> None:
        super().__init__()
        self.index, self.chunks = index, chunks

    def extra_repr(self) -> str:
        return f"index={self.index}, chunks={self.chunks}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.chunk(self.chunks, 1)[self.index]


class ChannelShuffle(nn.Module):
    """ShuffleNet's shuffle as torchvision's `channel_shuffle`: the channels seen as
    [groups, C/groups], transposed and flattened back (view and transpose: ONNX exports them)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def extra_repr(self) -> str:
        return f"groups={self.groups}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (self.groups, -1)).transpose(1, 2).flatten(1, 2)


class StochasticDepth(nn.Module):
    """torchvision's stochastic depth: the identity in eval mode or when p == 0; in training,
    each row of the batch (mode "row") or the whole batch ("batch") is zeroed with probability
    p and the survivors are divided by 1 - p (p == 1: all zeros)."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.dim() - 1) if self.mode == "row" else [1] * x.dim()
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(keep)
        if keep > 0.0:
            noise.div_(keep)
        return x * noise


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels at each position of an image `[N, C, H, W]` (torchvision's
    LayerNorm2d); its parameters are nn.LayerNorm's, `weight` and `bias` of shape [C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ChannelLinear(nn.Linear):
    """nn.Linear over the channels at each position of an image (ConvNeXt's Linear in its
    channels-last layout); `weight` is [out, in] as nn.Linear's, so its tensors load as they are."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LayerScale(nn.Module):
    """A learned per-channel scale, `weight` [C, 1, 1] filled with `init`, multiplied in
    (ConvNeXt's `layer_scale`)."""

    def __init__(self, channels: int, init: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels, 1, 1), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight
