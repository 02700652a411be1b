"""Every kind of bad input: a NetdslError with the right line and column, rendered by the CLI."""
from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from conftest import run_cli
from netdsl.errors import NetdslError

HEAD = ("net N(NF = 8, k: odd = 3)\n"
        "input x: [1, H = 32, W = 32] where H % 4 == 0, W % 4 == 0\n")

# (id, body after the two header lines, --set overrides, line, column, words the message must contain)
CASES = [
    ("syntax", "output = x |> conv(NF, k padding=1)", {}, 3, 26, "unexpected 'padding'"),
    ("eof", "output = x |> conv(NF, k,", {}, 3, 26, "unexpected end of file"),
    ("bad-char", "output = x |> conv(NF, k) $", {}, 3, 27, "unexpected character '$'"),
    ("float-size", "output = x |> conv(NF, 2.5)", {}, 3, 24, "wants an integer expression"),
    ("unknown-op", "output = x |> convv(NF, k)", {}, 3, 15, "unknown op or block 'convv'"),
    ("unknown-arg", "output = x |> conv(NF, k, pading=1)", {}, 3, 27, "no argument 'pading'"),
    ("too-many-args", "output = x |> relu(1)", {}, 3, 20, "takes at most 0"),
    ("missing-arg", "output = x |> conv(NF)", {}, 3, 15, "needs its argument 'kernel'"),
    ("twice", "output = x |> conv(NF, k, kernel=3)", {}, 3, 27, "given twice"),
    ("unknown-name", "output = x |> conv(NF, kk)", {}, 3, 24, "unknown name 'kk'"),
    ("unknown-tensor", "output = y |> relu", {}, 3, 10, "unknown tensor 'y'"),
    ("duplicate", "a = x |> relu\na = x |> relu\noutput = a", {}, 4, 1, "duplicate name 'a'"),
    ("use-before-def", "output = cat(x, b)\nb = x |> relu", {}, 3, 17, "used before it is defined"),
    ("string-for-int", 'output = x |> conv(NF, "3")', {}, 3, 24, "wants an integer expression"),
    ("bool-for-float", "output = x |> batchnorm(true)", {}, 3, 25, "wants a number"),
    ("bad-choice", 'output = x |> upsample(2, mode="bicubic")', {}, 3, 32, "must be one of"),
    ("float-range", "output = x |> dropout(p=1.5)", {}, 3, 25, "must be from 0.0 to 1.0"),
    ("zero-channels", "output = x |> conv(NF - 8, k)", {}, 3, 20, "'out' is 0"),
    ("negative-size", "output = x |> conv(NF, 34)", {}, 3, 15, "height after 'conv' is negative: H - 33 = -1"),
    ("zero-size", "output = x |> conv(NF, 33)", {}, 3, 15, "height after 'conv' is zero: H - 32 = 0"),
    ("non-integer", "output = x |> conv(NF / 3, k)", {}, 3, 20, "not an integer"),
    ("cat-mismatch", "a = x |> conv(NF, k, stride=2, padding=1)\noutput = cat(x, a)", {}, 4, 10,
     "cat() of tensors whose spatial sizes differ"),
    ("add-mismatch", "a = x |> conv(NF, k)\noutput = add(x, a)", {}, 4, 10,
     "add() of tensors whose shapes differ"),
    ("unknown-merge", "output = blend(x, x)", {}, 3, 10, "unknown merge 'blend'"),
    ("unknown-function", "output = x |> conv(abs(NF), k)", {}, 3, 20, "unknown function 'abs'"),
    ("no-output", "a = x |> relu", {}, 3, 1, "no output"),
    ("set-unknown", "output = x |> relu", {"foo": 1}, 1, 7, "no parameter or size 'foo'"),
    ("set-constraint", "output = x |> relu", {"k": 4}, 1, 15, "'k' must be odd"),
    ("set-where", "output = x |> relu", {"H": 30}, 2, 36, "does not hold"),
    ("set-negative", "output = x |> relu", {"NF": -1}, 1, 7, "negative"),
    ("groups", "output = x |> conv(NF, k, padding=1, groups=3)", {}, 3, 45, "groups=3 must divide"),
    ("output-padding", "output = x |> convT(NF, k, stride=2, output_padding=2)", {}, 3, 53,
     "output_padding=2 must be smaller"),
    ("pool-padding", "output = x |> maxpool(2, padding=2)", {}, 3, 34, "at most half"),
    ("hole-in-build", "output = x |> conv(NF, k, padding=?)", {}, 3, 35, "left open"),
    ("repeat-too-many", "output = x |> relu * (NF * 200)", {}, 3, 23, "repetition count must be an integer from 0 to 1000"),
    ("block-arity", "block b(c) = conv(c, k)\noutput = x |> b(1, 2)", {}, 4, 20, "takes 1 argument"),
    ("block-missing", "block b(c) = conv(c, k)\noutput = x |> b", {}, 4, 15, "missing argument"),
    ("block-shadows", "block relu(c) = conv(c, k)\noutput = x |> relu", {}, 3, 1, "shadows the builtin"),
    ("reserved", "cat = x |> relu\noutput = cat", {}, 3, 1, "reserved"),
    ("module-clash", "forward = x |> relu\noutput = forward", {}, 3, 1, "clashes with an attribute of CompiledNet"),
    ("duplicate-input", "input x: [1, H, W]\noutput = x |> relu", {}, 3, 1, "duplicate name 'x'"),
    ("exponent", "output = x |> conv(2**NF, k)", {}, 3, 23, "exponents must be constant"),
    ("div-zero", "output = x |> conv(NF // 0, k)", {}, 3, 26, "division by zero"),
    ("dup-label", "output = x |> a: relu -> a: relu", {}, 3, 26, "duplicate layer name 'a'"),
    ("positional-after-kw", "output = x |> conv(out=NF, 3)", {}, 3, 28, "positional argument after"),
]


