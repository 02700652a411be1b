"""Pretrained weights. Darknet .weights and torch .pt files, written here in the exact
formats (real pretrained files cannot be downloaded), loaded into YOLOv3 and YOLOv3-tiny."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import netdsl
from netdsl.cli import main
from netdsl.errors import NetdslError
from netdsl.weights.darknet import darknet_layout

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
REFERENCE = next((p for p in (ROOT.parent / "shared" / "reference", ROOT / "shared" / "reference") if p.is_dir()), None)
needs_reference = pytest.mark.skipif(REFERENCE is None, reason="../shared/reference (darknet's cfg files) is absent")
HEADER = struct.pack("<3iq", 0, 2, 0, 0)


def build(name: str, **values: int) -> torch.nn.Module:
    return netdsl.build(SPECS / f"{name}.net", H=64, W=64, **values).eval()


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if k.endswith("num_batches_tracked"):
                continue
            v = torch.rand(t.shape, generator=g) + 0.5 if k.endswith("running_var") else torch.randn(t.shape, generator=g)
            t.copy_(v)


def floats_file(path: Path, floats: np.ndarray, header: bytes = HEADER) -> Path:
    path.write_bytes(header + np.asarray(floats, dtype="<f4").tobytes())
    return path


# -- darknet's cfg, read independently of netdsl -------------------------------------------------------

def read_cfg(path: Path) -> list[dict[str, str]]:
    sections: list[dict[str, str]] = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("["):
            sections.append({"type": line.strip("[]")})
        elif "=" in line:
            k, v = line.split("=", 1)
            sections[-1][k.strip()] = v.strip()
    return sections[1:]  # [net] is not a layer


def cfg_convs(sections: list[dict[str, str]]) -> list[tuple[int, int, int, bool]]:
    """(in channels, filters, size, batch_normalize) of each [convolutional], tracking channels."""
    chans: list[int] = []
    out = []
    c = 3
    for i, s in enumerate(sections):
        if s["type"] == "convolutional":
            out.append((c, int(s["filters"]), int(s["size"]), s.get("batch_normalize", "0") == "1"))
            c = int(s["filters"])
        elif s["type"] == "route":
            c = sum(chans[int(j) if int(j) >= 0 else i + int(j)] for j in s["layers"].split(","))
        chans.append(c)
    return out


def darknet_floats(convs: list[tuple[int, int, int, bool]], seed: int = 1) -> tuple[np.ndarray, list[dict]]:
    """Known, well-scaled arrays in darknet's order, and each section's arrays by role."""
    rng = np.random.default_rng(seed)
    parts, sections = [], []
    for cin, n, k, bn in convs:
        arrays = {"bias": rng.normal(0, 0.1, n).astype(np.float32)}
        if bn:
            arrays.update(gamma=rng.uniform(0.5, 1.5, n), mean=rng.normal(0, 0.1, n), variance=rng.uniform(0.5, 1.5, n))
        arrays["kernel"] = rng.standard_normal((n, cin, k, k), dtype=np.float32) / np.float32(np.sqrt(cin * k * k))
        sections.append({r: a.astype(np.float32) for r, a in arrays.items()})
        parts += [arrays[r].ravel() for r in ("bias", "gamma", "mean", "variance", "kernel") if r in arrays]
    return np.concatenate(parts).astype(np.float32), sections


def darknet_forward(sections: list[dict[str, str]], floats: np.ndarray, x: torch.Tensor, eps: float) -> list[torch.Tensor]:
    """A minimal darknet interpreter: the raw input of each [yolo] layer."""
    pos = 0

    def take(*shape: int) -> torch.Tensor:
        nonlocal pos
        n = int(np.prod(shape))
        pos += n
        return torch.from_numpy(floats[pos - n:pos].copy()).view(shape)

    outs: list[torch.Tensor] = []
    yolo = []
    for i, s in enumerate(sections):
        t = s["type"]
        if t == "convolutional":
            n, k, stride = int(s["filters"]), int(s["size"]), int(s.get("stride", 1))
            bias = take(n)
            if s.get("batch_normalize", "0") == "1":
                gamma, mean, var = take(n), take(n), take(n)
            w = take(n, x.shape[1], k, k)
            x = F.conv2d(x, w, stride=stride, padding=k // 2 if s.get("pad", "0") == "1" else 0)
            if s.get("batch_normalize", "0") == "1":
                x = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + eps) * gamma.view(1, -1, 1, 1)
            x = x + bias.view(1, -1, 1, 1)
            if s["activation"] == "leaky":
                x = F.leaky_relu(x, 0.1)
        elif t == "shortcut":
            x = x + outs[i + int(s["from"])]
        elif t == "route":
            x = torch.cat([outs[int(j) if int(j) >= 0 else i + int(j)] for j in s["layers"].split(",")], 1)
        elif t == "upsample":
            x = F.interpolate(x, scale_factor=int(s["stride"]), mode="nearest")
        elif t == "maxpool":
            size, stride = int(s["size"]), int(s["stride"])
            pad = size - 1
            x = F.max_pool2d(F.pad(x, (pad // 2, pad - pad // 2) * 2, value=-float("inf")), size, stride)
        elif t == "yolo":
            yolo.append(x)
        else:
            raise AssertionError(f"unexpected section [{t}]")
        outs.append(x)
    assert pos == len(floats)
    return yolo


# -- round trips ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov3"])
def test_darknet_round_trip(tmp_path: Path, name: str) -> None:
    src = build(name)
    randomize(src)
    f = tmp_path / f"{name}.weights"
    netdsl.save_weights(src, f, seen=1234)
    n = sum(e.count for e in darknet_layout(src))
    assert f.stat().st_size == 20 + 4 * n
    assert struct.unpack_from("<3iq", f.read_bytes()) == (0, 2, 0, 1234)
    dst = build(name)
    assert netdsl.load_weights(dst, f) is dst
    a, b = src.state_dict(), dst.state_dict()
    for k in a:
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(a[k], b[k]), k


def test_torch_round_trip_and_checkpoint(tmp_path: Path) -> None:
    src = build("yolov3-tiny")
    randomize(src, seed=3)
    netdsl.save_weights(src, tmp_path / "w.pt")
    dst = build("yolov3-tiny")
    netdsl.load_weights(dst, tmp_path / "w.pt")
    assert_same(dst.state_dict(), src.state_dict())
    # a netdsl training checkpoint (netdsl/tasks/colourize/loop.py's Trainer.state): the model is under "model"
    from netdsl.files import CHECKPOINT_FORMAT

    torch.save({"format": CHECKPOINT_FORMAT, "epoch": 3, "model": src.state_dict(), "history": []}, tmp_path / "c.pth")
    dst = build("yolov3-tiny")
    netdsl.load_weights(dst, tmp_path / "c.pth")
    assert_same(dst.state_dict(), src.state_dict())


def test_ultralytics_style_state_dict_maps_by_order(tmp_path: Path) -> None:
    """Keys as ultralytics names them, with its Detect's anchor buffers before the head's convs."""
    src = build("yolov3-tiny")
    randomize(src, seed=4)
    sd = {}
    for k, v in src.state_dict().items():
        if k == "output.m.0.weight":
            sd["model.20.anchors"] = torch.ones(2, 3, 2)
            sd["model.20.anchor_grid"] = torch.ones(2, 1, 3, 1, 1, 2)
        sd["model." + k.replace("output", "20")] = v.half() if v.is_floating_point() else v
    torch.save(sd, tmp_path / "yolov3-tiny_state_dict.pt")
    dst = build("yolov3-tiny")
    netdsl.load_weights(dst, tmp_path / "yolov3-tiny_state_dict.pt")
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v.half().to(v.dtype) if v.is_floating_point() else v), k


# -- darknet's order, checked against darknet's own cfg ---------------------------------------------

@needs_reference
@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov3"])
def test_darknet_order_lines_up_with_the_cfg(name: str) -> None:
    convs = cfg_convs(read_cfg(REFERENCE / "darknet" / f"{name}.cfg"))
    layout = darknet_layout(build(name))
    assert len(layout) == len(convs) == {"yolov3-tiny": 13, "yolov3": 75}[name]
    for e, (cin, filters, size, bn) in zip(layout, convs):
        assert (e.filters, e.size, e.batch_normalize) == (filters, size, bn), e.path
        assert e.count == filters * (1 + 3 * bn) + filters * cin * size * size, e.path
    heads = [(i, e.path) for i, e in enumerate(layout) if e.detect_level is not None]
    assert heads == {"yolov3-tiny": [(9, "output.m.1"), (12, "output.m.0")],
                     "yolov3": [(58, "output.m.2"), (66, "output.m.1"), (74, "output.m.0")]}[name]


@needs_reference
@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov3"])
def test_darknet_file_from_the_cfg_gives_darknets_outputs(tmp_path: Path, name: str) -> None:
    """Floats laid out from the cfg alone; a small darknet interpreter over the same floats and the
    loaded model must agree on every detection level's raw output."""
    sections = read_cfg(REFERENCE / "darknet" / f"{name}.cfg")
    floats, _ = darknet_floats(cfg_convs(sections))
    model = build(name)
    netdsl.load_weights(model, floats_file(tmp_path / "x.weights", floats))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, raw = model(x)
        want = darknet_forward(sections, floats, x, eps=model.b0[1].eps)
    raw_by_size = {r.shape[2]: r for r in raw}
    assert len(raw_by_size) == len(want) == len(raw)
    for y in want:
        n, c, h, w = y.shape
        ours = raw_by_size[h]
        torch.testing.assert_close(ours, y.view(n, 3, c // 3, h, w).permute(0, 1, 3, 4, 2), rtol=1e-4, atol=1e-4)


# The tiny network's 13 [convolutional] sections, written out by hand from yolov3-tiny.cfg:
# (module path of the conv, of its batchnorm or None, in channels, filters, size).
TINY_BY_HAND = [
    ("b0.0", "b0.1", 3, 16, 3), ("b2.0", "b2.1", 16, 32, 3), ("b4.0", "b4.1", 32, 64, 3),
    ("b6.0", "b6.1", 64, 128, 3), ("b8.0", "b8.1", 128, 256, 3), ("b10.0", "b10.1", 256, 512, 3),
    ("n13.0", "n13.1", 512, 1024, 3), ("n14.0", "n14.1", 1024, 256, 1), ("n15.0", "n15.1", 256, 512, 3),
    ("output.m.1", None, 512, 255, 1),  # first [yolo]: P5, mask 6,7,8
    ("n16.0", "n16.1", 256, 128, 1), ("n19.0", "n19.1", 384, 256, 3),
    ("output.m.0", None, 256, 255, 1),  # second [yolo]: P4
]


def test_tiny_darknet_tensors_land_where_the_cfg_says(tmp_path: Path) -> None:
    floats, arrays = darknet_floats([(cin, n, k, bn is not None) for _, bn, cin, n, k in TINY_BY_HAND], seed=7)
    model = build("yolov3-tiny")
    netdsl.load_weights(model, floats_file(tmp_path / "tiny.weights", floats))
    sd = model.state_dict()
    for (conv, bn, *_), a in zip(TINY_BY_HAND, arrays):
        assert torch.equal(sd[f"{conv}.weight"], torch.from_numpy(a["kernel"])), conv
        if bn is None:
            assert torch.equal(sd[f"{conv}.bias"], torch.from_numpy(a["bias"])), conv
        else:
            for role, key in (("bias", "bias"), ("gamma", "weight"), ("mean", "running_mean"), ("variance", "running_var")):
                assert torch.equal(sd[f"{bn}.{key}"], torch.from_numpy(a[role])), (bn, role)


def test_old_header_with_int32_seen(tmp_path: Path) -> None:
    src = build("yolov3-tiny")
    randomize(src, seed=5)
    netdsl.save_weights(src, tmp_path / "new.weights")
    body = (tmp_path / "new.weights").read_bytes()[20:]
    (tmp_path / "old.weights").write_bytes(struct.pack("<4i", 0, 1, 0, 99) + body)
    dst = build("yolov3-tiny")
    netdsl.load_weights(dst, tmp_path / "old.weights")
    assert torch.equal(dst.n19[0].weight, src.n19[0].weight)


# -- refusals: a clear error, and the model untouched ---------------------------------------------

def refused(model: torch.nn.Module, path: Path, *needles: str) -> NetdslError:
    before = snapshot(model)
    with pytest.raises(NetdslError) as info:
        netdsl.load_weights(model, path)
    err = info.value
    for needle in needles:
        assert needle in err.message, (needle, err.message)
    assert err.path == str(path) and err.hint
    assert_same(model.state_dict(), before)
    return err


@pytest.fixture
def tiny() -> torch.nn.Module:
    m = build("yolov3-tiny")
    randomize(m, seed=9)
    return m


def test_too_few_floats_names_the_layer_where_the_file_ends(tmp_path: Path, tiny: torch.nn.Module) -> None:
    n = sum(e.count for e in darknet_layout(tiny))
    # the first 6 sections are complete; the file ends inside n13's kernel (after its 4 x 1024 BN floats)
    cut = sum(n_ * (4 + cin * k * k) for _, _, cin, n_, k in TINY_BY_HAND[:6]) + 4 * 1024 + 10
    refused(tiny, floats_file(tmp_path / "short.weights", np.ones(cut)),
            f"expected {n} floats after the header, got {cut}", "'n13.0'")
    refused(tiny, floats_file(tmp_path / "short2.weights", np.ones(n - 1)), f"got {n - 1}", "'output.m.0'")


def test_too_many_floats(tmp_path: Path, tiny: torch.nn.Module) -> None:
    n = sum(e.count for e in darknet_layout(tiny))
    refused(tiny, floats_file(tmp_path / "long.weights", np.ones(n + 3)), f"expected {n} floats after the header, got {n + 3}")
    # a file for 20 classes into the 80-class network
    small = build("yolov3-tiny", NCLS=20)
    netdsl.save_weights(small, tmp_path / "voc.weights")
    refused(tiny, tmp_path / "voc.weights", f"expected {n} floats after the header, got")


def test_bad_headers(tmp_path: Path, tiny: torch.nn.Module) -> None:
    n = sum(e.count for e in darknet_layout(tiny))
    (tmp_path / "empty.weights").write_bytes(b"")
    refused(tiny, tmp_path / "empty.weights", "not a darknet .weights file", "0 bytes")
    (tmp_path / "cut.weights").write_bytes(struct.pack("<4i", 0, 2, 0, 0))  # 0.2 needs an int64 seen
    refused(tiny, tmp_path / "cut.weights", "header is cut short")
    refused(tiny, floats_file(tmp_path / "absurd.weights", np.ones(n), struct.pack("<3iq", 7_000_000, 2, 0, 0)),
            "absurd version")
    refused(tiny, floats_file(tmp_path / "neg.weights", np.ones(n), struct.pack("<3iq", 0, -2, 0, 0)), "absurd version")
    (tmp_path / "zip.weights").write_bytes(b"PK\x03\x04" + bytes(100))  # a .pt renamed
    refused(tiny, tmp_path / "zip.weights", "zip archive")
    (tmp_path / "odd.weights").write_bytes(HEADER + bytes(4 * n + 2))
    refused(tiny, tmp_path / "odd.weights", "not a whole number of float32s")


def test_unknown_suffix_and_missing_file(tmp_path: Path, tiny: torch.nn.Module) -> None:
    (tmp_path / "w.bin").write_bytes(HEADER)
    refused(tiny, tmp_path / "w.bin", "unknown weights format '.bin'")
    refused(tiny, tmp_path / "nope.weights", "not found")
    refused(tiny, tmp_path / "nope.pt", "not found")


class Model(torch.nn.Module):  # stands for ultralytics' models.yolo.Model
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3)


def test_pickled_objects_are_refused_with_a_conversion_hint(tmp_path: Path, tiny: torch.nn.Module) -> None:
    torch.save({"epoch": -1, "model": Model()}, tmp_path / "yolov3.pt")
    err = refused(tiny, tmp_path / "yolov3.pt", "pickles whole Python objects")
    assert "state_dict()" in err.hint and "torch.save(" in err.hint and ".weights" in err.hint
    assert "weights_only=False" not in str(err) and "weights_only" not in err.hint


def test_state_dict_with_a_wrong_shape_names_the_tensor(tmp_path: Path, tiny: torch.nn.Module) -> None:
    voc = build("yolov3-tiny", NCLS=20)
    torch.save(voc.state_dict(), tmp_path / "voc.pt")
    refused(tiny, tmp_path / "voc.pt", "'output.m.0.weight'", "(75, 256, 1, 1)", "(255, 256, 1, 1)")
    sd = tiny.state_dict()
    torch.save(dict(list(sd.items())[:-2]), tmp_path / "short.pt")
    refused(tiny, tmp_path / "short.pt", "the model's 'output.m.1.weight'")
    torch.save({"model": {"a": 1}}, tmp_path / "junk.pt")
    refused(tiny, tmp_path / "junk.pt", "entry 'a' of the state_dict is of type int, not a tensor")
    torch.save([1, 2], tmp_path / "list.pt")
    refused(tiny, tmp_path / "list.pt", "no state_dict")
    (tmp_path / "text.pt").write_text("not a torch file")
    refused(tiny, tmp_path / "text.pt", "not a readable torch file")


def test_save_refuses_what_darknet_cannot_hold(tmp_path: Path) -> None:
    model = netdsl.build("net Small()\ninput x: [3, H = 8, W = 8]\noutput = x |> conv(4, 3) -> flatten -> linear(10)\n")
    with pytest.raises(NetdslError, match="has no place in darknet's format"):
        netdsl.save_weights(model, tmp_path / "small.weights")
    assert not (tmp_path / "small.weights").exists()


# -- the command line -----------------------------------------------------------------------------

def test_cli_build_with_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny: torch.nn.Module) -> None:
    netdsl.save_weights(tiny, tmp_path / "tiny.weights")
    spec = str(SPECS / "yolov3-tiny.net")
    args = ["build", spec, "--set", "H=64", "--set", "W=64"]
    assert main([*args, "--json", "--weights", str(tmp_path / "tiny.weights")]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == str(tmp_path / "tiny.weights")
    assert main([*args, "--weights", str(tmp_path / "tiny.weights")]) == 0
    assert f"weights: {tmp_path / 'tiny.weights'}" in capsys.readouterr().out
    assert main([*args, "--set", "NCLS=20", "--weights", str(tmp_path / "tiny.weights")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'tiny.weights'}: error: expected" in err and "hint:" in err
    assert main([*args, "--emit-ir", "--weights", str(tmp_path / "tiny.weights")]) == 2
