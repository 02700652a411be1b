"""The sequence ops: `tokens`, `image(h, w)`, `token(i)`, `cat(..., dim=)`, and `linear`/`layernorm`
over a sequence's last axis. Shapes (symbolic), counts, the torch modules against torch's own
computation, receptive-field windows and the located errors. Exports: tests/backends/test_export_sequences.py;
memory: tests/analysis/test_sequence_op_memory.py."""
from __future__ import annotations

import pytest
import sympy as sp
import torch
from torch import nn

import netdsl
from conftest import error_at
from netdsl.backends.torch_module import CompiledNet
from netdsl.concrete import ConcreteGraph
from netdsl.ops import REGISTRY, Args
from netdsl.ops.window import POINT, Window

HEAD = "net S(D = 8)\ninput x: [3, H = 16, W = 16] where H % 4 == 0, W % 4 == 0\n"
SPEC = HEAD + """p = x |> conv(D, 4, stride=4) -> tokens
q = p |> layernorm(eps=1e-6) -> linear(2*D) -> gelu -> linear(D, bias=false)
r = cat(p, q)
s = cat(p, q, dim=-1) |> linear(D)
i = add(p, s) |> image(H//4, W//4) -> conv(2, 1)
output y = r |> layernorm -> token(0) -> linear(5)
output z = i
"""


@pytest.fixture(scope="module")
def model() -> CompiledNet:
    torch.manual_seed(0)
    return netdsl.build(SPEC).eval()


def _shown(cg: ConcreteGraph, name: str) -> list[str]:
    st = next(s for s in cg.statements if s.name == name)
    return [str(cg.env.show(x)) for x in st.shape]


def test_shapes_are_symbolic() -> None:
    cg = netdsl.shapes(SPEC)
    assert _shown(cg, "p") == ["H*W/16", "D"] and _shown(cg, "q") == ["H*W/16", "D"]
    assert _shown(cg, "r") == ["H*W/8", "D"] and _shown(cg, "s") == ["H*W/16", "D"]
    assert _shown(cg, "i") == ["2", "H/4", "W/4"] and _shown(cg, "y") == ["5"]
    assert cg.notes == []  # image(H//4, W//4) of H*W/16 tokens: equal for every admissible H, W
    vit = netdsl.shapes("net V()\ninput x: [3, H = 224, W = 224] where H % 16 == 0, W % 16 == 0\n"
                        "output y = x |> conv(768, 16, stride=16) -> tokens\n")
    assert _shown(vit, "y") == ["H*W/256", "768"]


def test_counts() -> None:
    c = netdsl.count(SPEC)
    rows = {r.name: r for r in c.layers}
    metric = c.layer_metric
    lin = rows["q.1"]
    assert lin.category == "linear" and str(metric(lin, "weights")) == "2*D**2" and str(metric(lin, "biases")) == "2*D"
    assert str(metric(lin, "macs")) == "D**2*H*W/8"  # T*D*out: (H*W/16)*D*(2*D)
    assert str(metric(rows["q.0"], "norm_params")) == "2*D"
    for name in ("p.1", "i.0", "y.1"):  # tokens, image, token: views, no weights, no MACs
        assert rows[name].category == "shape" and metric(rows[name], "weights") == 0 and metric(rows[name], "macs") == 0


def test_counts_agree_with_torch() -> None:
    from torch_oracle import check_against_torch

    check_against_torch(SPEC)
    check_against_torch(SPEC, D=4, H=8, W=12)


def test_the_modules_compute_what_torch_computes(model: CompiledNet) -> None:
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        y, z = model(x)
        f = nn.functional
        p = model.p[0](x).flatten(2).transpose(1, 2)  # torchvision's ViT _process_input
        n0, l1, l2 = model.q[0], model.q[1], model.q[3]
        q = f.linear(f.gelu(f.linear(f.layer_norm(p, (8,), n0.weight, n0.bias, 1e-6), l1.weight, l1.bias)), l2.weight)
        r = torch.cat((p, q), 1)
        s = f.linear(torch.cat((p, q), 2), model.s.weight, model.s.bias)
        i = model.i[1]((p + s).transpose(1, 2).reshape(2, 8, 4, 4))
        n, l3 = model.y[0], model.y[2]
        want_y = f.linear(f.layer_norm(r, (8,), n.weight, n.bias, 1e-5)[:, 0], l3.weight, l3.bias)
    assert (tuple(p.shape), tuple(r.shape), tuple(s.shape)) == ((2, 16, 8), (2, 32, 8), (2, 16, 8))
    torch.testing.assert_close(y, want_y)
    torch.testing.assert_close(z, i)
    assert isinstance(model.q[0], nn.LayerNorm) and tuple(model.q[0].weight.shape) == (8,)
    assert isinstance(model.q[1], nn.Linear) and tuple(model.q[1].weight.shape) == (16, 8)


def test_tokens_image_and_token_are_views(model: CompiledNet) -> None:
    x = torch.randn(2, 8, 4, 4)
    t = model.p[1](x)
    assert t.data_ptr() == x.data_ptr() and torch.equal(t[:, 5], x[:, :, 1, 1])  # token 5: row 5 // 4, column 5 % 4
    back = model.i[0](t)
    assert back.data_ptr() == x.data_ptr() and torch.equal(back, x)
    assert torch.equal(model.y[1](t), t[:, 0]) and model.y[1](t).data_ptr() == x.data_ptr()


