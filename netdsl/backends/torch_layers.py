"""torch modules netdsl needs that torch.nn does not have: the YOLO detection head (here), the
channel, gating and ConvNeXt layers (`torch_extra_layers`) and darknet's (`torch_darknet`).

`netdsl export --to python` copies this module's source into the file it writes (`SOURCE`), so
the code here is written to stand alone there: it names only `torch` and `nn` (no other import,
not even `math`), and `torch.fx.symbolic_trace` can follow it (shapes read by index, the anchors
made with `new_tensor`).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from netdsl.backends.torch_attention import QKVAttention, SelfAttention  # attention, attention_qkv
from netdsl.backends.torch_darknet import Reorg  # darknet's [reorg]
from netdsl.backends.torch_detect_v8 import DFL, DetectV8, dist2bbox, make_anchors  # detect_v8
from netdsl.backends.torch_extra_layers import (
    ChannelChunk,
    ChannelLayerNorm,
    ChannelLinear,
    ChannelShuffle,
    ChannelSlice,
    LayerScale,
    StochasticDepth,
)
from netdsl.backends.torch_psa import PSAttention, PSValues  # psa_attention, psa_values
from netdsl.backends.torch_sequence_layers import ToImage, Token, Tokens  # the sequence ops


def _log(x: float) -> float:
    """math.log without importing math (made on the CPU, whatever the default device)."""
    return torch.tensor(x, dtype=torch.float64, device="cpu").log().item()


class Detect(nn.Module):
    """YOLO head: per level a 1x1 conv to na*(5+classes) channels, then ultralytics' v9.6.0 layout.

    Training mode returns a tuple of raw maps `[N, na, H_i, W_i, 5+classes]`; eval mode returns
    `(decoded, raw)`, `decoded` being `[N, sum(na*H_i*W_i), 5+classes]` with xy = (2*sigmoid - 0.5
    + grid) * stride, wh = (2*sigmoid)^2 * anchor (pixels) and sigmoid objectness and classes;
    with `decode="darknet"`, as darknet's [yolo] layer: xy = (sigmoid * s - (s - 1) / 2 + grid) *
    stride with the level's `scale_xy` s (darknet's scale_x_y, 1 by default), wh = exp * anchor
    (darknet's own weights were trained for that); with `decode="darknet_new_coords"`, as darknet's
    [yolo] new_coords=1 after its logistic head convolution: xy as "darknet", wh = (2 * sigmoid)^2 *
    anchor. The raw maps are the linear convolution's outputs in every mode: the logistic of
    darknet's head convolution is the sigmoid applied here, once.
    The anchors are kept as plain attributes, not buffers: a state_dict holds weights only.
    """

    def __init__(self, classes: int, anchors: list[list[int]], strides: list[int],
                 in_channels: list[int], decode: str = "ultralytics", scale_xy: list[float] | None = None) -> None:
        super().__init__()
        self.classes, self.outputs = classes, classes + 5
        self.levels, self.per_level = len(anchors), len(anchors[0]) // 2
        self.anchor_pixels = [[(float(a[2 * j]), float(a[2 * j + 1])) for j in range(self.per_level)]
                              for a in anchors]
        self.strides = [int(s) for s in strides]
        self.decode_style = decode
        scales = [float(v) for v in scale_xy or [1.0]]  # one for every level, or one per level
        self.scale_xy = scales * len(anchors) if len(scales) == 1 else scales
        self.m = nn.ModuleList(nn.Conv2d(c, self.per_level * self.outputs, 1) for c in in_channels)
        self.reset_biases()

    def reset_biases(self, image_size: int = 640) -> None:
        """A fresh head's biases as ultralytics sets them: objectness log(8 / cells), classes
        log(0.6 / (classes - 0.99)), so the first losses are of a sensible size."""
        with torch.no_grad():
            for conv, stride in zip(self.m, self.strides):
                b = conv.get_parameter("bias").view(self.per_level, self.outputs)
                b[:, 4] += _log(8 / (image_size / stride) ** 2)
                b[:, 5:] += _log(0.6 / (self.classes - 0.99))

    def extra_repr(self) -> str:
        return (f"classes={self.classes}, anchors={self.anchor_pixels}, strides={self.strides}, "
                f"decode={self.decode_style!r}" + (f", scale_xy={self.scale_xy}" if any(v != 1 for v in self.scale_xy)
                                                    else ""))

    def forward(self, *xs: torch.Tensor) -> tuple:
        raw = []
        for conv, x in zip(self.m, xs):
            y = conv(x)
            y = y.view(y.shape[0], self.per_level, self.outputs, y.shape[2], y.shape[3])
            raw.append(y.permute(0, 1, 3, 4, 2).contiguous())
        if self.training:
            return tuple(raw)
        decoded = [self.decode(i, y) for i, y in enumerate(raw)]
        return torch.cat(decoded, 1), tuple(raw)

    def decode(self, level: int, y: torch.Tensor) -> torch.Tensor:
        n, na, h, w, no = y.shape[0], y.shape[1], y.shape[2], y.shape[3], y.shape[4]
        gy, gx = torch.meshgrid(torch.arange(h, device=y.device), torch.arange(w, device=y.device), indexing="ij")
        grid = torch.stack((gx, gy), 2).view(1, 1, h, w, 2).to(y.dtype)
        anchors = y.new_tensor(self.anchor_pixels[level]).view(1, na, 1, 1, 2)
        s = y.sigmoid()
        if self.decode_style.startswith("darknet"):  # darknet's [yolo]: scaled sigmoid offsets
            k = self.scale_xy[level]
            xy = (s[..., 0:2] * k - (k - 1) / 2 + grid) * self.strides[level]
            # new_coords=1: sizes from the (logistic) head's sigmoid; else exponential sizes
            wh = (s[..., 2:4] * 2) ** 2 * anchors if self.decode_style == "darknet_new_coords" \
                else y[..., 2:4].exp() * anchors
        else:
            xy = (s[..., 0:2] * 2 - 0.5 + grid) * self.strides[level]
            wh = (s[..., 2:4] * 2) ** 2 * anchors
        return torch.cat((xy, wh, s[..., 4:]), -1).view(n, -1, no)


# Per class an exported file may need: the definitions it is written with, in order (the
# functions its code calls, then the class). The exporter copies their source from here.
STANDALONE: dict[str, tuple[Callable[..., object], ...]] = {"Detect": (_log, Detect)}
# The channel, gating and ConvNeXt layers (netdsl/backends/torch_extra_layers.py), one class each.
STANDALONE.update({cls.__name__: (cls,) for cls in (ChannelSlice, ChannelChunk, ChannelShuffle, StochasticDepth,
                                                    ChannelLayerNorm, ChannelLinear, LayerScale, Reorg)})
# The attention layers (netdsl/backends/torch_attention.py).
STANDALONE.update({cls.__name__: (cls,) for cls in (SelfAttention, QKVAttention)})
# The sequence ops (netdsl/backends/torch_sequence_layers.py).
STANDALONE.update({cls.__name__: (cls,) for cls in (Tokens, ToImage, Token)})
# The anchor-free head (netdsl/backends/torch_detect_v8.py): its helpers, the DFL, then the head.
STANDALONE["DetectV8"] = (make_anchors, dist2bbox, DFL, DetectV8)
# YOLO11's position-sensitive attention (netdsl/backends/torch_psa.py).
STANDALONE.update({cls.__name__: (cls,) for cls in (PSAttention, PSValues)})
