"""The squeeze-excitation zoo references (MobileNetV3, EfficientNet-B0, RegNetY) checked against
torchvision: published parameter counts, conv+linear MACs that round to the published GFLOPS, and
the state_dict keys, order and shapes torchvision's checkpoints have.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from zoo_reference import conv_linear_macs
from zoo_reference_se import GFLOPS_SE, MAKERS_SE, PUBLISHED_SE, StochasticDepth, make_divisible, regnet_stages

pytestmark = pytest.mark.slow

# A few of torchvision's state_dict keys per model, in torchvision's order, with their shapes.
KEYS: dict[str, list[tuple[str, tuple[int, ...]]]] = {
    "mobilenet_v3_large": [
        ("features.0.0.weight", (16, 3, 3, 3)),
        ("features.1.block.0.0.weight", (16, 1, 3, 3)),       # no expansion: depthwise first
        ("features.4.block.0.0.weight", (72, 24, 1, 1)),
        ("features.4.block.2.fc1.weight", (24, 72, 1, 1)),    # _make_divisible(72 // 4) = 24
        ("features.4.block.2.fc2.bias", (72,)),
        ("features.4.block.3.1.running_var", (40,)),
        ("features.16.0.weight", (960, 160, 1, 1)),
        ("classifier.0.weight", (1280, 960)),
        ("classifier.3.bias", (1000,)),
    ],
    "mobilenet_v3_small": [
        ("features.1.block.1.fc1.weight", (8, 16, 1, 1)),
        ("features.1.block.2.0.weight", (16, 16, 1, 1)),
        ("features.9.block.2.fc1.weight", (72, 288, 1, 1)),
        ("features.12.0.weight", (576, 96, 1, 1)),
        ("classifier.0.weight", (1024, 576)),
        ("classifier.3.weight", (1000, 1024)),
    ],
    "efficientnet_b0": [
        ("features.0.0.weight", (32, 3, 3, 3)),
        ("features.1.0.block.0.0.weight", (32, 1, 3, 3)),
        ("features.1.0.block.1.fc1.weight", (8, 32, 1, 1)),
        ("features.2.0.block.0.0.weight", (96, 16, 1, 1)),
        ("features.2.0.block.2.fc1.weight", (4, 96, 1, 1)),  # squeeze to the block input's quarter
        ("features.2.1.block.2.fc1.weight", (6, 144, 1, 1)),
        ("features.7.0.block.3.0.weight", (320, 1152, 1, 1)),
        ("features.8.0.weight", (1280, 320, 1, 1)),
        ("classifier.1.weight", (1000, 1280)),
    ],
    "regnet_y_400mf": [
        ("stem.0.weight", (32, 3, 3, 3)),
        ("trunk_output.block1.block1-0.proj.0.weight", (48, 32, 1, 1)),
        ("trunk_output.block1.block1-0.f.a.0.weight", (48, 32, 1, 1)),
        ("trunk_output.block1.block1-0.f.b.0.weight", (48, 8, 3, 3)),
        ("trunk_output.block1.block1-0.f.se.fc1.weight", (8, 48, 1, 1)),
        ("trunk_output.block2.block2-1.f.se.fc1.weight", (26, 104, 1, 1)),
        ("trunk_output.block4.block4-5.f.c.1.bias", (440,)),
        ("fc.weight", (1000, 440)),
    ],
}
STATE_DICT_SIZES = {"mobilenet_v3_large": 312, "mobilenet_v3_small": 244, "efficientnet_b0": 360, "regnet_y_400mf": 384}


@pytest.fixture(scope="module", params=list(PUBLISHED_SE))
def se_model(request: pytest.FixtureRequest) -> Iterator[tuple[str, nn.Module]]:
    torch.manual_seed(0)
    model = MAKERS_SE[request.param](1000).eval()
    yield request.param, model
    del model


def test_parameter_count(se_model: tuple[str, nn.Module]) -> None:
    name, model = se_model
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_SE[name][0]


def test_macs_at_224_round_to_torchvisions_gflops(se_model: tuple[str, nn.Module]) -> None:
    name, model = se_model
    macs = conv_linear_macs(model, (3, 224, 224))
    assert macs == PUBLISHED_SE[name][1]
    assert round(macs / 1e9, 3) == GFLOPS_SE[name]


def test_state_dict_keys_order_and_shapes(se_model: tuple[str, nn.Module]) -> None:
    name, model = se_model
    sd = model.state_dict()
    assert len(sd) == STATE_DICT_SIZES[name]
    keys = list(sd)
    positions = [keys.index(k) for k, _ in KEYS[name]]
    assert positions == sorted(positions)
    assert [tuple(sd[k].shape) for k, _ in KEYS[name]] == [shape for _, shape in KEYS[name]]


def test_output_shape(se_model: tuple[str, nn.Module]) -> None:
    _, model = se_model
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()


def test_channel_rounding_and_regnet_widths() -> None:
    assert [make_divisible(v) for v in (4, 18, 30, 36, 60, 168)] == [8, 24, 32, 40, 64, 168]
    assert regnet_stages() == [(48, 1), (104, 3), (208, 6), (440, 6)]


def test_stochastic_depth_is_identity_in_eval_and_drops_rows_in_training() -> None:
    x = torch.ones(64, 3, 2, 2)
    sd = StochasticDepth(0.5, "row").eval()
    assert torch.equal(sd(x), x)
    torch.manual_seed(0)
    y = sd.train()(x)
    per_row = y.flatten(1)
    assert set(per_row.unique().tolist()) <= {0.0, 2.0}
    assert all(len(set(row.tolist())) == 1 for row in per_row)   # a whole row is kept or dropped
    assert 0 < int((per_row[:, 0] == 0).sum()) < 64
