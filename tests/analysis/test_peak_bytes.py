"""peak_bytes against torch: the largest live set of activation storages in an eval forward.

torch is the oracle (`live_oracle.measured_peak`: a TorchDispatchMode that holds weak references
to every storage an aten op makes and sums those alive after each op). Each spec's formula is
computed once, symbolically, at one input size, and must equal the measured peak to the byte at
two batch sizes and at two input sizes (the second through the same formula at other values).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sympy as sp
import torch

import netdsl
from live_oracle import measured_layers, measured_peak
from memory_oracle import one_thread
from netdsl.errors import NetdslError
from netdsl.ops import REGISTRY, OpDef
from netdsl.passes.memory_model import DTYPES, MemoryOptions, batch_symbol
from netdsl.passes.peak import _bounds, peak_bytes

SPECS = Path(__file__).resolve().parents[2] / "specs"
# Input sizes (H = W) the network is measured at; the first is the one it is built at.
BIG_STEM = {"alexnet", "googlenet", "squeezenet1_1"}  # their stems need more than 32 pixels
# YOLO's head copies each level's map to a contiguous layout, except a 1x1 map (already
# contiguous): measured where every level is larger than 1x1, as the formula assumes.
BIG_STEM |= {"yolov3", "yolov3-tiny"}
# YOLOv8 and YOLO11 take multiples of 32 only (`where H % 32 == 0`): the zoo's sizes.
STRIDE_32 = {"yolov8", "yolo11"}


# The position embedding fixes the input size a ViT's module runs at: measured at the size it is
# built at (test_saved_bytes builds it at two sizes).
FIXED_SIZE = {"vit_b_16"}


def _sizes(path: Path) -> tuple[int, ...]:
    if path.stem in FIXED_SIZE:
        return (32,)
    if path.stem in BIG_STEM:
        return (64, 96)
    if path.parent.name == "zoo" or path.stem in STRIDE_32:
        return (32, 64)
    return (16, 24)


def _measurable() -> list[Path]:
    every = sorted(SPECS.glob("*.net")) + sorted((SPECS / "zoo").glob("*.net"))
    # open arguments ('?'): no module to measure until `netdsl solve` fills them
    return [p for p in every if "?" not in p.read_text()]


def _specs() -> list[object]:
    return [pytest.param(p, id=f"{p.parent.name}/{p.stem}", marks=[pytest.mark.slow] if p.parent.name == "zoo" else [])
            for p in _measurable()]


def _agree(net: torch.nn.Module, sizes: tuple[int, ...] | None = None, path: Path | None = None) -> None:
    """The measured peak equals the formula at every size in `sizes` (H = W; None: the size it
    was built at) for N = 1 and 2; at the last of them, layer by layer, so does the largest live
    set while each layer's module ran."""
    cg = net.concrete
    n_sym = batch_symbol(cg.env)
    result = peak_bytes(cg, n_sym)
    items = [(x.path, f) for x, f in zip(cg.walk(), result.layers)]
    runs = [(size, n) for size in sizes or (None,) for n in (1, 2)]
    values_at = {size: cg.env.internal_values if size is None or size == cg.values.get("H") else
                 netdsl.shapes(path, H=size, W=size).env.internal_values for size in sizes or (None,)}
    for size, n in runs:
        at = values_at[size]
        shape = net.input_shape if size is None else (net.input_shape[0], size, size)
        values = {**at, n_sym: n}
        peak, per = measured_layers(net, {p for p, _ in items}, torch.randn(n, *shape))
        assert peak == result.at(values), (size, n)
        if (size, n) == runs[-1]:
            wrong = [(p, per[p], int(f.xreplace(values))) for p, f in items
                     if p in per and per[p] != int(f.xreplace(values))]
            assert wrong == [], (size, n)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Two test workers share two cores: torch's own threads only wait on each other here.
    with one_thread():
        yield


@pytest.fixture(scope="module")
def built() -> dict[Path, torch.nn.Module]:
    """Each spec's module at its first size, built once for the float32 and the autocast tests."""
    return {}


def _built(built: dict[Path, torch.nn.Module], path: Path) -> torch.nn.Module:
    if path not in built:
        size = _sizes(path)[0]
        built[path] = netdsl.build(path, H=size, W=size)
    return built[path]


@pytest.mark.parametrize("path", _specs())
def test_the_formula_is_the_peak_torch_measures(path: Path, built: dict[Path, torch.nn.Module]) -> None:
    _agree(_built(built, path), _sizes(path), path)


def test_every_shipped_spec_but_an_open_one_is_measured() -> None:
    every = sorted(SPECS.glob("*.net")) + sorted((SPECS / "zoo").glob("*.net"))
    assert [p.name for p in every if p not in _measurable()] == ["conv_transpose_open.net"]


