"""Core v2: the op registry, tensors of any rank, several inputs and outputs, graph blocks,
indexed repetition, conditionals and attributes. torch is the oracle for shapes and counts."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import netdsl
from netdsl import ir
from netdsl.errors import NetdslError
from netdsl.ops import REGISTRY, OpDef
from torch_oracle import check_against_torch

# Every new op and option: pairs, ceil_mode, count_include_pad, adaptive pooling, pad with -inf,
# the new activations, flatten, linear, batchnorm on features, softmax over the channels.
CLASSIFIER = """
net Cls(C = 4, NCLS = 5)
input x: [3, H = 23, W = 17]
a = x |> conv(C, (3, 1), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=false) -> batchnorm -> relu6
b = a |> maxpool((3, 2), stride=2, padding=1, ceil_mode=true) -> silu -> pad(1, 0, 2, 1, value=-inf)
c = b |> avgpool(3, stride=2, padding=1, ceil_mode=true, count_include_pad=false) -> hardswish -> gelu(approximate="tanh")
d = c |> adaptive_maxpool(3, 2) -> adaptive_avgpool -> identity -> flatten
output = d |> linear(2*C) -> batchnorm -> relu -> dropout(0.1) -> linear(NCLS, bias=false) -> log_softmax
"""


def _hook_shapes(model: nn.Module, *inputs: torch.Tensor) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, list(out.shape[1:])))
             for name, m in model.named_modules() if not list(m.children())]
    with torch.no_grad():
        model.eval()(*inputs)
    for h in hooks:
        h.remove()
    return seen


def test_every_new_op_compiles_with_the_shapes_torch_computes() -> None:
    r = netdsl.shapes(CLASSIFIER)
    m = netdsl.build(CLASSIFIER)
    seen = _hook_shapes(m, torch.zeros(2, 3, 23, 17))
    for layer in r.layers:
        assert seen[layer.path] == list(layer.out_at), layer.path
    assert r.at(r.output_shape) == [5] and r.show(r.output_shape) == [r.env.symbols["NCLS"]]
    assert isinstance(m.output[1], nn.BatchNorm1d) and isinstance(m.b[2], nn.ConstantPad2d)
    assert m.b[2].value == float("-inf") and m.c[0].ceil_mode and not m.c[0].count_include_pad


@pytest.mark.parametrize(("h", "w"), [(23, 17), (8, 8), (31, 40)])
def test_every_new_op_counts_what_torch_has(h: int, w: int) -> None:
    check_against_torch(CLASSIFIER, H=h, W=w)


def test_registry_ops_each_declare_their_rules() -> None:
    for name, op in REGISTRY.items():
        assert isinstance(op, OpDef) and op.name == name and op.doc and op.category
        for a in op.args:
            assert a.required or a.default is not None or a.default_from is not None


def test_softmax_dim_counts_the_batch_and_is_checked() -> None:
    m = netdsl.build("net S()\ninput v: [6]\noutput = v |> softmax")
    assert torch.allclose(m(torch.randn(3, 6)).sum(dim=1), torch.ones(3))
    with pytest.raises(NetdslError, match="dim=2 is out of range") as e:
        netdsl.build("net S()\ninput v: [6]\noutput = v |> softmax(dim=2)")
    assert (e.value.span.line, e.value.span.column) == (3, 27)


@pytest.mark.parametrize(("body", "words", "col"), [
    ("output = x |> linear(3)", "'linear' takes features [F] or a sequence [T, D], but its input is an image", 15),
    ("output = x |> flatten -> conv(3, 1)", "'conv' takes an image [C, H, W], but its input is features", 26),
    ("output = x |> flatten -> maxpool(2)", "'maxpool' takes an image", 26),
])
def test_rank_mismatch_is_a_located_error(body: str, words: str, col: int) -> None:
    with pytest.raises(NetdslError, match=re.escape(words)) as e:
        netdsl.build(f"net R()\ninput x: [3, H = 8, W = 8]\n{body}")
    assert (e.value.span.line, e.value.span.column) == (3, col) and e.value.hint


def test_several_inputs_and_outputs() -> None:
    spec = """net Two(C = 4)
