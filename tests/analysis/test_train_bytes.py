"""train_bytes against torch: one training step (forward, backward, `optimizer.step()`) and the
storages it holds — parameters, buffers, gradients, the optimizer's state and what the forward
saved — each equal to its formula, with and without frozen layers."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import netdsl
from memory_oracle import OPTIMIZERS, at, one_thread, train_step_bytes
from netdsl.passes import train_memory
from netdsl.passes.memory_model import OPTIMIZERS as NAMES
from netdsl.passes.memory_model import MemoryOptions, batch_symbol
from netdsl.passes.saved import saved_total

ROOT = Path(__file__).resolve().parents[2]
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
# A learned tensor and LayerNorm (convnext), BatchNorm buffers (unet), a detect head with a frozen
# backbone (yolov3-tiny --freeze 10), a gated network (mobilenet_v3_small).
CASES: list[tuple[str, dict[str, Any]]] = [
    ("specs/unet.net", {}),
    ("specs/yolov3-tiny.net", {"H": 64, "W": 64}),
    ("specs/yolov3-tiny.net", {"H": 64, "W": 64, "freeze": 10}),
    ("specs/zoo/convnext_tiny.net", {"H": 32, "W": 32, "freeze": 3}),
    ("specs/zoo/mobilenet_v3_small.net", {"H": 64, "W": 64}),
]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def _formulas(cg: Any, options: MemoryOptions, n: int) -> dict[str, int]:
    batch = batch_symbol(cg.env)
    return {"param": at(cg, train_memory.param_bytes(cg, options), n),
            "buffer": at(cg, train_memory.buffer_bytes(cg), n),
            "grad": at(cg, train_memory.grad_bytes(cg), n),
            "optimizer": at(cg, train_memory.optimizer_bytes(cg, options), n),
            "saved": at(cg, saved_total(cg, batch, options), n)}


def test_every_optimizer_is_measured() -> None:
    assert set(NAMES) == {*OPTIMIZERS, "none"}


@pytest.mark.parametrize(("spec", "params"), CASES, ids=["unet", "tiny", "tiny-frozen", "convnext-frozen", "mnv3"])
@pytest.mark.parametrize("optimizer", NAMES)
def test_a_training_step_holds_what_the_formulas_say(spec: str, params: dict[str, Any], optimizer: str) -> None:
    model = netdsl.build(ROOT / spec, **params)
    cg = model.concrete
    options = MemoryOptions(optimizer=optimizer)  # type: ignore[arg-type]  # a name from OPTIMIZERS
    n = 2
    got = train_step_bytes(model, n, optimizer)
    assert _formulas(cg, options, n) == got
    assert at(cg, train_memory.train_bytes(cg, batch_symbol(cg.env), options), n) == sum(got.values())


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_under_autocast_parameters_gradients_and_state_stay_float32(dtype: str) -> None:
    model = netdsl.build(ROOT / "specs/zoo/convnext_tiny.net", H=32, W=32, freeze=3)
    cg = model.concrete
    options = MemoryOptions(dtype=dtype)  # type: ignore[arg-type]  # a name from DTYPES
    got = train_step_bytes(model, 2, "adam", AUTOCAST[dtype])
    assert _formulas(cg, options, 2) == got
    assert {k: v for k, v in _formulas(cg, MemoryOptions(), 2).items() if k != "saved"} == \
        {k: v for k, v in got.items() if k != "saved"}


def test_frozen_parameters_count_but_have_no_gradient_or_state() -> None:
    spec = ROOT / "specs/yolov3-tiny.net"
    whole = netdsl.build(spec, H=64, W=64).concrete
    frozen = netdsl.build(spec, H=64, W=64, freeze=10).concrete
    assert train_memory.param_bytes(whole) == train_memory.param_bytes(frozen)
    assert (train_memory.grad_bytes(frozen) - train_memory.grad_bytes(whole)).is_negative
    assert (train_memory.optimizer_bytes(frozen) - train_memory.optimizer_bytes(whole)).is_negative


def test_train_bytes_grow_with_the_batch_by_the_saved_bytes_only() -> None:
    cg = netdsl.shapes(ROOT / "specs/unet.net")
    batch = batch_symbol(cg.env)
    train = train_memory.train_bytes(cg, batch)
    assert (train.diff(batch) - saved_total(cg, batch).diff(batch)).expand() == 0
