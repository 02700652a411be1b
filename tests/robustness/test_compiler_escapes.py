"""Wrong answers and escapes in the compiler, each reproduced as the hostile user found it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.errors import NetdslError
from netdsl.passes.counts import count_layers

ROOT = Path(__file__).resolve().parents[2]


# --- 1. --double-resolution counts the doubled network, or says which assumption breaks ---------

def test_doubling_that_breaks_an_odd_size_assumption_is_an_error_at_it() -> None:
    spec = "net D1(C = 3)\ninput x: [C, H = 31, W = 31] where H % 2 == 1, W % 2 == 1\noutput = x |> maxpool(2)"
    c = netdsl.count(spec)
    with pytest.raises(NetdslError, match="doubling the input breaks this assumption: H % 2 == 1") as e:
        c.total("outputs", doubled=True)
    assert (e.value.span.line, e.value.span.column) == (2, 36)


def test_doubling_a_fixed_size_is_an_error_at_it() -> None:
    spec = "net D2(C = 3)\ninput x: [C, H = 32, W = 32] where H == 32, W == 32\noutput = x |> conv(C, 3, padding=1)"
    with pytest.raises(NetdslError, match="H == 32 does not hold"):
        netdsl.count(spec).total("outputs", doubled=True)


@pytest.mark.parametrize("h", [31, 32, 33])
def test_doubled_counts_are_those_of_the_network_built_at_twice_the_size(h: int) -> None:
    spec = f"net D3(C = 3)\ninput x: [C, H = {h}, W = {h}]\na = x |> maxpool(2)\noutput = a |> conv(C, 3, stride=2)"
    c = netdsl.count(spec)
    big = netdsl.count(spec, H=2 * h, W=2 * h)
    for metric in ("outputs", "connections", "weights"):
        assert c.value(c.total(metric, doubled=True)) == big.value(big.total(metric))
    m = netdsl.build(spec, H=2 * h, W=2 * h)
    units = sum(y.numel() // 2 for y in [m.a(torch.zeros(2, 3, 2 * h, 2 * h))])
    assert units == big.value(big.layers[0].outputs)


def test_doubled_claim_of_a_correct_formula_holds() -> None:
    spec = ("net D4(C = 3)\ninput x: [C, H = 32, W = 32] where H % 4 == 0, W % 4 == 0\n"
            "output = x |> conv(C, 3, padding=1)\nclaim outputs(doubled=true) == C*4*H*W")
    (claim,) = netdsl.count(spec).claims
    assert claim.holds


# --- 2. solve compares floor forms for every H, not as written ---------------------------------

def test_solve_finds_paddings_whose_shapes_sympy_writes_differently() -> None:
    spec = """net S3(C = 2)
