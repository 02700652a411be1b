"""`netdsl fmt` and `format_text`: the layout rules on small hand-checked examples, idempotence and
the same IR on every shipped spec and on the fuzz corpus, and the command's modes and exit codes."""
from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any

import pytest

from netdsl.cli import main
from netdsl.editor.format import LIMIT, format_text
from netdsl.errors import NetdslError
from netdsl.parsing import parse_text

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.net")) + sorted((ROOT / "specs" / "zoo").glob("*.net"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def ir_without_spans(text: str) -> Any:
    """The spec's IR as plain data, every span dropped: what formatting must not change."""
    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("span", "source_span")}
        if isinstance(x, (list, tuple)):
            return [strip(v) for v in x]
        return x
    return strip(parse_text(text).model_dump())


def check_round_trip(text: str) -> str:
    out = format_text(text)
    assert format_text(out) == out
    assert ir_without_spans(out) == ir_without_spans(text)
    return out


# Expected outputs below were written and checked by hand against the rules in docs/commands/fmt.md.
@pytest.mark.parametrize("src, want", [
    # spacing: operators, `->`, `|>`, commas, brackets; kwargs tight, header/dims spaced
    ("net N( a=1,b : odd=3 )\ninput x:[3,H=8,W=8] where H%2==0\ny=x|>conv( 8,3,padding=b//2 )->relu\n",
     "net N(a = 1, b: odd = 3)\ninput x: [3, H = 8, W = 8] where H % 2 == 0\ny = x |> conv(8, 3, padding=b // 2) -> relu\n"),
    # unary minus stays tight; a conditional keyword value is spaced
    ("net N(a = 1)\ninput x: [3]\nblock b(c, s = 1) = linear(c)\ny = x |> b(4, s=2 if a==1 else -1)\n",
     "net N(a = 1)\ninput x: [3]\nblock b(c, s = 1) = linear(c)\ny = x |> b(4, s = 2 if a == 1 else -1)\n"),
    # a run of one-line statements: `=` aligned, plain sources before `|>` aligned; a blank line ends it
    ("net N()\ninput x: [3]\n\na = x |> relu\nlonger = a |> relu\noutput = cat(a, longer)\n",
     "net N()\ninput x: [3]\n\na      = x |> relu\nlonger = a |> relu\noutput = cat(a, longer)\n"),
    # blocks: two-space indent; blank lines collapsed; trailing spaces and leading blank lines dropped
    ("\n\nnet N()   \ninput x: [3]\n\n\n\nblock b(c) {\ninput x\n      output = x |> linear(c)\n}\noutput = x |> b(2)",
     "net N()\ninput x: [3]\n\nblock b(c) {\n  input x\n  output = x |> linear(c)\n}\noutput = x |> b(2)\n"),
    # comments: own-line ones take the code's indent; an end-of-line one keeps its column, or two spaces
    ("net N()  # head\ninput x: [3]\nblock b(c) {\n  input x\n# inner\n  output = x |> linear(c)   # far\n}\n"
     "output = x |> b(2)#near\n",
     "net N()  # head\ninput x: [3]\nblock b(c) {\n  input x\n  # inner\n  output = x |> linear(c)   # far\n}\n"
     "output = x |> b(2)  #near\n"),  # a comment's own text is never changed
    # a `#` inside a string is not a comment
    ('net N()\ninput x: [3, H = 8, W = 8]\noutput = x |> upsample(2, mode="#bilinear")\n',
     'net N()\ninput x: [3, H = 8, W = 8]\noutput = x |> upsample(2, mode="#bilinear")\n'),
])
def test_rules(src: str, want: str) -> None:
    assert format_text(src) == want
    assert format_text(want) == want


def test_continuation_lines_keep_their_breaks_and_style() -> None:
    # deeper than the `=`: under the first layer; less deep: a fixed indent of two
    src = "net N()\ninput x: [3]\ny = x |> relu\n -> relu\nz = x |> relu\n            -> relu\n"
    assert format_text(src) == "net N()\ninput x: [3]\ny = x |> relu\n  -> relu\nz = x |> relu\n         -> relu\n"


TABLE = ("net N()\ninput x: [3, H = 8, W = 8]\nblock st(a, b, c = 1) = conv(b, 3, padding=1)\n"
         "y = x |> conv(8, 3)\n")


# The tables below were lined up by hand: each column as wide as its widest cell and its comma.
def test_an_aligned_table_is_kept() -> None:
    src = TABLE + ("    -> st(8,   16, c=2)\n"
                   "    -> st(16,  32)\n"
                   "    -> st(160, 4,  c=1) * 2\n"
                   "    -> relu\n")
    want = TABLE + ("         -> st(8,   16, c=2)\n"  # deeper than the `=`: under the first layer
                    "         -> st(16,  32)\n"
                    "         -> st(160, 4,  c=1) * 2\n"
                    "         -> relu\n")
    assert check_round_trip(src) == want


def test_a_table_is_realigned_when_a_cell_grows() -> None:
    # the user widened one cell of an aligned table (16 -> 1600) and shrank another (160 -> 1)
    src = TABLE + "  -> st(8,  16,  c=2)\n  -> st(1600, 32)\n  -> st(1,  4, c=1)\n"
    want = TABLE + "  -> st(8,    16, c=2)\n  -> st(1600, 32)\n  -> st(1,    4,  c=1)\n"
    assert check_round_trip(src) == want


