"""Ultralytics' transformer modules in the YAML importer: C3TR and TransformerBlock rows.

`C3TRRef` and `TrBlockRef` below are this test's own transcription of what ultralytics builds
(ultralytics/nn/modules/transformer.py TransformerLayer and TransformerBlock, block.py C3TR;
YOLOv5's models/common.py has the same), written from their behaviour: children registered as
ultralytics registers them (C3TR: cv1, cv2, cv3, m; TransformerBlock: linear, tr; TransformerLayer:
q, k, v, ma, fc1, fc2), the layers run sequence-first ([T, N, C], nn.MultiheadAttention without
batch_first) as ultralytics runs them. Their state_dict loads into the import by name and both give
the same outputs, on a map that is not square (rows and columns must not swap).
"""
from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest
import torch
from torch import nn

import netdsl
from netdsl.backends.python_source import to_python_source
from netdsl.cli import main as cli_main
from netdsl.errors import NetdslError
from netdsl.importers import import_text
from netdsl.weights import load_weights
from test_fuzz import time_limit
from test_import import import_check, mutate_yaml
from torch_oracle import check_against_torch

# YOLOv5s v6.0 (ultralytics/yolov5 models/hub/yolov5s-transformer.yaml's layout): row 8 is a C3TR.
YOLOV5S_TRANSFORMER = """\
# YOLOv5s v6.0 with a C3TR in row 8
nc: 80
depth_multiple: 0.33
width_multiple: 0.50
anchors:
  - [10,13, 16,30, 33,23]
  - [30,61, 62,45, 59,119]
  - [116,90, 156,198, 373,326]
backbone:
  [[-1, 1, Conv, [64, 6, 2, 2]],
   [-1, 1, Conv, [128, 3, 2]],
   [-1, 3, C3, [128]],
   [-1, 1, Conv, [256, 3, 2]],
   [-1, 6, C3, [256]],
   [-1, 1, Conv, [512, 3, 2]],
   [-1, 9, C3, [512]],
   [-1, 1, Conv, [1024, 3, 2]],
   [-1, 3, C3TR, [1024]],
   [-1, 1, SPPF, [1024, 5]],
  ]
head:
  [[-1, 1, Conv, [512, 1, 1]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 6], 1, Concat, [1]],
   [-1, 3, C3, [512, False]],
   [-1, 1, Conv, [256, 1, 1]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 4], 1, Concat, [1]],
   [-1, 3, C3, [256, False]],
   [-1, 1, Conv, [256, 3, 2]],
   [[-1, 14], 1, Concat, [1]],
   [-1, 3, C3, [512, False]],
   [-1, 1, Conv, [512, 3, 2]],
   [[-1, 10], 1, Concat, [1]],
   [-1, 3, C3, [1024, False]],
   [[17, 20, 23], 1, Detect, [nc, anchors]],
  ]
"""
# The parameters of the model ultralytics builds from that YAML, from ultralytics 8.4.190 itself
# (torch 2.14.1), by this script (its anchor-based Detect is YOLOv5's: one 1x1 Conv2d with bias per
# level, to na * (nc + 5) channels; ultralytics 8's own Detect is another head, so rows 0-23 come
# from its parse_model and the three convolutions are added):
#   d = yaml.safe_load(open("yolov5s-transformer.yaml")); detect = d["head"].pop()
#   model, _ = ultralytics.nn.tasks.parse_model(d, 3, verbose=False)        # 7,006,400
#   chans = [model[i].cv3.conv.out_channels for i in detect[0]]              # [128, 256, 512]
#   head = nn.ModuleList(nn.Conv2d(c, 3 * (80 + 5), 1) for c in chans)      # 229,245
#   sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in head.parameters())
# It printed 7,235,645: YOLOv5s' 7,235,389 (tests/importers/test_import.py) + 256, since row 8's
# TransformerBlock(256, 256, 4, 1) has 656,640 parameters against the C3 bottlenecks' 656,384.
ULTRALYTICS_PARAMS = 7_235_645

SMALL = """\
nc: 2
depth_multiple: 1.0
width_multiple: 1.0
anchors:
  - [10,13, 16,30, 33,23]
backbone:
  [[-1, 1, Conv, [16, 3, 2]],
   [-1, 1, Conv, [32, 3, 2]],
   [-1, 2, C3TR, [32]],
   [-1, 2, TransformerBlock, [32, 32, 2, 1]],
   [-1, 1, Conv, [48, 3, 2]],
   [-1, 1, C3TR, [48, False, 1, 0.25]],
  ]
head: []
"""
H, W = 64, 96  # not square: a map's rows and columns must come back in place


