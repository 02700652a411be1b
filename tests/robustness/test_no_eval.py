"""Nothing a user writes is ever run: payloads are plain syntax errors, and the package has no eval."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import netdsl
from netdsl.errors import NetdslError

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = [
    "__import__('os').system('touch PWNED')",
    "().__class__.__bases__[0].__subclasses__()",
    "exec(\"import os\")",
    "eval('1')",
    "lambda: 1",
    "NF.__class__",
    "open('/etc/passwd').read()",
]
BASE = {
    "param default": "net N(NF = {p})\ninput x: [1, H = 8, W = 8]\noutput = x |> relu",
    "param name": "net N({p} = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> relu",
    "condition": "net N(NF = 1) where {p} > 0\ninput x: [1, H = 8, W = 8]\noutput = x |> relu",
    "input channels": "net N(NF = 1)\ninput x: [{p}, H = 8, W = 8]\noutput = x |> relu",
    "size default": "net N(NF = 1)\ninput x: [1, H = {p}, W = 8]\noutput = x |> relu",
    "layer argument": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> conv({p}, 1)",
    "keyword argument": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> conv(1, 1, stride={p})",
    "string argument": 'net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> upsample(2, mode="{p}")',
    "block argument": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\nblock b(c) = conv(c, 1)\noutput = x |> b({p})",
    "repeat count": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> relu * {p}",
    "label": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> {p}: relu",
    "tensor name": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\n{p} = x |> relu\noutput = x",
    "merge input": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = cat(x, {p})",
    "annotation": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\ny: [{p}, H, W] = x |> relu\noutput = y",
    "claim": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> relu\nclaim weights == {p}",
    "--set value": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> relu",
}
# Core v2: every new place that takes a name or an expression. Each template holds with FILLERS
# (a name or an expression that makes it a valid spec; checked below), so a payload is the only
# thing wrong with it.
_V2 = "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\n"


def _graph(body: str) -> str:
    return "block g(c = 1) {{\n  input t\n  " + body + "\n}}\n"


NEW_PLACES = {
    "graph block name": ("name", _V2 + "block {p}() {{\n  input t\n  output = t |> relu\n}}\noutput = x |> {p}"),
    "linear block parameter name": ("name", _V2 + "block b({p}) = conv({p}, 1)\noutput = x |> b(1)"),
    "graph block parameter name": ("name", _V2 + "block g({p}) {{\n  input t\n  output = t |> conv({p}, 1)\n}}\n"
                                           "output = x |> g(1)"),
    "block parameter default": ("expr", _V2 + "block b(c = {p}) = conv(c, 1)\noutput = x |> b"),
    "graph block parameter default": ("expr", _V2 + "block g(c = {p}) {{\n  input t\n  output = t |> conv(c, 1)\n}}\n"
                                             "output = x |> g"),
    "keyword block argument": ("expr", _V2 + "block b(c = 1) = conv(c, 1)\noutput = x |> b(c={p})"),
    "graph block input": ("name", _V2 + "block g() {{\n  input {p}\n  output = {p} |> relu\n}}\noutput = x |> g"),
    "graph block tensor": ("name", _V2 + _graph("{p} = t |> relu\n  output = {p}") + "output = x |> g"),
    "graph block merge input": ("name", _V2 + _graph("{p} = t |> relu\n  output = add(t, {p})")
                                + "output = x |> g"),
    "graph block layer argument": ("expr", _V2 + _graph("output = t |> conv({p}, 1)") + "output = x |> g"),
    "graph block output annotation": ("expr", _V2 + _graph("output: [{p}, H, W] = t |> conv(c, 1)")
                                      + "output = x |> g"),
    "index name": ("name", _V2 + "output = x |> conv(1 + {p}, 1) * 2 as {p}"),
    "indexed repeat count": ("expr", _V2 + "output = x |> conv(1 + i, 1) * ({p}) as i"),
    "block call repeat count": ("expr", _V2 + _graph("output = t |> relu") + "output = x |> g * ({p})"),
    "layer attribute name": ("attr", _V2 + "output = x |> conv(1, 1) @{p}"),
    "statement attribute name": ("attr", _V2 + "@{p} output = x |> conv(1, 1)"),
    # @freeze takes no arguments: with any argument these are located errors (at the argument).
    "layer attribute argument": ("attr arg", _V2 + "output = x |> conv(1, 1) @freeze({p})"),
    "statement attribute argument": ("attr arg", _V2 + "@freeze({p}) output = x |> conv(1, 1)"),
    "output name": ("name", _V2 + "output {p} = x |> relu"),
    "second output name": ("name", _V2 + "output a = x |> relu\noutput {p} = x |> conv(1, 1)"),
    "output annotation": ("expr", _V2 + "output: [{p}, H, W] = x |> relu"),
    "second input name": ("name", _V2 + "input {p}: [1, H, W]\noutput = add(x, {p})"),
    "second input channels": ("expr", _V2 + "input y: [{p}, H, W]\noutput = cat(x, y)"),
    "features input size": ("expr", _V2 + "input v: [{p}]\noutput a = x\noutput b = v |> linear(2)"),
    "pair first item": ("expr", _V2 + "output = x |> conv(1, ({p}, 1))"),
    "pair second item": ("expr", _V2 + "output = x |> conv(1, (1, {p}), padding=(0, 0))"),
    "if condition left": ("expr", _V2 + "output = x |> conv(1, 1, padding=1 if {p} == 1 else 0)"),
    "if condition right": ("expr", _V2 + "output = x |> conv(1, 1, padding=1 if NF == {p} else 0)"),
    "if branch": ("expr", _V2 + "output = x |> conv(1, 1, padding={p} if NF == 1 else 0)"),
    "else branch": ("expr", _V2 + "output = x |> conv(1, 1, padding=0 if NF == 2 else {p})"),
    "if in a block default": ("expr", _V2 + "block b(s, d = 1 if s == {p} else 0) = conv(1, 1, stride=s) * d\n"
                                     "output = x |> b(1)"),
    "if in an index count": ("expr", _V2 + "output = x |> relu * ({p} if NF == 1 else 2) as i"),
    "new op argument": ("expr", _V2 + "output = x |> adaptive_avgpool({p}) -> flatten -> linear({p})"),
    "float argument": ("expr", _V2 + "output = x |> pad(1, value={p})"),
    # List arguments and the keyword arguments of an op over several tensors (the YOLO head).
    "list item": ("expr", _V2 + "a = x |> maxpool(2)\noutput = detect(x, a, classes=2, strides=[1, 2], "
                          "anchors=[[{p}, 2], [3, 4]])"),
    "flat list item": ("expr", _V2 + "a = x |> maxpool(2)\noutput = detect(x, a, classes=2, strides=[{p}, 2], "
                               "anchors=[[1, 2], [3, 4]])"),
    "merge keyword value": ("expr", _V2 + "a = x |> maxpool(2)\noutput = detect(x, a, classes={p}, strides=[1, 2], "
                                    "anchors=[[1, 2], [3, 4]])"),
}
FILLERS = {"name": "q", "expr": "1", "attr": "freeze", "attr arg": None}


@pytest.mark.parametrize("place", sorted(NEW_PLACES))
def test_new_places_are_valid_without_a_payload(place: str) -> None:
    # Each template is a working spec with a plain name or `1` in the place: the payload is the only fault.
    kind, template = NEW_PLACES[place]
    if FILLERS[kind] is None:  # no value is valid there: the argument itself is the located error
        with pytest.raises(NetdslError, match="takes no arguments") as info:
            netdsl.build(template.format(p="1") + "\n")
        assert info.value.span is not None and info.value.span.line == 3
        return
    netdsl.build(template.format(p=FILLERS[kind]) + "\n")


@pytest.mark.parametrize("place", sorted(NEW_PLACES))
@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_new_places_are_rejected(place: str, payload: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = NEW_PLACES[place][1].format(p=payload) + "\n"
    with pytest.raises(NetdslError) as info:
        netdsl.build(text)
    span = info.value.span
    assert span is not None and 1 <= span.line <= text.count("\n") and span.column >= 1
    # The error points into the payload (or at what the parser stopped on inside it).
    line = text.splitlines()[span.line - 1]
    assert any(ch in line for ch in payload if not ch.isspace()), info.value.render()
    info.value.render()
    assert not (tmp_path / "PWNED").exists()


# Dunder and builtin names are plain names to netdsl: in every new name place, each either builds a
# working module or is a located error; none reaches Python's attribute machinery.
DUNDERS = ["__class__", "__dict__", "__init__", "__builtins__", "__import__", "__globals__", "eval", "exec",
           "forward", "training", "_modules", "__call__", "state_dict", "__getattr__", "__setattr__"]


@pytest.mark.parametrize("place", sorted(p for p, (kind, _) in NEW_PLACES.items() if kind in ("name", "attr")))
@pytest.mark.parametrize("name", DUNDERS)
def test_dunder_names_in_new_places(place: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    text = NEW_PLACES[place][1].format(p=name) + "\n"
    try:
        model = netdsl.build(text)
    except NetdslError as e:
        assert e.span is not None and e.span.line >= 2, e.render()
        return
    out = model(*[torch.zeros(1, *s) for s in model.inputs.values()])
    outs = out if isinstance(out, tuple) else (out,)
    assert [tuple(o.shape[1:]) for o in outs] == list(model.outputs.values())
    assert type(model).forward is not None and isinstance(model.training, bool)
    assert len(model.state_dict()) == len(list(model.parameters())) + len(list(model.buffers()))
    model.load_state_dict(model.state_dict())
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("place", sorted(BASE))
@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_are_rejected(place: str, payload: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if place == "--set value":
        from netdsl.commands.common import parse_sets

        with pytest.raises(NetdslError):
            parse_sets([f"NF={payload}"])
        return
    text = BASE[place].format(p=payload) + "\n"
    with pytest.raises(NetdslError) as info:
        netdsl.build(text)
    assert info.value.span is not None
    assert not (tmp_path / "PWNED").exists()


_EVAL_NAMES = {"eval", "exec", "compile", "__import__", "sympify", "parse_expr", "lambdify"}
_EVAL_ATTRS = {"sympify", "parse_expr", "lambdify"}


def eval_like_calls(source: str, filename: str = "<source>") -> list[str]:
    """Calls that could run text as code, found in the syntax tree (so a hint or docstring that
    merely mentions `torch.load(...)` is not one): eval/exec/compile/__import__, SymPy's string
    parsers (sympify, parse_expr, lambdify, S("...")), pickle.load(s), torch.load without
    weights_only=True."""
    hits = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        weights_only = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
        if (isinstance(f, ast.Name) and name in _EVAL_NAMES) or (owner is not None and name in _EVAL_ATTRS) \
                or (owner == "pickle" and name in ("load", "loads")) \
                or (name == "S" and node.args and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
            hits.append(f"{filename}:{node.lineno}: {ast.unparse(node)[:80]}")
        elif owner == "torch" and name == "load" and not weights_only:
            hits.append(f"{filename}:{node.lineno}: torch.load without weights_only=True")
    return hits


def test_package_never_calls_eval_like_functions() -> None:
    hits = []
    for path in sorted((ROOT / "netdsl").rglob("*.py")):
        hits += eval_like_calls(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert hits == []
    # The check itself can fail: it finds planted calls, and not look-alikes.
    planted = ("x = sympify(text)\neval(s)\nsp.parse_expr(t)\npickle.loads(b)\ntorch.load(f)\nS('x')\n"
               "__import__('os')\ncompile(src, 'f', 'exec')\n")
    assert len(eval_like_calls(planted)) == 8
    benign = ("model.eval()\nre.compile('x')\ntorch.compile(m)\ntorch.load(f, weights_only=True)\n"
              "hint = \"torch.load('yolov3.pt')\"\n# eval(s)\nS(1)\n")
    assert eval_like_calls(benign) == []


@pytest.mark.parametrize("payload", PAYLOADS)
def test_claims_file_payloads_are_rejected(payload: str, tmp_path: Path) -> None:
    spec = tmp_path / "n.net"
    spec.write_text(BASE["layer argument"].format(p="1") + "\n", encoding="utf-8")
    (tmp_path / "n.claims").write_text(f"claim weights == {payload}\n", encoding="utf-8")
    with pytest.raises(NetdslError) as info:
        netdsl.count(spec)
    assert info.value.span is not None and info.value.path == str(tmp_path / "n.claims")