def test_a_table_of_statements_and_what_is_not_a_table() -> None:
    # consecutive one-line statements calling one op form a table too
    src = TABLE + "\na = y |> st(8,  16)\nbb = a |> st(128, 4)\noutput = bb\n"
    want = TABLE + "\na      = y |> st(8,   16)\nbb     = a |> st(128, 4)\noutput = bb\n"
    assert check_round_trip(src) == want
    # nobody aligned these: one space after each comma, as everywhere else
    plain = TABLE + "  -> st(8, 16, c=2)\n  -> st(1600, 32)\n"
    assert format_text(plain) == plain
    # two ops, a blank line, a lone row: no table (the extra spaces go)
    for mixed in ["  -> st(8,  16)\n  -> conv(1600, 3)\n", "  -> st(8,  16)\n", "  -> st(8,  16)\n\n"]:
        text = TABLE.replace("y = ", "output = ") + mixed
        assert ",  " not in format_text(text)
    assert ",  " not in format_text(TABLE + "a = y |> st(8,  16)\n\nb = a |> st(128, 4)\noutput = b\n")


def test_long_chain_is_wrapped_before_arrows() -> None:
    src = "net N()\ninput x: [3]\noutput = x |> " + " -> ".join(["linear(1000)"] * 20) + "\n"
    out = check_round_trip(src)
    lines = out.splitlines()
    assert len(lines) > 3 and all(len(ln) <= LIMIT for ln in lines)
    assert all(ln.startswith(" " * len("output = x |> ") + "->") for ln in lines[3:])


def test_syntax_error_is_the_parsers() -> None:
    with pytest.raises(NetdslError) as e:
        format_text("net N(\n")
    assert e.value.span is not None and "end of file" in e.value.message


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_shipped_specs_are_formatted_and_round_trip(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert check_round_trip(text) == text


def test_fuzz_corpus_round_trips() -> None:
    from test_fuzz import V2, V3, V4, V8, fuzz_case

    for text in V2 + V3 + V4 + V8:
        check_round_trip(text)
    rng = random.Random(24)
    done = 0
    for _ in range(300):
        text = fuzz_case(rng)
        if len(text) > 20_000:
            continue  # the deep generated chains: slow to parse, nothing new for the layout
        try:
            parse_text(text)
        except (NetdslError, RecursionError):
            continue
        check_round_trip(text)
        done += 1
    assert done > 30  # about 50 of these 300 parse (seed 24)


def netdsl_blocks() -> list[tuple[str, str]]:
    """Every ```netdsl block of the README and the docs (a block in a list item without its indent)."""
    out: list[tuple[str, str]] = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in re.finditer(r"^( *)```netdsl\n(.*?)^\1```", text, re.M | re.S):
            where = f"{doc.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}"
            out.append((where, "".join(ln[len(m.group(1)):] for ln in m.group(2).splitlines(True))))
    return out


def _squash(line: str) -> str:
    return re.sub(r"\s", "", line)


def test_docs_quote_specs_as_formatted() -> None:
    # A block quotes a shipped spec when its first line is one of the spec's, spaces aside: then its
    # lines (less `...`) must be the spec's own lines, in order. A block that parses is formatted.
    shipped = [p.read_text(encoding="utf-8").splitlines() for p in SPECS]
    blocks = netdsl_blocks()
    checked = 0
    for where, block in blocks:
        lines = [ln for ln in block.splitlines() if ln.strip() and ln.strip() != "..."]
        sources = [spec for spec in shipped if any(_squash(ln) == _squash(lines[0]) for ln in spec)]
        for spec in sources[:1]:
            rest = iter(spec)
            assert all(ln in rest for ln in lines), f"{where} does not quote its spec's lines as they are now"
        try:
            parse_text(block)
        except NetdslError:
            checked += bool(sources)
            assert sources or lines[0].startswith("claim "), f"{where}: neither a spec nor a quote of one"
            continue
        assert format_text(block) == block, f"{where} is not formatted"
        checked += 1
    assert len(blocks) >= 10 and checked >= len(blocks) - 1  # all but count.md's claims (a .claims file, not fmt's)


def test_check_diff_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.net", tmp_path / "sub" / "bad.netdsl"
    bad.parent.mkdir()
    good.write_text("net N()\ninput x: [3]\noutput = x |> relu\n")
    bad.write_text("net N()\ninput x:[3]\noutput=x|>relu\n")
    assert main(["fmt", "--check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "-input x:[3]" in out and "+input x: [3]" in out and "good.net" not in out
    assert bad.read_text() == "net N()\ninput x:[3]\noutput=x|>relu\n"
    assert main(["fmt", str(tmp_path)]) == 0
    assert bad.read_text() == good.read_text()
    assert main(["fmt", "--check", str(tmp_path)]) == 0
    assert list(tmp_path.rglob(".netdsl-fmt-*")) == []


def test_syntax_error_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ugly, broken = tmp_path / "a.net", tmp_path / "b.net"
    ugly.write_text("net N()\ninput x:[3]\noutput=x\n")
    broken.write_text("net N()\ninput x: [3]\noutput = x |>\n")
    assert main(["fmt", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{broken}:" in err and "error:" in err
    assert ugly.read_text() == "net N()\ninput x:[3]\noutput=x\n"


def test_stdin_to_stdout(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("net N()\ninput x:[3]\noutput=x\n"))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == "net N()\ninput x: [3]\noutput = x\n"


def test_shipped_specs_pass_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fmt", "--check", str(ROOT / "specs")]) == 0
    assert capsys.readouterr().out == ""
