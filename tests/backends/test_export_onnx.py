"""`netdsl export --to onnx`: the exported model passes onnx.checker and runs in onnxruntime with
the torch module's outputs (within 1e-4), with a dynamic batch and dynamic sizes where the spec
allows them.

PyTorch's exporter takes 3 to 45 s of CPU per network (the number of layers decides it, not the
input size: DenseNet-121 44 s, YOLOv3 29 s, GoogLeNet 22 s), so the default run exports the
seed's specs, ResNet-18 and small made-up networks for the rules (about 40 s of CPU);
`NETDSL_TEST_ONNX_ALL=1` adds the other shipped specs (about 3 minutes of CPU more).
"""
from __future__ import annotations

import doctest
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from netdsl.api import analyse_text, load
from netdsl.cli import main
from netdsl.errors import NetdslError

ROOT = Path(__file__).resolve().parents[2]
ALL = os.environ.get("NETDSL_TEST_ONNX_ALL") == "1"
# Shipped specs at small sizes (the zoo and YOLO at 64x64): which sizes stay dynamic, and why not.
SHIPPED = {
    "specs/conv_transpose.net": ({}, {"H", "W"}),
    "specs/pool_upsample.net": ({}, {"H", "W"}),
    "specs/residual.net": ({}, {"H", "W"}),
    "specs/unet.net": ({}, {"H", "W"}),
    "specs/zoo/resnet18.net": ({"H": 64, "W": 64}, {"H", "W"}),
}
SLOW = {
    "specs/yolov3-tiny.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/yolov3.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/yolov8.net": ({"H": 64, "W": 64}, {"H", "W"}),  # yolov8n: about 70 s of CPU to export
    "specs/yolo11.net": ({"H": 64, "W": 64}, {"H", "W"}),  # yolo11n (C2PSA's attention): about 130 s
    "specs/zoo/alexnet.net": ({"H": 64, "W": 64}, set()),        # adaptive_avgpool(6)
    "specs/zoo/densenet121.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/googlenet.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/mobilenet_v2.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/resnet34.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/resnet50.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/squeezenet1_1.net": ({"H": 64, "W": 64}, set()),  # ceil_mode pools: PyTorch fixes the sizes
    "specs/zoo/vgg11_bn.net": ({"H": 64, "W": 64}, set()),       # adaptive_avgpool(7)
    "specs/zoo/vgg16.net": ({"H": 64, "W": 64}, set()),
    "specs/zoo/mobilenet_v3_large.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/mobilenet_v3_small.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/efficientnet_b0.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/regnet_y_400mf.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/resnext50_32x4d.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/wide_resnet50_2.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/shufflenet_v2_x1_0.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/convnext_tiny.net": ({"H": 64, "W": 64}, {"H", "W"}),
    "specs/zoo/vit_b_16.net": ({"H": 64, "W": 64}, set()),     # the position embedding has one row per patch
}


@pytest.fixture(scope="module")
def ort():  # noqa: ANN201 - the module
    return pytest.importorskip("onnxruntime")


def export(spec: str, sets: dict[str, int], out: Path, **kw: object):  # noqa: ANN201
    from netdsl.backends.onnx_export import export_model

    text, path = load(str(ROOT / spec) if spec.endswith(".net") else spec)
    return export_model(analyse_text(text, path, sets), out, **kw)


def run_both(ort, model, out: Path, xs: list[np.ndarray]) -> float:  # noqa: ANN001
    """Max |onnxruntime - torch| over every output, run here independently of the export's own check."""
    import torch

    from netdsl.backends.onnx_check import flat

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs)})
    with torch.no_grad():
        want = [t.numpy() for t in flat(model(*[torch.from_numpy(x) for x in xs]))]
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):  # within 1e-4, relative to the size of the values (decoded boxes are in pixels)
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    return max(float(np.abs(g - w).max()) for g, w in zip(got, want))


