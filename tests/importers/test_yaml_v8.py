"""Ultralytics 8.x model YAMLs (YOLOv8, YOLO11): scales, counts, weights by name, located errors.

The YAMLs are built here in ultralytics' format from the rows of its yolov8.yaml and yolo11.yaml
(8.4.190), nc 80. The expected counts are ultralytics 8.4.190's own: `DetectionModel(cfg, nc=80)`,
unfused, eval, parameters summed (the DFL's frozen 16 included) and torch's FlopCounterMode at
640x640, MACs = flops / 2 (conv and bmm, the DFL 1x1 conv of the eval decode included), run in
ultralytics' environment.

`Ultra` is this test's own transcription of what ultralytics 8.x builds from those rows (its
nn/tasks.py parse_model and nn/modules Conv, Bottleneck, C2f, C3k, C3k2, SPPF, Attention,
PSABlock, C2PSA and Detect's branches), written from their documented behaviour; its parameter
count is checked against the published figures, then its state_dict (random weights and
BatchNorm statistics), saved as a .pt with ultralytics' keys `model.<row>....`, loads by name into
the import and the raw per-level maps are equal.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

import netdsl
from netdsl.cli import main as cli_main
from netdsl.errors import NetdslError
from netdsl.importers import import_text
from netdsl.weights import load_weights

COUNTS = {  # ultralytics 8.4.190, see the module doc: (parameters, MACs at 640)
    "yolov8n": (3_157_200, 4_371_993_600), "yolov8s": (11_166_560, 14_301_312_000),
    "yolov8m": (25_902_640, 39_468_364_800), "yolov8l": (43_691_520, 82_574_259_200),
    "yolov8x": (68_229_648, 128_902_169_600), "yolo11n": (2_624_080, 3_271_251_200),
    "yolo11s": (9_458_752, 10_794_880_000), "yolo11m": (20_114_688, 34_052_224_000),
    "yolo11l": (25_372_160, 43_577_984_000), "yolo11x": (56_966_176, 97_636_224_000)}
SCALES = {"yolov8": {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768),
                     "l": (1.00, 1.00, 512), "x": (1.00, 1.25, 512)},
          "yolo11": {"n": (0.50, 0.25, 1024), "s": (0.50, 0.50, 1024), "m": (0.50, 1.00, 512),
                     "l": (1.00, 1.00, 512), "x": (1.00, 1.50, 512)}}
UP = "[-1, 1, nn.Upsample, [None, 2, 'nearest']]"
# (backbone, head) rows; the P3-P5 neck of both is the same shape with their own blocks
V8 = (["[-1, 1, Conv, [64, 3, 2]]", "[-1, 1, Conv, [128, 3, 2]]", "[-1, 3, C2f, [128, True]]",
       "[-1, 1, Conv, [256, 3, 2]]", "[-1, 6, C2f, [256, True]]", "[-1, 1, Conv, [512, 3, 2]]",
       "[-1, 6, C2f, [512, True]]", "[-1, 1, Conv, [1024, 3, 2]]", "[-1, 3, C2f, [1024, True]]",
       "[-1, 1, SPPF, [1024, 5]]"],
      [UP, "[[-1, 6], 1, Concat, [1]]", "[-1, 3, C2f, [512]]", UP, "[[-1, 4], 1, Concat, [1]]",
       "[-1, 3, C2f, [256]]", "[-1, 1, Conv, [256, 3, 2]]", "[[-1, 12], 1, Concat, [1]]", "[-1, 3, C2f, [512]]",
       "[-1, 1, Conv, [512, 3, 2]]", "[[-1, 9], 1, Concat, [1]]", "[-1, 3, C2f, [1024]]",
       "[[15, 18, 21], 1, Detect, [nc]]"])
V11 = (["[-1, 1, Conv, [64, 3, 2]]", "[-1, 1, Conv, [128, 3, 2]]", "[-1, 2, C3k2, [256, False, 0.25]]",
        "[-1, 1, Conv, [256, 3, 2]]", "[-1, 2, C3k2, [512, False, 0.25]]", "[-1, 1, Conv, [512, 3, 2]]",
        "[-1, 2, C3k2, [512, True]]", "[-1, 1, Conv, [1024, 3, 2]]", "[-1, 2, C3k2, [1024, True]]",
        "[-1, 1, SPPF, [1024, 5]]", "[-1, 2, C2PSA, [1024]]"],
       [UP, "[[-1, 6], 1, Concat, [1]]", "[-1, 2, C3k2, [512, False]]", UP, "[[-1, 4], 1, Concat, [1]]",
        "[-1, 2, C3k2, [256, False]]", "[-1, 1, Conv, [256, 3, 2]]", "[[-1, 13], 1, Concat, [1]]",
        "[-1, 2, C3k2, [512, False]]", "[-1, 1, Conv, [512, 3, 2]]", "[[-1, 10], 1, Concat, [1]]",
        "[-1, 2, C3k2, [1024, True]]", "[[16, 19, 22], 1, Detect, [nc]]"])


def yaml_text(family: str, scales: dict[str, tuple[float, float, int]] | None = None, nc: int = 80) -> str:
    rows = V8 if family == "yolov8" else V11
    sc = "".join(f"  {k}: [{d}, {w}, {m}]\n" for k, (d, w, m) in (scales or SCALES[family]).items())
    return (f"nc: {nc}\nscales:\n{sc}backbone:\n" + "".join(f"  - {r}\n" for r in rows[0]) + "head:\n" +
            "".join(f"  - {r}\n" for r in rows[1]))


def cli_count(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, int]:
    """`netdsl import FAMILY.yaml --scale S -o SPEC`, then the spec's parameters and MACs (`netdsl.count`)."""
    family, scale = name[:-1], name[-1]
    yml = tmp_path / f"{family}.yaml"
    yml.write_text(yaml_text(family))
    spec = tmp_path / f"{name}.net"
    assert cli_main(["import", str(yml), "--scale", scale, "-o", str(spec)]) == 0
    c = netdsl.count(spec)
    return int(c.value(c.total("parameters"))), int(c.value(c.total("macs")))


