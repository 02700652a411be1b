"""Darknet files: BatchNorm's eps for darknet weights (1), a [shortcut] of
unequal shapes (5), linear cfg import (10), darknet .weights in darknet's order when [route]s reorder
the levels (11), line counting on form feeds and Unicode line separators, and comments that name
tensors as the written spec does (16)."""
from __future__ import annotations

import re
import struct
import sys
from pathlib import Path
from types import FrameType

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netdsl
import netdsl.importers
from netdsl.errors import NetdslError, Span, source_lines
from netdsl.importers import import_text
from netdsl.weights import load_weights
from netdsl.weights.darknet import darknet_layout

ROOT = Path(__file__).resolve().parents[2]
NET = "[net]\nwidth={w}\nheight={h}\nchannels=3\n"


def section(kind: str, **opts: object) -> str:
    return f"\n[{kind}]\n" + "".join(f"{k}={v}\n" for k, v in opts.items())


def conv(filters: int, size: int = 3, stride: int = 1, bn: int = 1, act: str = "leaky") -> str:
    extra = {"batch_normalize": 1} if bn else {}
    return section("convolutional", **extra, filters=filters, size=size, stride=stride, pad=1, activation=act)


def head() -> str:
    """The 1x1 linear convolution before a [yolo] (3 anchors, 1 class)."""
    return section("convolutional", filters=18, size=1, activation="linear")


def yolo(mask: str) -> str:
    return section("yolo", mask=mask, anchors="10,13, 16,30, 33,23, 30,61, 62,45, 59,119", classes=1, num=6)


def write_weights(path: Path, arrays: list[np.ndarray]) -> None:
    """A darknet .weights file: version 0.2.0, seen, then the arrays' float32s in the order given."""
    body = b"".join(np.asarray(a, dtype="<f4").tobytes() for a in arrays)
    path.write_bytes(struct.pack("<3iq", 0, 2, 0, 0) + body)


def build_cfg(text: str, name: str = "t.cfg") -> nn.Module:
    return netdsl.build(import_text(text, name, "cfg") + "\n").eval()


# -- item 1: BatchNorm's eps ---------------------------------------------------------------------------

# Two conv+batchnorm+leaky layers and a plain convolution with bias, as darknet stores them.
SMALL = NET.format(w=16, h=16) + conv(4) + conv(6, stride=2) + conv(5, size=1, bn=0, act="linear")


def small_darknet_arrays(seed: int) -> list[dict[str, np.ndarray]]:
    """Per [convolutional], its arrays by role; the variances small, as trained weights have many."""
    rng = np.random.default_rng(seed)
    layers, c_in = [], 3
    for filters, size, bn in ((4, 3, True), (6, 3, True), (5, 1, False)):
        a = {"bias": rng.normal(0, 0.1, filters)}
        if bn:
            a |= {"gamma": 1 + rng.normal(0, 0.1, filters), "mean": rng.normal(0, 0.01, filters),
                  "variance": rng.uniform(1e-5, 1e-3, filters)}
        a["kernel"] = rng.normal(0, 0.01 if bn else 0.3, (filters, c_in, size, size))
        layers.append(a)
        c_in = filters
    return layers


def darknet_forward(layers: list[dict[str, np.ndarray]], x: torch.Tensor, eps: float) -> torch.Tensor:
    """darknet's forward pass of SMALL, in torch's functional ops: out = gamma * (conv - mean) /
    sqrt(variance + eps) + beta, then leaky ReLU (0.1); the last layer a convolution plus its bias."""
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    y = x.double()
    for a, stride in zip(layers, (1, 2, 1)):
        k = t(a["kernel"])
        y = F.conv2d(y, k, stride=stride, padding=k.shape[-1] // 2)
        if "gamma" in a:
            norm = (y - t(a["mean"])[:, None, None]) / torch.sqrt(t(a["variance"])[:, None, None] + eps)
            y = F.leaky_relu(norm * t(a["gamma"])[:, None, None] + t(a["bias"])[:, None, None], 0.1)
        else:
            y = y + t(a["bias"])[:, None, None]
    return y.float()


def test_cfg_import_runs_darknet_weights_with_darknets_eps(tmp_path: Path) -> None:
    layers = small_darknet_arrays(0)
    order = ("bias", "gamma", "mean", "variance", "kernel")
    write_weights(tmp_path / "s.weights", [a[r] for a in layers for r in order if r in a])
    model = load_weights(build_cfg(SMALL), tmp_path / "s.weights")
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model(x)
    # float32 against float64 through normalisations by up to sqrt(1e-5): agreement to 1e-4 of outputs up to ~50
    want = darknet_forward(layers, x, 1e-5)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
    # BatchNorm's former eps (ultralytics' 0.001) gives visibly other outputs on these weights.
    assert (got - darknet_forward(layers, x, 1e-3)).abs().max() > 1.0 and want.abs().max() < 100


def bn_eps(model: nn.Module) -> set[float]:
    return {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)}