def check_shipped(ort, spec: str, sets: dict[str, int], dynamic: set[str], tmp_path: Path) -> None:  # noqa: ANN001
    import onnx

    from netdsl.api import compile_spec

    text, path = load(str(ROOT / spec))
    cg, model = compile_spec(text, path, sets)
    out = tmp_path / (Path(spec).stem + ".onnx")
    report = export(spec, sets, out, model=model)
    assert set(report.dynamic) == dynamic, report.message()
    assert report.checks and report.max_diff < 1e-4, report.message()
    onnx.checker.check_model(str(out), full_check=True)
    m = onnx.load(str(out))
    assert m.opset_import[0].version == 18
    dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[1] == cg.inputs[0].at[0]
    assert dims[2:] == [a if a in dynamic else v for a, v in zip("HW", cg.inputs[0].at[1:])]
    # independently of the export's own check: a batch of 2 at the values in use, and when the sizes
    # are dynamic a larger image that is not square
    rng = np.random.default_rng(7)
    model.eval()
    shapes = [(2, *cg.inputs[0].at)]
    if dynamic:
        h, w = cg.inputs[0].at[1:]
        step = {a.name: a.step for a in report.axes}
        shapes.append((1, cg.inputs[0].at[0], h + 2 * step["H"], w + step["W"]))
    for shape in shapes:
        run_both(ort, model, out, [rng.standard_normal(shape, dtype=np.float32)])
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


@pytest.mark.parametrize("spec", sorted(SHIPPED))
def test_shipped_specs(ort, spec: str, tmp_path: Path) -> None:  # noqa: ANN001
    sets, dynamic = SHIPPED[spec]
    check_shipped(ort, spec, sets, dynamic, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not ALL, reason="set NETDSL_TEST_ONNX_ALL=1 to export the rest of the zoo (minutes)")
@pytest.mark.parametrize("spec", sorted(SLOW))
def test_rest_of_the_shipped_specs(ort, spec: str, tmp_path: Path) -> None:  # noqa: ANN001
    sets, dynamic = SLOW[spec]
    check_shipped(ort, spec, sets, dynamic, tmp_path)


def test_every_shipped_spec_is_listed() -> None:
    shipped = {str(p.relative_to(ROOT)) for p in [*ROOT.glob("specs/*.net"), *ROOT.glob("specs/zoo/*.net")]}
    assert shipped - set(SHIPPED) - set(SLOW) == {"specs/conv_transpose_open.net"}  # open arguments: no network


# --- which sizes may vary (no export needed) ----------------------------------------------------

def axes(spec: str, **sets: int) -> dict[str, str]:
    from netdsl.backends.onnx_axes import size_axes

    text, path = load(str(ROOT / spec) if spec.endswith(".net") else spec)
    return {a.name: a.text() for a in size_axes(analyse_text(text, path, sets))}


def test_size_rules_for_the_shipped_specs() -> None:
    assert axes("specs/unet.net") == {"H": "H (multiple of 4, from 4)", "W": "W (multiple of 4, from 4)"}
    assert axes("specs/yolov3.net", H=64, W=64)["H"] == "H (multiple of 32, from 32)"
    assert axes("specs/zoo/resnet50.net")["W"] == "W (multiple of 32, from 32)"
    assert axes("specs/zoo/alexnet.net") == {  # torchvision's AlexNet needs 63 pixels
        n: f"{n} = 224: 'output.0' (adaptive_avgpool to 6x6) exports for one input size only" for n in "HW"}
    # without `where`, the smallest size is found from the formulas (and confirmed by the export's check)
    assert axes("specs/zoo/squeezenet1_1.net") == {n: f"{n} (any size, from 17)" for n in "HW"}


def test_size_rules_for_conditions_and_weights() -> None:
    base = "net T(C = 4)\ninput x: [1, H = 16, W = 16]{where}\noutput = x |> {body}\n"
    conv = "conv(C, 3, padding=1) -> maxpool(2)"
    assert axes(base.format(where=" where H % 4 == 2", body=conv), H=18)["H"] == "H (4k + 2, from 2)"
    assert axes(base.format(where=" where H >= 8, H <= 64", body=conv))["H"] == "H (any size, from 8 to 64)"
    assert axes(base.format(where=" where H == W", body=conv)) == {
        n: f"{n} = 16: the condition H == W ties it" for n in "HW"}
    assert axes(base.format(where=" where H == 16", body=conv))["H"] == "H = 16: the spec fixes H"
    # a linear layer after flatten has weights that depend on the sizes
    assert axes(base.format(where="", body="flatten -> linear(10)")) == {
        n: f"{n} = 16: 'output.1' depends on it" for n in "HW"}
    assert axes(base.format(where="", body="conv(C, 5) -> conv(C, 5)"))["H"] == "H (any size, from 9)"


