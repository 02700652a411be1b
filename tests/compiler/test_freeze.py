"""Declarative freezing: `@freeze` in the spec, `freeze=` / `--freeze` at build time, BatchNorm policy."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.commands.build import build_report
from netdsl.errors import NetdslError
from netdsl.freeze import Freeze, parse_freeze

ROOT = Path(__file__).resolve().parents[2]
YOLO = ROOT / "specs" / "yolov3.net"


def frozen(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if not p.requires_grad)


def test_freeze_10_freezes_what_the_course_froze() -> None:
    report, model = build_report(YOLO.read_text(), str(YOLO), {"H": 64, "W": 64}, freeze=parse_freeze("10"))
    assert report["frozen_params"] == 19_601_120 and report["total_params"] == 61_949_149
    assert report["trainable_params"] == 61_949_149 - 19_601_120
    names = {layer["name"].split(".")[0] for layer in report["layers"] if layer.get("frozen")}
    assert names == {f"b{i}" for i in range(10)}


def test_freeze_by_statement_label_and_block_name() -> None:
    m = netdsl.build(YOLO, H=64, W=64, freeze=["res"])  # every residual unit, wherever it is
    assert not m.b2.y[0].weight.requires_grad and m.b3[0].weight.requires_grad
    r18 = ROOT / "specs" / "zoo" / "resnet18.net"
    m = netdsl.build(r18, H=64, W=64, freeze="fc,stem")
    assert frozen(m) == 512 * 1000 + 1000 + 64 * 3 * 49 + 2 * 64
    m = netdsl.build(r18, H=64, W=64, freeze=Freeze(names=("proj",)))
    assert not m.layer2[0].skip[0].weight.requires_grad and m.layer2[0].main[0].weight.requires_grad


@pytest.mark.parametrize(("freeze", "words"), [
    ("bakbone", "no statement, label or block of the spec is named 'bakbone'"),
    ("conv", "named 'conv'"),  # an op's name is not a block: nothing matches
    (30, "the spec has 29 top-level statements"),
    ("1x", "neither a number nor a name"),
    (True, "give a number of statements or names"),
])
def test_freezing_nothing_is_an_error(freeze: object, words: str) -> None:
    with pytest.raises(NetdslError, match=words):
        netdsl.build(YOLO, H=64, W=64, freeze=freeze)


def test_did_you_mean_for_a_misspelt_name() -> None:
    with pytest.raises(NetdslError) as e:
        netdsl.build(YOLO, H=64, W=64, freeze="pairr")
    assert "did you mean 'pair'" in e.value.hint


@pytest.mark.parametrize("policy", ["train", "eval"])
def test_frozen_layers_do_not_change_and_bn_follows_the_policy(policy: str) -> None:
    spec = """net F()
input x: [3, H = 8, W = 8]
a = x |> conv(4, 3, padding=1) -> batchnorm -> relu
output = a |> conv(2, 1)
"""
    torch.manual_seed(0)
    m = netdsl.build(spec, freeze="a", freeze_bn=policy).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=0.1)
    m(torch.randn(4, 3, 8, 8)).square().mean().backward()
    assert all(p.grad is None for p in m.a.parameters())
    opt.step()
    after = m.state_dict()
    assert torch.equal(after["a.0.weight"], before["a.0.weight"]) and torch.equal(after["a.1.weight"], before["a.1.weight"])
    assert not torch.equal(after["output.weight"], before["output.weight"])
    stats_moved = not torch.equal(after["a.1.running_mean"], before["a.1.running_mean"])
    assert stats_moved == (policy == "train") and m.a[1].training == (policy == "train")


def test_freeze_bn_policy_is_checked() -> None:
    with pytest.raises(NetdslError, match="freeze_bn='sometimes': use 'train' or 'eval'"):  # the API's own name
        netdsl.build(YOLO, H=64, W=64, freeze=1, freeze_bn="sometimes")


def test_build_cli_freeze_flags(capsys: pytest.CaptureFixture) -> None:
    import json

    from netdsl.cli import main

    assert main(["build", str(YOLO), "--set", "H=64", "--set", "W=64", "--freeze", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frozen_params"] == 19_601_120
    assert main(["build", str(YOLO), "--set", "H=64", "--set", "W=64", "--freeze", "b99"]) == 2
    assert "did you mean" in capsys.readouterr().err