input x: [C, H = 16, W = 16]
a: [C, (H+1)//2, (W+1)//2] = x |> conv(C, 3, stride=2, padding=?)
output: [C, (H+3)//4, (W+3)//4] = a |> conv(C, 3, stride=2, padding=?)
"""
    r = netdsl.solve(spec)
    assert r.status == "unique" and r.solutions == [(1, 1)]
    for h in range(1, 40):  # and torch agrees
        m = netdsl.build(spec.replace("?", "1"), H=h, W=h)
        assert m(torch.zeros(1, 2, h, h)).shape[2] == (h + 3) // 4


def test_annotation_in_another_floor_form_is_accepted_for_every_size() -> None:
    spec = "net A(C = 2)\ninput x: [C, H = 16, W = 16]\noutput: [C, (H+1)//2, (W+1)//2] = x |> conv(C, 3, stride=2, padding=1)"
    assert netdsl.shapes(spec).notes == []


# --- 3. max-pool padding with dilation: PyTorch's rule is padding <= kernel // 2 ---------------

def test_maxpool_padding_rule_ignores_dilation() -> None:
    with pytest.raises(NetdslError, match="padding=2 must be at most half the kernel") as e:
        netdsl.build("net P()\ninput x: [1, H = 16, W = 16]\noutput = x |> maxpool(3, stride=1, padding=2, dilation=2)")
    assert (e.value.span.line, e.value.span.column) == (3, 44)
    r = netdsl.solve("net P()\ninput x: [1, H = 16, W = 16]\n"
                     "output: [1, H, W] = x |> maxpool(3, stride=1, padding=?, dilation=2)")
    assert r.holes[0].high == 1 and r.status == "none"


# --- 4, 5. names that would become nn.Module attributes ------------------------------------------

@pytest.mark.parametrize("label", ["forward", "training", "cuda", "state_dict", "_modules", "_parameters",
                                   "dump_patches", "T_destination", "call_super_init", "append", "_netdsl_plan"])
def test_a_label_that_is_a_module_attribute_is_a_located_error(label: str) -> None:
    with pytest.raises(NetdslError, match=f"'{label}' clashes with an attribute") as e:
        netdsl.build(f"net L(C = 2)\ninput x: [C, H = 4, W = 4]\noutput = x |> relu -> {label}: conv(C, 1)")
    assert (e.value.span.line, e.value.span.column) == (3, 23)


@pytest.mark.parametrize("name", ["_netdsl_plan", "training", "concrete", "spec_name"])
def test_a_tensor_name_that_is_a_module_attribute_is_a_located_error(name: str) -> None:
    with pytest.raises(NetdslError, match="clashes with an attribute") as e:
        netdsl.build(f"net L(C = 2)\ninput x: [C, H = 4, W = 4]\n{name} = x |> relu\noutput = {name}")
    assert (e.value.span.line, e.value.span.column) == (3, 1)


def test_names_the_old_class_took_are_free_now() -> None:
    m = netdsl.build("net L(C = 2)\ninput x: [C, H = 4, W = 4]\n_plan = x |> relu\noutput = _plan |> conv(C, 1)")
    assert m(torch.zeros(1, 2, 4, 4)).shape == (1, 2, 4, 4)


# --- misleading messages ----------------------------------------------------------------------

def test_merge_caret_starts_at_the_merge_name() -> None:
    with pytest.raises(NetdslError) as e:
        netdsl.build("net M()\ninput x: [1, H = 4, W = 4]\na = x |> maxpool(2)\noutput = cat(   x,   a  ) |> relu")
    assert (e.value.span.line, e.value.span.column) == (4, 10)
    with pytest.raises(NetdslError) as e:
        netdsl.build("net M()\ninput x: [1, H = 4, W = 4]\na = x |> maxpool(2)\noutput = cat(\n  x,\n  a) |> relu")
    assert (e.value.span.line, e.value.span.column, e.value.span.end_line) == (4, 10, 6)


def test_conditions_render_as_written() -> None:
    with pytest.raises(NetdslError, match=r"the condition H % 2 == 1 does not hold for H=8"):
        netdsl.build("net C()\ninput x: [1, H = 8, W = 9] where H % 2 == 1\noutput = x |> relu")


def test_counts_of_a_structural_spec_match_torch_at_other_values() -> None:
    spec = "net R(N = 2)\ninput x: [1, H = 8, W = 8]\noutput = x |> conv(2, 3, padding=1) * N"
    for n in (0, 1, 3):
        c = count_layers(netdsl.shapes(spec, N=n))
        assert c.value(c.total("parameters")) == sum(p.numel() for p in netdsl.build(spec, N=n).parameters())


# --- 8. every API entry point checks its parameter values --------------------------------------

@pytest.mark.parametrize("value", ["5", 5.5, True, None, 10**30])
@pytest.mark.parametrize("entry", [netdsl.build, netdsl.shapes, netdsl.count, netdsl.parse, netdsl.solve])
def test_api_parameters_must_be_integers(entry, value: object) -> None:  # noqa: ANN001 - an API function
    with pytest.raises(NetdslError, match="parameter 'k'"):
        entry(ROOT / "specs" / "unet.net", k=value)


def test_sizes_that_nest_too_deeply_are_a_located_error() -> None:
    # Found by the fuzzer: a thousand stride-2 convolutions built sizes SymPy recursed on without end.
    spec = ("net D()\ninput x: [1, H = 32, W = 32] where H % 4 == 0, W % 4 == 0\n"
            "block down(c) = conv(c, 3, stride=2, padding=1)\noutput = x |> down(2) * 1000")
    with pytest.raises(NetdslError, match="nest more than 60 operations deep") as e:
        netdsl.shapes(spec)
    assert (e.value.span.line, e.value.span.column) == (3, 17) and "where H % 64 == 0" in e.value.hint


@pytest.mark.parametrize(("k", "s", "p"), [(3, 2, 1), (3, 2, 0), (2, 2, 0), (2, 3, 1), (1, 3, 0), (3, 5, 1), (2, 4, 1)])
def test_ceil_mode_pooling_sizes_are_torchs_for_every_size(k: int, s: int, p: int) -> None:
    # Windows starting in the right padding are dropped by PyTorch; decided symbolically, and
    # quickly: 16 such pools in a row once took minutes (fuzzer).
    spec = f"net P()\ninput x: [1, H = 20, W = 20]\noutput = x |> maxpool({k}, stride={s}, padding={p}, ceil_mode=true)"
    r = netdsl.shapes(spec)
    h = r.env.symbols["H"]
    for size in range(max(1, k - 2 * p), 40):
        want = torch.nn.functional.max_pool2d(torch.zeros(1, 1, size, size), k, s, p, ceil_mode=True).shape[2]
        assert r.output_shape[1].xreplace({h: size}) == want, (size, r.output_shape[1])
    deep = "net P()\ninput x: [1, H = 8, W = 8]\noutput = x |> maxpool(3, stride=2, padding=1, ceil_mode=true) * 16"
    got = netdsl.shapes(deep)
    assert got.at(got.output_shape) == list(netdsl.build(deep)(torch.zeros(1, 1, 8, 8)).shape[1:])