# Rules no shipped spec reaches: a channel_linear over a contiguous image (the matmul copies its
# permuted input) and over a LayerNorm's channels-last output (no copy), the flatten of a
# channels-last image (a copy), add and mul of three tensors (partial results; a broadcast gate
# first), pad, avgpool, adaptive pools, softmax, the darknet ops, BatchNorm1d and LayerNorm on features.
MIX = """
net Mix(C = 4)
input x: [3, H = 16, W = 16] where H % 4 == 0, W % 4 == 0
a = x |> conv(C, 3, padding=1) -> pad(1) -> maxpool(3, stride=1) -> avgpool(1)
b = a |> channel_linear(2*C) -> gelu -> channel_linear(C, bias=false)
n = a |> layernorm -> channel_linear(C, bias=false) -> relu
s = add(a, b, n) |> softmax -> log_softmax
g = a |> adaptive_avgpool -> sigmoid
h = b |> adaptive_maxpool -> tanh
p = mul(g, h, s) |> channel_shuffle(2) -> reorg(2)
q = darknet_shortcut(p, a) |> conv(C, 1)
output f = n |> flatten -> linear(10) -> batchnorm -> layernorm -> dropout
output o = add(q, q) |> channel_linear(2*C, bias=true)
"""

# A chain of statements: each tensor is read once, by the next statement only.
CHAIN = "net Chain()\ninput x: [3, H = 16, W = 16]\n" + "".join(
    f"t{i} = {'x' if i == 0 else f't{i - 1}'} |> conv(8, 3, padding=1) -> relu\n" for i in range(6)) + \
    "output y = t5 |> conv(2, 1)\n"


# The anchor-free head (detect_v8) after its levels' branches: its decoding's live set.
V8 = """
net V8(NC = 3)
input x: [3, H = 16, W = 16] where H % 8 == 0, W % 8 == 0
p = x |> conv(8, 3, stride=4, padding=1)
q = p |> conv(8, 3, stride=2, padding=1)
b = p |> conv(8, 1)
c = p |> conv(NC, 1)
r = q |> conv(8 + NC, 1)
output boxes = detect_v8(cat(b, c), r, classes=NC, strides=[4, 8], reg_max=2)
"""

# YOLO11's position-sensitive attention (psa_attention, psa_values): on a float32 input (under
# autocast the products cast copies), after a conv, with one head (the values are a view).
PSA = """
net Psa(C = 8)
input x: [12, H = 6, W = 8]
a = x |> psa_attention(2, 2)
q = x |> conv(C + 4, 1) -> batchnorm
b = q |> psa_attention(2, 1)
v = q |> psa_values(2, 1) -> conv(C, 3, padding=1, groups=C)
o = q |> conv(2 * C, 1) -> psa_values(1, 4)
output y = add(b, v, o) |> conv(4, 1)
output z = a |> relu
"""


@pytest.mark.parametrize("text", [MIX, CHAIN, V8, PSA], ids=["mix", "chain", "detect_v8", "psa"])
def test_rules_no_shipped_spec_reaches(text: str) -> None:
    _agree(netdsl.build(text))


def test_the_compiled_module_drops_each_tensor_after_its_last_use() -> None:
    # Every statement's output, as torch makes it: a forward that kept them all would hold their sum.
    net = netdsl.build(CHAIN).eval()
    made: list[int] = []
    hooks = [getattr(net, f"t{i}").register_forward_hook(
        lambda m, i, o: made.append(o.untyped_storage().nbytes())) for i in range(6)]
    x = torch.randn(2, *net.input_shape)
    peak = measured_peak(net, x)
    for h in hooks:
        h.remove()
    assert peak < x.untyped_storage().nbytes() + sum(made)
    assert net(x).shape == (2, *net.output_shape)


def test_the_total_is_the_largest_layer_at_any_values() -> None:
    cg = netdsl.shapes(SPECS / "unet.net")
    n_sym = batch_symbol(cg.env)
    result = peak_bytes(cg, n_sym)
    assert len(result.layers) == len(list(cg.walk()))
    for size, n in ((16, 1), (32, 3), (64, 2)):
        at = {**netdsl.shapes(SPECS / "unet.net", H=size, W=size).env.internal_values, n_sym: n}
        assert result.at(at) == max(int(x.xreplace(at)) for x in result.layers)


def test_a_candidate_is_dropped_only_where_another_bounds_it_everywhere() -> None:
    h, w, n = sp.symbols("h w n", integer=True, nonnegative=True)
    assert _bounds(3 * h * w * n, 2 * h * w * n)
    assert not _bounds(h * w * n, 2 * n)  # h = w = 0
    assert _bounds(h * w * n + 2, 2 * n + 1, {h: 1, w: 1, n: 1}) is False  # n large: 1 + 2 < 2n + 1
    assert _bounds(4 * h * w * n, 2 * n, {h: 1, w: 1, n: 1})
    f = sp.floor(h / 2 - sp.Rational(3, 2))
    assert _bounds(512 * n * f * f + 512 * n, 256 * n * f * f)
    assert not _bounds(sp.Max(h, n), h)


