"""VGG-16's per-layer activations and weights against the CS231n notes' table, and against torch.

The table is CS231n "Convolutional Neural Networks for Visual Recognition", section "Case
studies", "VGGNet in detail" (https://cs231n.github.io/convolutional-networks/#case; the notes'
source is cs231n/cs231n.github.io, convolutional-networks.md). Each row gives the layer's output
volume ("memory", units per image) and its kernel weights without biases, as products. Those
products, written below as the table writes them, are the cited facts; netdsl's counts of
`specs/zoo/vgg16.net` at 224x224 must equal them, and so must what the compiled module holds
and produces.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import sympy as sp

import netdsl
from netdsl.passes.counts import CountResult

SPEC = Path(__file__).resolve().parents[2] / "specs" / "zoo" / "vgg16.net"

# (row label, memory, weights), transcribed from the table (the notes round the memory column to
# "3.2M", "800K", ...: the products are exact, the rounded figures are not used).
TABLE: list[tuple[str, int, int]] = [
    ("INPUT", 224 * 224 * 3, 0),
    ("CONV3-64", 224 * 224 * 64, (3 * 3 * 3) * 64),
    ("CONV3-64", 224 * 224 * 64, (3 * 3 * 64) * 64),
    ("POOL2", 112 * 112 * 64, 0),
    ("CONV3-128", 112 * 112 * 128, (3 * 3 * 64) * 128),
    ("CONV3-128", 112 * 112 * 128, (3 * 3 * 128) * 128),
    ("POOL2", 56 * 56 * 128, 0),
    ("CONV3-256", 56 * 56 * 256, (3 * 3 * 128) * 256),
    ("CONV3-256", 56 * 56 * 256, (3 * 3 * 256) * 256),
    ("CONV3-256", 56 * 56 * 256, (3 * 3 * 256) * 256),
    ("POOL2", 28 * 28 * 256, 0),
    ("CONV3-512", 28 * 28 * 512, (3 * 3 * 256) * 512),
    ("CONV3-512", 28 * 28 * 512, (3 * 3 * 512) * 512),
    ("CONV3-512", 28 * 28 * 512, (3 * 3 * 512) * 512),
    ("POOL2", 14 * 14 * 512, 0),
    ("CONV3-512", 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("CONV3-512", 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("CONV3-512", 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("POOL2", 7 * 7 * 512, 0),
    ("FC", 4096, 7 * 7 * 512 * 4096),
    ("FC", 4096, 4096 * 4096),
    ("FC", 1000, 4096 * 1000),
]
TABLE_PARAMS_MILLIONS = 138  # "TOTAL params: 138M parameters"

# The table's row kinds and the ops that make them. The table has no row for ReLU (its output has
# the conv's size), dropout, flatten, or torchvision's AdaptiveAvgPool2d(7), the identity at 224.
KIND_OP = {"CONV": "conv", "POOL": "maxpool", "FC": "linear"}


@pytest.fixture(scope="module")
def counts() -> CountResult:
    return netdsl.count(SPEC)


def _rows(c: CountResult) -> list[tuple[str, str, int, int]]:
    """(op, path, output units, weights) of every layer the table has a row for, at the values in use."""
    ops = set(KIND_OP.values())
    return [(row.op, row.name, int(c.value(c.layer_metric(row, "outputs"))),
             int(c.value(c.layer_metric(row, "weights")))) for row in c.layers if row.op in ops]


def test_layers_are_the_tables_rows(counts: CountResult) -> None:
    rows = _rows(counts)
    assert len(rows) == len(TABLE) - 1
    for (label, _, _), (op, path, _, _) in zip(TABLE[1:], rows, strict=True):
        kind = label.split("-")[0].rstrip("0123456789")
        assert KIND_OP[kind] == op, (label, path)


def test_input_row(counts: CountResult) -> None:
    cg = counts.shapes
    assert math.prod(cg.at(cg.input_shape)) == TABLE[0][1]


def test_activations_and_weights_equal_the_tables_products(counts: CountResult) -> None:
    for (label, memory, weights), (_, path, outputs, counted) in zip(TABLE[1:], _rows(counts), strict=True):
        assert (outputs, counted) == (memory, weights), (label, path)


def test_adaptive_pool_has_no_row_because_it_is_the_identity_at_224(counts: CountResult) -> None:
    layers = counts.layers
    i = next(k for k, row in enumerate(layers) if row.op == "adaptive_avgpool")
    before, pool = layers[i - 1], layers[i]
    assert counts.value(counts.show(pool.outputs)) == counts.value(counts.show(before.outputs)) == TABLE[18][1]


def test_total_parameters_round_to_the_tables_138m(counts: CountResult) -> None:
    # The table's total counts weights only; with biases it still rounds to 138M.
    assert round(int(counts.value(counts.total("weights"))) / 1e6) == TABLE_PARAMS_MILLIONS
    assert round(int(counts.value(counts.total("parameters"))) / 1e6) == TABLE_PARAMS_MILLIONS
    assert sum(w for _, _, w in TABLE) == int(counts.value(counts.total("weights")))


@pytest.fixture(scope="module")
def vgg_module():  # noqa: ANN201 - a CompiledNet, typed where torch is imported
    pytest.importorskip("torch")
    return netdsl.build(SPEC)


def test_torch_module_produces_the_tables_volumes(vgg_module) -> None:  # noqa: ANN001
    """What the compiled module produces and holds at 224x224, by forward hooks and numel."""
    import torch

    model = vgg_module.eval()
    seen: list[tuple[str, int, int]] = []
    kinds = {"Conv2d": "CONV", "MaxPool2d": "POOL", "Linear": "FC"}

    def hook(kind: str):  # noqa: ANN202 - a forward hook
        def record(module, _inputs, out) -> None:  # noqa: ANN001 - torch's hook signature
            seen.append((kind, out[0].numel(), module.weight.numel() if hasattr(module, "weight") else 0))
        return record

    handles = [m.register_forward_hook(hook(kinds[type(m).__name__]))
               for m in model.modules() if type(m).__name__ in kinds]
    x = torch.zeros(1, *model.input_shape)
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    assert x[0].numel() == TABLE[0][1]
    expected = [(label.split("-")[0].rstrip("0123456789"), memory, weights) for label, memory, weights in TABLE[1:]]
    assert seen == expected


@pytest.mark.parametrize("n", [1, 2])
def test_saved_bytes_at_224_equal_torch(counts: CountResult, vgg_module, n: int) -> None:  # noqa: ANN001
    """The exact figure set beside the table's estimate: what autograd saves for one and two images."""
    from memory_oracle import at, saved_by_torch
    from netdsl.passes.memory_model import MemoryOptions, batch_symbol
    from netdsl.passes.saved import saved_bytes

    cg = counts.shapes
    formula = sum(saved_bytes(cg, batch_symbol(cg.env), MemoryOptions()), sp.Integer(0))
    assert at(cg, formula, n) == saved_by_torch(vgg_module.train(), n)


@pytest.mark.parametrize("n", [1, 2])
def test_peak_bytes_at_224_equal_torch(counts: CountResult, vgg_module, n: int) -> None:  # noqa: ANN001
    """The exact figure set beside the table's forward-only estimate: the live set of inference."""
    import torch

    from live_oracle import measured_peak
    from memory_oracle import at
    from netdsl.passes.memory_model import MemoryOptions, batch_symbol
    from netdsl.passes.peak import peak_bytes

    cg = counts.shapes
    formula = peak_bytes(cg, batch_symbol(cg.env), MemoryOptions()).total
    x = torch.randn(n, *vgg_module.input_shape)
    assert at(cg, formula, n) == measured_peak(vgg_module, x)
