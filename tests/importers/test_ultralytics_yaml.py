"""Ultralytics YAML imports: state_dicts that load, and located errors.

A state_dict of the network ultralytics builds from a model YAML loads into
`netdsl import` of that YAML, and both give the same outputs. `Ultra` below is this test's own
small transcription of what ultralytics/yolov3 v9.6.0 builds (models/yolo.py `parse_model` and
`Detect`, models/common.py `Conv`, `Bottleneck`, `C3`, `SPP`, `SPPF`, `Concat`), written from
their documented behaviour: the module tree `model.<row>.<child>` in ultralytics' registration
order (C3: cv1, cv2, cv3, m; Detect: its `anchors` buffer, then m), the width and depth rules and
the forward pass. Its state_dict, with random weights and BatchNorm statistics, is saved as a .pt
and loaded with `load_weights` into the built import, for every reference YAML, a YOLOv5s-style
YAML (C3, SPPF) and a YAML that uses every module and option the importer takes.

Item 5: an activation module netdsl does not read (`act=nn.PReLU()`) is refused as an unsupported
activation at its place in the YAML, not as "write act as True or False" (True would make it SiLU);
the ones it reads (`nn.LeakyReLU(0.1)`, yolov7-tiny's rows) are tested in test_yaml_ghost_and_acts.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

import netdsl
from netdsl.backends.python_source import to_python_source
from netdsl.errors import NetdslError
from netdsl.importers import import_text
from netdsl.weights import load_weights
from netdsl.weights.torch_files import map_in_order
from netdsl.weights_match import pair_keys

ROOT = Path(__file__).resolve().parents[2]
REF = next((p / "reference/ultralytics-yolov3-v9.6.0" for p in (ROOT.parent / "shared", Path("/work/shared"))
            if (p / "reference/ultralytics-yolov3-v9.6.0").is_dir()), None)
needs_ref = pytest.mark.skipif(REF is None, reason="../shared/reference is not present")
SIZE = 64


# -- ultralytics v9.6.0's modules, transcribed ----------------------------------------------------

def _pad(k: Any, p: Any) -> Any:
    return p if p is not None else k // 2 if isinstance(k, int) else [x // 2 for x in k]


class Conv(nn.Module):
    def __init__(self, c1: int, c2: int, k: Any = 1, s: Any = 1, p: Any = None, g: int = 1, act: Any = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, _pad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=0.001, momentum=0.03)  # as ultralytics' initialize_weights sets them
        self.act = nn.SiLU() if act is True else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        h = int(c2 * e)
        self.cv1 = Conv(c1, h, 1, 1)
        self.cv2 = Conv(h, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        h = int(c2 * e)
        self.cv1 = Conv(c1, h, 1, 1)  # registered cv1, cv2, cv3, m: cv3 before the m it reads
        self.cv2 = Conv(c1, h, 1, 1)
        self.cv3 = Conv(2 * h, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(h, h, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPP(nn.Module):
    def __init__(self, c1: int, c2: int, k: Any = (5, 9, 13)) -> None:
        super().__init__()
        h = c1 // 2
        self.cv1 = Conv(c1, h, 1, 1)
        self.cv2 = Conv(h * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(x, 1, x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        h = c1 // 2
        self.cv1 = Conv(c1, h, 1, 1)
        self.cv2 = Conv(h * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.cv1(x)
        y1 = self.m(y0)
        y2 = self.m(y1)
        return self.cv2(torch.cat((y0, y1, y2, self.m(y2)), 1))


class Concat(nn.Module):
    def __init__(self, d: int = 1) -> None:
        super().__init__()
        self.d = d

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, self.d)


class Detect(nn.Module):
    def __init__(self, nc: int, anchors: list[list[int]], ch: list[int]) -> None:
        super().__init__()
        self.no, self.nl, self.na = nc + 5, len(anchors), len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))  # pixels here
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def forward(self, xs: list[torch.Tensor], size: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raw, decoded = [], []
        for i, x in enumerate(xs):
            y = self.m[i](x)
            n, _, h, w = y.shape
            y = y.view(n, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous()
            raw.append(y)
            gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            grid = torch.stack((gx, gy), 2).view(1, 1, h, w, 2).float()
            s = y.sigmoid()
            xy = (s[..., :2] * 2 - 0.5 + grid) * (size // h)
            wh = (s[..., 2:4] * 2) ** 2 * self.anchors[i].view(1, self.na, 1, 1, 2)
            decoded.append(torch.cat((xy, wh, s[..., 4:]), -1).view(n, -1, self.no))
        return torch.cat(decoded, 1), raw


MODULES = {"Conv": Conv, "Bottleneck": Bottleneck, "C3": C3, "SPP": SPP, "SPPF": SPPF, "Concat": Concat,
           "Detect": Detect, "nn.Upsample": nn.Upsample, "nn.MaxPool2d": nn.MaxPool2d, "nn.ZeroPad2d": nn.ZeroPad2d}


class Ultra(nn.Module):
    """parse_model's rows: widths ceil(c * width_multiple / 8) * 8 (not Detect's), repeats
    max(round(n * depth_multiple), 1) (C3: its bottlenecks), an nn.Sequential for repeats."""

    def __init__(self, text: str) -> None:
        super().__init__()
        d = yaml.safe_load(text)
        nc, anchors, gd, gw = d["nc"], d["anchors"], d["depth_multiple"], d["width_multiple"]
        no = len(anchors[0]) // 2 * (nc + 5)
        names = {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}
        layers, ch, self.froms = [], [], []
        for i, (f, n, m, args) in enumerate(d["backbone"] + d["head"]):
            args = [names.get(a, a) if isinstance(a, str) else a for a in args]
            n = max(round(n * gd), 1) if n > 1 else n
            c1 = 3 if i == 0 else ch[f] if isinstance(f, int) else None
            if m in ("Conv", "Bottleneck", "C3", "SPP", "SPPF"):
                c2 = args[0] if args[0] == no else math.ceil(args[0] * gw / 8) * 8
                args = [c1, c2, *args[1:]]
                if m == "C3":
                    args.insert(2, n)
                    n = 1
            elif m == "Concat":
                c2 = sum(ch[x] for x in f)
            elif m == "Detect":
                args.append([ch[x] for x in f])
                c2 = 0
            else:
                c2 = c1
            layers.append(nn.Sequential(*(MODULES[m](*args) for _ in range(n))) if n > 1 else MODULES[m](*args))
            self.froms.append(f)
            ch.append(c2)
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        size, outs = x.shape[-1], []
        for f, m in zip(self.froms, self.model):
            if isinstance(f, list):
                x = [outs[-1] if j == -1 else outs[j] for j in f]
            elif f != -1:
                x = outs[f]
            x = m(x, size) if isinstance(m, Detect) else m(x)
            outs.append(x)
        return x


# -- the YAMLs ------------------------------------------------------------------------------------

HEAD = "nc: {nc}\ndepth_multiple: {gd}\nwidth_multiple: {gw}\nanchors:\n{anchors}backbone:\n{backbone}head:\n{head}"
V5_ANCHORS = "  - [10,13, 16,30, 33,23]\n  - [30,61, 62,45, 59,119]\n  - [116,90, 156,198, 373,326]\n"


def rows(*rs: str) -> str:
    return "  [" + ",\n   ".join(rs) + "]\n"


# YOLOv5s as ultralytics/yolov5 v6.0 lays it out (C3, SPPF, a P3-P5 head).
YOLOV5S = HEAD.format(nc=80, gd=0.33, gw=0.50, anchors=V5_ANCHORS, backbone=rows(
    "[-1, 1, Conv, [64, 6, 2, 2]]", "[-1, 1, Conv, [128, 3, 2]]", "[-1, 3, C3, [128]]", "[-1, 1, Conv, [256, 3, 2]]",
    "[-1, 6, C3, [256]]", "[-1, 1, Conv, [512, 3, 2]]", "[-1, 9, C3, [512]]", "[-1, 1, Conv, [1024, 3, 2]]",
    "[-1, 3, C3, [1024]]", "[-1, 1, SPPF, [1024, 5]]"), head=rows(
    "[-1, 1, Conv, [512, 1, 1]]", "[-1, 1, nn.Upsample, [None, 2, 'nearest']]", "[[-1, 6], 1, Concat, [1]]",
    "[-1, 3, C3, [512, False]]", "[-1, 1, Conv, [256, 1, 1]]", "[-1, 1, nn.Upsample, [None, 2, 'nearest']]",
    "[[-1, 4], 1, Concat, [1]]", "[-1, 3, C3, [256, False]]", "[-1, 1, Conv, [256, 3, 2]]",
    "[[-1, 14], 1, Concat, [1]]", "[-1, 3, C3, [512, False]]", "[-1, 1, Conv, [512, 3, 2]]",
    "[[-1, 10], 1, Concat, [1]]", "[-1, 3, C3, [1024, False]]", "[[17, 20, 23], 1, Detect, [nc, anchors]]"))

# Every module the importer takes, with the options that change what it writes: Conv with a
# non-square kernel and its own padding, repeated, grouped, act False; Bottleneck repeated, to
# other channels, without shortcut, with e; C3 with one and two bottlenecks, groups, e, without
# shortcut; SPP with its own windows, SPPF; pools, padding, upsampling, Concat, a two-level Detect.
EVERY = HEAD.format(nc=3, gd=1.0, gw=1.0, anchors="  - [10,13, 16,30]\n  - [30,61, 62,45]\n", backbone=rows(
    "[-1, 1, Conv, [16, 3, 2]]", "[-1, 1, Conv, [16, [1, 3], 1, [0, 1]]]", "[-1, 2, Conv, [16, 3, 1, None, 2]]",
    "[-1, 1, Conv, [32, 1, 1, None, 1, False]]", "[-1, 2, Bottleneck, [32]]", "[-1, 1, Bottleneck, [48]]",
    "[-1, 1, Bottleneck, [48, False, 1, 0.25]]", "[-1, 1, C3, [48]]", "[-1, 2, C3, [64, True, 2, 0.25]]",
    "[-1, 1, nn.MaxPool2d, [2, 2, 0]]", "[-1, 2, C3, [64, False]]", "[-1, 1, SPP, [64, [3, 5]]]",
    "[-1, 1, SPPF, [64, 3]]"), head=rows(
    "[-1, 1, nn.ZeroPad2d, [[0, 1, 0, 1]]]", "[-1, 1, nn.MaxPool2d, [2, 1, 0]]", "[-1, 1, Conv, [32, 3, 2]]",
    "[-1, 1, nn.Upsample, [None, 2, 'nearest']]", "[[-1, 12], 1, Concat, [1]]", "[-1, 1, C3, [32, False]]",
    "[[18, 15], 1, Detect, [nc, anchors]]"))

CASES = {"yolov5s": YOLOV5S, "every-module": EVERY}
REFERENCE = ["yolov3.yaml", "yolov3-spp.yaml", "yolov3-tiny.yaml"]  # the model YAMLs of v9.6.0 there


def yaml_of(case: str) -> str:
    """The YAML; the reference files at a quarter of their width (the rows as written, a sixteenth of
    the weights: the full width was checked by hand against ultralytics' own Model, see the report)."""
    if case in CASES:
        return CASES[case]
    text = (REF / case).read_text(encoding="utf-8")  # type: ignore[operator]
    assert "\nwidth_multiple: 1.0 " in text
    return text.replace("\nwidth_multiple: 1.0 ", "\nwidth_multiple: 0.25 ")


def randomize(model: nn.Module, seed: int) -> None:
    """Every float distinct and random (BatchNorm statistics too), so a tensor in the wrong place shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or name.endswith("anchors"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() > 1:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if name.endswith("bn.weight") else 0.0))


def ultralytics_and_import(case: str, tmp_path: Path) -> tuple[nn.Module, nn.Module, Path]:
    text = yaml_of(case)
    ultra = Ultra(text).eval()
    randomize(ultra, seed=len(case))
    pt = tmp_path / "ultralytics.pt"
    torch.save(ultra.state_dict(), pt)
    ours = netdsl.build(import_text(text, f"{case}.yaml", "yaml") + "\n", H=SIZE, W=SIZE).eval()
    return ultra, ours, pt


def assert_same_outputs(ultra: nn.Module, ours: nn.Module) -> None:
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        (ud, ur), (od, orr) = ultra(x), ours(x)
    assert len(ur) == len(orr)
    for u, o in zip(ur, orr):
        assert u.shape == o.shape and u.abs().max() > 0
        torch.testing.assert_close(o, u, rtol=0, atol=0)  # the same operations on the same numbers
    torch.testing.assert_close(od, ud)


# -- item 2 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", [*CASES, *(pytest.param(r, marks=needs_ref) for r in REFERENCE)])
def test_an_ultralytics_state_dict_loads_into_the_import_and_gives_its_outputs(case: str, tmp_path: Path) -> None:
    ultra, ours, pt = ultralytics_and_import(case, tmp_path)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ultra.parameters())
    load_weights(ours, pt)
    assert_same_outputs(ultra, ours)


def test_the_file_is_in_ultralytics_order_and_c3_is_why_order_alone_failed(tmp_path: Path) -> None:
    ultra, ours, _ = ultralytics_and_import("yolov5s", tmp_path)
    c3 = list(dict.fromkeys(k.split(".")[2] for k in ultra.state_dict() if k.startswith("model.2.")))
    assert c3 == ["cv1", "cv2", "cv3", "m"]  # ultralytics' C3.__init__ order, kept by the state_dict
    # The import's C3 (a graph block) computes m before cv3, so the tensors in order do not line up;
    # the names do (netdsl.weights_match).
    mine = list(dict.fromkeys(k.split(".")[1] for k in ours.state_dict() if k.startswith("b2.")))
    assert mine == ["cv1", "cv2", "m", "cv3"]


def test_c3_with_other_names_gets_a_hint_about_the_order_not_the_structure(tmp_path: Path) -> None:
    # The import as it was (C3's statements y1 = cv1 and m, y2 = cv2, output = cv3): the same tensors
    # in another order. Before, the hint said "saved from a network of another structure".
    text = YOLOV5S
    spec = import_text(text, "yolov5s.yaml", "yaml")
    old = ("  cv1 = x |> cba(h)\n  cv2 = x |> cba(h)\n  m = cv1 |> {u}(h, h) * n\n  cv3 = cat(m, cv2) |> cba(c)\n"
           "  output = cv3\n")
    new = "  y1 = x |> cba(h) -> {u}(h, h) * n\n  y2 = x |> cba(h)\n  output = cat(y1, y2) |> cba(c)\n"
    for unit in ("res", "pair"):
        assert old.format(u=unit) in spec
        spec = spec.replace(old.format(u=unit), new.format(u=unit))
    ultra = Ultra(text)
    model = netdsl.build(spec + "\n", H=SIZE, W=SIZE)
    with pytest.raises(NetdslError) as err:
        map_in_order(model, ultra.state_dict(), "ultralytics.pt")
    assert "tensor #18 of the file, 'model.2.cv2.conv.weight'" in err.value.message
    assert "another order" in (err.value.hint or "") and "another structure" not in (err.value.hint or "")


def test_another_structure_keeps_its_hint(tmp_path: Path) -> None:
    ultra = Ultra(YOLOV5S.replace("nc: 80", "nc: 2"))
    model = netdsl.build(import_text(YOLOV5S, "yolov5s.yaml", "yaml") + "\n", H=SIZE, W=SIZE)
    with pytest.raises(NetdslError, match="output.m.0.weight") as err:
        map_in_order(model, ultra.state_dict())
    assert "another structure" in (err.value.hint or "")


def test_a_state_dict_with_the_models_names_loads_in_any_order(tmp_path: Path) -> None:
    ultra, ours, _ = ultralytics_and_import("every-module", tmp_path)
    randomize(ours, seed=7)
    want = {k: v.clone() for k, v in ours.state_dict().items()}
    shuffled = dict(reversed(list(want.items())))  # before: paired by order, a shape error at tensor #0
    fresh = netdsl.build(import_text(EVERY, "e.yaml", "yaml") + "\n", H=SIZE, W=SIZE)
    torch.save(shuffled, tmp_path / "shuffled.pt")
    load_weights(fresh, tmp_path / "shuffled.pt")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in want.items())


@pytest.mark.parametrize(("source", "target", "pairs"), [
    # no names in common: in order
    (["a.w", "a.b", "c.w"], ["x.0.w", "x.0.b", "y.w"], [(0, 0), (1, 1), (2, 2)]),
    # the same children in another order: by name
    (["m.cv1.w", "m.cv2.w", "m.cv3.w", "m.m.w"], ["b.cv1.w", "b.cv2.w", "b.m.w", "b.cv3.w"],
     [(0, 0), (1, 1), (3, 2), (2, 3)]),
    # a wrapper of one module on one side (ultralytics' `model.`, an nn.Sequential of one)
    (["model.0.c.w", "model.0.m.0.q.w", "model.1.w"], ["b0.c.w", "b0.m.q.w", "b1.w"], [(0, 0), (1, 1), (2, 2)]),
    # another structure below a module: its tensors in order
    (["r.cv1.conv.w", "r.cv1.bn.w", "r.cv2.conv.w"], ["s.y.0.w", "s.y.1.w", "s.y.3.w"], [(0, 0), (1, 1), (2, 2)]),
    # other numbers of tensors: no pairing (the caller says which tensor is missing)
    (["a.w", "b.w"], ["a.w"], None),
    # keys nested absurdly deep are not walked
    (["x." * 100 + "w"], ["w"], None),
])
def test_pairing(source: list[str], target: list[str], pairs: list[tuple[int, int]] | None) -> None:
    assert pair_keys(source, target) == pairs


def assert_export_is_the_build(spec_text: str, tmp_path: Path, size: int) -> None:
    cg = netdsl.shapes(spec_text, H=size, W=size)
    built = netdsl.build(spec_text, H=size, W=size).eval()
    randomize(built, seed=1)
    path = tmp_path / "exported.py"
    path.write_text(to_python_source(cg), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    exported = getattr(module, cg.name)().eval()
    exported.load_state_dict(built.state_dict(), strict=True)
    assert list(exported.state_dict()) == list(built.state_dict())  # registered in the same order
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = exported(x), built(x)
    torch.testing.assert_close(a[0] if isinstance(a, tuple) else a, b[0] if isinstance(b, tuple) else b,
                               rtol=0, atol=0)


def test_the_exported_python_of_an_import_equals_the_built_module(tmp_path: Path) -> None:
    # EVERY holds every block the importer writes (c3 with one and two bottlenecks, c3_plain, res,
    # pair, spp, sppf, grouped cba and cb), c3 with its statement `m`.
    assert_export_is_the_build(import_text(EVERY, "every.yaml", "yaml") + "\n", tmp_path, SIZE)


def test_a_tensor_named_like_another_blocks_parameter_exports(tmp_path: Path) -> None:
    # Export made each block's class from a net holding every block: `two`'s tensor m clashed with
    # the parameter m of `half`, made a net parameter there ("cannot write block 'half': duplicate
    # name 'm'"), although the spec builds.
    spec = ("net Clash(C = 8)\ninput x: [3, H = 16, W = 16]\n"
            "block half(c, m = c // 2) {\n  input x\n  y = x |> conv(m, 1) -> relu\n"
            "  output = y |> conv(c, 3, padding=1)\n}\n"
            "block two(c) {\n  input x\n  m = x |> conv(c, 1)\n  output = add(m, x) |> half(c)\n}\n"
            "a = x |> conv(C, 1)\noutput = a |> two(C)\n")
    assert_export_is_the_build(spec, tmp_path, 16)


# -- item 5 ---------------------------------------------------------------------------------------

ROW0 = "[-1, 1, Conv, [16, 3, 2]]"
TINY = HEAD.format(nc=2, gd=1.0, gw=1.0, anchors="  - [10,13, 16,30]\n", backbone=rows("{row}"),
                   head=rows("[[-1], 1, Detect, [nc, anchors]]"))


def test_an_activation_module_is_refused_by_name_at_its_place() -> None:
    text = TINY.format(row="[-1, 1, Conv, [32, 3, 2, None, 1, nn.PReLU()]]")  # a learned activation
    with pytest.raises(NetdslError) as err:
        import_text(text, "yolov7-tiny.yaml", "yaml")
    e = err.value
    assert "activation 'nn.PReLU()' is not supported" in e.message and "nn.PReLU" in e.message
    before = text[:text.index("nn.PReLU")]
    where = (before.count("\n") + 1, len(before) - before.rfind("\n"))
    assert e.path == "yolov7-tiny.yaml" and e.span is not None and (e.span.line, e.span.column) == where
    assert "nn.LeakyReLU(slope)" in (e.hint or "")


def test_a_model_wide_activation_is_refused_too() -> None:
    text = "activation: nn.PReLU(8)  # YOLOv5's key\n" + TINY.format(row=ROW0)
    with pytest.raises(NetdslError, match="activation 'nn.PReLU\\(8\\)' is not supported") as err:
        import_text(text, "m.yaml", "yaml")
    assert err.value.span is not None and (err.value.span.line, err.value.span.column) == (1, 13)
    assert import_text(TINY.format(row=ROW0) + "activation: nn.SiLU()\n", "m.yaml", "yaml") == \
        import_text(TINY.format(row=ROW0), "m.yaml", "yaml")


@pytest.mark.parametrize(("act", "same_as"), [("nn.SiLU()", "True"), ("nn.Identity()", "False")])
def test_the_activation_modules_that_true_and_false_make_are_taken(act: str, same_as: str) -> None:
    row = "[-1, 1, Conv, [16, 3, 2, None, 1, {}]]"
    assert import_text(TINY.format(row=row.format(act)), "m.yaml", "yaml") == \
        import_text(TINY.format(row=row.format(same_as)), "m.yaml", "yaml")