def test_cat_joins_torchs_dim() -> None:
    cat = REGISTRY["cat"]
    seq = [(sp.Integer(5), sp.Integer(4)), (sp.Integer(5), sp.Integer(3))]
    along = cat.bind(Args(dim=-1), seq)
    assert list(along.match_axes(2)) == [0] and along.source(["a", "b"]) == "torch.cat((a, b), dim=-1)"
    assert cat.shape(Args(dim=-1), seq) == (5, 7) and cat.shape(Args(dim=1), seq[:1] * 2) == (10, 4)
    a, b = torch.ones(2, 5, 4), torch.zeros(2, 5, 3)
    assert torch.equal(along.combine([a, b], torch), torch.cat([a, b], 2))
    assert cat.bind(Args(dim=1), [(sp.Integer(4), sp.Integer(8), sp.Integer(8))]) is not None
    assert list(cat.bind(Args(dim=3), [(sp.Integer(4), sp.Integer(8), sp.Integer(8))]).match_axes(3)) == [0, 1]
    images = netdsl.shapes(HEAD + "a = x |> conv(D, 1)\noutput y = cat(a, x, dim=1)\n")
    assert images.outputs[0].at == (11, 16, 16)  # dim=1, the default, as before: channels


def test_windows() -> None:
    t5, d = sp.Integer(5), sp.Integer(4)
    assert REGISTRY["token"].windows(Args(i=-1), [(t5, d)], (d,)) == [(Window(1, sp.Integer(0), (-1,), (-1,)), POINT)]
    shifts = REGISTRY["cat"].windows(Args(dim=1), [(t5, d), (sp.Integer(3), d)], (sp.Integer(8), d))
    assert [w[0].lo for w in shifts] == [(0,), (-5,)]  # input 1's token t - 5
    assert REGISTRY["tokens"].windows(Args(), [(d, t5, t5)], (t5 * t5, d)) == [(POINT, POINT)]


BODIES = HEAD + "p = x |> conv(D, 4, stride=4) -> tokens\n"


@pytest.mark.parametrize(("body", "line", "col", "words"), [
    ("output y = p |> image(4, 5)", 4, 17, "image(4, 5) of a sequence of 16 tokens: the image [8, 4, 5] has 20 "
                                           "positions, the sequence [16, 8] has 16 tokens"),
    ("output y = p |> token(16)", 4, 23, "token(16) of a sequence [16, 8]: the tokens are 0 to 15"),
    ("output y = p |> token(-17)", 4, 23, "token(-17) of a sequence [16, 8]"),
    ("q = p |> linear(4)\noutput y = cat(p, q)", 5, 12,
     "cat() of sequences whose features differ: 'p' is [H*W/16, D] = [16, 8] (from line 3), 'q' is [H*W/16, 4] = [16, 4]"),
    ("q = cat(p, p) |> linear(8)\noutput y = cat(p, q, dim=2)", 5, 12, "cat() of sequences whose token counts differ"),
    ("output y = cat(p, p, dim=3)", 4, 26, "cat(..., dim=3) of tensors of 2 axes per sample"),
    ("output y = cat(p, p, dim=0)", 4, 26, "dim is torch's axis, batch included"),
    ("output y = p |> tokens", 4, 17, "'tokens' takes an image [C, H, W], but its input is a sequence"),
    ("output y = p |> token(0) -> tokens", 4, 29, "'tokens' takes an image [C, H, W], but its input is features"),
    ("output y = x |> image(4, 4)", 4, 17, "'image' takes a sequence [T, D], but its input is an image"),
    ("output y = x |> token(0)", 4, 17, "'token' takes a sequence [T, D], but its input is an image"),
    ("output y = p |> image(4, 0)", 4, 26, "at least 1"),
])
def test_errors_are_located(body: str, line: int, col: int, words: str) -> None:
    err = error_at(netdsl.shapes, BODIES + body, line, col, words)
    assert err.hint


def test_the_hints_say_what_to_do() -> None:
    err = error_at(netdsl.shapes, BODIES + "q = p |> linear(4)\noutput y = cat(p, q)", 5, 12, "features differ")
    assert "linear(D)" in err.hint and "dim=2" in err.hint
    err = error_at(netdsl.shapes, BODIES + "output y = p |> image(4, 5)", 4, 17, "image(4, 5)")
    assert "h*w must be the token count" in err.hint
    # a learned tensor a row short of the tokens: the hint is about tokens, not strides
    err = error_at(netdsl.shapes, BODIES + "param pos: [15, D] = 0\noutput y = add(p, pos)", 5, 12,
                   "add() of sequences whose shapes differ: 'p' is [H*W/16, D] = [16, 8]")
    assert "one row per token" in err.hint and "strides" not in err.hint


def test_image_notes_a_size_equal_at_the_values_in_use_only() -> None:
    cg = netdsl.shapes("net S()\ninput x: [3, H = 16, W = 16]\noutput y = x |> conv(4, 4, stride=4) -> tokens -> "
                       "image(4, 4)\n")
    assert any("image: the token count and h*w could not be shown equal" in n for n in cg.notes)