@pytest.mark.parametrize("name", ["yolov8n", "yolov8s", "yolo11n", "yolo11s"])
def test_the_imports_count_what_ultralytics_builds(name: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_count(tmp_path, name, capsys) == COUNTS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov8m", "yolov8l", "yolov8x", "yolo11m", "yolo11l", "yolo11x"])
def test_the_larger_scales_count_what_ultralytics_builds(name: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_count(tmp_path, name, capsys) == COUNTS[name]


def test_the_file_name_picks_the_scale_as_ultralytics_reads_it() -> None:
    text = yaml_text("yolov8")
    assert "Scale s of its scales" in import_text(text, "models/yolov8s.yaml", "yaml")
    assert "Scale n of its scales" in import_text(text, "yolov8.yaml", "yaml")  # none named: the first
    assert "Scale x of its scales" in import_text(text, "yolov8n.yaml", "yaml", scale="x")  # --scale wins


# -- errors -----------------------------------------------------------------------------------------

def error_of(text: str, path: str = "m.yaml", scale: str | None = None) -> NetdslError:
    with pytest.raises(NetdslError) as err:
        import_text(text, path, "yaml", scale)
    return err.value


def test_a_scale_the_yaml_does_not_list_is_located() -> None:
    text = yaml_text("yolov8")
    e = error_of(text, scale="q")
    assert "--scale asks for scale 'q'" in e.message and e.span is not None and e.span.line == 3
    assert "n, s, m, l, x" in (e.hint or "")
    e = error_of(text, path="yolov8q.yaml")
    assert "the file name 'yolov8q.yaml' asks for scale 'q'" in e.message
    e = error_of(yaml_text("yolov8", {"n": (0.33, 0.25, 1024)}).replace("[0.33, 0.25, 1024]", "[0.33, 0.25]"))
    assert "expected [depth, width, max_channels]" in e.message and e.span is not None and e.span.line == 3


def test_v8_modules_with_arguments_netdsl_does_not_import_are_located() -> None:
    base = yaml_text("yolo11", {"n": (0.5, 0.25, 1024)})
    cases = {"[-1, 2, C3k2, [256, False, 0.25]]": ("[-1, 2, C3k2, [256, False, 0.25, True]]", "attn=True"),
             "[-1, 2, C2PSA, [1024]]": ("[-1, 2, C2PSA, [512]]", "keeps its input's channels"),
             "[[16, 19, 22], 1, Detect, [nc]]": ("[[16, 19, 22], 1, Detect, [nc, 3]]", "takes [nc]"),
             "[-1, 1, SPPF, [1024, 5]]": ("[-1, 1, C2fAttn, [1024, 5]]", "module 'C2fAttn' is not supported")}
    lines = base.split("\n")
    for old, (new, what) in cases.items():
        e = error_of(base.replace(old, new))
        assert what in e.message, e.message
        assert e.span is not None and lines[e.span.line - 1].strip() == f"- {old}"


def test_the_cli_exits_2_with_the_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    yml = tmp_path / "yolov8.yaml"
    yml.write_text(yaml_text("yolov8"))
    assert cli_main(["import", str(yml), "--scale", "q"]) == 2
    assert "yolov8.yaml:3:3: error: --scale asks for scale 'q'" in capsys.readouterr().err
    v5 = tmp_path / "v5.yaml"
    v5.write_text("nc: 1\ndepth_multiple: 1.0\nwidth_multiple: 1.0\nanchors: 1\nbackbone:\n  - [-1, 1, Conv, [8]]\n"
                  "head:\n  - [-1, 1, Conv, [8]]\n")
    assert cli_main(["import", str(v5), "--scale", "n"]) == 2
    assert "this YAML has no scales:" in capsys.readouterr().err


# -- ultralytics 8.x's modules, transcribed -------------------------------------------------------

class Conv(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=0.001, momentum=0.03)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool, hidden: int) -> None:  # 3x3 then 3x3
        super().__init__()
        self.cv1, self.cv2, self.add = Conv(c, hidden, 3), Conv(hidden, c, 3), shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3k(nn.Module):  # C3 with two 3x3/3x3 bottlenecks at half the channels
    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        h = c // 2
        self.cv1, self.cv2, self.cv3 = Conv(c, h), Conv(c, h), Conv(2 * h, c)
        self.m = nn.Sequential(*(Bottleneck(h, shortcut, h) for _ in range(2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C2f(nn.Module):
    """C2f (unit "b": bottlenecks with h hidden), or C3k2 (unit "b2": h // 2 hidden; "c3k": C3k)."""

    def __init__(self, c1: int, c2: int, n: int, shortcut: bool, e: float, unit: str) -> None:
        super().__init__()
        self.c = h = int(c2 * e)
        self.cv1, self.cv2 = Conv(c1, 2 * h), Conv((2 + n) * h, c2)
        self.m = nn.ModuleList(C3k(h, shortcut) if unit == "c3k" else Bottleneck(h, shortcut, h if unit == "b"
                                                                                 else h // 2) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            ys.append(m(ys[-1]))
        return self.cv2(torch.cat(ys, 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        self.cv1, self.cv2 = Conv(c1, c1 // 2), Conv(c1 // 2 * 4, c2)  # cv1 activated (8.4's legacy rows)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [self.cv1(x)]
        for _ in range(3):
            ys.append(self.m(ys[-1]))
        return self.cv2(torch.cat(ys, 1))


class Attention(nn.Module):
    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.heads, self.hd = heads, c // heads
        self.kd = int(self.hd * 0.5)
        self.qkv = Conv(c, c + 2 * self.kd * heads, act=False)
        self.proj = Conv(c, c, act=False)
        self.pe = Conv(c, c, 3, g=c, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).view(b, self.heads, 2 * self.kd + self.hd, h * w).split([self.kd, self.kd, self.hd], 2)
        att = (q.transpose(-2, -1) @ k * self.kd ** -0.5).softmax(-1)  # [positions, positions] per head
        y = (v @ att.transpose(-2, -1)).reshape(b, c, h, w)
        return self.proj(y + self.pe(v.reshape(b, c, h, w)))


class PSABlock(nn.Module):
    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.attn = Attention(c, heads)
        self.ffn = nn.Sequential(Conv(c, 2 * c), Conv(2 * c, c, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.ffn(x)


class C2PSA(nn.Module):
    def __init__(self, c1: int, c2: int, n: int) -> None:
        super().__init__()
        self.c = h = c1 // 2
        self.cv1, self.cv2 = Conv(c1, 2 * h), Conv(2 * h, c1)
        self.m = nn.Sequential(*(PSABlock(h, max(h // 64, 1)) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), 1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


class Concat(nn.Module):
    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, 1)


class Detect(nn.Module):
    """The branches (cv2: box, cv3: classes) and the frozen DFL conv; forward gives the raw maps."""

    def __init__(self, nc: int, ch: list[int], legacy: bool) -> None:
        super().__init__()
        c2, c3 = max(16, ch[0] // 4, 64), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 64, 1)) for x in ch)
        self.cv3 = nn.ModuleList(
            nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) if legacy else
            nn.Sequential(nn.Sequential(Conv(x, x, 3, g=x), Conv(x, c3)), nn.Sequential(Conv(c3, c3, 3, g=c3),
                          Conv(c3, c3)), nn.Conv2d(c3, nc, 1)) for x in ch)
        self.dfl = nn.Module()
        self.dfl.conv = nn.Conv2d(16, 1, 1, bias=False).requires_grad_(False)
        self.dfl.conv.weight.data[:] = torch.arange(16.0).view(1, 16, 1, 1)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat((b(x), c(x)), 1) for b, c, x in zip(self.cv2, self.cv3, xs)]


class Ultra(nn.Module):
    """parse_model's rows: widths make_divisible(min(c, max_channels) * width, 8), repeats
    max(round(n * depth), 1) passed into the blocks, C3k2's c3k forced at scales m, l, x."""

    def __init__(self, text: str, scale: str) -> None:
        super().__init__()
        d = yaml.safe_load(text)
        gd, gw, mc = d["scales"][scale]
        rows = d["backbone"] + d["head"]
        legacy = not any(r[2] == "C3k2" for r in rows)
        layers: list[nn.Module] = []
        ch: list[int] = []
        self.froms: list[Any] = []
        for i, (f, n, m, args) in enumerate(rows):
            n = max(round(n * gd), 1) if n > 1 else n
            c1 = 3 if i == 0 else ch[f] if isinstance(f, int) else 0
            c2 = math.ceil(min(args[0], mc) * gw / 8) * 8 if m not in ("Concat", "Detect", "nn.Upsample") else c1
            mod: nn.Module
            if m == "Conv":
                mod = Conv(c1, c2, *args[1:])
            elif m == "C2f":
                mod = C2f(c1, c2, n, bool(args[1:2] and args[1]), 0.5, "b")
            elif m == "C3k2":
                c3k = scale in "mlx" or args[1]
                mod = C2f(c1, c2, n, True, args[2] if len(args) > 2 else 0.5, "c3k" if c3k else "b2")
            elif m == "SPPF":
                mod = SPPF(c1, c2, args[1])
            elif m == "C2PSA":
                mod = C2PSA(c1, c2, n)
            elif m == "Concat":
                mod, c2 = Concat(), sum(ch[x] for x in f)
            elif m == "Detect":
                mod = Detect(d["nc"], [ch[x] for x in f], legacy)
            else:
                mod = nn.Upsample(None, 2, "nearest")
            layers.append(mod)
            self.froms.append(f)
            ch.append(c2)
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> Any:
        outs: list[Any] = []
        y: Any = x
        for f, m in zip(self.froms, self.model):
            y = [outs[j] for j in f] if isinstance(f, list) else y if f == -1 else outs[f]
            y = m(y)
            outs.append(y)
        return y


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
def test_the_transcription_has_ultralytics_parameter_count(name: str) -> None:
    model = Ultra(yaml_text(name[:-1]), name[-1])
    assert sum(p.numel() for p in model.parameters()) == COUNTS[name][0]


def randomize(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if t.is_floating_point() and not k.endswith("dfl.conv.weight"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.5 if "running_var" in k or k.endswith("bn.weight")
                        else torch.randn(t.shape, generator=g) * 0.2)


# C3k2 with c3k (forced at scale m) at a small width: every YOLO11 block at test size
SMALL = {"yolov8": {"n": (0.33, 0.25, 1024)}, "yolo11": {"n": (0.5, 0.25, 1024), "m": (0.5, 0.125, 512)}}


@pytest.mark.parametrize("family,scale", [("yolov8", "n"), ("yolo11", "n"), ("yolo11", "m")])
def test_an_ultralytics_state_dict_loads_by_name_and_gives_its_raw_maps(family: str, scale: str,
                                                                         tmp_path: Path) -> None:
    text = yaml_text(family, SMALL[family], nc=3)
    ultra = Ultra(text, scale).eval()
    randomize(ultra, seed=1)
    pt = tmp_path / "ultralytics.pt"
    torch.save(ultra.state_dict(), pt)
    ours = netdsl.build(import_text(text, f"{family}.yaml", "yaml", scale), H=64, W=64).eval()
    load_weights(ours, pt)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ultra(x)
        _, raw = ours(x)
    assert len(raw) == len(want) == 3
    for a, b in zip(raw, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_rows_pair_by_name_where_the_head_is_several_statements() -> None:
    from netdsl.weights_match import pair_keys
    # ultralytics: two rows, the second the head; the import: one row, then the head as two statements.
    # Row 0 pairs by its children's names (m before cv2 in the import), the head in order.
    source = ["model.0.cv1.w", "model.0.cv2.w", "model.0.m.w", "model.1.cv2.0.w", "model.1.cv3.0.w", "model.1.dfl.w"]
    target = ["b0.cv1.w", "b0.m.w", "b0.cv2.w", "cv2_0.w", "cv3_0.w", "output.dfl.w"]
    assert sorted(pair_keys(source, target) or []) == [(0, 0), (1, 2), (2, 1), (3, 3), (4, 4), (5, 5)]
    # runs that never line up (3 + 1 tensors against 2 + 2) leave the tensors in order, as before
    assert pair_keys(["a.x.w", "a.y.w", "a.z.w", "b.w"], ["p.w", "p.v", "q.w", "q.v"]) == [(0, 0), (1, 1), (2, 2),
                                                                                          (3, 3)]


# -- the hand-written specs (specs/yolov8.net, specs/yolo11.net): the scale as parameters -----------------------

SPEC_SETS: dict[str, dict[str, dict[str, Any]]] = {
             "yolov8": {"n": {}, "s": {"WIDTH": 50}, "m": {"DEPTH": 67, "WIDTH": 75, "MAXC": 768},
                        "l": {"DEPTH": 100, "WIDTH": 100, "MAXC": 512}, "x": {"DEPTH": 100, "WIDTH": 125, "MAXC": 512}},
             "yolo11": {"n": {}, "s": {"WIDTH": 50}, "m": {"WIDTH": 100, "MAXC": 512, "C3K": 1},
                        "l": {"DEPTH": 100, "WIDTH": 100, "MAXC": 512, "C3K": 1},
                        "x": {"DEPTH": 100, "WIDTH": 150, "MAXC": 512, "C3K": 1}}}
SPEC_DIR = Path(__file__).resolve().parents[2] / "specs"


def spec_count(name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, int]:
    """`netdsl count`'s parameters and MACs (the API: the CLI's memory and receptive-field columns
    take half a minute in these parameters)."""
    c = netdsl.count(SPEC_DIR / f"{name[:-1]}.net", **SPEC_SETS[name[:-1]][name[-1]])
    return int(c.value(c.total("parameters"))), int(c.value(c.total("macs")))


@pytest.mark.parametrize("name", ["yolov8n", "yolov8s", "yolo11n", "yolo11s"])
def test_the_specs_count_what_ultralytics_builds(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert spec_count(name, capsys) == COUNTS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov8m", "yolov8l", "yolov8x", "yolo11m", "yolo11l", "yolo11x"])
def test_the_specs_at_larger_scales_count_what_ultralytics_builds(name: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert spec_count(name, capsys) == COUNTS[name]


@pytest.mark.parametrize("family", ["yolov8", "yolo11"])
def test_an_ultralytics_state_dict_loads_into_the_specs(family: str, tmp_path: Path) -> None:
    ultra = Ultra(yaml_text(family, SMALL[family]), "n").eval()
    randomize(ultra, seed=3)
    torch.save(ultra.state_dict(), tmp_path / "u.pt")
    ours = netdsl.build(SPEC_DIR / f"{family}.net", H=64, W=64).eval()
    load_weights(ours, tmp_path / "u.pt")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = ultra(x)
        _, raw = ours(x)
    for a, b in zip(raw, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["yolov8n", "yolov8s", "yolo11n", "yolo11s"])
def test_build_json_reports_ultralytics_parameters_for_the_spec_and_the_import(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's four rows from `netdsl build --json` too (the command people script against),
    for the hand-written spec at the row's --set values and for the YAML imported at its scale."""
    family, scale = name[:-1], name[-1]
    sets = [a for k, v in SPEC_SETS[family][scale].items() for a in ("--set", f"{k}={v}")]
    yml = tmp_path / f"{family}.yaml"
    yml.write_text(yaml_text(family))
    imported = tmp_path / f"{name}.net"
    assert cli_main(["import", str(yml), "--scale", scale, "-o", str(imported)]) == 0
    capsys.readouterr()
    for spec, extra in ((SPEC_DIR / f"{family}.net", sets), (imported, [])):
        assert cli_main(["build", str(spec), *extra, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["total_params"] == COUNTS[name][0], spec
        assert report["frozen_params"] == 16  # the DFL's fixed bins, counted as ultralytics counts them
