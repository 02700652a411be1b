"""detect_v8, ultralytics 8.x's anchor-free head: the decoding against a transcription written
here, counts against torch (parameters, FlopCounterMode), the branch biases of a fresh network,
pinned errors, fx and the exports, receptive fields and the memory rules against torch.

Against ultralytics itself (8.4.190, torch 2.14.1, in its own environment, by hand; its code is
not in this project): its `Detect(nc, reg_max, ch=(16, 32, 64))` with `stride = [8, 16, 32]` and
`bias_init()`, both heads (`legacy = True`, YOLOv8's class branch, and False, YOLO11's), on random
maps of 16x12, 8x6 and 4x3 cells at two samples, for (nc, reg_max) = (3, 16), (80, 16), (2, 8): its
eval output and `DetectV8` on `cat(cv2[i](x_i), cv3[i](x_i))` differed by at most 0.0 (identical;
values up to 486 pixels); its DFL's state_dict key is `dfl.conv.weight`, as ours; and its fresh box
biases were 2.0 and its class biases log(5 / nc / (640 / stride)^2) (-7.8478 for nc = 2 at stride
8), as `test_a_fresh_networks_branch_biases_are_ultralytics` expects of ours.
"""
from __future__ import annotations

import doctest
import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import netdsl
from conftest import error_at
from live_oracle import measured_layers
from memory_oracle import at, one_thread, saved_by_torch, train_step_bytes
from netdsl.api import analyse_text
from netdsl.backends import torch_detect_v8
from netdsl.backends.python_source import to_python_source
from netdsl.backends.torch_detect_v8 import DetectV8, dist2bbox, make_anchors
from netdsl.backends.torch_module import to_module
from netdsl.cli import main
from netdsl.ops import REGISTRY
from netdsl.ops.window import POINT
from netdsl.passes import train_memory
from netdsl.passes.memory_model import MemoryOptions, batch_symbol
from netdsl.passes.peak import peak_bytes
from netdsl.passes.receptive import receptive_fields
from netdsl.passes.saved import saved_total

SPEC = """net V8Head(NC = 3, R = 16)
input x: [3, H = 64, W = 64] where H % 32 == 0, W % 32 == 0
p3 = x |> conv(16, 3, stride=8, padding=1)
p4 = p3 |> conv(32, 3, stride=2, padding=1)
b3 = p3 |> conv(4*R, 1)
c3 = p3 |> conv(NC, 1)
b4 = p4 |> conv(4*R, 1)
c4 = p4 |> conv(NC, 1)
output boxes = detect_v8(cat(b3, c3), cat(b4, c4), classes=NC, strides=[8, 16], reg_max=R)
"""


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def _decode_by_hand(maps: list[torch.Tensor], classes: int, strides: list[int], bins: int) -> torch.Tensor:
    """The decoding, cell by cell, written out: per side a softmax over the bins, its mean bin the
    distance in cells from the cell's centre; box centre and size times the stride; sigmoid classes."""
    n = maps[0].shape[0]
    columns = []
    for m, s in zip(maps, strides):
        for i in range(m.shape[2]):
            for j in range(m.shape[3]):
                cell = m[:, :, i, j].double()
                p = cell[:, :4 * bins].reshape(n, 4, bins).softmax(-1)
                left, top, right, bottom = (p * torch.arange(bins, dtype=torch.float64)).sum(-1).unbind(1)
                cx, cy = j + 0.5, i + 0.5
                box = torch.stack([(cx - left + cx + right) / 2 * s, (cy - top + cy + bottom) / 2 * s,
                                   (left + right) * s, (top + bottom) * s], 1)
                columns.append(torch.cat([box, cell[:, 4 * bins:].sigmoid()], 1))
    return torch.stack(columns, 2)


@pytest.mark.parametrize(("classes", "bins"), [(3, 16), (1, 2), (5, 4)])
def test_the_decoding_is_the_transcription(classes: int, bins: int) -> None:
    torch.manual_seed(0)
    maps = [torch.randn(2, 4 * bins + classes, 4, 6) * 3, torch.randn(2, 4 * bins + classes, 2, 3) * 3,
            torch.randn(2, 4 * bins + classes, 1, 1)]
    head = DetectV8(classes, [8, 16, 32], bins).eval()
    with torch.no_grad():
        decoded, raw = head(*maps)
    assert decoded.shape == (2, 4 + classes, 24 + 6 + 1) and all(r is m for r, m in zip(raw, maps))
    torch.testing.assert_close(decoded.double(), _decode_by_hand(maps, classes, [8, 16, 32], bins),
                               rtol=1e-5, atol=1e-4)
    head.train()
    assert all(r is m for r, m in zip(head(*maps), maps))  # training mode: the raw maps as they came