@pytest.mark.parametrize("name", ["yolov3", "yolov3-tiny"])
def test_shipped_specs_take_darknets_eps_in_darknet_mode(name: str) -> None:
    # darknet normalises with sqrt(variance + .00001); ultralytics builds BatchNorm2d(eps=0.001, momentum=0.03).
    darknet = netdsl.build(ROOT / f"specs/{name}.net", H=64, W=64)
    ultra = netdsl.build(ROOT / f"specs/{name}.net", H=64, W=64, LEAKY=0)
    assert bn_eps(darknet) == {1e-5} and bn_eps(ultra) == {1e-3}
    assert {m.momentum for m in darknet.modules() if isinstance(m, nn.BatchNorm2d)} == {0.03}
    assert bn_eps(build_cfg(SMALL)) == {1e-5}


@pytest.mark.parametrize(("expr", "values", "eps"), [
    ("1 / (100000 if L == 1 else 1000)", {"L": 1}, 1e-5),
    ("1 / (100000 if L == 1 else 1000)", {"L": 0}, 1e-3),
    ("10 ** -5", {}, 1e-5),
    ("3 / 4 - 1 / 4", {}, 0.5),
    ("L * 2", {"L": 3}, 6.0),
])
def test_float_arguments_take_expressions_of_parameters(expr: str, values: dict[str, int], eps: float) -> None:
    spec = f"net T(L = 1)\ninput x: [3, H = 8, W = 8]\noutput = x |> conv(4, 3) -> batchnorm(eps={expr})\n"
    assert bn_eps(netdsl.build(spec, **values)) == {eps}


@pytest.mark.parametrize(("expr", "at", "message"), [
    ("1 / (L - 1)", "L - 1", "division by zero"),
    ("1 / M", "M", "unknown name 'M'"),
    ("2 ** 100", "100", "exponents must be whole numbers from -64 to 64"),
    ("0 - 1", "0 - 1", "must be at least 0.0"),
])
def test_float_argument_expressions_fail_at_their_place(expr: str, at: str, message: str) -> None:
    line = f"output = x |> conv(4, 3) -> batchnorm(eps={expr})"
    with pytest.raises(NetdslError) as e:
        netdsl.build(f"net T(L = 1)\ninput x: [3, H = 8, W = 8]\n{line}\n")
    assert message in e.value.message
    assert e.value.span is not None and (e.value.span.line, e.value.span.column) == (3, line.index(at) + 1)


# -- item 5: a [shortcut] of maps of other shapes ----------------------------------------------------
# darknet adds the channels both maps have and keeps the previous layer's others (the 4 both have, 2
# kept; the 4 both have, 0 kept), and over the flat buffers where the sizes differ: darknet_shortcut,
# checked against darknet's loops in tests/importers/test_darknet_sections.py and tests/ops/test_darknet_ops.py.

@pytest.mark.parametrize(("body", "want"), [
    (conv(4) + conv(6) + section("shortcut", **{"from": -2}),  # a residual unit but for its shapes
     "output = darknet_shortcut(conv1, conv0)"),
    (conv(6) + section("maxpool", size=1, stride=1) + conv(4) + section("shortcut", **{"from": -3}),
     "output = darknet_shortcut(conv2, conv0)"),
    (conv(4) + conv(4, stride=2) + section("shortcut", **{"from": -2}),
     "output = darknet_shortcut(conv1, conv0)"),
])
def test_shortcut_of_other_shapes_does_what_darknet_does(body: str, want: str) -> None:
    spec = import_text(NET.format(w=8, h=8) + body, "s.cfg", "cfg")
    assert want in spec and "add(" not in spec
    model = netdsl.build(spec).eval()
    assert model(torch.randn(1, 3, 8, 8)).shape[1:] == model.concrete.outputs[0].at


