"""attention (self-attention, a layer) and attention_qkv (a statement): nn.MultiheadAttention as
torch has it (parameters, names, outputs), counts against torch's FlopCounterMode, pinned errors,
and the memory rules against what torch saves and allocates (fp32 and autocast)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import sympy as sp
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import netdsl
from conftest import error_at
from live_oracle import measured_peak
from memory_oracle import at, one_thread, saved_by_torch
from netdsl.commands.count import count_report
from netdsl.ops import REGISTRY
from netdsl.ops.window import POINT, whole
from netdsl.passes.memory_model import MemoryOptions, batch_symbol
from netdsl.passes.peak import peak_bytes
from netdsl.passes.saved import saved_total

HEAD = "net Att(D = 8)\ninput t: [T = 6, D]\n"
# Self-attention with and without biases, and queries over keys and values of another length.
SPEC = HEAD + """a = t |> layernorm -> attention(2)
q = a |> linear(D, bias=false)
kv = cat(a, a, dim=1)
y = attention_qkv(q, kv, kv, heads=4)
output = add(y, a) |> attention(4, bias=false) -> token(0) -> linear(3)
"""
# The memory cases: a contiguous sequence, a transposed one straight from `tokens` (matmul copies
# it), attention_qkv with and without biases; no dropout (see test_dropout_in_training_is_refused).
MEMORY = {
    "sequence": HEAD + """a = t |> linear(D) -> attention(2)
kv = cat(a, t, dim=1)
y = attention_qkv(a, kv, kv, heads=4, bias=false)
output = add(y, a) |> attention(4)
""",
    "tokens": """net Tok(D = 8)
input x: [3, H = 8, W = 8] where H % 2 == 0, W % 2 == 0
a = x |> conv(D, 2, stride=2) -> tokens -> attention(2)
b = x |> conv(D, 2, stride=2) -> tokens -> attention(2, bias=false)
output = add(a, b) |> linear(D)
""",
    "qkv-tokens": """net QkvTok(D = 8)