def test_an_op_without_a_rule_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    cg = netdsl.shapes(SPECS / "unet.net")
    monkeypatch.setattr(type(REGISTRY["relu"]), "allocates", OpDef.allocates)
    with pytest.raises(NetdslError, match="no rule for what an eval forward allocates"):
        peak_bytes(cg, batch_symbol(cg.env))


# Under autocast (an eval forward inside `torch.autocast("cpu", dtype)`): conv, convT, linear,
# channel_linear and detect run in 16 bits on a 16-bit copy of a float32 input (alive while the op
# runs) and on 16-bit copies of their weights and biases, which autocast caches until the region
# ends (no_grad or not: a parameter is a leaf that requires grad); cat copies its narrower inputs
# to the widest width; every other op keeps its input's width. Measured at the smallest size.
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.mark.parametrize("path", _specs())
def test_the_formula_is_the_peak_under_autocast(path: Path, built: dict[Path, torch.nn.Module]) -> None:
    _agree_autocast(_built(built, path))


def test_rules_no_shipped_spec_reaches_under_autocast() -> None:
    _agree_autocast(netdsl.build(MIX))
    _agree_autocast(netdsl.build(V8))
    _agree_autocast(netdsl.build(PSA))


def _agree_autocast(net: torch.nn.Module) -> None:
    """Under bf16 at N = 2 and fp16 at N = 1 (both dtypes and both batches, at half the cost of
    every pair), at the size it was built at, the measured peak and each layer's live set equal
    the formula."""
    net.eval()
    cg = net.concrete
    n_sym = batch_symbol(cg.env)
    # The pass reads only the autocast width in bytes (DTYPES: 2 for both), so the bf16 and fp16
    # formulas are one formula: built once (the slow part on a YOLO), measured under each dtype.
    assert DTYPES["bf16"] == DTYPES["fp16"]
    result = peak_bytes(cg, n_sym, MemoryOptions(dtype="bf16"))
    items = [(x.path, f) for x, f in zip(cg.walk(), result.layers)]
    for name, dtype in AUTOCAST.items():
        for n in {"bf16": (2,), "fp16": (1,)}[name]:
            values = {**cg.env.internal_values, n_sym: n}
            peak, per = measured_layers(net, {p for p, _ in items}, torch.randn(n, *net.input_shape), autocast=dtype)
            assert peak == result.at(values), (name, n)
            wrong = [(p, per[p], int(f.xreplace(values))) for p, f in items
                     if p in per and per[p] != int(f.xreplace(values))]
            assert wrong == [], (name, n)


def test_autocast_caches_the_16_bit_weights_for_the_whole_forward() -> None:
    # Two convs: while the second runs, the first one's bf16 weight and bias copies are alive still.
    text = "net T()\ninput x: [3, H = 8, W = 8]\noutput y = x |> conv(4, 3, padding=1) -> conv(4, 1)\n"
    net = netdsl.build(text).eval()
    cg = net.concrete
    n_sym = batch_symbol(cg.env)
    fp32 = peak_bytes(cg, n_sym).at({**cg.env.internal_values, n_sym: 1})
    bf16 = peak_bytes(cg, n_sym, MemoryOptions(dtype="bf16")).at({**cg.env.internal_values, n_sym: 1})
    x = torch.randn(1, 3, 8, 8)
    assert (fp32, bf16) == (measured_peak(net, x), measured_peak(net, x, autocast=torch.bfloat16))
    # the input (float32), both weight caches, the first conv's output and the second's (bf16)
    assert bf16 == 3 * 64 * 4 + (4 * 27 + 4 + 4 * 4 + 4) * 2 + 2 * 4 * 64 * 2


# A frozen layer's parameters do not require grad, and autocast caches only the 16-bit casts of
# leaf tensors that do: the frozen conv's bf16 weight and bias are made while it runs, then freed.
FROZEN = """
net Frozen()
input x: [3, H = 8, W = 8]
a = x |> conv(4, 3, padding=1) @freeze
output y = a |> conv(4, 1) -> relu
"""


def test_autocast_does_not_cache_a_frozen_layers_16_bit_weights() -> None:
    frozen = netdsl.build(FROZEN).eval()
    trained = netdsl.build(FROZEN.replace(" @freeze", "")).eval()
    assert not any(p.requires_grad for p in frozen.a.parameters())
    _agree_autocast(frozen)  # the formula, in total and layer by layer, is what torch measures
    x = torch.randn(1, 3, 8, 8)
    cg = frozen.concrete
    n_sym = batch_symbol(cg.env)
    values = {**cg.env.internal_values, n_sym: 1}
    formula = {name: peak_bytes(net.concrete, n_sym, MemoryOptions(dtype="bf16")).at(values)
               for name, net in (("frozen", frozen), ("trained", trained))}
    measured = {name: measured_peak(net, x, autocast=torch.bfloat16) for name, net in (("frozen", frozen), ("trained", trained))}
    assert formula == measured
    # the trained network holds the first conv's cached weight and bias (bf16) to the end; the frozen one does not
    assert measured["trained"] - measured["frozen"] == (4 * 3 * 3 * 3 + 4) * 2
