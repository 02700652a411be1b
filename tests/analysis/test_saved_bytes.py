"""saved_bytes against torch: the bytes autograd saves in a training-mode forward, measured with
`saved_tensors_hooks` on the compiled module (tests/memory_oracle.py), equal to the formula at
the values tested, for every shipped spec and for every op alone."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sympy as sp
import torch

import netdsl
from memory_oracle import at, one_thread, saved_by_torch, saved_per_module
from netdsl.backends.torch_module import CompiledNet
from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError
from netdsl.ops import REGISTRY, Category, OpDef
from netdsl.ops.base import Args, Shape
from netdsl.passes.memory_model import MemoryOptions, batch_symbol
from netdsl.passes.saved import saved_bytes, saved_total

ROOT = Path(__file__).resolve().parents[2]
OPEN = "conv_transpose_open"  # its paddings are left open (`?`): no network to measure
SHIPPED = sorted(p for p in [*ROOT.glob("specs/*.net"), *ROOT.glob("specs/zoo/*.net")] if p.stem != OPEN)
# Two input sizes per spec, each at two batch sizes. Most zoo networks reach a 1x1 map at 32x32,
# where BatchNorm in training mode needs more than one sample: there the batches are 2 and 3.
SMALL: dict[str, int] = {"alexnet": 64}
LARGE: dict[str, int] = {"alexnet": 96}
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}  # --dtype: torch.autocast("cpu", dtype)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def _sizes(stem: str) -> list[tuple[int, tuple[int, int]]]:
    return [(SMALL.get(stem, 32), (2, 3)), (LARGE.get(stem, 64), (1, 2))]


def _formula_and_torch(source: str | Path, batches: tuple[int, ...], **params: Any) -> list[tuple[int, int]]:
    model = netdsl.build(source, **params)
    cg = model.concrete
    total = saved_total(cg, batch_symbol(cg.env))
    return [(at(cg, total, n), saved_by_torch(model, n)) for n in batches]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_saved_bytes_equal_torch_for_every_shipped_spec(path: Path) -> None:
    for size, batches in _sizes(path.stem):
        for n, (want, got) in zip(batches, _formula_and_torch(path, batches, H=size, W=size)):
            assert want == got, (path.stem, size, n)


def test_every_shipped_spec_but_the_open_one_is_measured() -> None:
    shipped = {p.stem for p in [*ROOT.glob("specs/*.net"), *ROOT.glob("specs/zoo/*.net")]}
    assert shipped - {p.stem for p in SHIPPED} == {OPEN}
    assert {"yolov3", "yolov3-tiny", "unet", "vgg16", "convnext_tiny"} <= {p.stem for p in SHIPPED}


def test_vgg16_at_224_saves_what_torch_saves_formula_only() -> None:
    # The figure: torch measured 73,355,264 bytes for one image and twice that for two.
    cg = netdsl.shapes(ROOT / "specs/zoo/vgg16.net")
    total = saved_total(cg, batch_symbol(cg.env))
    assert at(cg, total, 2) == 2 * at(cg, total, 1)
    assert sp.Poly(total, batch_symbol(cg.env)).degree() == 1


# --- every op alone: a new op without a measured rule fails here ---------------------------------

HEAD = "net T(C = 4)\ninput x: [4, H = 8, W = 8]\n"
# After a conv (its output requires grad), each op in the variants that change what it keeps.
CHAINS: dict[str, list[str]] = {
    "conv": ["conv(4, 3, stride=2, padding=1, bias=false)"], "convT": ["convT(4, 2, stride=2)"],
    "batchnorm": ["batchnorm", "batchnorm(affine=false)", "flatten -> batchnorm"],
    "layernorm": ["layernorm", "flatten -> layernorm", "layernorm -> flatten -> linear(3)", "tokens -> layernorm"],
    "maxpool": ["maxpool(2)", "maxpool(3, stride=2, padding=1, ceil_mode=true)"], "avgpool": ["avgpool(2)"],
    "adaptive_avgpool": ["adaptive_avgpool", "adaptive_avgpool(2)"],
    "adaptive_maxpool": ["adaptive_maxpool", "adaptive_maxpool(2, 3)"],
    "upsample": ["upsample(2)", 'upsample(2, mode="bilinear")'], "pad": ["pad(1)", "pad(1, value=-1.0)"],
    "flatten": ["flatten -> linear(3)", "channel_slice(1, 3) -> flatten -> linear(3)"],
    "linear": ["flatten -> linear(3, bias=false)", "tokens -> linear(3)", "relu -> tokens -> linear(3, bias=false)",
               "tokens -> layernorm -> linear(3)"],
    "tokens": ["tokens -> layernorm", "layernorm -> tokens -> linear(3)"],
    "image": ["tokens -> image(8, 8) -> conv(4, 1)", "tokens -> layernorm -> image(4, 16) -> channel_linear(5)",
              "tokens -> gelu -> image(8, 8) -> flatten -> linear(3)"],
    "token": ["tokens -> token(3) -> linear(3)", "tokens -> layernorm -> token(-1) -> layernorm"],
    "channel_linear": ["channel_linear(5)", "layernorm -> channel_linear(5) -> gelu -> channel_linear(4)"],
    "layer_scale": ["layer_scale"], "channel_shuffle": ["channel_shuffle(2) -> conv(4, 1)"],
    "channel_slice": ["channel_slice(1, 3) -> conv(2, 1)"], "channel_chunk": ["channel_chunk(1, 2) -> conv(2, 1)"],
    "reorg": ["reorg(2) -> conv(4, 1)"],
    "attention": ["tokens -> attention(2)", "tokens -> layernorm -> attention(4, bias=false) -> linear(3)",
                  "relu -> tokens -> attention(1)"],
    "psa_attention": ["conv(12, 1) -> psa_attention(2, 2)", "psa_attention(1, 1) -> conv(4, 1)"],
    "psa_values": ["conv(12, 1) -> psa_values(2, 2) -> conv(4, 3, padding=1, groups=4)", "psa_values(1, 1) -> conv(2, 1)"],
    "dropout": ["dropout(0.1)", "dropout(0) -> relu", "dropout(1.0)"],
    "stochastic_depth": ["stochastic_depth(0.2)", 'stochastic_depth(0.2, mode="batch")', "stochastic_depth(0.0)"],
    "identity": ["identity -> relu"], "softmax": ["softmax"], "log_softmax": ["log_softmax(dim=2)"],
    "leaky_relu": ["leaky_relu(0.1)"], "gelu": ["gelu", 'gelu(approximate="tanh")'],
    **{name: [name] for name in ("relu", "relu6", "sigmoid", "tanh", "silu", "mish", "hardswish", "hardsigmoid")},
}
MERGES: dict[str, str] = {
    "cat": "a = x |> conv(4, 1)\noutput y = cat(a, x, a) |> conv(4, 1)\n",
    "cat-sequences": "a = x |> conv(4, 1) -> tokens\nb = x |> tokens -> layernorm\nc = cat(a, b, dim=-1) |> linear(4)\n"
                     "output y = cat(a, c) |> linear(2)\n",
    "add": "a = x |> conv(4, 1)\noutput y = add(x, a) |> relu\n",
    "mul": "a = x |> conv(4, 1)\nb = x |> conv(4, 1) -> adaptive_avgpool\nc = mul(x, a)\nd = mul(a, b, x, a)\n"
           "output y = add(c, d)\n",
    "darknet_shortcut": "a = x |> conv(4, 1)\nb = x |> conv(8, 1)\noutput y = darknet_shortcut(a, b) |> relu\n",
    "attention_qkv": "a = x |> conv(4, 1) -> tokens\nb = x |> maxpool(2) -> tokens -> layernorm\n"
                     "m = attention_qkv(a, b, b, heads=2)\noutput y = m |> linear(3)\n",
    "detect": "a = x |> conv(4, 1)\nb = a |> conv(4, 3, stride=2, padding=1)\n"
              "output boxes = detect(a, b, classes=2, strides=[1, 2], anchors=[[4, 5], [8, 9]])\n",
    "detect_v8": "a = x |> conv(10, 1)\nb = a |> conv(10, 3, stride=2, padding=1)\n"
                 "output boxes = detect_v8(a, b, classes=2, strides=[1, 2], reg_max=2)\n",
}
CASES = [(op, HEAD + f"output y = x |> conv(4, 1) -> {chain}\n") for op, chains in CHAINS.items() for chain in chains]
CASES += [(op.split("-")[0], HEAD + body) for op, body in MERGES.items()]


def test_every_registered_op_has_a_rule_and_a_measured_case() -> None:
    assert {op for op, _ in CASES} == set(REGISTRY), "add the new op to CHAINS or MERGES"
    missing = [n for n, op in REGISTRY.items() if type(op).saved is OpDef.saved]
    assert missing == []


@pytest.mark.parametrize(("op", "text"), CASES, ids=[f"{op}-{i}" for i, (op, _) in enumerate(CASES)])
def test_each_op_saves_what_torch_saves(op: str, text: str) -> None:
    for want, got in _formula_and_torch(text, (2, 3)):
        assert want == got


def test_a_learned_tensor_is_a_parameter_never_charged() -> None:
    text = HEAD + "param s: [4, 1, 1] = 1.0\na = x |> conv(4, 1)\nb = mul(a, s)\nc = add(x, s)\noutput y = cat(b, c)\n"
    for want, got in _formula_and_torch(text, (1, 2)):
        assert want == got


# --- what requires grad: frozen layers, --freeze, --freeze-bn eval ------------------------------

FROZEN = HEAD + """a = x |> conv(4, 3, padding=1) @freeze -> batchnorm @freeze -> relu
b = a |> conv(4, 3, padding=1) -> batchnorm @freeze -> relu -> conv(4, 1) @freeze -> layer_scale @freeze
  -> dropout(0.2) -> channel_linear(4) @freeze -> gelu -> channel_linear(4) -> flatten -> linear(3) @freeze
