"""`netdsl export --to dot|svg|png`: the Graphviz picture of a network.

The dot text's structure is checked always (boxes, merges, skip edges, shapes on the labels);
rendering runs only where Graphviz's `dot` is installed (it is a system package).
"""
from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import netdsl.backends.picture as picture
import netdsl.backends.picture_text as picture_text
from netdsl.api import analyse_text, load
from netdsl.backends.picture import to_dot, write_picture
from netdsl.backends.picture_draw import HEAD_COLOR, SKIP_COLOR
from netdsl.cli import main
from netdsl.errors import NetdslError

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in [*ROOT.glob("specs/*.net"), *ROOT.glob("specs/zoo/*.net")] if "open" not in p.name)
needs_dot = pytest.mark.skipif(picture.find_dot() is None, reason="Graphviz's dot is not installed")

NODE = re.compile(r"^\s*(n\d+) \[label=<(.*)>(.*)\];$")
EDGE = re.compile(r"^\s*(n\d+) -> (n\d+)(?: \[(.*)\])?;$")


def graph(spec: str, expand: bool = False, **sets: int) -> tuple[str, dict[str, str], list[tuple[str, str, str]]]:
    text, path = load(str(ROOT / spec))
    dot = to_dot(analyse_text(text, path, sets), expand=expand)
    nodes = {m.group(1): m.group(2) for m in map(NODE.match, dot.splitlines()) if m}
    edges = [(m.group(1), m.group(2), m.group(3) or "") for m in map(EDGE.match, dot.splitlines()) if m]
    return dot, nodes, edges


def find(nodes: dict[str, str], text: str) -> str:
    hits = [n for n, label in nodes.items() if text in label]
    assert len(hits) == 1, (text, hits)
    return hits[0]


def test_unet_boxes_merges_and_skip_connections() -> None:
    dot, nodes, edges = graph("specs/unet.net")
    # x, four statement boxes, two cat nodes, the output box
    assert len(nodes) == 8
    assert len(edges) == 9
    assert all(a in nodes and b in nodes for a, b, _ in edges)
    skips = sorted(re.search(r'label="(\w+)"', attrs).group(1) for _, _, attrs in edges if SKIP_COLOR in attrs)
    assert skips == ["sequence1", "x"]
    seq1, cat = find(nodes, "<b>sequence1</b>"), [n for n, lab in nodes.items() if lab == "<b>cat</b>"]
    assert any(a == seq1 and b in cat and SKIP_COLOR in attrs for a, b, attrs in edges)
    # symbolic shapes and shapes at the values in use, parameters, the sequence-block call as written
    label = nodes[seq1]
    assert "[NF, H/2, W/2]" in label and "32×16×16" in label and "down(NF)" in label
    assert "conv(32, 3, stride=2) → batchnorm → relu" in label
    assert "[NC, H, W]" in nodes[find(nodes, "<b>output</b>")] and 'border="2"' in nodes[find(nodes, "<b>output</b>")]
    assert "56.9k parameters (56,856)" in dot


def test_resnet18_collapses_blocks_and_expand_opens_them() -> None:
    dot, nodes, edges = graph("specs/zoo/resnet18.net")
    clusters = re.findall(r"subgraph (cluster_\w+)", dot)
    assert len(clusters) == 7  # layer1's two identical units share one frame
    assert "<b>× 2</b>" in dot and "layer1.0 … layer1.1" in dot
    assert sum(SKIP_COLOR in attrs for _, _, attrs in edges) == 4  # the identity shortcuts
    assert "conv(128, 3, stride=2) → batchnorm → relu → conv(128, 3) → batchnorm" in dot
    assert "11.7M parameters (11,689,512)" in dot
    assert len(nodes) < 40
    big, bnodes, bedges = graph("specs/zoo/resnet18.net", expand=True)
    assert len(re.findall(r"subgraph cluster_", big)) == 8
    assert sum(SKIP_COLOR in attrs for _, _, attrs in bedges) == 5
    assert "conv(64, 3, padding=1, bias=false)" in big and len(bnodes) > len(nodes)


def test_yolov3_neck_skips_and_head() -> None:
    dot, nodes, edges = graph("specs/yolov3.net")
    skips = [re.search(r'label="(\w+)"', a).group(1) for _, _, a in edges if SKIP_COLOR in a]
    assert sorted(skips) == ["b6", "b8", "x", "x", "x", "x", "x"]  # two cats from the backbone, five res frames
    head = [a for _, _, a in edges if HEAD_COLOR in a]
    assert [re.search(r'label="(\w+)"', a).group(1) for a in head] == ["n27", "n22", "n15"]
    assert "res</b> <b>× 8</b>" in dot and "[63*H*W/1024, NCLS + 5]" in dot and "25200×85" in dot
    assert "detect(classes=80, strides=[8, 16, 32])" in dot


