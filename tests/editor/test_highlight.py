"""Highlighting: the TextMate grammar under VS Code's own tokenizer (node) and the Pygments lexer.

The node tests run editors/vscode/test/tokenize.js (vscode-textmate + vscode-oniguruma) once over every
shipped spec; they skip where node or those modules are missing (`npm ci --prefix editors/vscode/test`).
Places are found by their text, not line numbers, so reformatting a spec does not break them.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, String, _TokenType

from netdsl.editor.lexer import NetdslLexer
from netdsl.ops import layers, merges

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = VSCODE / "syntaxes" / "netdsl.tmLanguage.json"
SPECS = sorted([*ROOT.glob("specs/*.net"), *ROOT.glob("specs/zoo/*.net"), *ROOT.glob("specs/*.claims")])
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("docs/commands/*.md")])
# Edge cases no shipped spec holds: a `#` inside a string, a stray character, an unterminated string.
EDGES = ('y = x |> stochastic_depth(0.1, mode="a#b")  # the real comment\n'
         "z = y |> relu $\n"
         "m = x |> pad(1, value=-inf) -> conv(?, 3)\n"
         "output seg = m |> conv(2, 1)\n"
         'w = z |> dropout(mode="open\n')  # last: its `(` stays open to the end of the file

Line = list[dict[str, Any]]


def _gen_ops() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_ops", VSCODE / "scripts" / "gen_ops.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Line]]:
    """Every shipped spec and the edge cases, tokenized by vscode-textmate: {path: lines of tokens}."""
    node = shutil.which("node")
    if node is None or not (VSCODE / "test" / "node_modules" / "vscode-textmate").is_dir():
        pytest.skip("node or the tokenizer's modules are missing: run `npm ci --prefix editors/vscode/test`")
    folder = tmp_path_factory.mktemp("tm")
    extra = {"edges": EDGES} | dict(_netdsl_blocks())
    paths = {key: folder / f"{i}.netdsl" for i, key in enumerate(extra)}
    for key, path in paths.items():
        path.write_text(extra[key])
    files = [str(p) for p in [*SPECS, *paths.values()]]
    out = subprocess.run([node, str(VSCODE / "test" / "tokenize.js"), *files], capture_output=True, text=True,
                         timeout=120, check=True)
    result: dict[str, list[Line]] = json.loads(out.stdout)["files"]
    for key, path in paths.items():
        result[key] = result.pop(str(path))
    return result


def _tokens(lines: list[Line], line_has: str) -> Line:
    """The tokens of the first line holding `line_has`."""
    for toks in lines:
        if line_has in "".join(t["text"] for t in toks):
            return toks
    raise AssertionError(f"no line holds {line_has!r}")


def _scopes(lines: list[Line], line_has: str, text: str, nth: int = 0) -> list[str]:
    """The scopes of the nth token reading exactly `text` on the first line holding `line_has`."""
    hits = [t["scopes"] for t in _tokens(lines, line_has) if t["text"].strip() == text]
    assert len(hits) > nth, f"{text!r} is not a token of the line holding {line_has!r}"
    return list(hits[nth])


def _spec(tm: dict[str, list[Line]], name: str) -> list[Line]:
    return tm[str(ROOT / "specs" / name)]


def test_grammar_op_lists_equal_the_registry() -> None:
    gen = _gen_ops()
    grammar = json.loads(GRAMMAR.read_text())
    for key, entry in gen.entries().items():
        assert grammar["repository"][key] == entry, f"{key} is out of date: run editors/vscode/scripts/gen_ops.py"
    # Read the lists back out of the JSON: the generator itself must not have dropped an op.
    arrow = grammar["repository"]["layer-ops"]["patterns"][0]["match"]
    listed = re.search(r"\(\?:([A-Za-z0-9_|]+)\)\)\\b$", arrow)
    assert listed is not None and sorted(listed.group(1).split("|")) == sorted(layers())
    merge = grammar["repository"]["merge-ops"]["patterns"][1]["match"]
    assert set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", merge.split("(?=")[0])) - {"b"} == set(merges())


def test_extension_declares_the_language_grammar_and_client() -> None:
    pkg = json.loads((VSCODE / "package.json").read_text())
    lang = pkg["contributes"]["languages"][0]
    assert lang["id"] == "netdsl" and {".netdsl", ".net"} <= set(lang["extensions"])
    first = re.compile(lang["firstLine"])  # VS Code reads only a file's first line
    assert first.search("net UNet(NIC = 1, NF = 32)") and first.search("# -*- netdsl -*- UNet")
    assert not first.search("# Part C of the colourization write-up: UNet.") and not first.search("#!/bin/sh")
    assert json.loads(GRAMMAR.read_text())["firstLineMatch"] == lang["firstLine"]
    (grammar,) = pkg["contributes"]["grammars"]
    assert grammar["scopeName"] == "source.netdsl" and (VSCODE / grammar["path"]).resolve() == GRAMMAR
    config = json.loads((VSCODE / lang["configuration"]).read_text())
    assert config["comments"]["lineComment"] == "#"
    assert set(pkg["contributes"]["configuration"]["properties"]) == {"netdsl.path", "netdsl.inlayHints"}
    main = (VSCODE / pkg["main"]).read_text()
    assert "vscode-languageclient/node" in main and "args: ['lsp']" in main
    assert pkg["dependencies"]["vscode-languageclient"][0].isdigit()  # an exact version
    node = shutil.which("node")
    if node is not None:
        subprocess.run([node, "--check", str(VSCODE / pkg["main"])], check=True, timeout=60)


def test_every_character_is_covered_and_nothing_is_invalid(tm: dict[str, list[Line]]) -> None:
    for path in SPECS:
        text_lines = path.read_text().split("\n")
        lines = tm[str(path)]
        assert len(lines) == len(text_lines), path
        for n, (toks, line) in enumerate(zip(lines, text_lines, strict=True), 1):
            assert "".join(t["text"] for t in toks) == line, f"{path}:{n}"
            for t in toks:
                assert not any(s.startswith("invalid") for s in t["scopes"]), f"{path}:{n}: {t}"
                if t["text"].strip():  # every visible character gets a scope of its own
                    assert len(t["scopes"]) >= 2, f"{path}:{n}: {t}"


def test_docs_blocks_have_nothing_invalid(tm: dict[str, list[Line]]) -> None:
    blocks = [where for where, _ in _netdsl_blocks()]
    assert len(blocks) >= 5  # README and docs/language.md show several specs
    for where in blocks:
        bad = [t for toks in tm[where] for t in toks if any(s.startswith("invalid") for s in t["scopes"])]
        assert bad == [], where


def test_invalid_text_is_marked(tm: dict[str, list[Line]]) -> None:
    # The check above could fail: a stray character and an unterminated string are invalid.
    edges = tm["edges"]
    assert "invalid.illegal.character.netdsl" in _scopes(edges, "relu $", "$")
    assert "invalid.illegal.unterminated-string.netdsl" in _scopes(edges, "dropout", '"open')


def test_hole_inf_and_a_named_output(tm: dict[str, list[Line]]) -> None:
    edges = tm["edges"]
    assert "variable.language.hole.netdsl" in _scopes(edges, "conv(?", "?")
    assert "constant.language.inf.netdsl" in _scopes(edges, "value=-inf", "inf")
    assert "variable.parameter.netdsl" in _scopes(edges, "value=-inf", "value")
    assert "keyword.other.output.netdsl" in _scopes(edges, "output seg", "output")
    assert "entity.name.variable.netdsl" in _scopes(edges, "output seg", "seg")


def test_hash_in_a_string_is_no_comment(tm: dict[str, list[Line]]) -> None:
    edges = tm["edges"]
    s = _scopes(edges, "stochastic_depth", '"a#b"')
    assert "string.quoted.double.netdsl" in s and not any(x.startswith("comment") for x in s)
    assert "comment.line.number-sign.netdsl" in _scopes(edges, "stochastic_depth", "the real comment")


@pytest.mark.parametrize(("spec", "line_has", "text", "nth", "scope"), [
    ("unet.net", "# Part C", "Part C of the colourization write-up: UNet.", 0, "comment.line.number-sign.netdsl"),
    ("unet.net", "net UNet", "net", 0, "keyword.other.net.netdsl"),
    ("unet.net", "net UNet", "UNet", 0, "entity.name.type.net.netdsl"),
    ("unet.net", "net UNet", "NIC", 0, "variable.parameter.netdsl"),
    ("unet.net", "net UNet", "odd", 0, "storage.type.annotation.netdsl"),
    ("unet.net", "net UNet", "where", 0, "keyword.other.where.netdsl"),
    ("unet.net", "net UNet", "32", 0, "constant.numeric.integer.netdsl"),
    ("unet.net", "input x", "input", 0, "keyword.other.input.netdsl"),
    ("unet.net", "input x", "x", 0, "entity.name.variable.netdsl"),
    ("unet.net", "input x", "==", 0, "keyword.operator.comparison.netdsl"),
    ("unet.net", "block down", "block", 0, "keyword.other.block.netdsl"),
    ("unet.net", "block down", "down", 0, "entity.name.function.block.netdsl"),
    ("unet.net", "block down", "conv", 0, "support.function.op.netdsl"),
    ("unet.net", "block down", "stride", 0, "variable.parameter.netdsl"),
    ("unet.net", "block down", "->", 0, "keyword.operator.chain.netdsl"),
    ("unet.net", "block down", "relu", 0, "support.function.op.netdsl"),
    ("unet.net", "|> down(2", "sequence2", 0, "entity.name.variable.netdsl"),
    ("unet.net", "|> down(2", "sequence1", 0, "variable.other.netdsl"),
    ("unet.net", "|> down(2", "|>", 0, "keyword.operator.pipe.netdsl"),
    ("unet.net", "|> down(2", "down", 0, "entity.name.function.call.block.netdsl"),
    ("unet.net", "cat(sequence3", "cat", 0, "support.function.merge.netdsl"),
    ("unet.net", "cat(x, sequence4)", "output", 0, "keyword.other.output.netdsl"),
    ("zoo/resnet18.net", "fc: linear", "fc", 0, "entity.name.label.netdsl"),
    ("zoo/resnet18.net", "fc: linear", "linear", 0, "support.function.op.netdsl"),
    ("zoo/resnet18.net", "basic(128", "if", 0, "keyword.control.conditional.netdsl"),
    ("zoo/resnet18.net", "basic(128", "else", 0, "keyword.control.conditional.netdsl"),
    ("zoo/resnet18.net", "basic(128", "as", 0, "keyword.other.as.netdsl"),
    ("zoo/resnet18.net", "basic(128", "i", 1, "entity.name.variable.index.netdsl"),
    ("zoo/resnet18.net", "maxpool(3", "false", 0, "constant.language.false.netdsl"),
    ("zoo/vit_b_16.net", "param pos_embedding", "@", 0, "punctuation.definition.attribute.netdsl"),
    ("zoo/vit_b_16.net", "param pos_embedding", "batch_axis", 0, "entity.other.attribute-name.netdsl"),
    ("zoo/vit_b_16.net", "param pos_embedding", "param", 0, "keyword.other.param.netdsl"),
    ("zoo/vit_b_16.net", "param pos_embedding", "pos_embedding", 0, "entity.name.variable.netdsl"),
    ("zoo/vit_b_16.net", "param pos_embedding", "normal", 0, "support.function.init.netdsl"),
    ("zoo/vit_b_16.net", "param pos_embedding", "0.02", 0, "constant.numeric.float.netdsl"),
    ("zoo/convnext_tiny.net", "param layer_scale", "1e-6", 0, "constant.numeric.float.netdsl"),
    ("zoo/efficientnet_b0.net", '"row"', '"row"', 0, "string.quoted.double.netdsl"),
    ("yolov8.net", "_, last", "_", 0, "entity.name.variable.netdsl"),
    ("yolov8.net", "_, last", "last", 0, "entity.name.variable.netdsl"),
    ("yolov8.net", "_, last", "split", 0, "support.function.split.netdsl"),
    ("yolov8.net", "net YOLOv8", "min", 0, "support.function.builtin.netdsl"),
    ("yolov3.net", "anchors=", "anchors", 0, "variable.parameter.netdsl"),  # a continuation line inside `(`
    ("yolov3.net", "detect(n27", "detect", 0, "support.function.merge.netdsl"),
    ("pool_upsample.claims", "claim weights", "claim", 0, "keyword.other.claim.netdsl"),
    ("pool_upsample.claims", "claim weights", "weights", 0, "support.variable.claim.netdsl"),
    ("pool_upsample.claims", "claim weights", "**", 0, "keyword.operator.arithmetic.netdsl"),
    ("pool_upsample.claims", "doubled=true", "true", 0, "constant.language.true.netdsl"),
])
def test_scopes_at_places(tm: dict[str, list[Line]], spec: str, line_has: str, text: str, nth: int, scope: str) -> None:
    assert scope in _scopes(_spec(tm, spec), line_has, text, nth)


# ---- Pygments ----------------------------------------------------------------------------------------------

# The TextMate scope (most specific first) each Pygments token class stands for (the lexer's table).
SCOPE_TO_TOKEN: list[tuple[str, _TokenType]] = [
    ("comment.", Comment.Single), ("string.", String.Double), ("entity.other.attribute-name", Name.Decorator),
    ("punctuation.definition.attribute", Name.Decorator), ("invalid.", Error), ("keyword.operator.", Operator),
    ("variable.language.hole", Keyword.Pseudo), ("keyword.", Keyword), ("constant.language.", Keyword.Constant),
    ("constant.numeric.integer", Number.Integer), ("constant.numeric.float", Number.Float),
    ("support.variable.claim", Name.Builtin.Pseudo), ("support.function.", Name.Builtin),
    ("entity.name.type.net", Name.Class), ("entity.name.function.", Name.Function),
    ("entity.name.variable", Name.Variable), ("entity.name.label", Name.Label),
    ("variable.parameter", Name.Attribute), ("storage.type.annotation", Keyword.Type),
    ("punctuation.", Punctuation), ("variable.other", Name),
]


def _expected(scopes: list[str]) -> _TokenType:
    for prefix, token in SCOPE_TO_TOKEN:
        if any(s.startswith(prefix) for s in scopes[1:]):
            return token
    raise AssertionError(f"no Pygments class for {scopes}")


def _netdsl_blocks() -> Iterator[tuple[str, str]]:
    for doc in DOCS:
        for m in re.finditer(r"^```netdsl\n(.*?)^```$", doc.read_text(), re.S | re.M):
            yield f"{doc.relative_to(ROOT)}:{doc.read_text().count(chr(10), 0, m.start()) + 1}", m.group(1)


def test_lexer_is_found_by_name_through_the_entry_point() -> None:
    from pygments.lexers import get_lexer_by_name
    eps = [ep for ep in entry_points(group="pygments.lexers") if ep.name == "netdsl"]
    assert [ep.value for ep in eps] == ["netdsl.editor.lexer:NetdslLexer"]
    assert isinstance(get_lexer_by_name("netdsl"), NetdslLexer)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_lexer_has_no_error_on_a_shipped_spec(path: Path) -> None:
    errors = [v for t, v in NetdslLexer().get_tokens(path.read_text()) if t is Error]
    assert errors == []


def test_lexer_has_no_error_in_the_docs_blocks() -> None:
    blocks = list(_netdsl_blocks())
    assert len(blocks) >= 5  # README and docs/language.md show several specs
    for where, code in blocks:
        assert [v for t, v in NetdslLexer().get_tokens(code) if t is Error] == [], where


def test_lexer_marks_errors() -> None:
    toks = list(NetdslLexer().get_tokens("z = y |> relu $\n)"))
    assert [v for t, v in toks if t is Error] == ["$", ")"]


def test_lexer_agrees_with_the_textmate_grammar(tm: dict[str, list[Line]]) -> None:
    """Every visible character of every shipped spec (the docs' blocks, the edge cases) gets the Pygments class that
    stands for its TextMate scope: the two highlighters cannot disagree."""
    texts = {str(p): p.read_text() for p in SPECS} | {"edges": EDGES} | dict(_netdsl_blocks())
    for key, text in texts.items():
        by_char: dict[int, _TokenType] = {}
        for start, token, value in NetdslLexer().get_tokens_unprocessed(text):
            for i in range(start, start + len(value)):
                by_char[i] = token
        offset = 0
        for n, (toks, line) in enumerate(zip(tm[key], text.split("\n"), strict=True), 1):
            col = 0
            for t in toks:
                want = _expected(t["scopes"]) if t["text"].strip() else None
                for i, ch in enumerate(t["text"]):
                    if not ch.isspace():
                        assert by_char[offset + col + i] == want, f"{key}:{n}:{col + i + 1} {t['text']!r} {t['scopes']}"
                col += len(t["text"])
            offset += len(line) + 1
