"""Hand-written references for four torchvision classifiers with squeeze-excitation gating.

MobileNetV3 (large, small), EfficientNet-B0 and RegNetY-400MF, rebuilt from the published
architectures in the manner of ``zoo_reference``: the same layers with torchvision's
hyperparameters (BatchNorm eps 0.001 and momentum 0.01 in MobileNetV3, PyTorch's defaults in
EfficientNet-B0 and RegNet; ``_make_divisible`` channel rounding; dropout), registered in the same
order under the same names, so that ``state_dict()`` yields torchvision's keys, order and shapes.

``MAKERS_SE`` builds each one (given the number of classes); ``PUBLISHED_SE`` holds torchvision's
published parameter counts and the conv+linear multiply-accumulates at 224x224 measured with
``zoo_reference.conv_linear_macs`` (each rounds to torchvision's published GFLOPS, ``GFLOPS_SE``).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from zoo_reference_cn import StochasticDepth  # torchvision's semantics, written once for both files

# name -> (parameters, conv+linear multiply-accumulates for one 3x224x224 image).
PUBLISHED_SE: dict[str, tuple[int, int]] = {
    "mobilenet_v3_large": (5_483_032, 216_589_760),
    "mobilenet_v3_small": (2_542_856, 56_510_400),
    "efficientnet_b0": (5_288_548, 385_814_752),
    "regnet_y_400mf": (4_344_144, 401_842_848),
}

# torchvision's published figure ("GFLOPS", which are conv+linear MACs), to three decimals.
GFLOPS_SE: dict[str, float] = {
    "mobilenet_v3_large": 0.217,
    "mobilenet_v3_small": 0.057,
    "efficientnet_b0": 0.386,
    "regnet_y_400mf": 0.402,
}


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``divisor``), never below 90% of v."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_norm_act(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                   norm: Callable[[int], nn.Module] = nn.BatchNorm2d,
                   act: Callable[[], nn.Module] | None = None) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: bias-free conv with 'same' padding, norm, activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False),
        norm(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Global average pool, 1x1 squeeze conv, activation, 1x1 excite conv, gate; input times gate."""

    def __init__(self, channels: int, squeeze: int, act: Callable[[], nn.Module] = nn.ReLU,
                 gate: Callable[[], nn.Module] = nn.Sigmoid) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = act()
        self.scale_activation = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


# --------------------------------------------------------------------------------------------
# MobileNetV3

# input channels, kernel, expanded channels, output channels, SE, activation ("RE"/"HS"), stride
_V3Row = tuple[int, int, int, int, bool, str, int]
_V3_LARGE: list[_V3Row] = [
    (16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1),
]
_V3_SMALL: list[_V3Row] = [
    (16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2), (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1),
]
_V3_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


