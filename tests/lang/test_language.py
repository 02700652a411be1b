"""The language: grammar, expressions, blocks, labels, merges, the IR's guarantees."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lark
import pydantic
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import netdsl
from netdsl import ir
from netdsl.parse_tables import grammar_text as _grammar_text

ROOT = Path(__file__).resolve().parents[2]


def test_grammar_is_conflict_free_lalr() -> None:
    # strict=True turns shift/reduce conflicts and terminal collisions into errors.
    lark.Lark(_grammar_text(), parser="lalr", strict=True, start=["start", "claims_file"])


def _error_facts(e: lark.exceptions.UnexpectedInput) -> tuple:
    """What a syntax error says, as netdsl reports it: Lark's own text lists the expected tokens in
    set order, which differs between processes (hash seeds), so the set is compared sorted."""
    expected = getattr(e, "expected", None) or getattr(e, "allowed", None) or ()
    return type(e), e.line, e.column, repr(getattr(e, "token", None)), sorted(expected)


def test_shipped_parse_tables_are_current_and_used() -> None:
    # A stale file would silently cost every process the build again; a wrong one, wrong parses.
    from netdsl import parse_tables

    # LALR state numbers differ from build to build (set order), so the file is compared by its
    # key and by what it parses, not byte for byte.
    shipped = json.loads(Path(parse_tables.__file__).with_name(parse_tables.TABLES_NAME).read_text(encoding="utf-8"))
    key = parse_tables.fingerprint(_grammar_text())
    assert shipped["key"]["grammar_sha256"] == key["grammar_sha256"], "run: python -m netdsl.parse_tables"
    built = parse_tables.build_parser()
    loaded = parse_tables.load(_grammar_text(), parse_tables.NewlineFilter())
    if shipped["key"] != key:  # another Lark than the tables were built with: they must be ignored
        assert loaded is None
        return
    assert loaded is not None
    for spec in sorted(ROOT.glob("specs/**/*.net")):
        text = spec.read_text(encoding="utf-8")
        assert loaded.parse(text, start="start") == built.parse(text, start="start"), spec
    for bad in ("net A\ninput x: [3, H = 4, W = 4]\noutput = x |> conv(3,\n", "net\n", "net A(3)\n", "net A\ninput x: [3 4]\n",
                "net A\ninput x: [3]\ny = x |> |> relu\noutput = y\n"):
        with pytest.raises(lark.exceptions.UnexpectedInput) as a:
            built.parse(bad, start="start")
        with pytest.raises(lark.exceptions.UnexpectedInput) as b:
            loaded.parse(bad, start="start")
        assert _error_facts(a.value) == _error_facts(b.value)
    assert parse_tables.load(_grammar_text() + "\n// edited\n", parse_tables.NewlineFilter()) is None


def test_blocks_labels_repetition_and_wrapping() -> None:
    spec = """
    net T(C = 4)   # comment after the header
    input x: [2, H = 8, W = 8]
    # a block that calls a block
    block cbr(c) = conv(c, 3, padding=1) -> batchnorm -> relu
    block two(c) = cbr(c) -> cbr(2*c)
    y = x
      |> stem: cbr(C)
      -> t: two(C) * 2
    output = y |> conv(
        C,
        1,
    )
    """
    spec = "\n".join(line.strip() for line in spec.splitlines())
    m = netdsl.build(spec)
    names = [n for n, _ in m.y.named_children()]
    assert names[:3] == ["stem_0", "stem_1", "stem_2"]
    assert names[3:9] == [f"t_0_{i}" for i in range(6)] and names[-1] == "t_1_5"
    assert [c.out_channels for c in m.y.modules() if isinstance(c, torch.nn.Conv2d)] == [4, 4, 8, 4, 8]
    assert m(torch.zeros(1, 2, 8, 8)).shape == (1, 4, 8, 8)


def test_residual_add_computes_the_sum() -> None:
    m = netdsl.build("net R(C = 3)\ninput x: [C, H = 5, W = 5]\nb = x |> conv(C, 3, padding=1)\noutput = add(x, b)")
    x = torch.randn(2, 3, 5, 5)
    assert torch.allclose(m(x), x + m.b(x))


def test_cat_order_and_channels() -> None:
    m = netdsl.build("net R()\ninput x: [1, H = 4, W = 4]\na = x |> conv(2, 1)\noutput = cat(a, x, a)")
    x = torch.randn(1, 1, 4, 4)
    y = m(x)
    assert y.shape == (1, 5, 4, 4) and torch.equal(y[:, 2:3], x) and torch.equal(y[:, :2], y[:, 3:])


def test_all_ops_compile_and_match_shapes() -> None:
    spec = """net All(C = 6)
