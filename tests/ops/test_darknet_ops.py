"""reorg and darknet_shortcut (netdsl/ops/darknet.py): each against a transcription of darknet's C
index arithmetic written here (loops over small tensors), their rules, counts and exports."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import netdsl
from conftest import error_at
from export_roundtrip import onnx_round_trip, python_round_trip
from netdsl.cli import main
from netdsl.ops import REGISTRY


def reorg_cpu(x: list[float], w: int, h: int, c: int, batch: int, stride: int, forward: int) -> list[float]:
    """darknet's blas.c `reorg_cpu`, loop for loop; [reorg] calls it with the input's w, h, c and forward=0."""
    out = [0.0] * len(x)
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2 = k % out_c
                    offset = k // out_c
                    w2 = i * stride + offset % stride
                    h2 = j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    if forward:
                        out[out_index] = x[in_index]
                    else:
                        out[in_index] = x[out_index]
    return out


def shortcut_multilayer_cpu(inp: list[float], add: list[float], batch: int) -> list[float]:
    """darknet's blas.c `shortcut_multilayer_cpu` for one `from` layer and no weights."""
    src_outputs, add_outputs = len(inp) // batch, len(add) // batch
    out = []
    for idx in range(len(inp)):
        src_i, src_b = idx % src_outputs, idx // src_outputs
        v = inp[idx]
        if src_i < add_outputs:
            v += add[add_outputs * src_b + src_i]
        out.append(v)
    return out


@pytest.mark.parametrize(("c", "h", "w", "s"), [(8, 4, 6, 2), (18, 6, 3, 3), (4, 2, 2, 1)])
def test_reorg_is_darknets_reorg_cpu(c: int, h: int, w: int, s: int) -> None:
    from netdsl.backends.torch_darknet import Reorg

    x = torch.randn(2, c, h, w)
    want = reorg_cpu(x.flatten().tolist(), w, h, c, 2, s, 0)
    got = Reorg(s)(x)
    assert got.shape == (2, c * s * s, h // s, w // s)
    assert got.flatten().tolist() == want


def test_reorg_is_not_pixel_unshuffle() -> None:
    from netdsl.backends.torch_darknet import Reorg

    x = torch.randn(1, 8, 4, 4)
    assert not torch.equal(Reorg(2)(x), F.pixel_unshuffle(x, 2))


@pytest.mark.parametrize(("a", "b"), [((8, 4, 4), (4, 4, 4)), ((4, 4, 4), (8, 4, 4)), ((8, 2, 2), (4, 4, 4)),
                                      ((2, 4, 4), (8, 2, 2)), ((4, 3, 3), (4, 3, 3))])
def test_darknet_shortcut_is_darknets_flat_rule(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    op = REGISTRY["darknet_shortcut"]
    xa, xb = torch.randn(2, *a), torch.randn(2, *b)
    got = op.combine([xa, xb], torch)
    assert got.shape == xa.shape
    want = shortcut_multilayer_cpu(xa.flatten().tolist(), xb.flatten().tolist(), 2)
    assert torch.equal(got.flatten(), torch.tensor(want, dtype=torch.float32))  # float32 sums, exactly
    same_size = a[1:] == b[1:]
    if same_size:  # the channels both maps have, added; the previous layer's others kept
        m = min(a[0], b[0])
        assert torch.equal(got[:, :m], xa[:, :m] + xb[:, :m]) and torch.equal(got[:, m:], xa[:, m:])


HEAD = "net Dk(C = 8)\ninput x: [3, H = 8, W = 8] where H % 4 == 0, W % 4 == 0\n"
SPEC = HEAD + """a = x |> conv(C, 3, padding=1)
b = a |> reorg(2)
c = b |> conv(C, 1)
d = darknet_shortcut(c, a)
output = darknet_shortcut(a, d) |> reorg(2)
"""


def test_shapes_and_counts() -> None:
    cg = netdsl.shapes(SPEC)
    out = {st.name: st for st in cg.statements}
    # exact for every admissible size (H = 4*H_q): no floor left
    assert [str(s) for s in out["b"].shape] == ["4*C", "2*H_q", "2*W_q"] and out["b"].at == (32, 4, 4)
    assert [str(s) for s in out["output"].shape] == ["4*C", "2*H_q", "2*W_q"] and out["d"].at == (8, 4, 4)
    from torch_oracle import check_against_torch

    check_against_torch(SPEC)


@pytest.mark.parametrize(("body", "line", "col", "words"), [
    ("output = x |> conv(6, 1) -> reorg(2)", 3, 35, "needs channels divisible by 4; the input has 6"),
    ("output = x |> conv(9, 1) -> reorg(3)", 3, 35, "the height and width must divide by 3"),
    ("output = x |> reorg(0)", 3, 21, "at least 1"),
    ("a = x |> conv(4, 1)\noutput = darknet_shortcut(a, a, a)", 4, 10, "darknet_shortcut"),
])
def test_rules_are_errors_at_their_place(body: str, line: int, col: int, words: str) -> None:
    error_at(netdsl.shapes, HEAD.replace(" where H % 4 == 0, W % 4 == 0", "") + body + "\n", line, col, words)


def test_the_cli_says_where_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.net"
    spec.write_text(HEAD + "output = x |> reorg(2)\n")
    assert main(["build", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:3:21: error: reorg(2) needs channels divisible by 4" in err and "Traceback" not in err


def test_python_export_round_trip(tmp_path: Path) -> None:
    source = python_round_trip(SPEC, tmp_path)
    assert "class Reorg(nn.Module)" in source and "Reorg(stride=2)" in source and ".view_as(" in source


@pytest.mark.slow  # torch.export with dynamic sizes: about 20 s
def test_onnx_round_trip(tmp_path: Path) -> None:
    onnx_round_trip(SPEC, tmp_path)


def test_the_ops_say_what_they_do() -> None:
    assert "not pixel_unshuffle" in REGISTRY["reorg"].doc
    assert REGISTRY["darknet_shortcut"].starts_statement and not REGISTRY["reorg"].starts_statement
