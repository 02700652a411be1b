"""The sequence ops' memory rules against torch: what an eval forward under no_grad allocates
(`live_oracle`), layer by layer, for `tokens`, `image(h, w)`, `token(i)`, `cat` along the tokens
and the features, and `linear`/`layernorm` over a sequence, in each layout a sequence can have
(a transposed view after `tokens` of a contiguous image, contiguous after layernorm).
What autograd saves is measured with the other ops (tests/analysis/test_saved_bytes.py)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import netdsl
from live_oracle import measured_layers
from memory_oracle import at, one_thread, saved_by_torch
from netdsl.passes.memory_model import MemoryOptions, batch_symbol
from netdsl.passes.peak import peak_bytes
from netdsl.passes.saved import saved_total

HEAD = "net S(C = 4)\ninput x: [4, H = 8, W = 8]\n"
CHAINS = [
    "tokens -> linear(3)", "tokens -> linear(3, bias=false)", "relu -> tokens -> linear(3)",
    "tokens -> layernorm -> linear(3)", "layernorm -> tokens -> linear(3)", "tokens -> dropout(0.1) -> linear(3)",
    "tokens -> image(8, 8) -> conv(4, 1)", "tokens -> image(8, 8) -> tokens -> linear(3)",
    "tokens -> layernorm -> image(4, 16) -> channel_linear(5)", "tokens -> image(4, 16) -> channel_linear(5)",
    "tokens -> layernorm -> image(8, 8) -> flatten -> linear(3)", "tokens -> token(3) -> linear(3)",
    "tokens -> layernorm -> token(-1) -> layernorm", "tokens -> gelu -> image(8, 8) -> conv(4, 1)",
]
MERGES = [
    "a = x |> conv(4, 1) -> tokens\nb = x |> conv(4, 1) -> tokens -> layernorm\noutput y = cat(a, b) |> linear(3)\n",
    "a = x |> conv(4, 1) -> tokens\nb = x |> conv(4, 1) -> tokens -> layernorm\n"
    "output y = cat(a, b, dim=2) |> linear(3)\n",
    "a = x |> conv(4, 1) -> tokens\nb = a |> layernorm\noutput y = cat(a, b) |> image(8, 16) -> conv(2, 1)\n",
]
TEXTS = [HEAD + f"output y = x |> conv(4, 1) -> {c}\n" for c in CHAINS] + [HEAD + m for m in MERGES]
IDS = [c.replace(" ", "") for c in CHAINS] + [f"merge{i}" for i in range(len(MERGES))]
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_each_layer_allocates_what_torch_allocates(text: str) -> None:
    net = netdsl.build(text).eval()
    cg = net.concrete
    n_sym = batch_symbol(cg.env)
    # fp32 at one and two samples (a transposed sequence of one sample is read without a copy),
    # bf16 at two, fp16 at one
    for dtype, n in (("fp32", 1), ("fp32", 2), ("bf16", 2), ("fp16", 1)):
        result = peak_bytes(cg, n_sym, MemoryOptions(dtype=dtype))  # type: ignore[arg-type]
        values = {**cg.env.internal_values, n_sym: n}
        items = [(x.path, f) for x, f in zip(cg.walk(), result.layers)]
        peak, per = measured_layers(net, {p for p, _ in items}, torch.randn(n, 4, 8, 8), autocast=AUTOCAST[dtype])
        assert peak == result.at(values), (dtype, n)
        wrong = [(p, per[p], int(f.xreplace(values))) for p, f in items if p in per and per[p] != int(f.xreplace(values))]
        assert wrong == [], (dtype, n)


@pytest.mark.parametrize("text", TEXTS[:6] + TEXTS[-3:], ids=IDS[:6] + IDS[-3:])
def test_a_training_forward_saves_what_torch_saves(text: str) -> None:
    model = netdsl.build(text)
    cg = model.concrete
    total = saved_total(cg, batch_symbol(cg.env))
    for n in (2, 3):
        assert at(cg, total, n) == saved_by_torch(model, n)


def test_the_views_allocate_nothing() -> None:
    # tokens, image and token are views in torch: the peak is the input itself
    net = netdsl.build(HEAD + "output y = x |> tokens -> image(8, 8) -> tokens -> token(0)\n").eval()
    cg = net.concrete
    n_sym = batch_symbol(cg.env)
    x = torch.randn(2, 4, 8, 8)
    peak, _ = measured_layers(net, set(), x)
    assert peak_bytes(cg, n_sym).at({**cg.env.internal_values, n_sym: 2}) == peak == x.numel() * 4
    with torch.no_grad():
        y = net(x)
    assert y.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
