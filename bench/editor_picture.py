"""docs/editor.png: what `netdsl lsp` answers for specs/unet.net with three mistakes typed into it.

The server runs in a subprocess and is driven as an editor drives it (tests/editor/lsp_client.py):
the picture shows its published diagnostics (ranges and first lines of the messages, as sent) and
its hover on `sequence2`, over the text coloured by netdsl's Pygments lexer. An editor draws the same
answers its own way; this is a faithful drawing of the answers, not a screenshot of one editor.

    python bench/editor_picture.py [--out docs/editor.png]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lsprotocol import types as t  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from pygments.token import Token  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "editor")]
from lsp_client import started  # noqa: E402
from netdsl.editor.lexer import NetdslLexer  # noqa: E402

# The three mistakes: an argument relu does not take, a misspelt keyword, a misspelt tensor name.
MISTAKES = [("sequence3 = sequence2 |> up(NF)", "sequence3 = sequence2 |> up(NF) -> relu(inplace=true)")]
ADDED = ["skip      = sequence1 |> conv(NF, 1, stide=2)", "pooled    = sequenc2 |> maxpool(2)"]
COLOURS = {Token.Comment: "#6a9955", Token.Keyword: "#569cd6", Token.Name.Function: "#dcdcaa",
           Token.Name.Builtin: "#dcdcaa", Token.Literal.Number: "#b5cea8", Token.Literal.String: "#ce9178",
           Token.Name.Attribute: "#9cdcfe", Token.Name.Class: "#4ec9b0", Token.Operator: "#d4d4d4",
           Token.Name.Variable: "#9cdcfe", Token.Name.Decorator: "#c586c0"}
SEVERITY_COLOUR = {1: "#f14c4c", 2: "#cca700", 3: "#3794ff", 4: "#3794ff"}


def spec_text() -> str:
    text = (ROOT / "specs" / "unet.net").read_text(encoding="utf-8")
    for old, new in MISTAKES:
        assert old in text, f"specs/unet.net no longer holds {old!r}: update MISTAKES"
        text = text.replace(old, new)
    return text + "\n".join(ADDED) + "\n"


async def ask(text: str) -> tuple[list[t.Diagnostic], str]:
    uri = (ROOT / "specs" / "unet_typed.net").as_uri()  # never written: the text lives in the editor
    async with started() as client:
        client.open(uri, text)
        _, diagnostics = await client.published(uri, 1)
        line = next(i for i, x in enumerate(text.splitlines()) if x.startswith("sequence2"))
        hover = await client.text_document_hover_async(t.HoverParams(t.TextDocumentIdentifier(uri), t.Position(line, 3)))
    assert hover is not None, "no hover on sequence2"
    content = hover.contents
    value = content.value if isinstance(content, t.MarkupContent) else str(content)
    return diagnostics, value


def colour_of(tok: object) -> str:
    while tok is not None:
        if tok in COLOURS:
            return COLOURS[tok]  # type: ignore[index]
        tok = getattr(tok, "parent", None)
    return "#d4d4d4"


def draw(text: str, diagnostics: list[t.Diagnostic], hover: str, out: Path) -> None:
    lines = text.splitlines()
    lh = 1 / (len(lines) + 3.5)  # a line's height in figure units
    fig = plt.figure(figsize=(13, 0.255 * (len(lines) + 3.5)), dpi=110)
    fig.patch.set_facecolor("#1e1e1e")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    x0, top = 0.045, 1 - lh * 0.6

    def y_of(i: int) -> float:
        return top - (i + 1) * lh

    font = dict(family="DejaVu Sans Mono", fontsize=8.6, va="baseline")
    probe = ax.text(0, 0, "x" * 80, **font)  # the font's true advance, so columns land where they are
    cw = probe.get_window_extent(fig.canvas.get_renderer()).width / 80 / (fig.get_figwidth() * fig.dpi)
    probe.remove()
    for i, line in enumerate(lines):
        ax.text(0.008, y_of(i), f"{i + 1:>3}", color="#858585", **font)
        col = 0
        for tok, value in NetdslLexer().get_tokens(line):
            value = value.rstrip("\n")
            if value:
                ax.text(x0 + col * cw, y_of(i), value, color=colour_of(tok), **font)
            col += len(value)
    messages: dict[int, list[tuple[str, str]]] = {}
    for d in diagnostics:
        i, a, b = d.range.start.line, d.range.start.character, max(d.range.end.character, d.range.start.character + 1)
        colour = SEVERITY_COLOUR.get(int(d.severity or 1), "#f14c4c")
        xs = [x0 + (a + k / 4) * cw for k in range(int((b - a) * 4) + 1)]
        ax.plot(xs, [y_of(i) - lh * (0.28 + 0.08 * (k % 2)) for k in range(len(xs))], color=colour, lw=0.9)
        messages.setdefault(i, []).append((d.message.splitlines()[0], colour))
    for i, found in messages.items():  # as inline hints at the line's end, errors first
        col = len(lines[i]) + 4 if i < len(lines) else 4
        for message, colour in sorted(found, key=lambda m: m[1] != SEVERITY_COLOUR[1]):
            shown = "■ " + (message if len(message) < 62 else message[:60] + "…")
            ax.text(x0 + col * cw, y_of(i), shown, color=colour, **font)
            col += len(shown) + 3
    # the hover box, above the hovered name as editors place it when the room is there
    body = [ln.replace("`", "") for ln in hover.splitlines() if ln.strip() and not ln.startswith("```")]
    row = next(i for i, x in enumerate(lines) if x.startswith("sequence2"))
    height, width = lh * (len(body) + 0.6), cw * (max(len(x) for x in body) + 2)
    bx, by = x0 + 2 * cw, y_of(row) + lh * 0.9 + height
    ax.add_patch(FancyBboxPatch((bx, by - height), width, height, boxstyle="round,pad=0.004", fc="#252526",
                                ec="#454545", lw=1, zorder=3))
    for k, ln in enumerate(body):
        ax.text(bx + cw, by - lh * (k + 1), ln, color="#cccccc", zorder=4, **font)
    ax.text(x0, lh * 0.6, f"netdsl lsp: {len(diagnostics)} diagnostics published for this text, and the hover on sequence2 "
            "(drawn by bench/editor_picture.py)", color="#858585", **font)
    fig.savefig(out, facecolor=fig.get_facecolor())
    print(f"wrote {out}: {len(diagnostics)} diagnostics; hover:\n{hover}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "editor.png")
    args = ap.parse_args()
    text = spec_text()
    diagnostics, hover = asyncio.run(ask(text))
    draw(text, diagnostics, hover, args.out)


if __name__ == "__main__":
    main()
