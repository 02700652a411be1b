"""The op protocol: one `OpDef` for layers, merges and heads, checked when the registry is built,
and an op's behaviour read from the op only (a new merge op is one class, nothing else to touch)."""
from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import sympy as sp
import torch

import netdsl
from netdsl import ops
from netdsl.concrete import Layer, Merge
from netdsl.ops import REGISTRY, Category, OpDef, build_registry, layers, merges
from netdsl.ops.base import Args, Counts, Shape, units

# Every builtin op at least once: the layers, cat, add, mul and the detect head.
EVERY_OP = """
net Every(C = 4, NC = 2)
input x: [3, H = 32, W = 32]
a = x |> conv(C, 3, padding=1) -> batchnorm -> relu -> relu6 -> sigmoid -> tanh -> silu -> mish
b = a |> hardswish -> identity -> leaky_relu(0.1) -> gelu -> dropout(0.1) -> softmax -> log_softmax
c = b |> maxpool(2) -> avgpool(1) -> convT(C, 2, stride=2) -> upsample(1) -> pad(0)
d = cat(a, c) |> conv(C, 3, stride=2, padding=1)
e = add(d, d) |> conv(C, 3, stride=2, padding=1)
g = mul(e, e) |> hardsigmoid -> stochastic_depth(0.1) -> layernorm -> channel_linear(C) -> layer_scale
k = g |> tokens -> linear(C) -> image(8, 8) -> channel_shuffle(2) -> channel_slice(0, 4) -> channel_chunk(0, 2) -> conv(C, 1)
output boxes = detect(d, e, classes=NC, strides=[2, 4], anchors=[[4, 5], [8, 9]])
m = darknet_shortcut(k, e) |> reorg(2)
u = m |> adaptive_maxpool(2) -> adaptive_avgpool -> flatten -> linear(NC)
s = g |> tokens -> attention(2)
w = attention_qkv(s, s, s, heads=2)
v = w |> token(-1) -> linear(NC)
output f = add(u, v)
psa = e |> conv(3*C, 1) -> psa_attention(2, 2) -> conv(3*C, 1) -> psa_values(2, 2)
p8 = d |> conv(2*4 + NC, 1)
q8 = add(e, psa) |> conv(2*4 + NC, 1)
output v8 = detect_v8(p8, q8, classes=NC, strides=[2, 4], reg_max=2)
"""


@pytest.fixture
def registry() -> Iterator[dict[str, OpDef]]:
    """The one registry, restored after the test whatever it registered."""
    saved = dict(REGISTRY)
    yield REGISTRY
    REGISTRY.clear()
    REGISTRY.update(saved)


# --- the registry refuses an op that leaves out what every op must say -------------------------

class _Good(OpDef):
    name = "good"
    category = Category.ACTIVATION

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Identity", {}


class _NoCategory(OpDef):
    name = "no_category"

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Identity", {}


class _StringCategory(_Good):
    name = "string_category"
    category = "activaton"  # type: ignore[assignment]  # the typo the enum exists to catch


