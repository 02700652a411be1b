"""The transcriptions of ConvNeXt-Tiny, ShuffleNetV2 x1.0, ResNeXt-50 32x4d and Wide ResNet-50-2
checked against torchvision's published figures and its state_dict layout.

The expected keys are spelled out here a second way, from the module tree torchvision's source
builds (which children hold which tensors, in which order), so a transcription that registers a
layer late or under another name fails even where the counts agree.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from zoo_reference import conv_linear_macs
from zoo_reference_cn import MAKERS_CN, PUBLISHED_CN

pytestmark = pytest.mark.slow

_TENSORS = {
    "w": ("weight",),  # a convolution without bias
    "wb": ("weight", "bias"),  # a convolution or linear layer with bias, a LayerNorm
    "bn": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
    "p": ("",),  # a module's own parameter: the path is the key
}


def _keys(layers: list[tuple[str, str]]) -> list[str]:
    return [f"{path}.{t}" if t else path for path, kind in layers for t in _TENSORS[kind]]


def _convnext_keys() -> list[str]:
    layers = [("features.0.0", "wb"), ("features.0.1", "wb")]
    for s, n in enumerate((3, 3, 9, 3)):
        stage = f"features.{2 * s + 1}"
        for j in range(n):
            layers.append((f"{stage}.{j}.layer_scale", "p"))  # a module's own tensors precede its children's
            layers += [(f"{stage}.{j}.block.{k}", "wb") for k in (0, 2, 3, 5)]
        if s < 3:
            layers += [(f"features.{2 * s + 2}.0", "wb"), (f"features.{2 * s + 2}.1", "wb")]
    layers += [("classifier.0", "wb"), ("classifier.2", "wb")]
    return _keys(layers)


def _shufflenet_keys() -> list[str]:
    layers = [("conv1.0", "w"), ("conv1.1", "bn")]
    for stage, n in zip((2, 3, 4), (4, 8, 4)):
        for j in range(n):
            unit = f"stage{stage}.{j}"
            if j == 0:
                layers += [(f"{unit}.branch1.0", "w"), (f"{unit}.branch1.1", "bn"),
                           (f"{unit}.branch1.2", "w"), (f"{unit}.branch1.3", "bn")]
            layers += [(f"{unit}.branch2.{k}", kind) for k, kind in
                       ((0, "w"), (1, "bn"), (3, "w"), (4, "bn"), (5, "w"), (6, "bn"))]
    layers += [("conv5.0", "w"), ("conv5.1", "bn"), ("fc", "wb")]
    return _keys(layers)


def _resnet50_keys() -> list[str]:
    layers = [("conv1", "w"), ("bn1", "bn")]
    for stage, n in enumerate((3, 4, 6, 3), start=1):
        for j in range(n):
            unit = f"layer{stage}.{j}"
            layers += [(f"{unit}.{m}{k}", kind) for k in (1, 2, 3) for m, kind in (("conv", "w"), ("bn", "bn"))]
            if j == 0:
                layers += [(f"{unit}.downsample.0", "w"), (f"{unit}.downsample.1", "bn")]
    layers.append(("fc", "wb"))
    return _keys(layers)


EXPECTED_KEYS = {
    "convnext_tiny": _convnext_keys,
    "shufflenet_v2_x1_0": _shufflenet_keys,
    "resnext50_32x4d": _resnet50_keys,
    "wide_resnet50_2": _resnet50_keys,
}

# A few tensors whose shapes tell the variants apart (torchvision's shapes).
SHAPES = {
    "convnext_tiny": {"features.1.0.layer_scale": (96, 1, 1), "features.1.0.block.0.weight": (96, 1, 7, 7),
                      "features.1.0.block.3.weight": (384, 96), "features.6.1.weight": (768, 384, 2, 2),
                      "features.7.2.block.5.weight": (768, 3072), "classifier.2.weight": (1000, 768)},
    "shufflenet_v2_x1_0": {"stage2.0.branch1.0.weight": (24, 1, 3, 3), "stage2.0.branch1.2.weight": (58, 24, 1, 1),
                           "stage2.1.branch2.0.weight": (58, 58, 1, 1), "stage4.3.branch2.3.weight": (232, 1, 3, 3),
                           "conv5.0.weight": (1024, 464, 1, 1)},
    "resnext50_32x4d": {"layer1.0.conv2.weight": (128, 4, 3, 3), "layer4.0.conv2.weight": (1024, 32, 3, 3),
                        "layer4.2.conv3.weight": (2048, 1024, 1, 1)},
    "wide_resnet50_2": {"layer1.0.conv2.weight": (128, 128, 3, 3), "layer4.0.conv2.weight": (1024, 1024, 3, 3),
                        "layer4.2.conv3.weight": (2048, 1024, 1, 1)},
}


@pytest.fixture(scope="module", params=list(PUBLISHED_CN))
def model(request: pytest.FixtureRequest) -> Iterator[tuple[str, nn.Module]]:
    torch.manual_seed(0)
    m = MAKERS_CN[request.param](1000).eval()
    yield request.param, m
    del m


def test_parameter_count(model: tuple[str, nn.Module]) -> None:
    name, m = model
    assert sum(p.numel() for p in m.parameters()) == PUBLISHED_CN[name][0]


def test_macs_at_224_round_to_the_published_gflops(model: tuple[str, nn.Module]) -> None:
    name, m = model
    macs = conv_linear_macs(m, (3, 224, 224))
    assert macs == PUBLISHED_CN[name][1]
    published = {"convnext_tiny": 4.46, "shufflenet_v2_x1_0": 0.14, "resnext50_32x4d": 4.23, "wide_resnet50_2": 11.40}
    assert round(macs / 1e9, 2) == published[name]


def test_state_dict_keys_order_and_shapes(model: tuple[str, nn.Module]) -> None:
    name, m = model
    sd = m.state_dict()
    assert list(sd) == EXPECTED_KEYS[name]()
    for key, shape in SHAPES[name].items():
        assert tuple(sd[key].shape) == shape, key


def test_output_shape_in_eval_and_training(model: tuple[str, nn.Module]) -> None:
    _, m = model
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = m(x)
        m.train()
        try:
            trained = m(x)
        finally:
            m.eval()
    assert out.shape == trained.shape == (2, 1000)
    assert torch.isfinite(out).all() and torch.isfinite(trained).all()


def test_convnext_layer_scale_starts_at_1e_6_and_stochastic_depth_grows_to_0_1() -> None:
    m = MAKERS_CN["convnext_tiny"](10)
    scales = [p for n, p in m.named_parameters() if n.endswith("layer_scale")]
    assert len(scales) == 18 and all(torch.all(s == 1e-6) for s in scales)
    rates = [mod.p for mod in m.modules() if hasattr(mod, "mode")]
    assert rates == [pytest.approx(0.1 * k / 17) for k in range(18)]
