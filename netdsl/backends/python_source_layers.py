"""What `netdsl export --to python` writes besides the network's own classes.

`SIGNATURES`: per torch.nn class, the arguments written positionally (in order) and the
defaults left out, so a layer reads as a person writes it: `nn.Conv2d(NF, 2 * NF, k, padding=1)`.
A class missing here gets every argument by keyword. `HELPERS`: the source of the classes and
functions a file may need that torch.nn lacks, standalone (torch only): netdsl's YOLO head,
written so that `torch.fx.symbolic_trace` can follow it, and the `@freeze` wrapper.
"""
from __future__ import annotations

from typing import Any

# class name -> (positional arguments in order, defaults that need not be written)
SIGNATURES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "Conv2d": (("in_channels", "out_channels", "kernel_size"),
               {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True}),
    "ConvTranspose2d": (("in_channels", "out_channels", "kernel_size"),
                        {"stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "bias": True, "dilation": 1}),
    "MaxPool2d": (("kernel_size",), {"padding": 0, "dilation": 1, "ceil_mode": False}),
    "AvgPool2d": (("kernel_size",), {"padding": 0, "ceil_mode": False, "count_include_pad": True}),
    "AdaptiveAvgPool2d": (("output_size",), {}),
    "AdaptiveMaxPool2d": (("output_size",), {}),
    "BatchNorm2d": (("num_features",), {"eps": 1e-5, "momentum": 0.1, "affine": True}),
    "BatchNorm1d": (("num_features",), {"eps": 1e-5, "momentum": 0.1, "affine": True}),
    "Linear": (("in_features", "out_features"), {"bias": True}),
    "ZeroPad2d": (("padding",), {}),
    "ConstantPad2d": (("padding", "value"), {}),
    "Upsample": ((), {"mode": "nearest", "align_corners": None}),
    "LeakyReLU": (("negative_slope",), {"negative_slope": 0.01}),
    "Dropout": (("p",), {"p": 0.5}),
    "Softmax": ((), {}),
    "LogSoftmax": ((), {}),
    "GELU": ((), {"approximate": "none"}),
}
# Classes without parameters: `@freeze` changes nothing there, so it is not written.
PARAMETERLESS = frozenset({"ReLU", "ReLU6", "Sigmoid", "Tanh", "SiLU", "Hardswish", "Identity", "LeakyReLU", "GELU",
                           "Dropout", "Softmax", "LogSoftmax", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
                           "AdaptiveMaxPool2d", "Flatten", "ZeroPad2d", "ConstantPad2d", "Upsample"})
# Pooling: a stride equal to the kernel size is torch's default.
STRIDE_DEFAULTS_TO_KERNEL = frozenset({"MaxPool2d", "AvgPool2d"})

FROZEN = '''\
def frozen(module: nn.Module) -> nn.Module:
    """`@freeze` in the spec: the module's parameters are not trained."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module
'''

# netdsl.backends.torch_layers.Detect, standalone: the same module tree, initialisation and
# outputs; shapes are read by index and the anchors made with `new_tensor` so fx can trace it.
DETECT = '''\
def _log(x: float) -> float:
    """math.log without importing math (made on the CPU, whatever the default device)."""
    return torch.tensor(x, dtype=torch.float64, device="cpu").log().item()


class Detect(nn.Module):
    """YOLO head (ultralytics v9.6.0 layout): per level a 1x1 conv to na * (5 + classes) channels.

    Training mode returns the raw maps [N, na, H_i, W_i, 5 + classes]; eval mode returns
    (decoded, raw): decoded is [N, sum(na * H_i * W_i), 5 + classes], xy and wh in input pixels.
    """

    def __init__(self, classes: int, anchors: list, strides: list, in_channels: list,
                 decode: str = "ultralytics") -> None:
        super().__init__()
        self.classes, self.outputs = classes, classes + 5
        self.levels, self.per_level = len(anchors), len(anchors[0]) // 2
        self.anchor_pixels = [[(float(a[2 * j]), float(a[2 * j + 1])) for j in range(self.per_level)]
                              for a in anchors]
        self.strides = [int(s) for s in strides]
        self.decode_style = decode
        self.m = nn.ModuleList(nn.Conv2d(c, self.per_level * self.outputs, 1) for c in in_channels)
        self.reset_biases()

    def reset_biases(self, image_size: int = 640) -> None:
        """Objectness log(8 / cells) and classes log(0.6 / (classes - 0.99)), as ultralytics."""
        with torch.no_grad():
            for conv, stride in zip(self.m, self.strides):
                b = conv.bias.view(self.per_level, self.outputs)
                cells = (image_size / stride) ** 2
                b[:, 4] += _log(8 / cells)
                b[:, 5:] += _log(0.6 / (self.classes - 0.99))

    def extra_repr(self) -> str:
        return (f"classes={self.classes}, anchors={self.anchor_pixels}, strides={self.strides}, "
                f"decode={self.decode_style!r}")

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
        if self.decode_style == "darknet":  # darknet's [yolo]: sigmoid offsets, exponential sizes
            xy = (s[..., 0:2] + grid) * self.strides[level]
            wh = y[..., 2:4].exp() * anchors
        else:
            xy = (s[..., 0:2] * 2 - 0.5 + grid) * self.strides[level]
            wh = (s[..., 2:4] * 2) ** 2 * anchors
        return torch.cat((xy, wh, s[..., 4:]), -1).view(n, -1, no)
'''

# torch.nn-less classes netdsl's ops name (OpDef.torch / MergeDef.module) -> their source here.
HELPERS = {"Detect": DETECT}