class V3InvertedResidual(nn.Module):
    """1x1 expand (skipped when no wider), depthwise kxk, optional SE (hard-sigmoid gate), 1x1 project."""

    def __init__(self, row: _V3Row) -> None:
        super().__init__()
        cin, k, exp, cout, se, act_name, stride = row
        act = nn.Hardswish if act_name == "HS" else nn.ReLU
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(_conv_norm_act(cin, exp, norm=_V3_NORM, act=act))
        layers.append(_conv_norm_act(exp, exp, k, stride, groups=exp, norm=_V3_NORM, act=act))
        if se:
            layers.append(SqueezeExcitation(exp, make_divisible(exp // 4), gate=nn.Hardsigmoid))
        layers.append(_conv_norm_act(exp, cout, norm=_V3_NORM))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.use_res_connect else y


class MobileNetV3(nn.Module):
    """Hard-swish 3x3/2 stem, the inverted residuals, a 1x1 conv to 6x, pool, two-layer classifier."""

    def __init__(self, rows: list[_V3Row], last_channel: int, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_norm_act(3, rows[0][0], 3, 2, norm=_V3_NORM, act=nn.Hardswish)]
        layers += [V3InvertedResidual(row) for row in rows]
        c = rows[-1][3]
        layers.append(_conv_norm_act(c, 6 * c, norm=_V3_NORM, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(6 * c, last_channel), nn.Hardswish(inplace=True),
            nn.Dropout(p=0.2, inplace=True), nn.Linear(last_channel, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# --------------------------------------------------------------------------------------------
# EfficientNet-B0

# expansion, kernel, first stride, input channels, output channels, layers (Table 1 of the paper)
_B0_STAGES = [
    (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1),
]


class MBConv(nn.Module):
    """1x1 expand (skipped when t == 1), depthwise kxk, SE (squeeze to cin/4, SiLU), 1x1 project;
    where the shape is kept, stochastic depth on the branch and the residual sum."""

    def __init__(self, t: int, k: int, stride: int, cin: int, cout: int, sd_prob: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        exp = make_divisible(cin * t)
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(_conv_norm_act(cin, exp, act=nn.SiLU))
        layers.append(_conv_norm_act(exp, exp, k, stride, groups=exp, act=nn.SiLU))
        layers.append(SqueezeExcitation(exp, max(1, cin // 4), act=partial(nn.SiLU, inplace=True)))
        layers.append(_conv_norm_act(exp, cout))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return self.stochastic_depth(y) + x if self.use_res_connect else y


class EfficientNetB0(nn.Module):
    """SiLU 3x3/2 stem, seven MBConv stages (stochastic depth 0.2 * block / 16), 1x1 conv to 1280,
    pool, dropout 0.2, fc."""

    def __init__(self, num_classes: int = 1000, stochastic_depth_prob: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_norm_act(3, 32, 3, 2, act=nn.SiLU)]
        total = sum(stage[-1] for stage in _B0_STAGES)
        block_id = 0
        for t, k, s, cin, cout, n in _B0_STAGES:
            stage: list[nn.Module] = []
            for i in range(n):
                p = stochastic_depth_prob * float(block_id) / total
                stage.append(MBConv(t, k, s if i == 0 else 1, cin if i == 0 else cout, cout, p))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        layers.append(_conv_norm_act(320, 1280, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# --------------------------------------------------------------------------------------------
# RegNetY-400MF

def regnet_stages(depth: int = 16, w_0: int = 48, w_a: float = 27.89, w_m: float = 2.09,
                  quant: int = 8) -> list[tuple[int, int]]:
    """(width, depth) per stage from RegNet's quantised linear width rule (Radosavovic et al., 2020).

    Block j has width w_0 * w_m ** round(log((w_0 + w_a*j) / w_0) / log(w_m)), rounded to a
    multiple of ``quant``; consecutive blocks of one width form a stage. (The group width 8
    divides every stage width here, so the width/group adjustment leaves them unchanged.)
    """
    widths = []
    for j in range(depth):
        exponent = round(math.log((w_0 + w_a * j) / w_0) / math.log(w_m))
        widths.append(int(round(w_0 * w_m ** exponent / quant)) * quant)
    stages: list[tuple[int, int]] = []
    for w in widths:
        if stages and stages[-1][0] == w:
            stages[-1] = (w, stages[-1][1] + 1)
        else:
            stages.append((w, 1))
    return stages


class ResBottleneckBlock(nn.Module):
    """Projection (where the shape changes), then f: 1x1, grouped 3x3 (group width 8), SE, 1x1; ReLU."""

    def __init__(self, win: int, wout: int, stride: int, group_width: int = 8, se_ratio: float = 0.25) -> None:
        super().__init__()
        self.proj = None
        if win != wout or stride != 1:
            self.proj = _conv_norm_act(win, wout, stride=stride)
        self.f = nn.Sequential(OrderedDict([
            ("a", _conv_norm_act(win, wout, act=nn.ReLU)),
            ("b", _conv_norm_act(wout, wout, 3, stride, groups=wout // group_width, act=nn.ReLU)),
            ("se", SqueezeExcitation(wout, int(round(se_ratio * win)))),
            ("c", _conv_norm_act(wout, wout)),
        ]))
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.proj is None else self.proj(x)
        return self.activation(skip + self.f(x))


class RegNetY400MF(nn.Module):
    """3x3/2 stem to 32, four stages whose first block strides 2, global average pool, fc."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = _conv_norm_act(3, 32, 3, 2, act=nn.ReLU)
        stages: list[tuple[str, nn.Module]] = []
        win = 32
        for s, (w, n) in enumerate(regnet_stages(), start=1):
            stage = nn.Sequential()
            for i in range(n):
                stage.add_module(f"block{s}-{i}", ResBottleneckBlock(win if i == 0 else w, w, 2 if i == 0 else 1))
            stages.append((f"block{s}", stage))
            win = w
        self.trunk_output = nn.Sequential(OrderedDict(stages))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(win, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk_output(self.stem(x))
        return self.fc(self.avgpool(x).flatten(start_dim=1))


# --------------------------------------------------------------------------------------------

# name -> builder taking the number of classes (as ``zoo_reference.make`` calls it).
MAKERS_SE: dict[str, Callable[[int], nn.Module]] = {
    "mobilenet_v3_large": lambda n: MobileNetV3(_V3_LARGE, 1280, n),
    "mobilenet_v3_small": lambda n: MobileNetV3(_V3_SMALL, 1024, n),
    "efficientnet_b0": EfficientNetB0,
    "regnet_y_400mf": RegNetY400MF,
}
assert MAKERS_SE.keys() == PUBLISHED_SE.keys() == GFLOPS_SE.keys()