input x: [3, H = 8, W = 8] where H % 2 == 0, W % 2 == 0
p = x |> conv(D, 2, stride=2) -> tokens
q = p |> gelu
output = attention_qkv(q, p, p, heads=2)
""",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return netdsl.build(SPEC)


def _reference(m: nn.Module) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(m.embed_dim, m.num_heads, dropout=m.dropout, bias=m.in_proj_bias is not None,
                                batch_first=True)
    ref.load_state_dict(m.state_dict(), strict=True)
    return ref


def test_the_modules_are_torchs_multihead_attention(model: nn.Module) -> None:
    keys = [k for k in model.state_dict() if "proj" in k]
    assert keys == ["a.1.in_proj_weight", "a.1.in_proj_bias", "a.1.out_proj.weight", "a.1.out_proj.bias",
                    "y.in_proj_weight", "y.in_proj_bias", "y.out_proj.weight", "y.out_proj.bias",
                    "output.0.in_proj_weight", "output.0.out_proj.weight"]
    assert all(isinstance(m, nn.MultiheadAttention) and m.batch_first
               for m in (model.a[1], model.y, model.output[0]))
    x, k, v = torch.randn(2, 6, 8), torch.randn(2, 12, 8), torch.randn(2, 12, 8)
    for m, args in ((model.a[1], (x,)), (model.output[0], (x,)), (model.y, (x, k, v))):
        ref = _reference(m)
        full = args * 3 if len(args) == 1 else args
        for training in (True, False):
            m.train(training)
            ref.train(training)
            assert torch.equal(m(*args), ref(*full, need_weights=False)[0])
        with torch.no_grad():  # torch's own eval forward takes its fused kernel: equal to rounding
            torch.testing.assert_close(m(*args), ref(*full, need_weights=False)[0], rtol=1e-5, atol=1e-6)
    # torch projects keys and values that are one tensor at once (packed): equal to rounding
    torch.testing.assert_close(model.y(x, k, k), _reference(model.y)(x, k, k, need_weights=False)[0],
                               rtol=1e-5, atol=1e-6)


def test_counts_are_torchs(model: nn.Module) -> None:
    layers = {x.path: x for x in model.concrete.walk()}
    value = model.concrete.env.at
    cases = [("a.1", model.a[1], [(6, 8)]), ("output.0", model.output[0], [(6, 8)]),
             ("y", model.y, [(6, 8), (12, 8), (12, 8)])]
    for path, m, shapes in cases:
        c = layers[path].counts
        assert value(c.weights + c.biases) == sum(p.numel() for p in m.parameters()), path
        assert value(c.weights) == m.in_proj_weight.numel() + m.out_proj.weight.numel(), path
        assert layers[path].connections == c.macs
        xs = [torch.randn(3, *s) for s in shapes]
        # torch's FlopCounterMode counts the attention products where they run as matrix products
        # (the math kernel); it has no formula for the CPU flash kernel
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as flops:
            m(*xs)
        assert 3 * value(c.macs) == flops.get_total_flops() // 2, path


def test_the_count_formulas() -> None:
    t, tk, d = sp.symbols("T Tk D", positive=True, integer=True)
    att, qkv = REGISTRY["attention"], REGISTRY["attention_qkv"]
    a = netdsl.ops.Args(heads=2, dropout=0.0, bias=True)
    c = att.counts(a, [(t, d)], (t, d))
    assert (c.weights, c.biases, c.macs) == (4 * d**2, 4 * d, sp.expand(4 * t * d**2 + 2 * t**2 * d))
    c = qkv.counts(netdsl.ops.Args(a, bias=False), [(t, d), (tk, d), (tk, d)], (t, d))
    assert (c.weights, c.biases) == (4 * d**2, 0)
    assert c.macs == sp.expand(t * d * d + 2 * tk * d * d + t * d * d + 2 * t * tk * d)
    assert att.windows(a, [(t, d)], (t, d)) == [(whole(t), POINT)]  # every token reads every token
    assert qkv.windows(a, [(t, d), (tk, d), (tk, d)], (t, d)) == [(POINT, POINT), (whole(tk), POINT),
                                                                  (whole(tk), POINT)]


@pytest.mark.parametrize("body, line, col, words", [
    ("output = t |> attention(3)\n", 4, 25, "8 features (D) do not split into 3 heads"),
    ("output = attention_qkv(t, t, t, heads=3)\n", 4, 39, "8 features (D) do not split into 3 heads"),
    ("output = x |> attention(2)\n", 4, 15, "'attention' takes a sequence [T, D], but its input is an image"),
    ("f = x |> flatten\noutput = f |> attention(2)\n", 5, 15, "but its input is features"),
    ("k = t |> linear(4)\noutput = attention_qkv(t, k, k, heads=2)\n", 5, 10,
     "attention_qkv() of sequences whose features differ: 't' is [T, D] = [6, 8] (from line 2), 'k' is [T, 4]"),
    ("k = cat(t, t, dim=1)\noutput = attention_qkv(t, k, t, heads=2)\n", 5, 10,
     "keys k are [12, 8] but values v are [6, 8]"),
    ("output = attention_qkv(x, x, x, heads=1)\n", 4, 10, "attention_qkv() takes sequences [T, D], but got [3, 8, 8]"),
    ("output = attention_qkv(t, t, t, heads=2) |> gelu\n", 4, 45, "attention_qkv() has weights of its own"),
    ("output = t |> attention(2, dropout=1.5)\n", 4, 36, "dropout"),
])
def test_bad_uses_are_located(body: str, line: int, col: int, words: str) -> None:
    error_at(netdsl.shapes, HEAD + "input x: [3, H = 8, W = 8]\n" + body, line, col, words)


def test_the_heads_error_says_what_to_do() -> None:
    err = error_at(netdsl.shapes, HEAD + "output = t |> attention(3)\n", 3, 25, "D % heads = 2")
    assert "divisible by heads" in err.hint


def test_dropout_in_training_is_refused() -> None:
    text = HEAD + "output = t |> attention(2, dropout=0.1)\n"
    cg = netdsl.build(text).concrete
    with pytest.raises(netdsl.NetdslError, match="math attention") as info:
        saved_total(cg, batch_symbol(cg.env))
    assert info.value.span is not None and (info.value.span.line, info.value.span.column) == (3, 15)
    peak_bytes(cg, batch_symbol(cg.env))  # eval mode takes no dropout: the peak is known
    # `count --memory` leaves the two training metrics out with the reason, and gives the rest
    report, _, _ = count_report(text, "att.net", {})
    assert report["totals"]["saved_bytes"] is None and report["totals"]["train_bytes"] is None
    assert report["totals"]["peak_bytes"] is not None and report["totals"]["param_bytes"] is not None
    assert any(n.startswith("saved_bytes: att.net:3:15: attention with dropout > 0") for n in report["notes"])
    with pytest.raises(netdsl.NetdslError, match="math attention") as info:
        netdsl.count(text).total("train_bytes")
    assert "dropout=0" in (info.value.hint or "")


def _saved_and_peak(model: nn.Module, n: int, dtype: str) -> tuple[tuple[int, int], tuple[int, int]]:
    cg = model.concrete
    n_sym = batch_symbol(cg.env)
    cast = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    options = MemoryOptions(dtype=dtype)
    formulas = (at(cg, saved_total(cg, n_sym, options), n), at(cg, peak_bytes(cg, n_sym, options).total, n))
    xs = [torch.randn(n, *s) for s in model.inputs.values()]
    measured = (saved_by_torch(model, n, cast), measured_peak(model, *xs, autocast=cast))
    return formulas, measured


@pytest.mark.parametrize("name", MEMORY)
def test_memory_is_what_torch_saves_and_allocates(name: str) -> None:
    torch.manual_seed(0)
    model = netdsl.build(MEMORY[name])
    # a transposed sequence read twice (here by attention_qkv's k and v): for one sample each
    # projection views it (one storage kept), for more each copies it (two): the rule counts copies
    runs = [(2, "fp32"), (2, "bf16"), (2, "fp16")] if name == "qkv-tokens" else \
        [(1, "fp32"), (2, "fp32"), (2, "bf16"), (1, "fp16")]
    for n, dtype in runs:
        formulas, measured = _saved_and_peak(model, n, dtype)
        assert formulas == measured, (n, dtype)


def test_what_autograd_keeps_is_not_the_attention_weights() -> None:
    """The flash kernel keeps q, k, v, its output and a log-sum-exp per query and head: no T x T."""
    torch.manual_seed(0)
    text = "net Long(D = 8)\ninput t: [T = 64, D]\noutput = t |> attention(2)\n"
    model = netdsl.build(text)
    n, t, d, heads = 2, 64, 8, 2
    kept = saved_by_torch(model, n)
    x, qkv, out, lse = n * t * d * 4, 3 * n * t * d * 4, n * t * d * 4, n * heads * t * 4
    assert kept == x + qkv + out + lse < n * heads * t * t * 4
    formulas, measured = _saved_and_peak(model, n, "fp32")
    assert formulas == measured