c = a |> conv(4, 1) -> batchnorm(affine=false) -> maxpool(2) -> flatten -> batchnorm -> layernorm -> linear(5)
output y = cat(b, c)
"""


@pytest.mark.parametrize("freeze", [{}, {"freeze": 1}, {"freeze": 1, "freeze_bn": "eval"},
                                    {"freeze": ["b"], "freeze_bn": "eval"}], ids=["spec", "first", "bn-eval", "b"])
def test_frozen_layers_keep_only_what_their_gradients_need(freeze: dict[str, Any]) -> None:
    for want, got in _formula_and_torch(FROZEN, (2, 3), **freeze):
        assert want == got


def test_a_network_that_trains_nothing_saves_nothing() -> None:
    cg = netdsl.build(FROZEN, freeze=3).concrete
    assert saved_total(cg, batch_symbol(cg.env)) == 0


# --- the formulas ----------------------------------------------------------------------------------

CHAIN = HEAD + ("output y = x |> conv(4, 3, padding=1, bias=false) -> relu -> conv(4, 1) -> maxpool(2) "
                "-> batchnorm -> dropout(0.5) -> layernorm -> flatten -> linear(3)\n")


@pytest.mark.parametrize("dtype", ["fp32", *AUTOCAST])
def test_per_layer_bytes_are_charged_to_the_first_layer_that_saves_them(dtype: str) -> None:
    # the second conv keeps what relu kept (its result): charged once, to relu; BatchNorm's
    # statistics do not grow with the batch
    model = netdsl.build(CHAIN)
    cg = model.concrete
    per = saved_bytes(cg, batch_symbol(cg.env), MemoryOptions(dtype=dtype))  # type: ignore[arg-type]
    items = list(cg.walk())
    assert len(per) == len(items)
    for n in (2, 3):
        measured = saved_per_module(model, n, AUTOCAST.get(dtype))
        assert {it.path: at(cg, x, n) for it, x in zip(items, per) if at(cg, x, n)} == measured
    assert per[2] == 0 or dtype != "fp32"  # under autocast it keeps a 16-bit copy of its weight
    assert at(cg, per[4], 2) != 2 * at(cg, per[4], 1)


def test_the_batch_symbol_is_not_a_name_of_the_spec() -> None:
    cg = netdsl.shapes("net T(N = 4)\ninput x: [3, H = 8, W = 8]\noutput y = x |> conv(N, 1) -> relu\n")
    batch = batch_symbol(cg.env)
    assert batch.name == "batch"
    assert saved_total(cg, batch).free_symbols >= {batch}


# --- --dtype bf16 / fp16: what torch.autocast("cpu", dtype) saves -------------------------------

AUTOCAST_SPECS = ["unet", "yolov3-tiny", "convnext_tiny", "mobilenet_v3_small", "resnet18"]


def _under_autocast(model: CompiledNet, dtype: str, batches: tuple[int, ...]) -> list[tuple[int, int]]:
    cg = model.concrete
    total = saved_total(cg, batch_symbol(cg.env), MemoryOptions(dtype=dtype))  # type: ignore[arg-type]
    return [(at(cg, total, n), saved_by_torch(model, n, AUTOCAST[dtype])) for n in batches]


@pytest.mark.parametrize("dtype", list(AUTOCAST))
def test_each_op_under_autocast_saves_what_torch_saves(dtype: str) -> None:
    for op, text in [*CASES, ("frozen", FROZEN)]:
        for want, got in _under_autocast(netdsl.build(text), dtype, (2,)):
            assert want == got, (op, text)


@pytest.mark.parametrize("stem", AUTOCAST_SPECS)
def test_shipped_specs_under_autocast_save_what_torch_saves(stem: str) -> None:
    path = next(p for p in SHIPPED if p.stem == stem)
    model = netdsl.build(path, H=64, W=64)
    for dtype in AUTOCAST:
        for want, got in _under_autocast(model, dtype, (1, 2)):
            assert want == got, dtype


def test_autocast_keeps_a_16_bit_copy_of_the_weight_whatever_the_batch() -> None:
    # conv under autocast keeps 16-bit copies of its float32 input and of its weight: the copy is not
    # the parameter, so it counts, once, whatever the batch
    cg = netdsl.shapes(HEAD + "output y = x |> conv(4, 3, padding=1, bias=false)\n")
    n = batch_symbol(cg.env)
    fp32, bf16 = (saved_total(cg, n, MemoryOptions(dtype=d)) for d in ("fp32", "bf16"))
    assert fp32.subs(n, 0) == 0 and cg.env.at(bf16.subs(n, 0)) > 0


# --- an op without a rule is an error, never a default -------------------------------------------

class _NoRule(OpDef):
    name = "no_rule"
    category = Category.ACTIVATION
    ranks = None

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Identity", {}


@pytest.fixture
def with_no_rule() -> Iterator[None]:
    REGISTRY["no_rule"] = _NoRule()
    yield
    del REGISTRY["no_rule"]


def test_an_op_without_a_rule_is_an_error_at_its_place(with_no_rule: None) -> None:
    cg: ConcreteGraph = netdsl.shapes(HEAD + "output y = x |> conv(4, 1) -> no_rule\n")
    with pytest.raises(NetdslError, match="'no_rule' has no rule for what autograd saves") as e:
        saved_bytes(cg, batch_symbol(cg.env))
    assert e.value.span is not None and e.value.span.line == 3