# -- item 10: linear import ------------------------------------------------------------------------

def importer_lines(text: str) -> int:
    """How many lines of netdsl/importers' code importing `text` runs (netdsl's own passes not counted)."""
    folder, count = str(Path(netdsl.importers.__file__).parent), 0

    def local(frame: FrameType, event: str, arg: object) -> object:
        nonlocal count
        count += event == "line"
        return local

    def calls(frame: FrameType, event: str, arg: object) -> object:
        return local if frame.f_code.co_filename.startswith(folder) else None

    sys.settrace(calls)
    try:
        import_text(text, "big.cfg", "cfg")
    finally:
        sys.settrace(None)
    return count


def test_import_runs_in_time_linear_in_the_sections() -> None:
    # Structural, not timed: the importer's lines run for n and 2n [convolutional] sections. The
    # quadratic import (a residual-unit search from every layer to the end, a block's parameters
    # found from every convolution at every call) ran about three times as many for twice the sections.
    small, large = (importer_lines(NET.format(w=8, h=8) + conv(4) * n) for n in (300, 600))
    assert large < 2.1 * small, (small, large)


def test_cfg_over_netdsls_layer_limit_is_refused_at_once() -> None:
    text = NET.format(w=8, h=8) + conv(4) * 3334  # conv, batchnorm, leaky: 10,002 layers
    with pytest.raises(NetdslError) as e:
        import_text(text, "big.cfg", "cfg")
    assert "more than 10,000 layers by this section" in e.value.message
    assert e.value.span is not None and e.value.span.line == 4 + 3334 * 8 - 6  # the last [convolutional]


# -- item 11: darknet .weights when [route]s reorder the levels --------------------------------------

# conv 4 3x3, conv 4 3x3 stride 2, [route] -2, 1x1 conv 18, [yolo], [route] -4, 1x1 conv 18, [yolo]:
# darknet's file holds layers 0, 1, 3, 6 in that order.
ROUTED = (NET.format(w=32, h=32) + conv(4) + conv(4, stride=2) + section("route", layers=-2)
          + head() + yolo("0,1,2")
          + section("route", layers=-4) + head() + yolo("3,4,5"))


@pytest.mark.parametrize("swap", [False, True])
def test_routed_levels_load_darknet_weights_in_darknets_order(tmp_path: Path, swap: bool) -> None:
    text = ROUTED
    if swap:  # the stride-2 level's [yolo] first: the levels' order is not the cfg's either
        text = text.replace("layers=-2", "layers=-1").replace("layers=-4", "layers=-5")
    spec = import_text(text, "o.cfg", "cfg")
    model = netdsl.build(spec + "\n")
    name = {int(k): n for n, k in re.findall(r"^(\w+) = .*# cfg line \d+, layer (\d+)$", spec, re.M)}
    # Every float of darknet's layer k is k + 1 (a variance too: it must be positive).
    sizes = {0: 4 * 4 + 4 * 3 * 9, 1: 4 * 4 + 4 * 4 * 9, 3: 18 + 18 * 4, 6: 18 + 18 * 4}
    write_weights(tmp_path / "o.weights", [np.full(n, k + 1.0) for k, n in sizes.items()])
    load_weights(model, tmp_path / "o.weights")
    stride1, stride2 = (6, 3) if swap else (3, 6)  # detect's levels: smallest stride first
    owners = {name[0]: 0, name[1]: 1, "output.m.0": stride1, "output.m.1": stride2}
    for path, k in owners.items():
        for name, t in model.get_submodule(path).state_dict().items():
            if t.is_floating_point():
                assert bool((t == k + 1).all()), (path, name, t.unique().tolist())


def test_routed_levels_layout_is_darknets_cfg_order() -> None:
    model = netdsl.build(import_text(ROUTED, "o.cfg", "cfg") + "\n")
    assert [e.path for e in darknet_layout(model)] == ["conv0.0", "conv1.0", "output.m.0", "output.m.1"]


