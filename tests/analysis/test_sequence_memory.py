"""The memory passes on sequence networks against torch, and `count`, `fit` and `diff` on them.

Torch is the oracle: what autograd saves in a training forward (`memory_oracle`), the live set of
an eval forward (`live_oracle`), what a training step holds. The specs: a tiny ViT (patches as
tokens, a class token, a position embedding, attention, `token(0)`), a C3TR-like block (tokens,
`attention_qkv`, back to an image), tokens and back without attention, and a network whose input
is a sequence `[T, D]`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

import netdsl
from live_oracle import measured_layers
from memory_oracle import at, one_thread, saved_by_torch, train_step_bytes
from netdsl.cli import main
from netdsl.passes import train_memory
from netdsl.passes.memory_model import MemoryOptions, batch_symbol
from netdsl.passes.peak import peak_bytes
from netdsl.passes.saved import saved_total
from test_receptive_sequences import C3TR, ROUNDTRIP, VIT

SEQUENCE_IN = """
net SequenceIn(C = 8)
input t: [T = 12, D = 16]
output = t |> layernorm -> attention(2) -> linear(C) -> gelu
"""
SPECS = {"vit": VIT, "c3tr": C3TR, "roundtrip": ROUNDTRIP, "sequence-in": SEQUENCE_IN}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    """Each spec's module, built once on first use for the saved and the peak tests."""
    return {}


def _model(built: dict[str, nn.Module], name: str) -> nn.Module:
    if name not in built:
        torch.manual_seed(0)
        built[name] = netdsl.build(SPECS[name])
    return built[name]


@pytest.mark.parametrize("name", SPECS)
def test_saved_bytes_are_what_autograd_keeps(name: str, built: dict[str, nn.Module]) -> None:
    model = _model(built, name)
    cg = model.concrete
    total = saved_total(cg, batch_symbol(cg.env))
    # N >= 2: a linear over the transposed view `tokens` makes copies its input to a contiguous one
    # and keeps the copy; for one sample torch's reshape views it instead (the formula is N >= 2's)
    assert [at(cg, total, n) for n in (2, 3)] == [saved_by_torch(model, n) for n in (2, 3)]


@pytest.mark.parametrize("name", SPECS)
def test_peak_bytes_are_the_live_set_torch_measures(name: str, built: dict[str, nn.Module]) -> None:
    model = _model(built, name).eval()
    cg = model.concrete
    n_sym = batch_symbol(cg.env)
    result = peak_bytes(cg, n_sym)
    items = [(x.path, f) for x, f in zip(cg.walk(), result.layers)]
    g = torch.Generator().manual_seed(0)
    for n in (1, 2):
        values = {**cg.env.internal_values, n_sym: n}
        xs = [torch.randn(n, *shape, generator=g) for shape in model.inputs.values()]
        peak, per = measured_layers(model, {p for p, _ in items}, *xs)
        assert peak == result.at(values), n
        wrong = [(p, per[p], int(f.xreplace(values))) for p, f in items if p in per and per[p] != int(f.xreplace(values))]
        assert wrong == [], n


@pytest.mark.parametrize("name", ["vit", "sequence-in"])
def test_a_training_step_holds_what_the_formulas_say(name: str) -> None:
    torch.manual_seed(0)
    model = netdsl.build(SPECS[name])
    cg = model.concrete
    options = MemoryOptions(optimizer="adam")
    want = {"param": train_memory.param_bytes(cg, options), "buffer": train_memory.buffer_bytes(cg),
            "grad": train_memory.grad_bytes(cg), "optimizer": train_memory.optimizer_bytes(cg, options),
            "saved": saved_total(cg, batch_symbol(cg.env), options)}
    assert {k: at(cg, v, 2) for k, v in want.items()} == train_step_bytes(model, 2, "adam")


def test_count_reports_memory_and_receptive_fields_of_a_sequence_network(tmp_path: Any, capsys: Any) -> None:
    spec = tmp_path / "vit.net"
    spec.write_text(VIT)
    assert main(["count", str(spec), "--rf", "--memory", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    values = report["values"]
    # the class token's logits read the whole 32x32 image, as every token after attention
    assert values["totals"]["rf"]["logits"]["size"] == [32, 32]
    assert values["totals"]["rf"]["logits"]["jump"] == [0, 0]
    # every layer has its field (a sequence layer: the grid its tokens lie on), and its memory
    assert len(values["layers"]) == len(list(netdsl.shapes(VIT).walk()))
    assert all("saved_bytes" in row and "peak_bytes" in row for row in values["layers"])
    patch = [row["rf"]["size"] for row in values["layers"] if row.get("rf")][:3]
    assert patch[0] == [8, 8]  # the 8x8 patch embedding, then its tokens: each reads its patch
    assert main(["count", str(spec), "--rf", "--memory"]) == 0
    out = capsys.readouterr().out
    assert "receptive field" in out and "peak bytes" in out


def _step(text: str, n: int) -> int:
    torch.manual_seed(0)
    return sum(train_step_bytes(netdsl.build(text), n, "adam").values())


def test_fit_finds_the_largest_batch_of_a_tiny_vit() -> None:
    budget = _step(VIT, 3)
    r = netdsl.fit(VIT, budget)
    assert (r.answer, r.at_answer) == (3, budget)
    assert r.at_next == _step(VIT, 4) > budget


def test_diff_of_two_vit_widths_is_what_torch_counts() -> None:
    d = netdsl.diff(VIT, VIT.replace("D = 32", "D = 48"), N=2)
    torch.manual_seed(0)
    small, wide = netdsl.build(VIT), netdsl.build(VIT.replace("D = 32", "D = 48"))
    params = sum(p.numel() for p in wide.parameters()) - sum(p.numel() for p in small.parameters())
    weights = d.totals["weights"].value_difference + d.totals["biases"].value_difference
    norms = d.totals["norm_params"].value_difference if "norm_params" in d.totals else 0
    assert weights + norms == params
    size_h, size_w = d.rf["logits"]["size"]  # both read the whole image: no difference
    assert (size_h.difference, size_w.difference) == (0, 0)