input x: [3, H = 16, W = 16] where H % 4 == 0, W % 4 == 0
a = x |> conv(C, 3, stride=1, padding=2, dilation=2, groups=3, bias=false) -> batchnorm(eps=0.001, momentum=0.2)
b = a |> maxpool(3, stride=2, padding=1, dilation=1) -> avgpool(2) -> leaky_relu(0.2) -> sigmoid -> tanh
c = b |> convT(C, 4, stride=2, padding=1, output_padding=0) -> dropout(0.25)
output = c |> upsample(2, mode="bilinear", align_corners=true) -> relu"""
    r = netdsl.shapes(spec)
    m = netdsl.build(spec)
    m.eval()
    seen = {}
    for name, mod in m.named_modules():
        if not list(mod.children()):
            mod.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, list(out.shape[1:])))
    m(torch.zeros(1, 3, 16, 16))
    for ls in r.layers:
        assert seen[ls.qualname] == r.at(ls.out_shape), ls.qualname
    assert r.show(r.output_shape) == [r.env.symbols[n] for n in ("C", "H", "W")] and r.at(r.output_shape) == [6, 16, 16]


EXPR_CASES = [
    ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20), ("17 // 5", 3), ("-17 // 5", -4), ("17 % 5", 2), ("-17 % 5", 3),
    ("2 ** 3 ** 2", 512), ("-2 ** 2", -4), ("min(3, 1, 2)", 1), ("max(3, 7 - 1)", 6), ("10 - 2 - 3", 5),
]


def _value_of(text: str) -> int:
    """The compiler's value of an integer expression (taken from a layer argument)."""
    from netdsl.passes.symbols import make_env

    g = netdsl.parse(f"net E(a = 1)\ninput x: [1, H = 4, W = 4]\noutput = x |> conv({text}, 1)")
    return int(make_env(g).sym(g.nodes[0].layers[0].args["out"]))


@pytest.mark.parametrize(("text", "value"), EXPR_CASES)
def test_expression_semantics_are_pythons(text: str, value: int) -> None:
    assert _value_of(text) == value


