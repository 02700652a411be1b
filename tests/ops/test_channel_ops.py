"""channel_slice, channel_chunk and channel_shuffle: shapes, torch's results, rules, exports."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netdsl
from conftest import error_at
from export_roundtrip import onnx_round_trip, python_round_trip
from netdsl.cli import main
from netdsl.ops import REGISTRY

HEAD = "net Ch(C = 8)\ninput x: [3, H = 8, W = 8] where H % 2 == 0, W % 2 == 0\n"
SPEC = HEAD + """a = x |> conv(2 * C, 1)
p = a |> channel_chunk(0, 2)
q = a |> channel_chunk(1, 2) -> conv(C, 3, padding=1)
r = a |> channel_slice(3, 3 + C, total=2 * C)
output = cat(p, add(q, r)) |> channel_shuffle(4)
"""


def torchvision_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's channel_shuffle, written out: view, transpose, contiguous, view."""
    n, c, h, w = x.shape
    return torch.transpose(x.view(n, groups, c // groups, h, w), 1, 2).contiguous().view(n, -1, h, w)


def test_parts_equal_torch_chunk_and_slice_and_the_shuffle_torchvisions() -> None:
    m = netdsl.build(SPEC).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        a = m.a(x)
        p, q = a.chunk(2, dim=1)
        want = torchvision_shuffle(torch.cat([p, m.q[1](q) + a[:, 3:11]], 1), 4)
        assert torch.equal(m.p(a), p) and torch.equal(m(x), want)
    assert [type(m.p).__name__, type(m.r).__name__, type(m.output).__name__] == \
        ["ChannelChunk", "ChannelSlice", "ChannelShuffle"]
    assert sum(t.numel() for t in m.state_dict().values()) == 3 * 16 + 16 + 8 * 8 * 9 + 8  # no weights of their own


def test_symbolic_shapes_stay_exact() -> None:
    cg = netdsl.shapes(SPEC)
    by = {st.name: [str(x) for x in cg.show(st.shape)] for st in cg.statements}
    assert by["p"] == by["r"] == ["C", "H", "W"] and by["output"] == ["2*C", "H", "W"]
    assert not cg.notes  # every merge's sizes are equal for every value, not just at C = 8
    assert cg.at(cg.output_shape) == [16, 8, 8]
    odd = netdsl.shapes(HEAD + "output = x |> conv(C, 1) -> channel_chunk(1, 4)", C=12)
    assert odd.at(odd.output_shape) == [3, 8, 8]


def test_features_split_too() -> None:
    text = "net F(N = 6)\ninput v: [N]\na = v |> linear(12)\nb = a |> channel_chunk(1, 3)\nc = a |> channel_slice(0, 2)\n" \
           "output = cat(b, c)\n"
    m = netdsl.build(text).eval()
    v = torch.randn(2, 6)
    with torch.no_grad():
        a = m.a(v)
        assert torch.equal(m(v), torch.cat([a[:, 4:8], a[:, :2]], 1))


@pytest.mark.parametrize(("body", "line", "col", "words"), [
    ("output = x |> channel_chunk(2, 2)", 3, 29, "part i=2 of n=2: parts are numbered 0 to 1"),
    ("output = x |> channel_chunk(0, 2)", 3, 32, "3 channels do not divide into n=2 equal parts"),
    ("output = x |> channel_chunk(0, 0)", 3, 32, "at least 1"),
    ("output = x |> channel_slice(2, 2)", 3, 32, "stop=2 must be greater than start=2"),
    ("output = x |> channel_slice(1, 4)", 3, 32, "stop=4 is past the input's 3 channels"),
    ("output = x |> channel_slice(-1, 2)", 3, 29, "at least 0"),
    ("output = x |> channel_slice(0, 2, total=4)", 3, 41, "the parts add up to 4 channels, but the tensor has 3"),
    ("output = x |> channel_shuffle(2)", 3, 31, "groups=2 does not divide the 3 channels"),
    ("output = x |> flatten -> channel_shuffle(3)", 3, 26, "takes an image [C, H, W]"),
])
def test_rules_are_errors_at_the_argument(body: str, line: int, col: int, words: str) -> None:
    error_at(netdsl.shapes, HEAD + body, line, col, words)


def test_the_cli_says_where_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.net"
    spec.write_text(HEAD + "output = x |> channel_chunk(0, 2)\n")
    assert main(["build", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:3:32: error: 3 channels do not divide into n=2 equal parts" in err and "Traceback" not in err


def test_counts_agree_with_torch() -> None:
    from torch_oracle import check_against_torch

    check_against_torch(SPEC)
    row = {r.name: r for r in netdsl.count(SPEC).layers}
    assert row["p"].category == "shape" and row["p"].weights == 0


def test_python_export_round_trip(tmp_path: Path) -> None:
    source = python_round_trip(SPEC, tmp_path)
    assert "class ChannelShuffle(nn.Module)" in source and "ChannelChunk(index=1, chunks=2)" in source
    assert "ChannelSlice(start=3, stop=C + 3)" in source  # a formula of the constructor argument


def test_onnx_round_trip(tmp_path: Path) -> None:
    assert onnx_round_trip(SPEC, tmp_path) == ["H", "W"]


def test_the_ops_say_what_they_do() -> None:
    for name in ("channel_slice", "channel_chunk", "channel_shuffle"):
        assert REGISTRY[name].doc and REGISTRY[name].category == "shape" and not REGISTRY[name].starts_statement