def test_the_helpers() -> None:
    points, stride = make_anchors([torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 1, 1)], [4, 8])
    assert points.tolist() == [[0.5, 1.5, 2.5, 0.5, 1.5, 2.5, 0.5], [0.5, 0.5, 0.5, 1.5, 1.5, 1.5, 0.5]]
    assert stride.tolist() == [[4.0] * 6 + [8.0]]
    d = torch.tensor([[1.0], [2.0], [3.0], [4.0]]).unsqueeze(0)  # left, top, right, bottom
    p = torch.tensor([[10.0], [20.0]])
    assert dist2bbox(d, p).flatten().tolist() == [11.0, 21.0, 4.0, 6.0]
    assert dist2bbox(d, p, xywh=False).flatten().tolist() == [9.0, 18.0, 13.0, 24.0]


def test_the_module_and_its_counts_are_torchs() -> None:
    model = netdsl.build(SPEC).eval()
    head = model.boxes
    assert isinstance(head, DetectV8) and list(head.state_dict()) == ["dfl.conv.weight"]
    w = head.state_dict()["dfl.conv.weight"]
    assert w.shape == (1, 16, 1, 1) and w.flatten().tolist() == list(range(16)) and not w.requires_grad
    cg = model.concrete
    st = next(s for s in cg.statements if s.name == "boxes")
    assert st.merge is not None and cg.at(cg.tensors["boxes"]) == [7, 8 * 8 + 4 * 4]
    c = st.merge.counts
    # H = 32*H_q, W = 32*W_q: 4*R*(H*W/64 + H*W/256) = 4*R*(16 + 4)*H_q*W_q
    assert (str(c.weights), str(c.macs), c.biases) == ("R", "80*H_q*R*W_q", 0)
    assert cg.at((c.weights, c.biases)) == [16, 0] and sum(p.numel() for p in head.parameters()) == 16
    # FlopCounterMode counts the DFL's convolution: 2 flops per multiply-accumulate
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = [torch.randn(1, 67, 8, 8), torch.randn(1, 67, 4, 4)]
        with FlopCounterMode(display=False) as flops:
            head(*maps)
        decoded, raw = model(x)
    assert flops.get_total_flops() == 2 * cg.at((c.macs,))[0] == 2 * 4 * 16 * 80
    assert decoded.shape == (1, 7, 80) and [tuple(r.shape) for r in raw] == [(1, 67, 8, 8), (1, 67, 4, 4)]
    totals = netdsl.count(SPEC)
    # by hand: p3 16*3*9 + p4 32*16*9 = 5040; b3, b4 (16 + 32)*4R; c3, c4 (16 + 32)*NC; the DFL R
    weights = totals.total("weights")
    assert str(weights) == "48*NC + 193*R + 5040"
    params = sum(p.numel() for p in model.parameters())
    assert int((weights + totals.total("biases")).subs(totals.user_values)) == params


