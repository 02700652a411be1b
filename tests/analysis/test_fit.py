"""`netdsl fit` on the real memory passes, with torch as the oracle: the budget is what torch
measures for a training step (or an eval forward) at some batch or input size, and the answer
fits by torch's own measure while the next value does not."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import netdsl
from live_oracle import measured_peak
from memory_oracle import saved_by_torch, train_step_bytes
from netdsl import cli

SPEC = """net Small(C = 4)
input x: [3, H = 16, W = 16] where H % 8 == 0, W % 8 == 0
output = x |> conv(C, 3, padding=1) -> batchnorm -> relu -> maxpool(2) -> conv(2*C, 3, padding=1) -> maxpool(2)
  -> flatten -> dropout(0.5)
"""


def _train(spec: str, n: int, optimizer: str = "adam", **sizes: Any) -> int:
    """What a training step holds by torch's measure: parameters, buffers, gradients, optimizer
    state and what the forward saved."""
    torch.manual_seed(0)
    return sum(train_step_bytes(netdsl.build(spec, **sizes), n, optimizer).values())


def _infer(spec: str, n: int, **sizes: Any) -> int:
    """An eval forward's largest live set by torch's measure, plus the parameters and buffers."""
    net = netdsl.build(spec, **sizes)
    weights = sum(t.untyped_storage().nbytes() for t in (*net.parameters(), *net.buffers()))
    return measured_peak(net, torch.randn(n, *net.input_shape)) + weights


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_largest_batch_is_the_boundary_torch_measures(optimizer: str) -> None:
    budget = _train(SPEC, 3, optimizer)
    for memory, answer in ((budget, 3), (budget - 1, 2)):
        r = netdsl.fit(SPEC, memory, optimizer=optimizer)
        assert (r.answer, r.next) == (answer, answer + 1) and r.at_next is not None
        assert r.at_answer == _train(SPEC, answer, optimizer) <= memory < r.at_next == _train(SPEC, answer + 1, optimizer)


def test_bf16_training_is_the_boundary_torch_measures_under_autocast() -> None:
    def held(n: int) -> int:  # what a step holds besides the saved tensors does not depend on autocast
        torch.manual_seed(0)
        step = train_step_bytes(netdsl.build(SPEC), n, "adam")
        saved = saved_by_torch(netdsl.build(SPEC), n, torch.bfloat16)
        return step["param"] + step["buffer"] + step["grad"] + step["optimizer"] + saved

    budget = held(3)
    r = netdsl.fit(SPEC, budget, dtype="bf16")
    assert (r.answer, r.at_answer, r.at_next) == (3, budget, held(4))
    assert r.at_answer != _train(SPEC, 3)  # autocast saves other tensors than fp32 does


def test_largest_batch_for_inference_is_the_boundary_torch_measures() -> None:
    budget = _infer(SPEC, 5)
    r = netdsl.fit(SPEC, budget, mode="infer")
    assert (r.answer, r.at_answer, r.at_next) == (5, budget, _infer(SPEC, 6))
    assert netdsl.fit(SPEC, budget - 1, mode="infer").answer == 4


def test_largest_input_on_the_where_grid_is_the_boundary_torch_measures() -> None:
    budget = _train(SPEC, 2, H=40)
    r = netdsl.fit(SPEC, budget, solve_for="H", N=2)
    assert (r.answer, r.next, r.values["W"]) == (40, 48, 16)
    assert r.at_answer == _train(SPEC, 2, H=40) and r.at_next == _train(SPEC, 2, H=48) > budget
    sq = netdsl.fit(SPEC, _train(SPEC, 2, H=32, W=32) + 1, solve_for="H,W", N=2)
    assert (sq.answer, sq.at_next) == (32, _train(SPEC, 2, H=40, W=40))


def test_seed_unet_batch(capsys: pytest.CaptureFixture[str]) -> None:
    budget = _train("specs/unet.net", 2)
    assert cli.main(["fit", "specs/unet.net", "--memory", str(budget), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["N"], out["at_answer"], out["next"]) == (2, budget, {"N": 3})
    assert out["at_next"] == _train("specs/unet.net", 3) > budget
    assert cli.main(["fit", "specs/unet.net", "--memory", str(out["fixed"] - 1)]) == 2
    assert "alone take" in capsys.readouterr().err


def test_fit_needs_no_torch() -> None:
    code = ("import sys\nsys.modules['torch'] = None\nfrom netdsl.cli import main\n"
            "assert main(['fit', 'specs/zoo/resnet18.net', '--memory', '8GiB', '--set', 'H=64', '--set', 'W=64']) == 0\n"
            "import netdsl\nassert netdsl.fit('specs/unet.net', '1GiB', solve_for='H,W').fits\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