input a: [3, H = 8, W = 8]
input b: [1, H, W]
f = cat(a, b) |> conv(C, 3, padding=1) -> relu
output p1 = f |> conv(2, 1)
output p2 = f |> maxpool(2) -> flatten -> linear(7)
"""
    m = netdsl.build(spec)
    x, y = torch.randn(2, 3, 8, 8), torch.randn(2, 1, 8, 8)
    p1, p2 = m(x, y)
    assert p1.shape == (2, 2, 8, 8) and p2.shape == (2, 7)
    assert m.inputs == {"a": (3, 8, 8), "b": (1, 8, 8)} and m.outputs == {"p1": (2, 8, 8), "p2": (7,)}
    assert torch.equal(p1, m.p1(m.f(torch.cat([x, y], dim=1))))
    from netdsl.commands.build import build_report

    report, _ = build_report(spec, None, {})
    assert [o["name"] for o in report["outputs"]] == ["p1", "p2"] and "output_shape" not in report
    assert [i["shape"] for i in report["inputs"]] == [[3, 8, 8], [1, 8, 8]]
    with pytest.raises(TypeError, match="takes 2 inputs"):
        m(x)
    from netdsl.commands.count import count_report

    counted, _, _ = count_report(spec, None, {})
    assert [(o["name"], o["shape"], o["at"]) for o in counted["outputs"]] == \
        [("p1", ["2", "H", "W"], [2, 8, 8]), ("p2", ["7"], [7])]


RESNETISH = """net Res(C = 8, N = 3)
input x: [3, H = 16, W = 16] where H % 4 == 0, W % 4 == 0
block proj(c, s) = conv(c, 1, stride=s, bias=false) -> batchnorm
block unit(c, s = 1, down = 1 if s != 1 else 0) {
  input x
  main = x |> conv(c, 3, stride=s, padding=1, bias=false) -> batchnorm -> relu
  skip = x |> proj(c, s) * down
  output = add(main, skip) |> relu
}
stem = x |> conv(C, 3, padding=1)
body = stem |> unit(2*C, s = 2 if i == 0 else 1) * N as i
output = body |> adaptive_avgpool -> flatten -> linear(10)
"""


def test_graph_blocks_nest_modules_and_compute_their_graph() -> None:
    m = netdsl.build(RESNETISH)
    assert [n for n, _ in m.body.named_children()] == ["0", "1", "2"]
    first, second = m.body[0], m.body[1]
    assert first._get_name() == "unit" and [n for n, _ in first.named_children()] == ["main", "skip", "output"]
    assert "skip" not in dict(second.named_children())  # `* down` with down = 0: no projection
    assert first.main[0].stride == (2, 2) and second.main[0].stride == (1, 1)
    x = torch.randn(2, 8, 16, 16)
    first.eval()
    with torch.no_grad():
        assert torch.allclose(first(x), torch.relu(first.main(x) + first.skip(x)))
    check_against_torch(RESNETISH, C=2, N=2, H=8, W=12)


def test_structural_parameters_are_held_at_their_values() -> None:
    r = netdsl.shapes(RESNETISH, N=2)
    assert any("N decides the network's structure" in n for n in r.notes)
    c = netdsl.count(RESNETISH, N=2)
    assert "N" not in {str(s) for s in c.total("weights").free_symbols}
    assert c.value(c.total("parameters")) == sum(p.numel() for p in netdsl.build(RESNETISH, N=2).parameters())


def test_freeze_attribute_on_layers_blocks_and_statements() -> None:
    spec = """net F()
input x: [3, H = 8, W = 8]
block cb(c) = conv(c, 3, padding=1) -> batchnorm
@freeze a = x |> conv(4, 1)
b = a |> cb(4) -> l: cb(4) @freeze -> conv(2, 1) @freeze
output = b |> conv(2, 1)
"""
    m = netdsl.build(spec)
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen == {"a.weight", "a.bias", "b.l_0.weight", "b.l_0.bias", "b.l_1.weight", "b.l_1.bias",
                      "b.4.weight", "b.4.bias"}
    g = netdsl.parse(spec)
    assert g.nodes[0].layers[0].attrs == ["freeze"]
    assert ir.Graph.model_validate_json(g.model_dump_json()) == g
    with pytest.raises(NetdslError, match="unknown attribute '@frozen'") as e:
        netdsl.build("net F()\ninput x: [3, H = 8, W = 8]\noutput = x |> conv(4, 1) @frozen")
    assert e.value.span.column == 26 and "did you mean 'freeze'" in e.value.hint


@pytest.mark.parametrize(("body", "words", "line", "col"), [
    ("block b() {\n  input y\n  z = y |> relu\n}\noutput = x |> b", "graph block 'b' has no result", 3, 1),
    ("block b() {\n  input y\n  output q = y |> relu\n}\noutput = x |> b", "one result", 5, 3),
    ("output = x |> relu * 1000000000", "repetition count must be an integer from 0 to 1000", 3, 22),
    ("block b() = b\noutput = x |> b", "unknown op or block 'b'", 3, 13),
    ("output = x |> conv(4, 3, padding=(1, 1, 1))", "unexpected ','", 3, 39),
    ("output = x |> conv(4, 3, groups=(1, 2))", "takes one integer, not a pair", 3, 33),
    ("output = x |> conv(4, 1) * 2 as H", "the index name 'H' is already a name here", 3, 33),
])
def test_graph_block_and_repetition_errors(body: str, words: str, line: int, col: int) -> None:
    with pytest.raises(NetdslError, match=words) as e:
        netdsl.build(f"net E()\ninput x: [3, H = 8, W = 8]\n{body}")
    assert (e.value.span.line, e.value.span.column) == (line, col), e.value.render()


def test_blocks_nesting_too_deeply_is_located() -> None:
    lines = ["net D()", "input x: [1, H = 4, W = 4]", "block b0(c) = relu"]
    lines += [f"block b{i}(c) = b{i - 1}(c)" for i in range(1, 600)]
    lines.append("output = x |> b599(1)")
    with pytest.raises(NetdslError, match="blocks nest more than 64 deep") as e:
        netdsl.build("\n".join(lines))
    assert e.value.span is not None and e.value.span.line > 3


def test_conditional_expression_picks_a_branch_and_is_rejected_where_symbolic() -> None:
    m = netdsl.build("net I(k = 3)\ninput x: [1, H = 8, W = 8]\noutput = x |> conv(2, k, padding=1 if k == 3 else 2)")
    assert m.output.padding == (1, 1)
    assert m(torch.zeros(1, 1, 8, 8)).shape == (1, 2, 8, 8)
    r = netdsl.shapes("net I(k = 5)\ninput x: [1, H = 8, W = 8]\noutput = x |> conv(2, k, padding=1 if k == 3 else 2)")
    assert r.at(r.output_shape) == [2, 8, 8] and any("k decides" in n for n in r.notes)