def test_a_fresh_networks_branch_biases_are_ultralytics() -> None:
    model = netdsl.build(SPEC)
    for box, cls, stride in (("b3", "c3", 8), ("b4", "c4", 16)):
        assert torch.equal(getattr(model, box).bias, torch.full((64,), 2.0))
        want = math.log(5 / 3 / (640 / stride) ** 2)  # ultralytics: 0.01 objects per cell at 640
        torch.testing.assert_close(getattr(model, cls).bias, torch.full((3,), want))
    assert not torch.equal(model.p3.bias, torch.full((16,), 2.0))  # the trunk keeps torch's init
    # Branches written as graph blocks (ultralytics' cv2[i] / cv3[i]: Conv, Conv, Conv2d) are found too.
    blocks = SPEC.replace("b3 = p3 |> conv(4*R, 1)", "block branch(c) = conv(8, 3, padding=1) -> silu -> conv(c, 1)\n"
                          "b3 = p3 |> branch(4*R)").replace("c3 = p3 |> conv(NC, 1)", "c3 = p3 |> branch(NC)")
    model = netdsl.build(blocks)
    assert torch.equal(model.get_submodule("b3.2").bias, torch.full((64,), 2.0))
    torch.testing.assert_close(model.get_submodule("c3.2").bias, torch.full((3,), math.log(5 / 3 / 80 ** 2)))
    # and a graph block, its last statement `output`
    graph = SPEC.replace("b3 = p3 |> conv(4*R, 1)", "block tail(c) {\n  input t\n  h = t |> conv(8, 3, padding=1) -> silu\n"
                         "  output = h |> conv(c, 1)\n}\nb3 = p3 |> tail(4*R)")
    model = netdsl.build(graph)
    assert torch.equal(model.get_submodule("b3.output").bias, torch.full((64,), 2.0))
    # a level made inside a graph block, its output the cat of its two branches
    level = SPEC.replace("b3 = p3 |> conv(4*R, 1)\nc3 = p3 |> conv(NC, 1)\n", "").replace(
        "output boxes = detect_v8(cat(b3, c3),", "block level(r, nc) {\n  input t\n"
                         "  box = t |> conv(4*r, 1)\n  cls = t |> conv(nc, 1)\n  output = cat(box, cls)\n}\n"
                         "l3 = p3 |> level(R, NC)\nout3 = l3\noutput boxes = detect_v8(out3,")
    model = netdsl.build(level)
    assert torch.equal(model.get_submodule("l3.box").bias, torch.full((64,), 2.0))
    torch.testing.assert_close(model.get_submodule("l3.cls").bias, torch.full((3,), math.log(5 / 3 / 80 ** 2)))
    torch.testing.assert_close(model.c4.bias, torch.full((3,), math.log(5 / 3 / 40 ** 2)))


def test_a_head_whose_branches_are_not_found_keeps_torchs_biases() -> None:
    # the box branch ends with a ReLU, not a convolution: no level is initialised, none half-way
    text = SPEC.replace("b3 = p3 |> conv(4*R, 1)", "b3 = p3 |> conv(4*R, 1) -> relu")
    torch.manual_seed(0)
    model = netdsl.build(text)
    assert not torch.equal(model.b4.bias, torch.full((64,), 2.0))
    assert not torch.equal(model.b3.get_submodule("0").bias, torch.full((64,), 2.0))


HEAD = "net E(NC = 3)\ninput x: [3, H = 32, W = 32]\np = x |> conv(16, 3, stride=8, padding=1)\n"


@pytest.mark.parametrize(("body", "line", "col", "words"), [
    ("q = p |> conv(4*16 + NC + 2, 1)\noutput b = detect_v8(q, classes=NC, strides=[8])\n", 5, 12,
     "feature map 1 has 69 channels: 66 box channels besides the 3 classes, which 4*reg_max = 64 (reg_max=16) "
     "does not divide"),
    ("q = p |> conv(4*8 + NC, 1)\noutput b = detect_v8(q, classes=NC, strides=[8], reg_max=4)\n", 5, 58,
     "feature map 1 has 35 channels: 32 box channels besides the 3 classes; the head needs 4*reg_max + classes "
     "= 16 + 3 = 19"),
    ("q = p |> conv(NC, 1)\noutput b = detect_v8(q, classes=NC, strides=[8])\n", 5, 33,
     "feature map 1 has 3 channels: 0 box channels"),
    ("q = p |> conv(4*16 + NC, 1)\noutput b = detect_v8(q, classes=NC, strides=[16])\n", 5, 45,
     "feature map 1 is 4x4; with stride 16 it covers 64x64, but the input is 32x32"),
    ("q = p |> conv(4*16 + NC, 1)\noutput b = detect_v8(q, q, classes=NC, strides=[8])\n", 5, 48,
     "1 strides for 2 feature maps"),
    ("q = p |> conv(4*16 + NC, 1) -> flatten\noutput b = detect_v8(q, classes=NC, strides=[8])\n", 5, 12,
     "takes image feature maps"),
    ("q = p |> conv(4*16 + NC, 1)\noutput b = detect_v8(q, classes=NC, strides=[8], reg_max=1)\n", 5, 58,
     "'detect_v8' argument 'reg_max' is 1; it must be at least 2"),
    ("q = p |> conv(4*16 + NC, 1)\noutput b = detect_v8(q, classes=NC, strides=[8]) |> relu\n", 5, 53,
     "detect_v8() makes the network's result; no layers may follow it"),
])
def test_bad_uses_are_located(body: str, line: int, col: int, words: str) -> None:
    error_at(netdsl.shapes, HEAD + body, line, col, words)