class _NoShape(OpDef):
    name = "no_shape"
    category = Category.ACTIVATION

    def module(self, a: Args, ins: list[tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
        return "Identity", {}


class _NoModule(OpDef):
    name = "no_module"
    category = Category.ACTIVATION

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]


class _MergeWithoutCombine(_NoModule):
    name = "no_combine"
    category = Category.MERGE
    min_inputs, max_inputs = 2, None


class _NoInputs(_Good):
    name = "no_inputs"
    min_inputs = 0


class _Backwards(_Good):
    name = "backwards"
    min_inputs, max_inputs = 3, 2


class _Unnamed(_Good):
    name = ""


@pytest.mark.parametrize(("op", "message"), [
    (_NoCategory(), "category must be a Category"),
    (_StringCategory(), "category must be a Category"),
    (_NoShape(), "no shape rule"),
    (_NoModule(), "needs a module"),
    (_MergeWithoutCombine(), "needs a module or a combine"),
    (_NoInputs(), "bad arity"),
    (_Backwards(), "bad arity"),
    (_Unnamed(), "no name"),
])
def test_the_registry_refuses_an_incomplete_op(op: OpDef, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        build_registry([_Good(), op])


def test_the_registry_refuses_a_name_given_twice() -> None:
    assert list(build_registry([_Good()])) == ["good"]
    with pytest.raises(TypeError, match="two ops named 'good'"):
        build_registry([_Good(), _Good()])


def test_the_builtin_registry_passes_its_own_checks() -> None:
    assert build_registry(REGISTRY.values()) == REGISTRY


# --- every registered op answers every question -------------------------------------------------

def test_every_op_answers_the_protocol() -> None:
    assert set(layers()) | set(merges()) == set(REGISTRY) and not set(layers()) & set(merges())
    for name, op in REGISTRY.items():
        assert op.name == name and op.doc and isinstance(op.category, Category)
        assert op.min_inputs >= 1 and (op.max_inputs is None or op.max_inputs >= op.min_inputs)
        assert op.starts_statement == (name in merges())
        assert op.darknet_role in (None, "conv", "bn", "head")
        assert op.task in (None, "detect") and isinstance(op.running_stats, bool)
        assert isinstance(op.match_axes(3), range) and isinstance(op.source(["a", "b"]), str)
        assert op.node_path("x") in ("x", f"x({name})")
        what, hint = op.mismatch_text
        assert isinstance(what, str) and isinstance(hint, str) and isinstance(op.symbol, str)
        one, three, four = sp.Integer(1), sp.Integer(3), sp.Integer(4)
        assert op.stretches(one, four) == (name in ("add", "mul")) and not op.stretches(three, four)


def test_every_op_computes_its_shape_counts_and_module_in_a_network() -> None:
    cg = netdsl.shapes(EVERY_OP)
    seen = set()
    for x in cg.walk():
        seen.add(x.op.name)
        ins = [x.in_shape] if isinstance(x, Layer) else [cg.tensors[i] for i in x.inputs]
        if isinstance(x, Layer):
            assert tuple(x.op.shape(x.sym, ins)) == tuple(x.out_shape)
        else:  # a merge keeps its arguments as plain values: compare at the values in use
            assert cg.at(tuple(x.op.shape(x.args, ins))) == list(x.out_at)
        assert isinstance(x.counts, Counts) and isinstance(x.connections, sp.Expr)
        made = x.module_spec()
        if isinstance(x, Layer) or x.op.final or x.op.alone:
            assert made is not None and isinstance(made[0], str) and isinstance(made[1], dict)
        else:
            assert made is None  # cat and add combine their inputs themselves
    assert seen == set(REGISTRY), f"EVERY_OP misses {sorted(set(REGISTRY) - seen)}"
    m = netdsl.build(EVERY_OP).eval()
    with torch.no_grad():
        boxes, f, v8 = m(torch.randn(1, 3, 32, 32))
    assert tuple(f.shape) == (1, 2) and boxes[0].shape[-1] == 7 and tuple(v8[0].shape) == (1, 6, 16 * 16 + 8 * 8)


def test_what_an_op_does_is_the_ops_answer() -> None:
    cat, add, detect, conv, bn = (REGISTRY[n] for n in ("cat", "add", "detect", "conv", "batchnorm"))
    a, b = torch.ones(1, 2, 3, 3), torch.full((1, 2, 3, 3), 2.0)
    assert torch.equal(cat.combine([a, b], torch), torch.cat([a, b], 1))
    assert torch.equal(add.combine([a, b, b], torch), a + 2 * b)
    assert cat.source(["a", "b"]) == "torch.cat((a, b), dim=1)" and add.source(["a", "b"]) == "a + b"
    assert (conv.darknet_role, bn.darknet_role, detect.darknet_role, REGISTRY["convT"].darknet_role) == \
        ("conv", "bn", "head", None)
    assert bn.running_stats and not conv.running_stats
    assert detect.task == "detect" and detect.final and detect.category == "conv"
    assert cat.node_path("x") == "x(cat)" and detect.node_path("x") == "x"
    assert (add.symbol, cat.symbol or cat.name) == ("+", "cat")


# --- a merge op defined here works end to end --------------------------------------------------

class Mul(OpDef):
    """The element-wise product: one class, registered, and every pass and the backend know it."""

    name = "mul"
    doc = "mul(a, b, ...): element-wise product of tensors of one shape"
    category = Category.MERGE
    min_inputs, max_inputs = 2, None

    def shape(self, a: Args, ins: list[Shape]) -> Shape:
        return ins[0]

    def connections(self, a: Args, ins: list[Shape], out: Shape, c: Counts) -> sp.Expr:
        return sp.expand(units(out) * (len(ins) - 1))

    def combine(self, xs: list[Any], torch: ModuleType) -> Any:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out

    def source(self, inputs: list[str]) -> str:
        return " * ".join(inputs)


GATED = """
net Gated(C = 4)
input x: [3, H = 8, W = 8]
a = x |> conv(C, 3, padding=1)
g = x |> conv(C, 1) -> sigmoid
output = mul(a, g) |> conv(2, 1)
"""


def test_a_merge_op_is_one_class(registry: dict[str, OpDef]) -> None:
    registry["mul"] = Mul()
    build_registry(registry.values())
    cg = netdsl.shapes(GATED)
    merge = cg.statements[-1].merge
    assert isinstance(merge, Merge) and merge.op.name == "mul" and merge.path == "output(mul)"
    assert cg.at(cg.output_shape) == [2, 8, 8]
    c = netdsl.count(GATED, C=4)
    row = next(r for r in c.layers if r.op == "mul")
    assert row.category == "merge" and c.value(row.connections) == 4 * 8 * 8
    model = netdsl.build(GATED).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = model.output(model.a(x) * model.g(x))
        assert torch.allclose(model(x), want)


def test_a_merge_op_is_checked_like_the_builtin_ones(registry: dict[str, OpDef]) -> None:
    registry["mul"] = Mul()
    with pytest.raises(netdsl.NetdslError, match="mul\\(\\) of tensors whose shapes differ"):
        netdsl.shapes(GATED.replace("conv(C, 1) -> sigmoid", "conv(C, 1, stride=2) -> sigmoid"))
    with pytest.raises(netdsl.NetdslError, match="mul\\(\\) needs at least 2 tensors"):
        netdsl.shapes(GATED.replace("mul(a, g)", "mul(a)"))


def test_a_merge_op_of_fixed_arity_is_held_to_it(registry: dict[str, OpDef]) -> None:
    class BinaryMul(Mul):
        max_inputs = 2

    registry["mul"] = BinaryMul()
    assert netdsl.shapes(GATED).at(netdsl.shapes(GATED).output_shape) == [2, 8, 8]
    with pytest.raises(netdsl.NetdslError, match="mul\\(\\) takes at most 2 tensors"):
        netdsl.shapes(GATED.replace("mul(a, g)", "mul(a, g, g)"))


def test_without_the_op_the_spec_is_refused(registry: dict[str, OpDef]) -> None:
    del registry["mul"]  # a builtin now: taken out, the spec that uses it is refused
    with pytest.raises(netdsl.NetdslError, match="unknown merge 'mul'"):
        netdsl.shapes(GATED)


def test_the_package_lists_every_family() -> None:
    for family in ops._FAMILIES:
        assert all(REGISTRY[op.name] is op for op in family.OPS)


def test_every_registered_op_states_what_autograd_saves() -> None:
    # passes.saved asks the op; an op without its own rule is an error there, never a default
    # (each rule is measured against torch in tests/analysis/test_saved_bytes.py)
    assert [name for name, op in REGISTRY.items() if type(op).saved is OpDef.saved] == []


def test_every_registered_op_states_what_an_eval_forward_allocates() -> None:
    # passes.peak asks the op; an op without its own rule is an error there, never a default
    # (each rule is measured against torch in tests/analysis/test_peak_bytes.py)
    assert [name for name, op in REGISTRY.items() if type(op).allocates is OpDef.allocates] == []
