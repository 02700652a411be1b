"""attention and attention_qkv through the exports: `export --to python` (the copied classes stand
alone; outputs identical in eval and train mode), ONNX (onnxruntime within 1e-4, the batch and the
token count dynamic) and torch.fx tracing of the compiled network."""
from __future__ import annotations

from pathlib import Path

import torch

import netdsl
from export_roundtrip import onnx_round_trip, python_round_trip

SPEC = """net Att(D = 8)
input t: [T = 6, D]
a = t |> layernorm -> attention(2)
q = a |> linear(D, bias=false)
k = a |> linear(D)
kv = cat(k, a, dim=1)
y = attention_qkv(q, kv, kv, heads=4, bias=false)
output = add(y, a) |> attention(2, dropout=0.1) -> token(0) -> linear(3)
"""


def test_python_export_round_trip(tmp_path: Path) -> None:
    source = python_round_trip(SPEC, tmp_path)  # dropout too: train mode with one seed
    assert "class SelfAttention(nn.MultiheadAttention):" in source
    assert "class QKVAttention(nn.MultiheadAttention):" in source
    assert "import netdsl" not in source


def test_onnx_round_trip(tmp_path: Path) -> None:
    # the token count stays dynamic: nothing in the network depends on it
    assert onnx_round_trip(SPEC, tmp_path) == ["T"]


def test_fx_traces_the_compiled_network() -> None:
    torch.manual_seed(0)
    model = netdsl.build(SPEC)
    x = torch.randn(2, 6, 8)
    for training in (False, True):
        model.train(training)
        traced = torch.fx.symbolic_trace(model)
        torch.manual_seed(1)
        want = model(x)
        torch.manual_seed(1)
        assert torch.equal(traced(x), want), training
    called = {n.target for n in traced.graph.nodes if n.op == "call_function"}
    assert torch.nn.functional.scaled_dot_product_attention in called