def test_the_channel_errors_say_what_to_do() -> None:
    text = HEAD + "q = p |> conv(4*16 + NC + 2, 1)\noutput b = detect_v8(q, classes=NC, strides=[8])\n"
    err = error_at(netdsl.shapes, text, 5, 12, "does not divide")
    assert "4*reg_max box channels" in (err.hint or "")


def test_the_op_rules() -> None:
    op = REGISTRY["detect_v8"]
    assert op.final and op.category == "conv" and op.task == "detect" and op.node_path("b") == "b"
    cg = netdsl.shapes(SPEC)
    assert receptive_fields(cg).outputs.keys() == {"boxes[0]", "boxes[1]"}
    st = next(s for s in cg.statements if s.name == "boxes")
    assert st.merge is not None
    ins = [cg.tensors[i] for i in st.inputs]
    assert op.windows(st.merge.args, ins, st.merge.out_shape) == [(POINT, POINT), (POINT, POINT)]


def test_each_levels_receptive_field_is_its_maps() -> None:
    """A decoded cell reads its level's cell only: its input support spans that cell's field (the
    gradient of one decoded column, weights 1/fan-in and biases 0 so that no path cancels; a 3x3
    window at stride 8 leaves gaps inside the field, so the support's extent is compared)."""
    model = netdsl.build(SPEC).double().eval()
    fields = receptive_fields(model.concrete).outputs
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "dfl" not in name:
                p.fill_(0.0 if name.endswith("bias") else 1.0 / p[0].numel())
    for level, (h, w, offset) in enumerate(((8, 8, 0), (4, 4, 64))):
        i, j = h // 2, w // 2
        x = torch.ones(1, 3, 64, 64, dtype=torch.float64, requires_grad=True)
        decoded, _ = model(x)
        (grad,) = torch.autograd.grad(decoded[0, :, offset + i * w + j].sum(), x)
        rows, cols = fields[f"boxes[{level}]"].region((i, j), lambda e: int(model.concrete.env.at(e)))
        support = (grad[0].abs().sum(0) != 0).nonzero()
        assert support.min(0).values.tolist() == [max(rows[0], 0), max(cols[0], 0)], level
        assert support.max(0).values.tolist() == [min(rows[1], 63), min(cols[1], 63)], level


def test_fx_traces_it_and_the_exports_equal(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = netdsl.build(SPEC).eval()
    x = torch.randn(2, 3, 64, 64)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        want, got = model(x), traced(x)
    assert torch.equal(got[0], want[0]) and all(torch.equal(a, b) for a, b in zip(got[1], want[1]))
    source = python_round_trip_tuple(SPEC, tmp_path)
    assert "class DetectV8(nn.Module)" in source and "def make_anchors" in source


def python_round_trip_tuple(text: str, tmp_path: Path) -> str:
    """`export_roundtrip.python_round_trip` compares one tensor; the head gives (decoded, raw):
    compared here, each tensor equal, in eval and training mode."""
    cg = analyse_text(text, None, {})
    source = to_python_source(cg)
    path = tmp_path / "exported_v8.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # the file netdsl wrote
    torch.manual_seed(0)
    compiled = to_module(cg)
    exported = getattr(mod, cg.name)()
    exported.load_state_dict(compiled.state_dict(), strict=True)
    x = torch.randn(2, *cg.inputs[0].at)
    for training in (False, True):
        compiled.train(training)
        exported.train(training)
        with torch.no_grad():
            want, got = compiled(x), exported(x)
        flat_w = [want[0], *want[1]] if not training else list(want)
        flat_g = [got[0], *got[1]] if not training else list(got)
        assert len(flat_w) == len(flat_g) and all(torch.equal(a, b) for a, b in zip(flat_g, flat_w)), training
    return source


def test_onnx_runtime_equals_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from netdsl.backends.onnx_export import export_model

    cg = netdsl.shapes(SPEC)
    torch.manual_seed(0)
    model = netdsl.build(SPEC).eval()
    out = tmp_path / "v8.onnx"
    report = export_model(cg, out, model=model)
    assert report.checks and report.max_diff < 1e-4, report.message()
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64), dtype=np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        decoded, raw = model(torch.from_numpy(x))
    assert [o.name for o in session.get_outputs()] == ["boxes", "boxes_raw0", "boxes_raw1"]
    for g, w in zip(got, [decoded, *raw]):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-4)