# --- the export itself on small made-up networks ------------------------------------------------

SMALL = ("net Small(C = 4)\ninput x: [2, H = 12, W = 12] where H % 4 == 0, W % 4 == 0\n"
         "a = x |> conv(C, 3, padding=1) -> relu -> maxpool(2)\n"
         "b = a |> conv(C, 3, padding=1) -> upsample(2)\n"
         "output = cat(x, b) |> conv(3, 1)\n")


def test_dynamic_export_and_its_message(ort, tmp_path: Path) -> None:  # noqa: ANN001
    from netdsl.backends.onnx_export import export_onnx

    text, _ = load(SMALL)
    out = tmp_path / "small.onnx"
    message = export_onnx(analyse_text(text, None, {}), out)
    lines = message.splitlines()
    assert lines[0] == f"wrote {out} (ONNX opset 18)"
    assert lines[1] == "  inputs:  x [batch, 2, H, W]"
    assert lines[2] == "  outputs: output [batch, 3, H, W]"
    assert lines[3] == "  dynamic: batch, H (multiple of 4, from 4), W (multiple of 4, from 4)"
    assert lines[4].startswith("  checked: onnx.checker; onnxruntime = torch at 2x2x12x12, 3x2x16x20, 1x2x4x4 "
                               "(max |difference| ")
    assert lines[4].endswith("; limit 0.0001, relative above 1)")
    assert lines[5] == "  weights: a fresh initialisation (torch seed 0); --weights FILE exports trained ones"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.zeros((5, 2, 28, 8), np.float32)})[0].shape == (5, 3, 28, 8)


def test_detect_head_outputs_and_opset_17(ort, tmp_path: Path) -> None:  # noqa: ANN001
    spec = ("net Head(NCLS = 2)\ninput x: [3, H = 64, W = 64] where H % 32 == 0, W % 32 == 0\n"
            "p4 = x |> conv(8, 3, stride=16, padding=1)\np5 = p4 |> conv(8, 3, stride=2, padding=1)\n"
            "output = detect(p4, p5, classes=NCLS, strides=[16, 32], anchors=[[10, 14, 23, 27], [81, 82, 135, 169]])\n")
    report = export(spec, {}, tmp_path / "head.onnx", opset=17)
    assert report.outputs == [("output", ["batch", "5*H*W/512", "7"]), ("output_raw0", ["batch", "2", "H/16", "W/16", "7"]),
                              ("output_raw1", ["batch", "2", "H/32", "W/32", "7"])]
    assert report.opset == 17 and report.max_diff < 1e-4 and report.dynamic == ["H", "W"]
    import onnx

    assert onnx.load(str(tmp_path / "head.onnx")).opset_import[0].version == 17


def test_several_inputs_and_outputs(ort, tmp_path: Path) -> None:  # noqa: ANN001
    spec = ("net Two(C = 4)\ninput a: [1, H = 8, W = 8] where H % 2 == 0\ninput b: [2, G = 4, K = 4]\n"
            "output y = a |> conv(C, 3, padding=1) -> maxpool(2)\noutput z = b |> conv(C, 1)\n")
    report = export(spec, {}, tmp_path / "two.onnx")
    assert report.inputs == [("a", ["batch", "1", "H", "W"]), ("b", ["batch", "2", "G", "K"])]
    assert report.outputs == [("y", ["batch", "4", "H/2", "floor(W/2)"]), ("z", ["batch", "4", "G", "K"])]
    assert report.dynamic == ["H", "W", "G", "K"] and report.max_diff < 1e-4
    assert [s for s, _ in report.checks] == ["2x1x8x8 + 2x2x4x4", "3x1x10x9 + 3x2x5x6", "1x1x2x2 + 1x2x1x1"]