def _exprs() -> st.SearchStrategy[tuple[str, int]]:
    leaf = st.integers(0, 40).map(lambda n: (str(n), n))

    def extend(inner: st.SearchStrategy[tuple[str, int]]) -> st.SearchStrategy[tuple[str, int]]:
        def combine(a: tuple[str, int], op: str, b: tuple[str, int]) -> tuple[str, int]:
            if op in ("//", "%") and b[1] == 0:
                return a
            v = {"+": a[1] + b[1], "-": a[1] - b[1], "*": a[1] * b[1],
                 "//": a[1] // b[1] if b[1] else 0, "%": a[1] % b[1] if b[1] else 0}[op]
            return f"({a[0]} {op} {b[0]})", v
        return st.one_of(
            st.builds(combine, inner, st.sampled_from(["+", "-", "*", "//", "%"]), inner),
            st.builds(lambda a: (f"-{a[0]}", -a[1]), inner),
            st.builds(lambda a, b: (f"max({a[0]}, {b[0]})", max(a[1], b[1])), inner, inner),
            st.builds(lambda a, b: (f"min({a[0]}, {b[0]})", min(a[1], b[1])), inner, inner),
        )
    return st.recursive(leaf, extend, max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(_exprs())
def test_random_expressions_match_python(case: tuple[str, int]) -> None:
    text, value = case
    # The expected value is computed by the strategy with Python's own operators, not from text.
    assert _value_of(text) == value


def _walk(node: object):
    if isinstance(node, pydantic.BaseModel):
        yield node
        for name in type(node).model_fields:
            yield from _walk(getattr(node, name))
    elif isinstance(node, (list, tuple)):
        for x in node:
            yield from _walk(x)
    elif isinstance(node, dict):
        for x in node.values():
            yield from _walk(x)


@pytest.mark.parametrize("spec", sorted((ROOT / "specs").glob("*.net")), ids=lambda p: p.stem)
def test_ir_nodes_are_frozen_strict_and_located(spec: Path) -> None:
    g = netdsl.parse(spec)
    nodes = list(_walk(g))
    assert len(nodes) > 20
    for n in nodes:
        assert isinstance(n, ir.Node) and n.span.line >= 1 and n.span.column >= 1
    with pytest.raises(pydantic.ValidationError):
        g.name = "other"
    with pytest.raises(pydantic.ValidationError):
        ir.Int(span=g.span, value=1, extra=2)
    # The JSON form is complete: it reads back into an equal graph.
    assert ir.Graph.model_validate_json(g.model_dump_json()) == g


def test_emit_ir_cli(root: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "netdsl.cli", "build", str(root / "specs" / "unet.net"), "--emit-ir"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["name"] == "UNet" and [n["name"] for n in data["nodes"]][-1] == "output"
    assert ir.Graph.model_validate(data) == netdsl.parse(root / "specs" / "unet.net")


def test_build_json_cli(root: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "netdsl.cli", "build", str(root / "specs" / "unet.net"), "--json",
                        "--set", "NF=8"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    model = netdsl.build(root / "specs" / "unet.net", NF=8)
    assert data["total_params"] == sum(p.numel() for p in model.parameters())
    assert data["output_shape"] == [24, 32, 32]
    first = data["layers"][0]
    assert first == {"name": "sequence1.0", "op": "conv", "line": 10, "out_shape": [8, 16, 16],
                     "out_shape_symbolic": ["NF", "H/2", "W/2"], "params": 1 * 8 * 9 + 8}
    assert sum(layer["params"] for layer in data["layers"]) == data["total_params"]


def test_parse_accepts_path_or_text(root: Path) -> None:
    path = root / "specs" / "unet.net"
    assert netdsl.parse(path) == netdsl.parse(str(path))
    from_text = netdsl.parse(path.read_text(encoding="utf-8"))
    assert from_text.name == "UNet" and len(from_text.nodes) == 5


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep = "-(" * 150 + "1" + ")" * 150
    with pytest.raises(netdsl.NetdslError, match="nests more than"):
        netdsl.parse(f"net D(a = {deep})\ninput x: [1, H = 4, W = 4]\noutput = x |> relu")
    chain = "1" + " + 1" * 3000  # long but flat on the left spine: also capped, with the same error
    with pytest.raises(netdsl.NetdslError, match="nests more than"):
        netdsl.parse(f"net D(a = {chain})\ninput x: [1, H = 4, W = 4]\noutput = x |> relu")


def test_parse_and_shapes_never_import_torch(root: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch now raises ImportError
        "import netdsl, netdsl.cli\n"
        f"g = netdsl.parse(r'{root / 'specs' / 'unet.net'}')\n"
        f"r = netdsl.shapes(r'{root / 'specs' / 'unet.net'}')\n"
        "netdsl.cli.make_parser()\n"
        "print(r.at(r.output_shape))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[24, 32, 32]"


def test_undecidable_merge_is_checked_at_the_values_in_use_and_noted() -> None:
    # Without `H % 2 == 0`, 2*floor(H/2) == H is not true for every H: checked at H = 32 instead.
    spec = "net U()\ninput x: [1, H = 32, W = 32]\na = x |> maxpool(2) -> upsample(2)\noutput = cat(x, a)"
    r = netdsl.shapes(spec)
    assert r.at(r.output_shape) == [2, 32, 32]
    assert len(r.notes) == 1 and "equal at the values in use" in r.notes[0] and r.notes[0].startswith("line 4")
    with pytest.raises(netdsl.NetdslError, match="spatial sizes differ"):
        netdsl.shapes(spec, H=33)
    # With the assumption, the same spec is exact and carries no note.
    exact = netdsl.shapes(spec.replace("[1, H = 32, W = 32]", "[1, H = 32, W = 32] where H % 2 == 0, W % 2 == 0"))
    assert exact.notes == []