def _levels(classes: int, bins: int, s1: int, s2: int, nhwc: bool = False) -> str:
    level = ("b4 = p4 |> channel_linear(4*R)\nc4 = p4 |> channel_linear(NC)\n" if nhwc else
             "b4 = p4 |> conv(4*R, 1)\nc4 = p4 |> conv(NC, 1)\n")
    return f"""net V8(NC = {classes}, R = {bins})
input x: [3, H = 32, W = 32]
p3 = x |> conv(8, 3, stride={s1}, padding=1)
p4 = p3 |> conv(8, 3, stride={s2}, padding=1)
b3 = p3 |> conv(4*R, 1)
c3 = p3 |> conv(NC, 1)
{level}output boxes = detect_v8(cat(b3, c3), cat(b4, c4), classes=NC, strides=[{s1}, {s1 * s2}], reg_max=R)
"""


# The smallest case (1x1 maps, one class, two bins, one sample: where the anchors' temporaries come
# closest to the peak), reg_max 2 (the peak at dist2bbox) and 16 (at the DFL's softmax), float32
# and bf16 autocast; a level made channels-last (channel_linear: its flatten is a view all the same).
@pytest.mark.parametrize(("classes", "bins", "s1", "s2", "nhwc"), [(1, 2, 32, 1, False), (5, 2, 8, 2, False),
                                                                   (1, 16, 4, 4, False), (3, 4, 8, 2, True)])
def test_memory_is_what_torch_saves_and_allocates(classes: int, bins: int, s1: int, s2: int, nhwc: bool) -> None:
    model = netdsl.build(_levels(classes, bins, s1, s2, nhwc))
    cg = model.concrete
    n_sym = batch_symbol(cg.env)
    for dtype, cast in (("fp32", None), ("bf16", torch.bfloat16)):
        result = peak_bytes(cg, n_sym, MemoryOptions(dtype=dtype))  # type: ignore[arg-type]
        items = [(x.path, f) for x, f in zip(cg.walk(), result.layers)]
        for n in (1, 3):
            peak, per = measured_layers(model, {p for p, _ in items}, torch.randn(n, 3, 32, 32), autocast=cast)
            values = {**cg.env.internal_values, n_sym: n}
            assert peak == result.at(values), (dtype, n)
            assert per["boxes"] == int(dict(items)["boxes"].xreplace(values)), (dtype, n)
    model.train()
    # Training mode returns the maps: the head keeps nothing for backward. (Two channel_linear
    # layers reading one map at one sample save 128 bytes less than their rule says, with or
    # without this head: that case is measured at two samples only.)
    for n in (2,) if nhwc else (1, 2):
        assert at(cg, saved_total(cg, n_sym), n) == saved_by_torch(model, n)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_dfl_weights_never_train(optimizer: str) -> None:
    """No gradient and no optimizer state for dfl.conv.weight: a training step holds what the
    formulas say (one step, measured as tests/analysis/test_train_bytes.py does)."""
    model = netdsl.build(_levels(2, 4, 8, 2))
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["boxes.dfl.conv.weight"]
    assert REGISTRY["detect_v8"].fixed_params and isinstance(model.boxes.dfl.conv, nn.Conv2d)
    cg = model.concrete
    options = MemoryOptions(optimizer=optimizer)  # type: ignore[arg-type]  # a name from OPTIMIZERS
    got = train_step_bytes(model, 2, optimizer)
    want = {"param": train_memory.param_bytes(cg, options), "buffer": train_memory.buffer_bytes(cg),
            "grad": train_memory.grad_bytes(cg), "optimizer": train_memory.optimizer_bytes(cg, options),
            "saved": saved_total(cg, batch_symbol(cg.env), options)}
    assert {k: at(cg, v, 2) for k, v in want.items()} == got


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(torch_detect_v8, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4 and result.failed == 0


def test_the_command_line_locates_it_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "v8.net"
    spec.write_text(SPEC.replace("reg_max=R)", "reg_max=12)"))
    assert main(["count", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:9:89: error: feature map 1 has 67 channels: 64 box channels besides the 3 classes, which " \
           "4*reg_max = 48 (reg_max=12) does not divide" in err
