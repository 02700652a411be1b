"""Learned tensors: `param NAME: [dims] = INIT`, at top level and in graph blocks, read by name.

A learned tensor is an nn.Parameter of exactly its dims, an attribute named NAME of the module that
owns its scope (the network, or a graph-block call's module), counted in the weights; it exports to
Python and ONNX and draws in pictures. Its errors are located at the name, the dim or the value.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import netdsl
from conftest import error_at, run_cli
from netdsl import ir
from netdsl.api import analyse_text
from netdsl.errors import NetdslError
from torch_oracle import check_against_torch

# ConvNeXt's block, small: a learned [c, 1, 1] scale multiplied into the branch (torchvision's
# CNBlock.layer_scale), and a top-level learned gate [NF, 1, 1] used in a merge.
SPEC = """net Scaled(NF = 8)
input x: [3, H = 16, W = 16]
block cn(c) {
  input x
  y = x |> conv(c, 3, padding=1, groups=c) -> relu -> conv(c, 1)
  param layer_scale: [c, 1, 1] = 1e-6
  output = add(x, mul(layer_scale, y))
}
param gate: [NF, 1, 1] = normal(0.02)
features = x |> conv(NF, 3, padding=1) -> cn(NF) * 2
output = mul(features, gate) |> conv(NF, 1)
"""

HEAD = "net N(NF = 8)\ninput x: [3, H = 8, W = 8]\n"


def test_torch_keys_order_and_shapes() -> None:
    model = netdsl.build(SPEC)
    keys = list(model.state_dict())
    # own parameters before children's, as torch lists them: torchvision's CNBlock order
    assert keys == ["gate", "features.0.weight", "features.0.bias",
                    "features.1.layer_scale", "features.1.y.0.weight", "features.1.y.0.bias",
                    "features.1.y.2.weight", "features.1.y.2.bias",
                    "features.2.layer_scale", "features.2.y.0.weight", "features.2.y.0.bias",
                    "features.2.y.2.weight", "features.2.y.2.bias", "output.weight", "output.bias"]
    assert isinstance(model.gate, torch.nn.Parameter) and model.gate.shape == (8, 1, 1)
    scale = model.features[1].layer_scale
    assert scale.shape == (8, 1, 1) and torch.all(scale == 1e-6) and scale.requires_grad
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 8, 16, 16)


def test_forward_is_the_broadcast_product() -> None:
    text = HEAD + "param g: [NF, 1, 1] = 0.5\nh = x |> conv(NF, 1)\noutput = mul(h, g)\n"
    model = netdsl.build(text).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        model.g.copy_(torch.arange(8.0).view(8, 1, 1))
        want = model.h(x) * model.g
        assert torch.equal(model(x), want)


def test_counts_are_weights_and_agree_with_torch() -> None:
    counts = netdsl.count(SPEC)
    rows = {row.name: row for row in counts.layers}
    assert rows["gate"].op == "param" and counts.show(rows["gate"].weights) == counts.env.symbols["NF"]
    assert str(counts.show(rows["features.1.layer_scale"].weights)) == "NF"
    assert counts.show(rows["gate"].connections) == 0
    model = netdsl.build(SPEC)
    assert counts.value(counts.total("parameters")) == sum(p.numel() for p in model.parameters())
    check_against_torch(SPEC)


@pytest.mark.filterwarnings("ignore:.*is never read")
def test_dims_are_formulas_of_the_scope() -> None:
    text = HEAD + "param w: [2 * NF, 3] = 0\noutput = x |> relu\n"
    cg = analyse_text(text, None, {"NF": 5})
    st = next(s for s in cg.statements if s.name == "w")
    assert st.at == (10, 3) and [str(cg.env.show(d)) for d in st.shape] == ["2*NF", "3"]
    assert netdsl.build(text, NF=5).w.shape == (10, 3)


@pytest.mark.filterwarnings("ignore:.*is never read")
def test_normal_init_and_constant_expressions() -> None:
    torch.manual_seed(0)
    model = netdsl.build(HEAD + "param w: [64, 64] = normal(0.02)\nparam b: [4] = 1 / 16\n"
                         "param c: [4] = -0.5 * 2\noutput = x |> relu\n")
    w = model.w.detach()
    assert 0.018 < float(w.std()) < 0.022 and abs(float(w.mean())) < 0.002
    assert torch.all(model.b == 0.0625) and torch.all(model.c == -1.0)


def test_freeze_by_attribute_name_and_index() -> None:
    text = HEAD + "@freeze param g: [NF, 1, 1] = 1\nparam b: [NF, 1, 1] = 0\nh = x |> conv(NF, 1)\n" \
        "output = add(mul(h, g), b)\n"
    grads = {k: p.requires_grad for k, p in netdsl.build(text).named_parameters()}
    assert grads == {"g": False, "b": True, "h.weight": True, "h.bias": True}
    # a learned tensor is a top-level statement: --freeze counts it and takes its name
    for freeze, frozen in (("b", {"g", "b"}), (2, {"g", "b"}), (3, {"g", "b", "h.weight", "h.bias"})):
        model = netdsl.build(text, freeze=freeze)
        assert {k for k, p in model.named_parameters() if not p.requires_grad} == frozen, freeze


def test_freeze_on_the_command_line(tmp_path: Path) -> None:
    spec = tmp_path / "f.net"
    spec.write_text(HEAD + "param g: [NF, 1, 1] = 1\nh = x |> conv(NF, 1)\noutput = mul(h, g)\n", encoding="utf-8")
    r = run_cli("build", str(spec), "--freeze", "2")  # the learned tensor and the conv
    assert r.returncode == 0, r.stderr
    assert "frozen 40;" in r.stdout, r.stdout


def test_the_lowered_graph_reads_back() -> None:
    graph = analyse_text(SPEC, None, {}).graph
    assert graph is not None
    node = next(n for n in graph.nodes if n.name == "gate")
    assert node.merge == "param" and node.inputs == [] and node.layers == []
    assert ir.Graph.model_validate_json(graph.model_dump_json()) == graph


def test_count_runs_without_torch(tmp_path: Path) -> None:
    spec = tmp_path / "s.net"
    spec.write_text(SPEC, encoding="utf-8")
    r = run_cli("count", str(spec), forbid_torch=True)
    assert r.returncode == 0, r.stderr
    assert "features.1.layer_scale" in r.stdout and "param" in r.stdout


def _load_exported(source: str, tmp_path: Path, name: str):  # noqa: ANN202 - the module
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_python_export_round_trip(tmp_path: Path) -> None:
    from netdsl.backends.python_source import to_python_source

    cg = analyse_text(SPEC, None, {})
    source = to_python_source(cg)
    assert "self.gate = nn.Parameter(nn.init.normal_(torch.empty((NF, 1, 1)), std=0.02))" in source
    assert "self.layer_scale = nn.Parameter(torch.full((c, 1, 1), 1e-06))" in source
    exported = _load_exported(source, tmp_path, "scaled_export").Scaled().eval()
    model = netdsl.build(SPEC).eval()
    exported.load_state_dict(model.state_dict(), strict=True)
    assert list(exported.state_dict()) == list(model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), model(x), rtol=0, atol=0)


@pytest.mark.slow
def test_onnx_export_round_trip(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from netdsl.backends.onnx_export import export_model

    out = tmp_path / "scaled.onnx"
    cg = analyse_text(SPEC, None, {})
    model = netdsl.build(SPEC).eval()
    done = export_model(cg, out, model=model)
    assert {"H", "W"} <= set(done.dynamic) and done.max_diff < 1e-4  # its own check: onnxruntime = torch
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 16, 16)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == want.shape
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), rtol=1e-4, atol=1e-4)


def test_picture_draws_it() -> None:
    from netdsl.backends.picture import to_dot

    dot = to_dot(analyse_text(SPEC, None, {}))
    assert "gate" in dot and "layer_scale" in dot


ERRORS = [
    # (id, body after HEAD, line, column, words in the message)
    ("duplicate-input", "param x: [NF] = 0\noutput = x |> relu", 3, 1, "duplicate name 'x'"),
    ("duplicate-param", "param g: [NF] = 0\nparam g: [NF] = 1\noutput = x |> relu", 4, 1, "duplicate name 'g'"),
    ("duplicate-tensor", "h = x |> relu\nparam h: [NF] = 0\noutput = h", 4, 1, "duplicate name 'h'"),
    ("parameter-name", "param NF: [4] = 0\noutput = x |> relu", 3, 1, "duplicate name 'NF'"),
    ("reserved", "param cat: [NF] = 0\noutput = x |> relu", 3, 1, "reserved word"),
    ("zero-dim", "param g: [NF - 8, 1, 1] = 0\noutput = x |> relu", 3, 11, "a dim of the learned tensor 'g' is zero"),
    ("negative-dim", "param g: [4, 1 - NF] = 0\noutput = x |> relu", 3, 14, "is negative"),
    ("unknown-name", "param g: [Q] = 0\noutput = x |> relu", 3, 11, "unknown name 'Q' in the shape of a learned tensor"),
    ("fraction-dim", "param g: [2.5] = 0\noutput = x |> relu", 3, 11, "a fractional number is not allowed here"),
    ("unknown-init", "param g: [NF] = uniform(0.1)\noutput = x |> relu", 3, 17, "unknown initial value 'uniform(...)'"),
    ("string-init", 'param g: [NF] = "ones"\noutput = x |> relu', 3, 17, "this is not an initial value"),
    ("normal-arity", "param g: [NF] = normal(0.1, 2)\noutput = x |> relu", 3, 17, "normal(std) takes one argument"),
    ("negative-std", "param g: [NF] = normal(-0.1)\noutput = x |> relu", 3, 24, "a standard deviation is at least 0"),
    ("init-name", "param g: [NF] = k\noutput = x |> relu", 3, 17, "unknown name 'k' in an initial value"),
    ("init-zero-div", "param g: [NF] = 1 / (NF - 8)\noutput = x |> relu", 3, 22, "division by zero"),
    ("module-clash", "param forward: [NF] = 0\noutput = x |> relu", 3, 1, "clashes with an attribute"),
    ("unknown-attr", "@fixed param g: [NF] = 0\noutput = x |> relu", 3, 1, "unknown attribute '@fixed'"),
    ("rank", "param g: [NF, 1] = 0\noutput = mul(x, g)", 4, 10, "different ranks"),
]


@pytest.mark.parametrize(("body", "line", "col", "words"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_errors_are_located(body: str, line: int, col: int, words: str) -> None:
    err = error_at(netdsl.build, HEAD + body + "\n", line, col, words)
    assert err.hint, err.render()


def test_an_error_in_a_block_points_into_the_block() -> None:
    text = HEAD + "block b(c) {\n  input x\n  param s: [c - 8, 1, 1] = 0\n  output = mul(x, s)\n}\n" \
        "output = x |> conv(NF, 1) -> b(NF)\n"
    with pytest.raises(NetdslError, match="a dim of the learned tensor 's' is zero") as info:
        netdsl.build(text)
    assert info.value.span is not None and (info.value.span.line, info.value.span.column) == (5, 13)


def test_cli_exit_status_and_place(tmp_path: Path) -> None:
    spec = tmp_path / "bad.net"
    spec.write_text(HEAD + "param g: [NF] = uniform(0.1)\noutput = x |> relu\n", encoding="utf-8")
    r = run_cli("build", str(spec))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0].startswith(f"{spec}:3:17: error: unknown initial value 'uniform(...)'")