def test_sizes_fall_back_to_fixed_when_pytorch_cannot_trace_them(ort, tmp_path: Path) -> None:  # noqa: ANN001
    # ceil_mode pooling without a `where`: PyTorch's trace depends on the sizes' parity
    spec = ("net Ceil(C = 4)\ninput x: [1, H = 9, W = 9]\n"
            "output = x |> conv(C, 3, padding=1) -> maxpool(2, ceil_mode=true) -> maxpool(3, stride=2, ceil_mode=true)\n")
    report = export(spec, {}, tmp_path / "ceil.onnx")
    assert report.dynamic == [] and report.inputs == [("x", ["batch", "1", "9", "9"])]
    assert "PyTorch's exporter cannot keep them dynamic" in report.fallback
    assert "fixed:   H = 9, W = 9: PyTorch's exporter cannot keep them dynamic" in report.message()
    assert [s for s, _ in report.checks] == ["2x1x9x9"] and report.max_diff < 1e-4


def test_bad_opset_and_open_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(ROOT / "specs/unet.net"), "--to", "onnx", "--opset", "16",
                 "-o", str(tmp_path / "u.onnx")]) == 2
    assert "opset 17 or later" in capsys.readouterr().err
    assert main(["export", str(ROOT / "specs/conv_transpose_open.net"), "--to", "onnx",
                 "-o", str(tmp_path / "o.onnx")]) == 2
    assert "left open" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_command_writes_the_file(ort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tiny.net").write_text("net Tiny(C = 4)\ninput x: [1, H = 8, W = 8]\noutput = x |> conv(C, 3, padding=1)\n")
    assert main(["export", "tiny.net", "--to", "onnx", "--set", "C=2", "--set", "H=6"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote tiny.onnx (ONNX opset 18)") and "outputs: output [batch, 2, H, W]" in out
    assert "dynamic: batch, H (any size, from 1), W (any size, from 1)" in out and " at 2x1x6x8, " in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.net", "tiny.onnx"]
    # --weights: the file's weights are the ones exported
    import torch

    from netdsl.api import build

    model = build("tiny.net", C=2, H=6)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.arange(p.numel(), dtype=torch.float32).view_as(p) / 10)
    torch.save(model.state_dict(), "trained.pt")
    assert main(["export", "tiny.net", "--to", "onnx", "--set", "C=2", "--set", "H=6", "--weights", "trained.pt",
                 "-o", "trained.onnx"]) == 0
    assert "weights: from trained.pt" in capsys.readouterr().out
    x = np.random.default_rng(0).standard_normal((3, 1, 10, 7), dtype=np.float32)
    run_both(ort, model.eval(), tmp_path / "trained.onnx", [x])
    assert main(["export", "tiny.net", "--to", "dot", "--weights", "trained.pt"]) == 2
    assert "--weights has no effect with --to dot" in capsys.readouterr().err


def test_a_failed_check_leaves_nothing(ort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import netdsl.backends.onnx_export as ox

    def broken(*args: object, **kw: object) -> None:
        raise ox.Failed("made up", NetdslError("the exported model's output 'output' differs from torch"))

    monkeypatch.setattr(ox, "check_against_torch", broken)
    with pytest.raises(NetdslError, match="differs from torch"):  # sizes fixed: one export, no second try
        export("net T(C = 2)\ninput x: [1, H = 8, W = 8] where H == 8, W == 8\noutput = x |> conv(C, 3)\n", {},
               tmp_path / "t.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", ["onnxruntime", "onnxscript", "onnx"])
def test_without_the_extra_the_command_says_what_to_install(missing: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` raises ImportError
    from netdsl.backends.onnx_export import require_onnx

    with pytest.raises(NetdslError) as info:
        require_onnx()
    assert missing in info.value.message and info.value.hint is not None
    assert 'pip install "netdsl[onnx]"' in info.value.hint
    assert main(["export", str(ROOT / "specs/unet.net"), "--to", "onnx", "-o", str(tmp_path / "u.onnx")]) == 2
    err = capsys.readouterr().err
    assert "error: exporting to ONNX needs the optional package" in err and 'pip install "netdsl[onnx]"' in err
    assert list(tmp_path.iterdir()) == []


def test_docstring_examples(ort) -> None:  # noqa: ANN001
    import netdsl.backends.onnx_export as ox

    result = doctest.testmod(ox, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4 and result.failed == 0
