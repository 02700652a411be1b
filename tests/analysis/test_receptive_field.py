"""Receptive fields (`netdsl.passes.receptive`) against torch: the input pixels one unit reads are
exactly where its gradient is nonzero, once nothing can zero a gradient.

The probe: weights set to 1/fan-in (every path positive, values stay near 1), biases 0, max
pooling as average pooling of the same window (adaptive too), BatchNorm and LayerNorm, and the
activations whose gradient vanishes for large inputs (sigmoid, hardsigmoid, relu6, tanh) as the
identity (sigmoid and hardsigmoid as x / (1 + |x|), so that a squeeze-excitation gate stays
below 1), dropout and stochastic depth in eval mode, input all ones, float64 (the gradient reaching
a region's edge is about 9**-depth: float32 loses it in the deep networks). One batch holds every probe: sample b's loss is
one unit of one layer, so one backward pass gives each probe's support.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sympy as sp
import torch
from torch import nn

import netdsl
from netdsl.concrete import Layer
from netdsl.ops import REGISTRY, OpDef
from netdsl.ops.activation import OPS as ACTIVATIONS
from netdsl.passes.receptive import RF, receptive_fields
from test_op_protocol import EVERY_OP  # every builtin op at least once

ROOT = Path(__file__).resolve().parents[2]
Probe = tuple[str, RF, tuple[int, int]]  # module path ("": the network's output), its field, a unit
_VANISHING = (nn.ReLU6, nn.Tanh, nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm)
_GATES = (nn.Sigmoid, nn.Hardsigmoid)


def _probe_model(model: nn.Module) -> nn.Module:
    """The model with nothing left that could zero a gradient (see the module's docstring)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.MaxPool2d):
            setattr(model, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode))
        elif isinstance(child, nn.AdaptiveMaxPool2d):
            setattr(model, name, nn.AdaptiveAvgPool2d(child.output_size))
        elif isinstance(child, _VANISHING) or type(child).__name__ == "ChannelLayerNorm":
            setattr(model, name, nn.Identity())
        elif isinstance(child, _GATES):
            setattr(model, name, nn.Softsign())
        else:
            _probe_model(child)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.dim() >= 2 else 1
            p.fill_(0.0 if name.endswith("bias") else 1.0 / fan_in).requires_grad_(False)
    return model.eval()


def _region(rf: RF, unit: tuple[int, int], at: Callable[[sp.Expr], int], size: tuple[int, ...]) -> torch.Tensor:
    (h0, h1), (w0, w1) = rf.region(unit, at)
    mask = torch.zeros(size, dtype=torch.bool)
    mask[max(h0, 0):min(h1, size[0] - 1) + 1, max(w0, 0):min(w1, size[1] - 1) + 1] = True
    return mask


def _fits(rf: RF, unit: tuple[int, int], at: Callable[[sp.Expr], int], size: tuple[int, ...]) -> bool:
    return all(0 <= lo and hi < n for (lo, hi), n in zip(rf.region(unit, at), size))