# -- ultralytics' modules, transcribed -----------------------------------------------------------

class ConvRef(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=0.001, momentum=0.03)  # as ultralytics' initialize_weights sets them
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class TrLayerRef(nn.Module):
    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(c, c, bias=False) for _ in range(3))
        self.ma = nn.MultiheadAttention(c, heads)  # sequence-first, as ultralytics builds it
        self.fc1, self.fc2 = nn.Linear(c, c, bias=False), nn.Linear(c, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ma(self.q(x), self.k(x), self.v(x), need_weights=False)[0] + x
        return self.fc2(self.fc1(x)) + x


class TrBlockRef(nn.Module):
    def __init__(self, c: int, heads: int, layers: int) -> None:
        super().__init__()
        self.linear = nn.Linear(c, c)
        self.tr = nn.Sequential(*(TrLayerRef(c, heads) for _ in range(layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = x.flatten(2).permute(2, 0, 1)  # [h*w, n, c]
        return self.tr(p + self.linear(p)).permute(1, 2, 0).reshape(n, c, h, w)


class C3TRRef(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5) -> None:
        super().__init__()
        h = int(c2 * e)
        self.cv1, self.cv2, self.cv3 = ConvRef(c1, h), ConvRef(c1, h), ConvRef(2 * h, c2)
        self.m = TrBlockRef(h, 4, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SmallRef(nn.Module):
    """What ultralytics builds from SMALL: `model.<row>`."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(ConvRef(3, 16, 3, 2), ConvRef(16, 32, 3, 2), C3TRRef(32, 32, 2),
                                   nn.Sequential(TrBlockRef(32, 2, 1), TrBlockRef(32, 2, 1)),
                                   ConvRef(32, 48, 3, 2), C3TRRef(48, 48, 1, 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def randomize(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                r = torch.rand(t.shape, generator=g)
                t.copy_(r + 0.5 if name.endswith("running_var") else (r - 0.5) * 0.4)


@pytest.fixture(scope="module")
def yolo_spec() -> str:
    return import_text(YOLOV5S_TRANSFORMER, "yolov5s-transformer.yaml", "yaml")


# -- the tests ------------------------------------------------------------------------------------

def test_yolov5s_transformer_has_ultralytics_count(yolo_spec: str) -> None:
    assert "b8 = b7 |> c3tr(512, 1, H // 32, W // 32)" in yolo_spec  # round(3 * 0.33) = 1 layer
    c = netdsl.count(yolo_spec + "\n")
    assert int(c.value(c.total("parameters"))) == ULTRALYTICS_PARAMS


def test_yolov5s_transformer_builds_and_runs_at_64(yolo_spec: str) -> None:
    model = netdsl.build(yolo_spec + "\n", H=64, W=64).eval()
    assert sum(p.numel() for p in model.parameters()) == ULTRALYTICS_PARAMS
    # ultralytics' C3TR children by name; its one layer `m.tr.0` is registered as `m.tr` (a single
    # repetition), which weights_match looks through.
    keys = [k.split(".", 2)[2] for k in model.state_dict() if k.startswith("b8.m.")]
    assert keys == ["linear.weight", "linear.bias", "tr.q.weight", "tr.k.weight", "tr.v.weight",
                    "tr.ma.in_proj_weight", "tr.ma.in_proj_bias", "tr.ma.out_proj.weight", "tr.ma.out_proj.bias",
                    "tr.fc1.weight", "tr.fc2.weight"]
    with torch.no_grad():
        decoded, raw = model(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert decoded.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 85) and torch.isfinite(decoded).all()
    assert [tuple(r.shape) for r in raw] == [(1, 3, 8, 8, 85), (1, 3, 4, 4, 85), (1, 3, 2, 2, 85)]


def test_reference_state_dict_loads_and_gives_its_outputs(tmp_path: Path) -> None:
    spec = import_text(SMALL, "small.yaml", "yaml")
    assert "b2 = b1 |> c3tr(32, 2, H // 4, W // 4)" in spec
    assert "b3 = b2 |> trblock(32, 2, 1, H // 4, W // 4) * 2" in spec
    assert "output = b4 |> c3tr(48, 1, H // 8, W // 8, h=12)" in spec
    ours = netdsl.build(spec + "\n", H=H, W=W).eval()
    ref = SmallRef().eval()
    randomize(ref, seed=1)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    c = netdsl.count(spec + "\n", H=H, W=W)
    assert int(c.value(c.total("parameters"))) == sum(p.numel() for p in ref.parameters())
    torch.save(ref.state_dict(), tmp_path / "ref.pt")
    load_weights(ours, tmp_path / "ref.pt")
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert got.shape == want.shape == (2, 48, H // 8, W // 8) and want.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_small_import_counts_as_torch_measures() -> None:
    check_against_torch(import_text(SMALL, "small.yaml", "yaml") + "\n", H=H, W=W)


def test_python_export_of_the_import_is_the_build(tmp_path: Path) -> None:
    spec = import_text(SMALL, "small.yaml", "yaml") + "\n"
    built = netdsl.build(spec, H=H, W=W).eval()
    randomize(built, seed=3)
    path = tmp_path / "exported.py"
    path.write_text(to_python_source(netdsl.shapes(spec, H=H, W=W)), encoding="utf-8")
    found = importlib.util.spec_from_file_location(path.stem, path)
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    exported = module.Small().eval()
    exported.load_state_dict(built.state_dict(), strict=True)
    assert list(exported.state_dict()) == list(built.state_dict())
    x = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(exported(x), built(x), rtol=0, atol=0)


def test_cli_imports_counts_and_builds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "yolov5s-transformer.yaml"
    src.write_text(YOLOV5S_TRANSFORMER, encoding="utf-8")
    out = tmp_path / "yolov5s-transformer.net"
    assert cli_main(["import", str(src), "-o", str(out)]) == 0
    capsys.readouterr()
    assert cli_main(["count", str(out), "--set", "H=64", "--set", "W=64"]) == 0
    assert "7,235,645" in capsys.readouterr().out
    assert cli_main(["build", str(out), "--set", "H=64", "--set", "W=64"]) == 0
    assert "7,235,645" in capsys.readouterr().out


_T = """\
nc: 80
depth_multiple: 1.0
width_multiple: 1.0
anchors: 3
backbone:
  [[-1, 1, Conv, [64, 3, 2]],
   {row},
  ]
head: []
"""
ERRORS = [
    ("[-1, 1, C3TR, [64, True, 1, 0.3]]", 7, 32, "int(64 * 0.3) = 19 channels, which its 4 attention heads"),
    ("[-1, 1, C3TR, [255]]", 7, 19, "int(255 * 0.5) = 127 channels"),  # Detect's width: not scaled
    ("[-1, 1, TransformerBlock, [32, 64, 4, 1]]", 7, 31, "c1 = 32, but its input has 64 channels"),
    ("[-1, 1, TransformerBlock, [64, 32, 4, 1]]", 7, 35, "c2 = 32 differs from c1 = 64"),
    ("[-1, 1, TransformerBlock, [64, 64, 5, 1]]", 7, 39, "5 attention heads do not divide"),
    ("[-1, 1, TransformerBlock, [64, 64, 4]]", 7, 30, "TransformerBlock needs [c1, c2, num_heads, num_layers]"),
    ("[-1, 1, TransformerBlock, [64, 64, 4, 0]]", 7, 42, "num_layers = 0 is out of range"),
    ("[-1, 1, TransformerBlock, [64, 64, 4, 1, 2]]", 7, 45, "TransformerBlock takes at most 4 arguments"),
    ("[-1, 1, TransformerLayer, [64, 4]]", 7, 12, "it works on a sequence of tokens"),
    ("[-1, 1, C3TR, [64, maybe]]", 7, 23, "shortcut is 'maybe'"),
]


@pytest.mark.parametrize(("row", "line", "col", "message"), ERRORS)
def test_errors_are_located(row: str, line: int, col: int, message: str) -> None:
    with pytest.raises(NetdslError) as info:
        import_text(_T.format(row=row), "bad.yaml", "yaml")
    e = info.value
    assert message in e.message, e.render()
    assert (e.span.line, e.span.column) == (line, col), e.render()
    assert e.path == "bad.yaml" and e.hint


def test_mutated_transformer_yamls_fail_cleanly() -> None:
    # test_import's YAML mutator on these files: each case imports, or is a NetdslError in the YAML
    rng = random.Random(22)
    outcomes = set()
    for i in range(60):
        text = mutate_yaml((SMALL, YOLOV5S_TRANSFORMER)[i % 2], rng, rng.randrange(1, 4))
        with time_limit(20):
            outcomes.add(import_check(text, "yaml"))
    assert outcomes == {"ok", "error"}
