"""`netdsl train` on a network of tokens and attention.

The tasks train per-pixel outputs (colourization) and detection; there is no image-level
classification task, so the sequence network trained here is a tiny ViT-style colourizer: 4x4
patches as tokens with a learned position embedding, two encoder layers, `image(h, w)` back to the
map and an upsampling head (one score per palette colour at every pixel). One short run through the
real compiler, as `test_train.test_real_specs_end_to_end` does for the seed specs.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from netdsl.cli import main
from test_train import make_photos

VIT_COLOURIZER = """
net ViTColourizer(NC = 24, D = 32, HEADS = 2)
input x: [1, H = 32, W = 32] where H % 4 == 0, W % 4 == 0
block layer(d, heads) {
  input x
  a = x |> layernorm -> attention(heads)
  y = add(x, a)
  m = y |> layernorm -> linear(2*d) -> gelu -> linear(d)
  output = add(y, m)
}
param pos_embedding: [H//4 * W//4, D] = normal(0.02)
patches = x |> conv(D, 4, stride=4) -> tokens
output = add(patches, pos_embedding) |> layer(D, HEADS) * 2 -> layernorm -> image(H//4, W//4)
  -> upsample(4) -> conv(NC, 3, padding=1)
"""


def test_a_vit_style_colourizer_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    photos = make_photos(tmp_path / "photos", n=2)
    (tmp_path / "vit.net").write_text(VIT_COLOURIZER)
    args = ["--max-train", "32", "--max-val", "16", "--epochs", "1", "--batch-size", "16", "--quiet"]
    assert main(["train", "vit.net", "--data", str(photos), "--out", "run", *args]) == 0
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["spec"]["name"] == "ViTColourizer" and meta["spec"]["params"]["D"] == 32