def _probes(model: nn.Module) -> list[Probe]:
    """What to probe: the deepest layer whose centre unit's region fits inside the input, one
    halfway to it, the last image layer, each detect level and each output; for a layer after
    upsampling, the centre unit's neighbour too (another phase)."""
    cg = model.concrete
    res = receptive_fields(cg)
    at = _at(model)
    size = model.input_shape[1:]
    spatial = [(x.path, rf, (x.out_at[1] // 2, x.out_at[2] // 2)) for x, rf in zip(cg.walk(), res.layers)
               if isinstance(x, Layer) and rf is not None and len(x.out_at) == 3]
    fitting = [k for k, (_, rf, unit) in enumerate(spatial) if _fits(rf, unit, at, size)]
    picks = sorted({fitting[-1], fitting[len(fitting) // 2], len(spatial) - 1} if fitting else {len(spatial) - 1})
    out: list[Probe] = []
    for path, rf, (i, j) in (spatial[k] for k in picks):
        out.append((path, rf, (i, j)))
        if any(a.q > 1 for a in rf.axes) and min(i, j) > 0:
            out.append((path, rf, (i - 1, j - 1)))
    modules = dict(model.named_modules())
    for name, rf in res.outputs.items():
        if "[" in name:  # a detect level
            stem, k = name[:-1].split("[")
            st = next(s for s in cg.statements if s.name == stem)
            _, h, w = (at(x) for x in cg.tensors[st.inputs[int(k)]])
            # YOLOv3's Detect: the level's 1x1 convolution's output. A head without one per level
            # (detect_v8 decodes the maps it is given): the head itself, `path[k]`, probed in its
            # decoded output at the level's centre cell (`_unit`).
            conv = f"{st.path}.m.{k}"
            out.append((conv if conv in modules else f"{st.path}[{k}]", rf, (h // 2, w // 2)))
        else:
            shape = next(t.at for t in cg.outputs if t.name == name)
            out.append(("", rf, (shape[1] // 2, shape[2] // 2) if len(shape) == 3 else (0, 0)))
    return out


def _unit(y: Any, b: int, probe: Probe) -> torch.Tensor:
    # A unit is a position: every channel there (a cat's channels come from different paths).
    i, j = probe[2]
    if "[" in probe[0]:
        return _level_cell(y, b, int(probe[0][:-1].split("[")[1]), i, j)
    return y[b, :, i, j].sum() if y.dim() == 4 else y[b].sum()


def _level_cell(y: tuple[torch.Tensor, tuple[torch.Tensor, ...]], b: int, k: int, i: int, j: int) -> torch.Tensor:
    """Cell (i, j) of level k in an anchor-free head's eval output `(decoded, raw maps)`: decoded
    holds the levels' cells one after another, row by row. Its class scores only: the box rows
    are the DFL's softmax expectation over its bins, which the probe's equal weights (1/reg_max
    each) make a constant, with no gradient."""
    decoded, raw = y
    cell = sum(r.shape[2] * r.shape[3] for r in raw[:k]) + i * raw[k].shape[3] + j
    return decoded[b, 4:, cell].sum()


def measure(model: nn.Module, probes: list[Any], select: Callable[[torch.Tensor, int, Any], torch.Tensor] = _unit,
            batched: bool = True) -> list[torch.Tensor]:
    """Each probe's gradient support on the input (rows x columns), one probe per sample; `select`
    picks what of the probed output sample b is differentiated (a position by default). Not
    `batched`: one sample and one backward pass per probe through the same graph (for a big
    network, where a forward pass per probe costs more than the graph kept between passes)."""
    model = _probe_model(model)
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    # a detect level's probe `path[k]` reads its head's output
    hooks = [modules[p.split("[")[0]].register_forward_hook(lambda m, i, o, p=p: seen.__setitem__(p, o))
             for p in {p for p, _, _ in probes if p}]
    x = torch.ones(len(probes) if batched else 1, *model.input_shape, dtype=next(model.parameters()).dtype,
                   requires_grad=True)
    y = model(x)
    for h in hooks:
        h.remove()
    seen[""] = y
    if not batched:
        # every sample is the same all-ones image, so sample 0's forward pass serves every probe
        return [torch.autograd.grad(select(seen[probe[0]], 0, probe), x, retain_graph=True)[0][0].abs().sum(0) != 0
                for probe in probes]
    loss = sum(select(seen[probe[0]], b, probe) for b, probe in enumerate(probes))
    (grad,) = torch.autograd.grad(loss, x)
    return [g.abs().sum(0) != 0 for g in grad]


def _at(model: nn.Module) -> Callable[[sp.Expr], int]:
    env = model.concrete.env
    return lambda e: int(env.at(e))


def build(path: str, dtype: torch.dtype = torch.float64, **params: int) -> nn.Module:
    """The spec's module in float64, its memory left uninitialised (the probe sets every weight)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = netdsl.build(ROOT / path, **params)
    finally:
        torch.set_default_dtype(before)
    return model.to_empty(device="cpu")


def check(model: nn.Module, only: str = "", batched: bool = True) -> tuple[int, int]:
    """Each probe's support against its region: equal where the region fits inside the input;
    at the borders the region bounds it (units past an edge do not exist, and floor-mode windows
    drop the last rows). Returns (exact probes, bounded probes). `only`: the probes of modules
    whose path has it; `batched`: see `measure`."""
    probes = [p for p in _probes(model) if only in p[0]]
    supports = measure(model, probes, batched=batched)
    at, size = _at(model), tuple(model.input_shape[1:])
    exact = 0
    for (p, rf, unit), got in zip(probes, supports):
        want = _region(rf, unit, at, size)
        where = (model.spec_name, p or "output", unit, rf.region(unit, at))
        if _fits(rf, unit, at, size):
            exact += 1
            assert torch.equal(got, want), where
        else:
            assert got.any() and not (got & ~want).any(), where
    return exact, len(probes) - exact


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Small batches: torch's other threads would spin on the shared cores for nothing.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ZOO = sorted(p.stem for p in (ROOT / "specs" / "zoo").glob("*.net"))
NO_PADDING = {"vit_b_16"}
SEEDS = sorted(p.name for p in (ROOT / "specs").glob("*.net") if "open" not in p.name)  # open: `?` arguments


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_spec_reads_exactly_its_receptive_field(name: str) -> None:
    size = 64 if name == "alexnet" else 32  # the smallest inputs they take
    exact, bounded = check(build(f"specs/zoo/{name}.net", H=size, W=size))
    # ViT reads no padding (16x16 patches, then attention over every token): every probe's region
    # lies inside the image, so every one is exact
    assert exact >= 1 and bounded >= (0 if name in NO_PADDING else 1)


@pytest.mark.parametrize("name", SEEDS)
def test_the_shipped_specs_read_exactly_their_receptive_fields(name: str) -> None:
    # the seeds' convT and upsample paths (both phases of a unit), the YOLO heads' levels
    exact, _ = check(build(f"specs/{name}", **(dict(H=32, W=32) if "yolo" in name else {})))
    assert exact >= 1


@pytest.mark.slow
def test_yolov3_tinys_levels_read_exactly_their_fields() -> None:
    # At 384 the centre cell of each level reads a region inside the image (286 and 318 pixels);
    # 13 layers deep, float32 keeps the edges' gradients.
    exact, bounded = check(build("specs/yolov3-tiny.net", torch.float32, H=384, W=384), only=".m.")
    assert (exact, bounded) == (2, 0)


@pytest.mark.slow
def test_yolov3s_levels_read_exactly_their_fields() -> None:
    # The deepest level reads 981 pixels: at 1024 each level's centre cell reads a region inside the
    # image (at 992, P3's centre cell, another phase of its two upsamplings, reads rows -10..970). One
    # forward pass for the three probes (see `measure`): the one test of a full-size YOLOv3 backward.
    exact, bounded = check(build("specs/yolov3.net", torch.float32, H=1024, W=1024), only=".m.", batched=False)
    assert (exact, bounded) == (3, 0)


# --- the pass itself: Distill's table, the rule every op must give, what the notes say -----------

# TF-slim's networks of Araujo et al.'s table (Distill, 2019), written as netdsl specs: TF's "SAME"
# padding of a stride-2 layer on an even size pads only after (pad(0, 1, 0, 1)); slim's ResNet v1
# strides in the 3x3 convolution of each block's LAST unit.
SLIM = {
    "resnet_v1_50": ("""
net ResNetV1Slim()
input x: [3, H = 224, W = 224] where H % 32 == 0, W % 32 == 0
block unit(c, s = 1, down = 0) {
  input x
  main = x |> conv(c, 1) -> relu -> conv(c, 3, stride=s, padding=1) -> relu -> conv(4*c, 1)
  skip = x |> conv(4*c, 1, stride=s) * down
  output = add(main, skip) |> relu
}
stem = x |> conv(64, 7, stride=2, padding=3) -> relu -> pad(0, 1, 0, 1) -> maxpool(3, stride=2)
block1 = stem |> unit(64, down=1) -> unit(64) -> unit(64, 2, 1)
block2 = block1 |> unit(128, down=1) -> unit(128) * 2 -> unit(128, 2, 1)
block3 = block2 |> unit(256, down=1) -> unit(256) * 4 -> unit(256, 2, 1)
output = block3 |> unit(512, down=1) -> unit(512) * 2
""", (483, 32, 239)),
    "mobilenet_v1": ("""
net MobileNetV1Slim()
input x: [3, H = 224, W = 224] where H % 32 == 0, W % 32 == 0
block same(c, s, g = 1, p = 0 if s == 2 else 1) = pad(p, 1, p, 1) -> conv(c, 3, stride=s, groups=g) -> relu
block sep(cin, c, s) = same(cin, s, cin) -> conv(c, 1) -> relu
output = x |> same(32, 2) -> sep(32, 64, 1) -> sep(64, 128, 2) -> sep(128, 128, 1) -> sep(128, 256, 2)
   -> sep(256, 256, 1) -> sep(256, 512, 2) -> sep(512, 512, 1) * 5 -> sep(512, 1024, 2) -> sep(1024, 1024, 1)
""", (315, 32, 126)),
    "alexnet_v2": ("""
net AlexNetV2Slim()
input x: [3, H = 224, W = 224]
output = x |> conv(64, 11, stride=4) -> relu -> maxpool(3, stride=2) -> conv(192, 5, padding=2) -> relu
   -> maxpool(3, stride=2) -> conv(384, 3, padding=1) -> conv(384, 3, padding=1) -> conv(256, 3, padding=1)
   -> maxpool(3, stride=2)
""", (195, 32, 64)),
}


def _distill(rf: RF) -> tuple[int, int, int]:
    """Distill's (receptive field, effective stride, effective padding) of a square field."""
    assert rf.size[0] == rf.size[1] and rf.jump[0] == rf.jump[1] and rf.start[0] == rf.start[1]
    return int(rf.size[0]), int(rf.jump[0]), -int(rf.start[0])


@pytest.mark.parametrize("name", sorted(SLIM))
def test_distills_table_for_tf_slims_networks(name: str) -> None:
    text, want = SLIM[name]
    assert _distill(receptive_fields(netdsl.shapes(text)).outputs["output"]) == want


def _after(name: str, path: str) -> RF:
    cg = netdsl.shapes(ROOT / "specs" / "zoo" / f"{name}.net")
    rf = next(rf for x, rf in zip(cg.walk(), receptive_fields(cg).layers) if x.path == path)
    assert rf is not None
    return rf


def test_the_zoo_against_distills_table() -> None:
    # torchvision's VGG-16 is slim's vgg_16 to pool5; its AlexNet pads conv1 by 2 (slim's alexnet_v2
    # does not: 2 pixels more padding, the same field); its ResNet-50 strides in the FIRST unit of a
    # stage (slim's in the last: 483), and ResNet-18's layer4 is the issue's measurement.
    assert _distill(_after("vgg16", "features.30")) == (212, 32, 90)
    assert _distill(_after("alexnet", "features.12")) == (195, 32, 66)
    assert _distill(_after("resnet50", "layer4.2.output")) == (427, 32, 213)
    assert _distill(_after("resnet18", "layer4.1.output")) == (435, 32, 217)


def test_fields_are_formulas_in_the_input_size() -> None:
    cg = netdsl.shapes(ROOT / "specs" / "zoo" / "resnet18.net")
    res = receptive_fields(cg)
    h = sp.Symbol("H", integer=True, positive=True)
    out = res.outputs["output"]  # after global pooling: every unit reads the whole (padded) input
    assert out.jump == (0, 0) and sp.expand(cg.env.show(out.size[0]) - (h + 403)) == 0
    assert not res.notes


def test_every_op_gives_its_rule_and_one_without_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(type(op).windows is not OpDef.windows for op in REGISTRY.values())
    cg = netdsl.shapes(EVERY_OP)
    res = receptive_fields(cg)
    assert len(res.layers) == len(list(cg.walk())) and set(res.outputs) == {"boxes[0]", "boxes[1]", "f", "v8[0]", "v8[1]"}
    relu = next(op for op in ACTIVATIONS if op.name == "relu")
    monkeypatch.setattr(type(relu), "windows", OpDef.windows)
    with pytest.raises(netdsl.NetdslError, match="'relu' has no receptive-field rule"):
        receptive_fields(cg)


def test_what_the_notes_say() -> None:
    se = receptive_fields(netdsl.shapes(ROOT / "specs" / "zoo" / "mobilenet_v3_small.net"))
    assert any("not aligned" in n and "(mul)" in n for n in se.notes)  # the gate reads the whole map
    unet = receptive_fields(netdsl.shapes(ROOT / "specs" / "unet.net"))
    assert any("fraction" in n for n in unet.notes) and any(a.q == 2 for r in unet.layers if r for a in r.axes)
    yolo = receptive_fields(netdsl.shapes(ROOT / "specs" / "yolov3.net", H=416, W=416))
    assert [int(yolo.outputs[f"output[{k}]"].jump[0]) for k in range(3)] == [8, 16, 32]


def test_the_docstring_examples_run() -> None:
    import doctest

    import netdsl.ops.window
    import netdsl.passes.receptive

    for module in (netdsl.passes.receptive, netdsl.ops.window):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted >= 1 and result.failed == 0
