"""psa_attention and psa_values, YOLO11's position-sensitive attention: a PSABlock written with them
against a transcription of ultralytics' PSABlock written here (outputs and gradients), counts
against torch (parameters, FlopCounterMode), pinned errors, fx and the exports, receptive fields
and the memory rules against what torch saves and allocates (fp32 and autocast).

Against ultralytics itself (8.4.190, torch 2.14.1, in its own environment, by hand; its code is
not in this project): its `PSABlock(c, attn_ratio=0.5, num_heads=heads)` for (c, heads) = (128, 2),
(64, 1) and (256, 4), BatchNorms given random statistics and eps=1e-3, momentum=0.03 (as its
DetectionModel sets them), its state_dict loaded by name into BLOCK below (`conv`/`bn` as `0`/`1`,
`ffn.0`/`ffn.1` as `ffn.0, 1`/`ffn.3, 4`): outputs on a random [2, c, 8, 10] differed by at most 0.0
(identical) in eval and in train mode, and so did the input's gradient; its parameter counts were
117,632, 30,144 and 464,640, as netdsl's (`sum(p.numel() for p in PSABlock(128, 0.5, 2).parameters())`).
"""
from __future__ import annotations

import doctest
from collections.abc import Iterator
from pathlib import Path

import pytest
import sympy as sp
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import netdsl
from conftest import error_at
from export_roundtrip import onnx_round_trip, python_round_trip
from live_oracle import measured_peak
from memory_oracle import at, one_thread, saved_by_torch
from netdsl.backends import torch_psa
from netdsl.backends.torch_psa import PSAttention, PSValues
from netdsl.ops import REGISTRY, Args
from netdsl.ops.window import POINT, whole
from netdsl.passes.memory_model import MemoryOptions, batch_symbol
from netdsl.passes.peak import peak_bytes
from netdsl.passes.receptive import receptive_fields
from netdsl.passes.saved import saved_total

