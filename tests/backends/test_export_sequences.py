"""The sequence ops through both exports: `export --to python` (the file imported, its classes
standalone, its outputs identical to the compiled module's) and `export --to onnx` (onnxruntime
equal to torch within 1e-4, the input sizes left dynamic where nothing depends on them)."""
from __future__ import annotations

from pathlib import Path

import pytest

from export_roundtrip import onnx_round_trip, python_round_trip

HEAD = "input x: [3, H = 16, W = 16] where H % 4 == 0, W % 4 == 0\np = x |> conv(D, 4, stride=4) -> tokens\n" \
       "q = p |> layernorm(eps=1e-6) -> linear(2*D) -> gelu -> dropout(0.1) -> linear(D, bias=false)\n"
# tokens, token, cat along the tokens and the features
IMAGE = "net Seq(D = 8)\n" + HEAD + """s = cat(p, q, dim=-1) |> linear(D)
u = add(p, s) |> token(-1)
output y = cat(p, q) |> layernorm -> token(0) -> linear(5)
"""
# image(h, w) reads h and w as numbers: the sizes they are made from stay fixed in ONNX
GRID = "net Grid(D = 8)\n" + HEAD + """s = cat(p, q, dim=2) |> linear(D)
u = add(p, s) |> image(H//4, W//4) -> conv(2, 1) -> flatten -> linear(5)
v = cat(p, q) |> layernorm -> token(-1) -> linear(5)
output y = add(u, v)
"""
SEQUENCE = """net Tok(D = 8)
input t: [T = 10, D]
q = t |> layernorm -> linear(2*D) -> gelu -> linear(D)
r = cat(t, q, dim=2) |> linear(D)
output y = cat(r, t) |> token(-1) -> linear(3)
"""
CASES = [(IMAGE, {"Tokens", "Token"}, "torch.cat((p, q), dim=-1)"),
         (GRID, {"Tokens", "ToImage", "Token"}, "torch.cat((p, q), dim=2)"),
         (SEQUENCE, {"Token"}, "torch.cat((t, q), dim=2)")]


@pytest.mark.parametrize(("text", "classes", "cat"), CASES, ids=["image", "grid", "sequence"])
def test_python_export_round_trip(text: str, classes: set[str], cat: str, tmp_path: Path) -> None:
    source = python_round_trip(text, tmp_path)
    assert cat in source
    # each sequence class the network uses is written out in the file, and no other
    assert {c for c in ("Tokens", "ToImage", "Token") if f"class {c}(nn.Module)" in source} == classes


@pytest.mark.parametrize(("text", "dynamic"), [(GRID, []), (SEQUENCE, ["T"])], ids=["grid", "sequence"])
def test_onnx_round_trip(text: str, dynamic: list[str], tmp_path: Path) -> None:
    assert onnx_round_trip(text, tmp_path) == dynamic