def test_reference_cfgs_need_no_extra_statement() -> None:
    ref = ROOT.parent / "shared/reference/darknet"
    if not ref.is_dir():
        pytest.skip("no reference cfgs")
    for name in ("yolov3.cfg", "yolov3-tiny.cfg"):
        spec = import_text((ref / name).read_text(), name, "cfg")
        assert "named here for darknet's .weights order" not in spec


# -- item 16: lines as darknet and Lark count them; comments with the spec's names ---------------------

def test_form_feed_in_a_cfg_comment_keeps_the_whole_line_a_comment() -> None:
    text = NET.format(w=8, h=8) + "# not a layer\f[maxpool]\n" + conv(4)
    spec = import_text(text, "f.cfg", "cfg")
    assert "maxpool" not in spec and "output = x |> cbl(4, 3)" in spec


@pytest.mark.parametrize("sep", ["\f", "\x85", "\u2028", "\v", "\x1c"])
def test_cfg_errors_count_lines_as_darknet_does(sep: str) -> None:
    text = NET.format(w=8, h=8) + f"# a{sep}b\n" + conv(4) + "bogus=1\n"
    with pytest.raises(NetdslError) as e:
        import_text(text, "f.cfg", "cfg")
    line = text.count("\n")
    assert e.value.span is not None and e.value.span.line == line
    assert f"f.cfg:{line}:1: error" in e.value.render() and f"{line:>4} | bogus=1" in e.value.render()


@pytest.mark.parametrize("sep", ["\f", "\x85", "\u2028"])
def test_spec_errors_count_lines_as_the_grammar_does(sep: str) -> None:
    spec = f"net T()\n# a{sep}b\ninput x: [3, H = 8, W = 8]\noutput = x |> conv(4, 3) -> bogus\n"
    with pytest.raises(NetdslError) as e:
        netdsl.build(spec)
    out = e.value.render()
    assert "<input>:4:29: error" in out and "   4 | output = x |> conv(4, 3) -> bogus" in out
    with pytest.raises(NetdslError) as e:
        netdsl.build(spec.replace(" -> bogus\n", " ->\n"))  # the end of the file: its last line shown
    assert e.value.span is not None and e.value.span.line == 4 and "   4 | output" in e.value.render()


def test_yaml_errors_count_lines_as_pyyaml_does() -> None:
    # PyYAML ends lines at \x85 and \u2028 too: the error's line is PyYAML's, and so is the line shown.
    text = "# a\x85b\u2028c\nnc: 2\nbackbone:\n  [[-1, 1, Conv, [16, 3, 2]],\n   [-1, 1, Bogus, [3]]]\nhead: []\n"
    with pytest.raises(NetdslError) as e:
        import_text(text, "f.yaml", "yaml")
    shown = source_lines(text, "yaml")[e.value.span.line - 1]
    assert f"{e.value.span.line:>4} | {shown}" in e.value.render() and shown.strip()


def test_source_lines_and_render() -> None:
    assert source_lines("a\fb\x85c\u2028d\r\ne\n") == ["a\fb\x85c\u2028d", "e"]
    assert source_lines("a\x85b\r\nc\rd", "yaml") == ["a", "b", "c", "d"]
    err = NetdslError("m", Span(1, 3, 1, 4), source="a\fbc\u2028d\n")
    assert "   1 | a\u240cbc\ufffdd\n       |   ^" in err.render()  # one stand-in each: the caret stays under b


# conv 4, conv 4 stride 2 and its level, [route] back to it, upsample, join conv 0, the stride-1 level.
NAMED = (NET.format(w=32, h=32) + conv(4) + conv(4, stride=2) + head() + yolo("3,4,5")
         + section("route", layers=-3) + section("upsample", stride=2) + section("route", layers="-1, 0")
         + head() + yolo("0,1,2"))


def test_route_comments_name_tensors_as_the_spec_does() -> None:
    spec = import_text(NAMED, "n.cfg", "cfg")
    assert re.search(r"^p1 = conv0 \|> cbl\(4, 3, 2\)", spec, re.M)  # layer 1, renamed for its level
    assert re.findall(r"the next layer reads (\w+)", spec) == ["p1"]
    model = netdsl.build(spec + "\n")  # darknet's order: layers 0, 1, then the heads of layers 2 and 7
    assert [e.path for e in darknet_layout(model)] == ["conv0.0", "p1.0", "output.m.1", "output.m.0"]
