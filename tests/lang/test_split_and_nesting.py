"""Several results from one statement (`a, b = x |> split(2)`), nested merges, their errors and
the "did you mean" distance."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netdsl
from export_roundtrip import onnx_round_trip, python_round_trip
from netdsl.errors import NetdslError
from netdsl.passes.names import closest, edit_distance

HEAD = "net T(C = 8)\ninput x: [6, H = 8, W = 8]\n"


def _run(body: str, x: torch.Tensor) -> torch.Tensor:
    model = netdsl.build(HEAD + body).eval()
    with torch.no_grad():
        out: torch.Tensor = model(x)
    return out


def test_equal_parts_are_torch_chunk() -> None:
    x = torch.randn(2, 6, 8, 8)
    got = _run("a, b, c = x |> split(3)\noutput = cat(c, a, b)\n", x)
    parts = x.chunk(3, dim=1)
    assert torch.equal(got, torch.cat((parts[2], parts[0], parts[1]), dim=1))


def test_sizes_and_discarded_parts() -> None:
    x = torch.randn(2, 6, 8, 8)
    got = _run("a, _, c = x |> split([1, 2, 3])\noutput = cat(c, a)\n", x)
    assert torch.equal(got, torch.cat((x[:, 3:6], x[:, 0:1]), dim=1))
    g = netdsl.parse(HEAD + "a, _, c = x |> split([1, 2, 3])\noutput = cat(c, a)\n")
    assert [n.name for n in g.nodes] == ["a", "c", "output"]  # `_` names no statement


def test_the_chain_before_split_is_one_statement_named_after_the_parts() -> None:
    spec = HEAD + "a, b = x |> conv(C, 1) -> relu -> split(2)\noutput = cat(b, a)\n"
    model = netdsl.build(spec).eval()
    assert set(model.state_dict()) == {"a_b.0.weight", "a_b.0.bias"}
    x = torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        h = torch.relu(torch.nn.functional.conv2d(x, model.state_dict()["a_b.0.weight"], model.state_dict()["a_b.0.bias"]))
        a, b = h.chunk(2, dim=1)
        assert torch.equal(model(x), torch.cat((b, a), dim=1))
    # one named part: `a_split`; a name the user took elsewhere is never reused
    g = netdsl.parse(HEAD + "a_split = x\na, _ = add(x, a_split) |> split(2)\noutput = a\n")
    assert [n.name for n in g.nodes] == ["a_split", "a_split_2", "a", "output"]


def test_split_in_a_graph_block_is_a_shufflenet_unit() -> None:
    spec = HEAD + ("block unit(c) {\n  input x\n  a, b = x |> split(2)\n  t = b |> conv(c, 1)\n"
                   "  output = cat(a, t) |> channel_shuffle(2)\n}\noutput = x |> unit(3)\n")
    model = netdsl.build(spec).eval()
    w, bias = model.state_dict()["output.t.weight"], model.state_dict()["output.t.bias"]
    x = torch.randn(2, 6, 8, 8)
    a, b = x.chunk(2, dim=1)
    y = torch.cat((a, torch.nn.functional.conv2d(b, w, bias)), dim=1)
    want = y.view(2, 2, 3, 8, 8).transpose(1, 2).reshape(2, 6, 8, 8)  # torchvision's channel_shuffle
    with torch.no_grad():
        assert torch.equal(model(x), want)


def test_nested_merges() -> None:
    x = torch.randn(2, 6, 8, 8)
    got = _run("a, b = x |> split(2)\ny = add(x, cat(b, mul(a, add(a, b))))\noutput = y\n", x)
    a, b = x.chunk(2, dim=1)
    assert torch.equal(got, x + torch.cat((b, a * (a + b)), dim=1))
    g = netdsl.parse(HEAD + "a, b = x |> split(2)\ny = add(x, cat(b, mul(a, a)))\noutput = y\n")
    assert [(n.name, n.merge) for n in g.nodes][2:5] == [("y_mul", "mul"), ("y_cat", "cat"), ("y", "add")]


def test_existing_names_and_keys_do_not_change_with_nesting() -> None:
    flat = netdsl.build(HEAD + "c = cat(x, x)\ny = add(c, c) |> conv(4, 1)\noutput = y\n")
    nested = netdsl.build(HEAD + "y = add(cat(x, x), cat(x, x)) |> conv(4, 1)\noutput = y\n")
    assert list(flat.state_dict()) == list(nested.state_dict()) == ["y.weight", "y.bias"]


def test_export_round_trips(tmp_path: Path) -> None:
    spec = HEAD + ("block unit(c) {\n  input x\n  a, b = x |> split(2)\n  t = b |> conv(c, 1)\n"
                   "  output = add(x, cat(a, t)) |> channel_shuffle(2)\n}\n"
                   "a, b = x |> conv(C, 1) -> split([3, 5])\nc, _ = x |> unit(3) -> split(2)\nd = b |> channel_slice(0, 3)\n"
                   "output = cat(add(a, c), mul(d, c))\n")
    python_round_trip(spec, tmp_path)
    onnx_round_trip(spec, tmp_path)


ERRORS = [
    ("y = x |> split(2)\noutput = y", "3:10", "split makes several tensors", "a, b = x |> split(2)"),
    ("y = x |> chunk(2)\noutput = y", "3:10", "unknown op 'chunk': channels are split", "a, b = x |> split(2)"),
    ("a, b = x |> split(3)\noutput = a", "3:1", "2 names for a split into 3 parts", "one name per part (3)"),
    ("a, b, c = x |> split([1, 5])\noutput = a", "3:1", "3 names for a split into 2 parts", "one name per size"),
    ("a, b = x |> split(2) -> relu\noutput = a", "3:25", "split must be the last layer", "statements of their own"),
    ("a, b = x |> relu\noutput = a", "3:13", "does not end with split", "-> split(...)"),
    ("a, b = x |> split(4)\noutput = a", "3:1", "2 names for a split into 4 parts", ""),
    ("a, b = x |> split([2, 3])\noutput = a", "3:19", "the parts add up to 5 channels, but the tensor has 6",
     "add up to 6"),
    ("a, b = x |> split(4, 2)\noutput = a", "3:13", "split takes one argument", ""),
    ("a, b = x |> split(\"2\")\noutput = a", "3:19", "number of parts or a list of sizes", ""),
    ("a, a = x |> split(2)\noutput = a", "3:4", "duplicate name 'a'", ""),
    ("_, _ = x |> split(2)\noutput = x", "3:1", "every part of this split is discarded", "name at least one"),
    ("a, output = x |> split(2)", "3:4", "cannot be the network's output", "output = NAME"),
    ("a, _ = x |> split(2)\noutput = _", "4:10", "unknown tensor '_'", "discards a part of a split"),
    ("a, b: [3, H, W] = x |> split(2)\noutput = a", "3:7", "cannot be annotated", ""),
    ("y = chunk(x, 2)\noutput = y", "3:14", "a tensor is expected here", "a, b = x |> split(2)"),
    ("y = chunk(x, n=2)\noutput = y", "3:5", "unknown merge 'chunk'", "a, b = x |> split(2)"),
    ("y = add(x, detect(x))\noutput = y", "3:12", "cannot be another merge's operand", "output = detect"),
    ("a, b = x |> split(5)\noutput = a", "3:1", "2 names for a split into 5 parts", ""),
    ("a, b, c, d, e = x |> split(5)\noutput = a", "3:28", "do not divide into n=5 equal parts", ""),
    ("y = x |> hardsigmod\noutput = y", "3:10", "unknown op or block 'hardsigmod'", "did you mean 'hardsigmoid'"),
]


@pytest.mark.parametrize(("body", "where", "message", "hint"), ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_errors_are_located_and_say_what_to_write(body: str, where: str, message: str, hint: str) -> None:
    with pytest.raises(NetdslError) as info:
        netdsl.shapes(HEAD + body + "\n")
    e = info.value
    assert e.span is not None and f"{e.span.line}:{e.span.column}" == where, e.render()
    assert message in e.message, e.render()
    assert hint in (e.hint or ""), e.render()


def test_split_in_a_linear_block_is_refused() -> None:
    with pytest.raises(NetdslError, match="split makes several tensors") as info:
        netdsl.shapes(HEAD + "block b() = relu -> split(2)\noutput = x |> b\n")
    assert info.value.span is not None and info.value.span.line == 3
    with pytest.raises(NetdslError, match="block 'split' shadows the builtin"):
        netdsl.shapes(HEAD + "block split() = relu\noutput = x |> split\n")


def test_did_you_mean_offers_only_near_names() -> None:
    assert edit_distance("frozen", "freeze") == 3 and edit_distance("kitten", "sitting") == 3
    assert closest("hardsigmoid", ["sigmoid", "relu"]) is None
    assert closest("scale", ["upsample", "sigmoid"]) is None
    assert closest("chunk", ["cat", "add", "mul"]) is None
    assert closest("frozen", ["freeze"]) == "freeze"
    assert closest("Conv", ["conv", "convT"]) == "conv"
    assert closest("rel", ["relu", "selu"]) == "relu"
    assert closest("weigths", ["weights", "biases"]) == "weights"
    with pytest.raises(NetdslError) as info:
        netdsl.shapes(HEAD + "output = x |> scale(2)\n")
    assert "did you mean" not in (info.value.hint or "")