# ultralytics' Conv as its DetectionModel builds it (no bias, BatchNorm eps 1e-3, momentum 0.03),
# with (cba) and without (cb) SiLU; the PSABlock as C2PSA repeats it, statements named as its children.
BLOCK = """net Psa(C = 128, HEADS = 2)
input x: [C, H = 8, W = 10]
block cba(c, k = 1, g = 1) = conv(c, k, padding=k // 2, groups=g, bias=false) -> batchnorm(eps=0.001, momentum=0.03)
  -> silu
block cb(c, k = 1, g = 1) = conv(c, k, padding=k // 2, groups=g, bias=false) -> batchnorm(eps=0.001, momentum=0.03)
block psattn(c, heads, kd = c // heads // 2) {
  input x
  qkv = x |> cb(c + 2 * heads * kd)
  a = qkv |> psa_attention(heads, kd)
  v = qkv |> psa_values(heads, kd)
  pe = v |> cb(c, 3, g=c)
  proj = add(a, pe) |> cb(c)
  output = proj
}
block psablock(c, heads) {
  input x
  attn = x |> psattn(c, heads)
  y = add(x, attn)
  ffn = y |> cba(2 * c) -> cb(c)
  output = add(y, ffn)
}
output y = x |> psablock(C, HEADS)
"""
# The memory cases: after a conv (a 16-bit input under autocast), straight on the network's input
# (float32 under autocast: the products cast copies), one head (psa_values is then a view).
HEAD = "net M(C = 4)\ninput x: [12, H = 6, W = 8]\n"
MEMORY = {
    "after-conv": HEAD + "q = x |> conv(12, 1)\na = q |> psa_attention(2, 2)\nv = q |> psa_values(2, 2)\n"
                         "output y = add(a, v) |> conv(4, 3, padding=1, groups=4)\n",
    "input": HEAD + "a = x |> psa_attention(2, 2)\nv = x |> psa_values(2, 2)\noutput y = add(a, v) |> conv(4, 1)\n",
    "one-head": HEAD + "q = x |> conv(8, 1) -> batchnorm\na = q |> psa_attention(1, 3)\nv = q |> psa_values(1, 3)\n"
                       "output y = cat(a, v) |> relu -> conv(2, 1)\n",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


class _Conv(nn.Sequential):
    """ultralytics' Conv: a bias-free convolution, BatchNorm, optionally SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__(nn.Conv2d(c1, c2, k, padding=k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03), *([nn.SiLU()] if act else []))


class _Attention(nn.Module):
    """Our transcription of ultralytics' Attention (attn_ratio 0.5): per head, the queries scaled by
    key_dim^-0.5, scores q^T k, softmax over the keys, values times the transposed weights; plus the
    depthwise 3x3 of the values laid out as an image; then the projection."""

    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, c // heads
        self.key_dim = self.head_dim // 2
        self.qkv = _Conv(c, c + 2 * heads * self.key_dim, act=False)
        self.pe = _Conv(c, c, 3, groups=c, act=False)  # registered in netdsl's statement order
        self.proj = _Conv(c, c, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        parts = self.qkv(x).view(n, self.heads, 2 * self.key_dim + self.head_dim, h * w)
        q, k, v = parts.split([self.key_dim, self.key_dim, self.head_dim], dim=2)
        scores = (q * self.key_dim ** -0.5).transpose(-2, -1) @ k
        weights = scores.softmax(dim=-1)
        attended = (v @ weights.transpose(-2, -1)).view(n, c, h, w)
        return self.proj(attended + self.pe(v.reshape(n, c, h, w)))


class _PSABlock(nn.Module):
    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.attn = _Attention(c, heads)
        # one Sequential of both Convs' layers: netdsl's chain of two linear blocks (ffn.0, 1, 3, 4)
        self.ffn = nn.Sequential(*_Conv(c, 2 * c), *_Conv(2 * c, c, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.ffn(x)


def _twins(c: int, heads: int) -> tuple[nn.Module, nn.Module]:
    """netdsl's block and the transcription with the same (random) weights and statistics."""
    torch.manual_seed(c + heads)
    ours = netdsl.build(BLOCK, C=c, HEADS=heads)
    for m in ours.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics and affine terms away from 0 and 1
            stats = (m.running_mean, m.running_var, m.weight, m.bias)
            for t, (lo, hi) in zip(stats, ((-0.5, 0.5), (0.5, 2.0), (0.5, 1.5), (-0.3, 0.3))):
                assert t is not None
                t.data.uniform_(lo, hi)
    ref = _PSABlock(c, heads)
    theirs, mine = ref.state_dict(), ours.state_dict()
    assert [v.shape for v in theirs.values()] == [v.shape for v in mine.values()]
    ref.load_state_dict(dict(zip(theirs, mine.values())), strict=True)
    return ours, ref


@pytest.mark.parametrize("c, heads", [(32, 2), (16, 1)])
def test_a_psablock_computes_what_ultralytics_does(c: int, heads: int) -> None:
    ours, ref = _twins(c, heads)
    x = torch.randn(2, c, 8, 10)
    for training in (False, True):
        ours.train(training)
        ref.train(training)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        want, got = ref(xa), ours(xb)
        assert torch.equal(got, want), training
        g = torch.randn_like(want)
        want.backward(g)
        got.backward(g)
        assert xa.grad is not None and xb.grad is not None and torch.equal(xb.grad, xa.grad), training
        pairs = list(zip(ref.parameters(), ours.parameters()))
        assert all(a.grad is not None and b.grad is not None and torch.equal(a.grad, b.grad) for a, b in pairs)


def test_the_parameters_are_ultralytics_psablocks() -> None:
    # ultralytics 8.4.190: sum(p.numel() for p in PSABlock(128, 0.5, 2).parameters()) == 117632 (YOLO11n's
    # C2PSA block: 256 channels in, c = 128, heads = max(128 // 64, 1) = 2); (256, 4) gave 464640
    for (c, heads), want in (((128, 2), 117_632), ((256, 4), 464_640)):
        res = netdsl.count(cg_text(c, heads))
        assert int(res.value(res.total("parameters"))) == want


def cg_text(c: int, heads: int) -> str:
    return BLOCK.replace("net Psa(C = 128, HEADS = 2)", f"net Psa(C = {c}, HEADS = {heads})")


def test_the_macs_are_torchs_flop_count() -> None:
    # FlopCounterMode counts the convolutions and the two batched products (flops = 2 * MACs)
    for c, heads in ((32, 2), (16, 1)):
        ours, _ = _twins(c, heads)
        res = netdsl.count(cg_text(c, heads))
        with FlopCounterMode(display=False) as flops:
            ours.eval()(torch.randn(1, c, 8, 10))
        assert int(res.value(res.total("macs"))) == flops.get_total_flops() // 2
        bmm = flops.get_flop_counts()["Global"].get(torch.ops.aten.bmm, 0)
        tokens, kd = 80, c // heads // 2
        assert bmm // 2 == heads * tokens * tokens * (kd + c // heads)


def test_yolo11_attention_macs_are_ultralytics() -> None:
    # ultralytics 8.4.190, DetectionModel("yolo11n.yaml" / "yolo11s.yaml") at 640x640 under FlopCounterMode:
    # aten.bmm counted 30,720,000 and 61,440,000 MACs (flops / 2): C2PSA's one PSABlock on the 20x20 map,
    # c = 128 with 2 heads and c = 256 with 4 (key_dim 32, head_dim 64)
    for (c, heads), want in (((128, 2), 30_720_000), ((256, 4), 61_440_000)):
        cg = netdsl.shapes(cg_text(c, heads).replace("H = 8, W = 10", "H = 20, W = 20"))
        macs = [x.counts.macs for x in cg.walk() if x.op.name == "psa_attention"]
        assert len(macs) == 1 and int(cg.env.at(macs[0])) == want


def test_the_count_formulas() -> None:
    c, h, w = sp.symbols("C H W", positive=True, integer=True)
    att, val = REGISTRY["psa_attention"], REGISTRY["psa_values"]
    a = Args(heads=2, key_dim=3)
    out = att.shape(a, [(c, h, w)])
    assert out == (c - 12, h, w) and val.shape(a, [(c, h, w)]) == out
    counts = att.counts(a, [(c, h, w)], out)
    # heads * N*N * (key_dim + head_dim), head_dim = C/heads - 2*key_dim
    assert counts.macs == sp.expand(2 * (h * w) ** 2 * (3 + c / 2 - 6)) and counts.weights == 0
    assert att.windows(a, [(c, h, w)], out) == [(whole(h), whole(w))]
    assert val.windows(a, [(c, h, w)], out) == [(POINT, POINT)]


@pytest.mark.parametrize("body, line, col, words", [
    ("output = x |> psa_attention(5, 1)\n", 3, 29, "the qkv map's 12 channels do not split into 5 heads: 12 % 5 = 2"),
    ("output = x |> psa_values(2, 3)\n", 3, 29,
     "each of the 2 heads has 6 channels, which leaves head_dim = 6 - 2*3 = 0 value channels"),
    ("output = x |> psa_attention(2, 0)\n", 3, 32, "'key_dim' is 0; it must be at least 1"),
    ("output = x |> flatten -> psa_attention(1, 1)\n", 3, 26, "but its input is features"),
    ("output = x |> psa_values(2)\n", 3, 15, "needs its argument 'key_dim'"),
    ("output = x |> tokens -> psa_values(1, 1)\n", 3, 25, "takes an image [C, H, W], but its input is a sequence"),
])
def test_bad_uses_are_located(body: str, line: int, col: int, words: str) -> None:
    error_at(netdsl.shapes, "net E()\ninput x: [12, H = 4, W = 4]\n" + body, line, col, words)


def test_the_head_dim_error_says_what_to_do() -> None:
    err = error_at(netdsl.shapes, "net E()\ninput x: [12, H = 4, W = 4]\noutput = x |> psa_attention(3, 2)\n",
                   3, 32, "head_dim = 4 - 2*2 = 0")
    assert "heads*(2*key_dim + head_dim)" in err.hint and "2*key_dim less than 4" in err.hint


def test_the_layers_trace_and_export(tmp_path: Path) -> None:
    x = torch.randn(2, 12, 5, 6)
    for layer in (PSAttention(2, 2), PSValues(2, 2), PSValues(1, 3)):
        traced = torch.fx.symbolic_trace(layer)
        assert torch.equal(traced(x), layer(x))
    text = cg_text(16, 2)
    assert "class PSAttention" in python_round_trip(text, tmp_path)
    assert onnx_round_trip(text, tmp_path)  # batch and image size stay free


def test_docstring_examples() -> None:
    result = doctest.testmod(torch_psa)
    assert result.attempted >= 3 and result.failed == 0


def test_every_pixel_reads_the_whole_map() -> None:
    h, w = sp.symbols("H W", integer=True, positive=True)
    res = receptive_fields(netdsl.shapes(MEMORY["after-conv"])).outputs["y"]
    assert (res.size, res.jump) == ((h, w), (0, 0))  # every output pixel: the whole input
    # the same network without the attention: the values' 3x3 alone, a sliding 3x3 window
    plain = MEMORY["after-conv"].replace("psa_attention(2, 2)", "psa_values(2, 2)")
    res = receptive_fields(netdsl.shapes(plain)).outputs["y"]
    assert (res.size, res.jump) == ((3, 3), (1, 1))


@pytest.mark.parametrize("name", MEMORY)
def test_memory_is_what_torch_saves_and_allocates(name: str) -> None:
    torch.manual_seed(0)
    model = netdsl.build(MEMORY[name])
    cg = model.concrete
    n_sym = batch_symbol(cg.env)
    for n, dtype, cast in [(1, "fp32", None), (2, "fp32", None), (2, "bf16", torch.bfloat16),
                           (1, "fp16", torch.float16)]:
        options = MemoryOptions(dtype=dtype)  # type: ignore[arg-type]
        model.train()
        assert at(cg, saved_total(cg, n_sym, options), n) == saved_by_torch(model, n, cast), (n, dtype)
        x = torch.randn(n, *model.inputs["x"])
        assert at(cg, peak_bytes(cg, n_sym, options).total, n) == measured_peak(model.eval(), x, autocast=cast), \
            (n, dtype)


def test_what_autograd_keeps_is_the_map_the_queries_and_the_softmax() -> None:
    """Hand count: after a conv (which keeps x), psa_attention keeps the qkv map (q, k, v are views),
    q * scale and the heads x N x N softmax."""
    text = HEAD + "output y = x |> conv(12, 1) -> psa_attention(2, 2)\n"
    n, tokens = 2, 48
    kept = n * 4 * (12 * tokens + 12 * tokens + 2 * 2 * tokens + 2 * tokens * tokens)
    assert saved_by_torch(netdsl.build(text), n) == kept
