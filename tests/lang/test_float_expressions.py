"""Float expressions: a number argument may mix numbers with a fraction into the integer expression
language (`stochastic_depth(0.2 * i / 16)`), computed exactly (0.2 is 1/5) and rounded to a float
once; where an integer is needed, a number with a fraction is an error at that number.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from fractions import Fraction
from pathlib import Path

import pytest

import netdsl
from conftest import error_at
from netdsl import intexpr, ir, ir_expr
from netdsl.api import analyse_text
from netdsl.errors import NetdslError, Span

HEAD = "net N(k = 3)\ninput x: [3, H = 8, W = 8]\n"


def _args(text: str, op: str) -> list[dict]:
    cg = analyse_text(HEAD + text + "\n", None, {})
    return [dict(layer.args) for layer in cg.layers if layer.op.name == op]


def test_efficientnet_rates_are_exact() -> None:
    # torchvision's EfficientNet: sd_prob = 0.2 * float(block_id) / 16, one rate per block
    rates = [a["p"] for a in _args("output = x |> stochastic_depth(0.2 * i / 16) * 16 as i", "stochastic_depth")]
    assert rates == [float(Fraction(i, 80)) for i in range(16)]
    # Python's float arithmetic rounds twice, so five rates differ from it in the last place ...
    differ = [i for i, p in enumerate(rates) if p != 0.2 * i / 16]
    assert differ == [3, 6, 7, 12, 14]
    assert all(abs(p - 0.2 * i / 16) <= math.ulp(0.2 * i / 16) for i, p in enumerate(rates))
    # ... and not at all in the survival rate 1 - p that stochastic depth keeps and divides by
    assert [1 - p for p in rates] == [1 - 0.2 * i / 16 for i in range(16)]


def test_numbers_are_read_from_their_text() -> None:
    (a,) = _args("output = x |> dropout(0.1 * k)", "dropout")
    assert a["p"] == 0.3 != 0.1 * 3  # 3/10 rounded once
    (b,) = _args("output = x |> batchnorm(eps=1e-3 * 2) -> relu", "batchnorm")
    assert b["eps"] == 0.002
    (c,) = _args("output = x |> dropout(min(0.5, k / 8) - 1.5e-1)", "dropout")
    assert c["p"] == 0.225


def test_block_arguments_carry_numbers_to_float_arguments() -> None:
    rates = _args("block d(p) = dropout(p)\noutput = x |> d(0.25) -> d(1 / 8) -> d(0.5 * k / 6)", "dropout")
    assert [a["p"] for a in rates] == [0.25, 0.125, 0.25]


def test_graph_block_index_as_a_block_argument() -> None:
    text = ("block sd(i) {\n  input x\n  y = x |> conv(3, 3, padding=1) -> stochastic_depth(0.1 * i / 17)\n"
            "  output = add(x, y)\n}\noutput = x |> sd(i) * 18 as i")
    rates = [a["p"] for a in _args(text, "stochastic_depth")]
    assert rates == [float(Fraction(i, 170)) for i in range(18)]


def test_a_negative_number_is_one_value() -> None:
    graph = netdsl.parse(HEAD + "output = x |> pad(1, value=-0.5)\n")
    value = graph.nodes[0].layers[0].args["value"]
    assert isinstance(value, ir.Float) and value.value == -0.5


INTEGER_PLACES = [
    # (id, body after HEAD, line, column, words in the message)
    ("int-argument", "output = x |> conv(0.5 * 8, 3)", 3, 20, "an integer is expected here: 'conv' argument 'out'"),
    ("block-argument", "block b(c) = conv(c, 3)\noutput = x |> b(2.5)", 4, 17, "an integer is expected here"),
    ("block-expression", "block b(c) = conv(c, 3)\noutput = x |> b(k * 1.5)", 4, 21, "1.5 has a fraction"),
    ("repetition", "output = x |> relu * 2.5", 3, 22, "a fractional number is not allowed here"),
    ("repetition-from-block", "block b(n) = relu * n\noutput = x |> b(1.5 + 1)", 4, 17, "an integer is expected here"),
    ("parameter-default", "output = x |> relu\nclaim macs == 0.5", 4, 15, "a fractional number is not allowed here"),
    ("bare-float", "output = x |> conv(2.0, 3)", 3, 20, "wants an integer expression"),
    ("too-large", "output = x |> dropout(1e400)", 3, 23, "too large for a float"),
    ("power-of-power", "output = x |> dropout(((0.5 ** 64) ** 64) ** 64)", 3, 39, "exponents must be whole numbers"),
    ("fraction-exponent", "output = x |> dropout(0.5 ** 0.5)", 3, 30, "exponents must be whole numbers"),
    ("range", "output = x |> dropout(0.4 * k)", 3, 23, "must be from 0.0 to 1.0"),
]


@pytest.mark.parametrize(("body", "line", "col", "words"), [c[1:] for c in INTEGER_PLACES],
                         ids=[c[0] for c in INTEGER_PLACES])
def test_errors_are_located(body: str, line: int, col: int, words: str) -> None:
    err = error_at(netdsl.build, HEAD + body + "\n", line, col, words)
    assert err.hint, err.render()


def test_a_header_default_is_an_integer() -> None:
    with pytest.raises(NetdslError, match="a fractional number is not allowed here"):
        netdsl.parse("net N(k = 0.5)\ninput x: [3, H = 8, W = 8]\noutput = x |> relu\n")


SP = Span(1, 1, 1, 4)


def test_the_evaluator_takes_numbers_only_where_told() -> None:
    e = ir.BinOp(span=SP, op="*", left=ir.Float(span=SP, value=0.2), right=ir.Int(span=SP, value=3))
    with pytest.raises(NetdslError, match="an integer is expected here: 0.2 has a fraction"):
        intexpr.evaluate(e, lambda n: n.value if isinstance(n, ir.Int) else 0, intexpr.INTEGERS)
    assert intexpr.const_int(e) is None
    got = intexpr.evaluate(e, lambda n: Fraction(n.value if isinstance(n, ir.Int) else 0), intexpr.FRACTIONS,
                           real=lambda f: Fraction(repr(f.value)))
    assert got == Fraction(3, 5)
    assert ir_expr.to_text(e) == "0.2*3"


def test_a_number_passed_to_a_block_exports_to_python(tmp_path: Path) -> None:
    import torch

    from netdsl.backends.python_source import to_python_source

    text = ("net E(NF = 4)\ninput x: [3, H = 8, W = 8]\nblock mb(c, p) {\n  input x\n"
            "  y = x |> conv(c, 3, padding=1) -> stochastic_depth(p) -> dropout(p / 2)\n  output = add(x, y)\n}\n"
            "h = x |> conv(NF, 1) -> mb(NF, 0.2 * i / 16) * 3 as i\noutput = h |> mb(NF, 0.1)\n")
    source = to_python_source(analyse_text(text, None, {}))
    # the number is written into the block's class: one class per number
    for p in ("p=0.0,", "p=0.0125,", "p=0.025,", "p=0.1,", "nn.Dropout(0.00625)"):
        assert p in source, p
    path = tmp_path / "numbers_export.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("numbers_export", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["numbers_export"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["numbers_export"]
    model = netdsl.build(text).eval()
    exported = module.E().eval()
    exported.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(exported(x), model(x))