def test_labels_escape_spec_text() -> None:
    spec = ("net T(C = 4)\ninput x: [1, H = 8, W = 8]\n"
            "block b(c, s = 1) {\n  input t\n  y = t |> conv(c, 3, padding=1)\n  output = add(t, y)\n}\n"
            "output = x |> b(1, s = 2 if i < 1 else 1) * 2 as i\n")
    cg = analyse_text(spec, None, {})
    dot = to_dot(cg)
    assert "if i &lt; 1 else 1" in dot and "if i < 1" not in dot
    for m in map(NODE.match, dot.splitlines()):
        if m:  # no raw markup characters outside tags in any label
            assert not re.search(r"&(?!lt;|gt;|amp;|quot;|#x27;)", m.group(2))
    assert picture_text.esc('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    assert picture_text.quote('say "hi" \\ there') == '"say \\"hi\\" \\\\ there"'


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_gives_well_formed_dot(spec: Path) -> None:
    text, path = load(str(spec))
    dot = to_dot(analyse_text(text, path, {}))
    lines = dot.splitlines()
    assert lines[0].startswith("digraph ") and lines[-1] == "}"
    assert dot.count("{") == dot.count("}")
    declared = {m.group(1) for m in map(NODE.match, lines) if m}
    edges = [m for m in map(EDGE.match, lines) if m]
    assert edges and all(m.group(1) in declared and m.group(2) in declared for m in edges)
    for m in map(NODE.match, lines):
        if m:
            assert m.group(2).count("<table") == m.group(2).count("</table>")
            assert "<font></font>" not in m.group(2) and not re.search(r"<font[^>]*></font>", m.group(2))


def test_dot_file_and_message(tmp_path: Path) -> None:
    text, path = load(str(ROOT / "specs/unet.net"))
    cg = analyse_text(text, path, {})
    out = tmp_path / "unet.dot"
    message = write_picture(cg, out, "dot")
    assert message.startswith(f"wrote {out}") and "dot -Tsvg unet.dot -o unet.svg" in message
    assert out.read_text(encoding="utf-8") == to_dot(cg)
    assert [p.name for p in tmp_path.iterdir()] == ["unet.dot"]


def test_without_graphviz_the_dot_text_is_written_and_the_message_says_how(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(picture, "find_dot", lambda: None)
    text, path = load(str(ROOT / "specs/unet.net"))
    cg = analyse_text(text, path, {})
    message = write_picture(cg, tmp_path / "unet.svg", "svg")
    assert not (tmp_path / "unet.svg").exists()
    assert (tmp_path / "unet.dot").read_text(encoding="utf-8").startswith('digraph "UNet"')
    assert "not installed" in message and "apt-get install graphviz" in message
    assert f"dot -Tsvg {tmp_path / 'unet.dot'} -o {tmp_path / 'unet.svg'}" in message
    # and through the command: exit status 0, the message printed
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(ROOT / "specs/residual.net"), "--to", "png"]) == 0
    assert (tmp_path / "residual.dot").exists() and not (tmp_path / "residual.png").exists()


def test_a_failing_dot_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(picture, "find_dot", lambda: "/bin/false")
    text, path = load(str(ROOT / "specs/unet.net"))
    with pytest.raises(NetdslError, match="Graphviz's dot failed"):
        write_picture(analyse_text(text, path, {}), tmp_path / "unet.svg", "svg")
    assert list(tmp_path.iterdir()) == []


@needs_dot
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_renders_with_graphviz(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"net.{fmt}"
    assert main(["export", str(ROOT / "specs/zoo/resnet18.net"), "--to", fmt, "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    data = out.read_bytes()
    if fmt == "svg":
        svg = data.decode("utf-8")
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "layer1.0 … layer1.1" in svg
        width, height = (float(v) for v in re.search(r'viewBox="0(?:\.00)? 0(?:\.00)? ([\d.]+) ([\d.]+)"', svg).groups())
        assert height < 2000 and width < 1300  # collapsed, a ResNet-18 fits a page (in points)
    else:
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


@needs_dot
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_renders(spec: Path) -> None:
    text, path = load(str(spec))
    picture.render(to_dot(analyse_text(text, path, {}), expand=spec.stem in ("unet", "yolov3-tiny")), "svg",
                   picture.find_dot() or "dot")


def test_docstring_examples() -> None:
    result = doctest.testmod(picture, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0
