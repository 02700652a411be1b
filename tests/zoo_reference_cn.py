"""Hand-written references for four more torchvision classifiers: ConvNeXt-Tiny, ShuffleNetV2 x1.0,
ResNeXt-50 32x4d and Wide ResNet-50-2.

Written as `zoo_reference` is: torchvision's layers with its hyperparameters (kernel, stride,
padding, bias, groups, LayerNorm eps), registered in its order under its names, so `state_dict()`
yields torchvision's keys, order and shapes. Initialisation is PyTorch's default, except
ConvNeXt's layer scale (a constant 1e-6, as torchvision fills it). torchvision is not needed.

``PUBLISHED_CN`` holds torchvision's published parameter counts and the conv+linear
multiply-accumulates at 224x224 measured on these modules by ``zoo_reference.conv_linear_macs``
(they round to torchvision's published GFLOPS: 4.46, 0.14 (0.145 in its metadata), 4.23,
11.40); ``MAKERS_CN`` builds them. ``zoo_reference`` merges both into its ``PUBLISHED`` and
``make``, so this module must not import it.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

PUBLISHED_CN: dict[str, tuple[int, int]] = {
    "convnext_tiny": (28_589_128, 4_455_531_264),
    "shufflenet_v2_x1_0": (2_278_604, 144_907_992),
    "resnext50_32x4d": (25_028_904, 4_230_479_872),
    "wide_resnet50_2": (68_883_240, 11_398_021_120),
}


# --------------------------------------------------------------------------------------------
# ResNeXt and Wide ResNet: torchvision's ResNet-50 whose bottleneck has groups and a width per group

class GroupedBottleneck(nn.Module):
    """1x1 to ``width`` channels, grouped 3x3 (strided), 1x1 up to 4 * planes, plus the identity."""

    def __init__(self, cin: int, planes: int, width: int, groups: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        cout = planes * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class GroupedResNet50(nn.Module):
    """ResNet-50 (v1.5) whose bottlenecks are ``planes * width_per_group / 64 * groups`` wide inside."""

    def __init__(self, groups: int, width_per_group: int, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            stride, cout, width = (1 if i == 0 else 2), planes * 4, planes * width_per_group // 64 * groups
            down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            blocks = [GroupedBottleneck(cin, planes, width, groups, stride, down)]
            blocks += [GroupedBottleneck(cout, planes, width, groups) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --------------------------------------------------------------------------------------------
# ShuffleNetV2

def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal parts: view as [groups, C/groups], transpose, flatten."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _depthwise(c: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, 3, stride, 1, bias=False, groups=c)


class ShuffleUnit(nn.Module):
    """A strided unit feeds both branches; an unstrided one splits its input and keeps one half."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        self.branch1 = nn.Sequential()
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(cin, stride), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if stride > 1 else half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            _depthwise(half, stride), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, worked = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(worked)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """3x3/2 conv stem, 3x3/2 max-pool, three stages of shuffle units, 1x1 conv, global mean, fc."""

    def __init__(self, repeats: tuple[int, ...] = (4, 8, 4), widths: tuple[int, ...] = (24, 116, 232, 464, 1024),
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                   nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = widths[0]
        for i, (n, cout) in enumerate(zip(repeats, widths[1:4])):
            units = [ShuffleUnit(cin, cout, 2)] + [ShuffleUnit(cout, cout, 1) for _ in range(n - 1)]
            self.add_module(f"stage{i + 2}", nn.Sequential(*units))
            cin = cout
        self.conv5 = nn.Sequential(nn.Conv2d(cin, widths[4], 1, 1, 0, bias=False), nn.BatchNorm2d(widths[4]),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(widths[4], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(self.conv5(x).mean([2, 3]))


# --------------------------------------------------------------------------------------------
# ConvNeXt

class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels at every position of an [N, C, H, W] image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    """torch.permute as a module (ConvNeXt's block moves channels last and back)."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class StochasticDepth(nn.Module):
    """Drop whole rows ("row") or the whole batch ("batch") with probability p in training, rescaling
    the kept ones by 1/(1-p); the identity in eval mode."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        if self.p < 1.0:
            keep.div_(1.0 - self.p)
        return x * keep


class CNBlock(nn.Module):
    """7x7 depthwise conv, LayerNorm, Linear 4x, GELU, Linear back (channels last), scaled, plus the input."""

    def __init__(self, dim: int, layer_scale: float, sd_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stochastic_depth(self.layer_scale * self.block(x)) + x


class ConvNeXt(nn.Module):
    """4x4/4 patchify stem with LayerNorm, four stages of CNBlocks joined by LayerNorm + 2x2/2 convs,
    global average pool, LayerNorm, fc. Stochastic depth grows linearly over the blocks to p."""

    def __init__(self, depths: tuple[int, ...] = (3, 3, 9, 3), dims: tuple[int, ...] = (96, 192, 384, 768),
                 p: float = 0.1, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6))]
        total, k = sum(depths), 0
        for i, (n, dim) in enumerate(zip(depths, dims)):
            stage = []
            for _ in range(n):
                stage.append(CNBlock(dim, 1e-6, p * k / (total - 1.0)))
                k += 1
            layers.append(nn.Sequential(*stage))
            if i + 1 < len(dims):
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, dims[i + 1], 2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1), nn.Linear(dims[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


# --------------------------------------------------------------------------------------------

MAKERS_CN: dict[str, Callable[[int], nn.Module]] = {
    "convnext_tiny": lambda n: ConvNeXt(num_classes=n),
    "shufflenet_v2_x1_0": lambda n: ShuffleNetV2(num_classes=n),
    "resnext50_32x4d": lambda n: GroupedResNet50(32, 4, n),
    "wide_resnet50_2": lambda n: GroupedResNet50(1, 128, n),
}
assert MAKERS_CN.keys() == PUBLISHED_CN.keys()