@pytest.mark.parametrize(("body", "sets", "line", "col", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_position(body: str, sets: dict, line: int, col: int, words: str) -> None:
    with pytest.raises(NetdslError) as info:
        netdsl.build(HEAD + body + "\n", **sets)
    err = info.value
    assert words in err.message, err.render()
    assert err.span is not None, err.render()
    assert (err.span.line, err.span.column) == (line, col), err.render()
    assert err.hint


def test_header_errors() -> None:
    with pytest.raises(NetdslError, match="declares no input"):
        netdsl.parse("net N(a = 1)\noutput = x |> relu\n")
    with pytest.raises(NetdslError, match="unknown parameter annotation"):
        netdsl.parse("net N(a: big = 1)\ninput x: [1, H = 4, W = 4]\noutput = x |> relu\n")
    with pytest.raises(NetdslError, match="has no value"):
        netdsl.build("net N(a = 1)\ninput x: [1, H, W = 4]\noutput = x |> relu\n")
    with pytest.raises(NetdslError, match="unknown name 'b' in parameter default"):
        netdsl.parse("net N(a = b, b = 1)\ninput x: [1, H = 4, W = 4]\noutput = x |> relu\n")


_cli = run_cli


def test_cli_renders_error_with_caret(tmp_path: Path) -> None:
    spec = tmp_path / "bad.net"
    spec.write_text(HEAD + "a = x |> conv(NF, k, stride=2, padding=1)\noutput = cat(x, a)\n", encoding="utf-8")
    r = _cli("build", str(spec))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"{spec}:4:10: error: cat() of tensors")
    assert "'x' is [1, H, W] = [1, 32, 32] (from line 2)" in lines[0]
    assert "'a' is [NF, " in lines[0] and "= [8, 16, 16] (from line 3)" in lines[0]
    assert lines[1].endswith("| output = cat(x, a)")
    assert lines[2].endswith("|          ^^^^^^^^^")
    assert lines[-1].startswith("  hint: ")
    assert r.stdout == ""


def test_cli_debug_shows_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "bad.net"
    spec.write_text(HEAD + "output = x |> convv(1, 3)\n", encoding="utf-8")
    r = _cli("build", str(spec), "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr and "NetdslError" in r.stderr


@pytest.mark.parametrize("case", ["missing", "directory", "binary", "empty"])
def test_cli_file_errors(tmp_path: Path, case: str) -> None:
    path = tmp_path / "x.net"
    if case == "directory":
        path = tmp_path
    elif case == "binary":
        path.write_bytes(HEAD.encode() + b"output = x |> conv(\xff, 3)\n")
    elif case == "empty":
        path.write_bytes(b"")
    r = _cli("build", str(path))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(str(path)) and "error:" in first
    if case == "binary":
        assert first.startswith(f"{path}:3:20: error: the file is not valid UTF-8")


def test_cli_set_errors(root: Path) -> None:
    r = _cli("build", str(root / "specs" / "unet.net"), "--set", "k=4")
    assert r.returncode == 2 and "'k' must be odd, but --set k=4 is not" in r.stderr
    r = _cli("build", str(root / "specs" / "unet.net"), "--set", "k")
    assert r.returncode == 2 and "is not NAME=INTEGER" in r.stderr
    r = _cli("build", str(root / "specs" / "unet.net"), "--set", "bogus=1")
    assert r.returncode == 2 and "unet.net:4:10: error: --set bogus" in r.stderr


def test_unet_with_output_padding_zero_fails_at_the_concatenation(root: Path, tmp_path: Path) -> None:
    text = (root / "specs" / "unet.net").read_text(encoding="utf-8")
    bad = text.replace("output_padding=1", "output_padding=0")
    assert bad != text
    spec = tmp_path / "unet0.net"
    spec.write_text(bad, encoding="utf-8")
    r = _cli("build", str(spec))
    assert r.returncode == 2
    first = r.stderr.splitlines()[0]
    line_no = next(i for i, text in enumerate(bad.splitlines(), 1) if text.startswith("sequence4"))
    assert first.startswith(f"{spec}:{line_no}:13: error: cat() of tensors whose spatial sizes differ")
    assert "'sequence3' is [NF, H/2 - 1, W/2 - 1] = [32, 15, 15]" in first
    assert "'sequence1' is [NF, H/2, W/2] = [32, 16, 16]" in first
