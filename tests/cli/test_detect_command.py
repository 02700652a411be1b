"""`netdsl detect`: yolov3-tiny with random weights on two small images, the outputs, and the errors."""
from __future__ import annotations

import json
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from netdsl.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "specs" / "yolov3-tiny.net")
SMALL = ["--set", "NCLS=2", "--set", "H=64", "--set", "W=64", "--img", "64"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    import netdsl

    torch.manual_seed(0)
    model = netdsl.build(SPEC, NCLS=2, H=64, W=64)
    path = tmp_path_factory.mktemp("weights") / "tiny2.pt"
    netdsl.save_weights(model, path)
    return str(path)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    iio.imwrite(d / "a.png", rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    iio.imwrite(d / "b.jpg", rng.integers(0, 256, (100, 60), dtype=np.uint8))  # greyscale JPEG
    (d / "notes.txt").write_text("not an image\n")
    return d


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["detect", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_detect_writes_images_json_and_lines(weights, source, tmp_path, capsys):
    names = tmp_path / "data.yaml"
    names.write_text("nc: 2\nnames: [cat, dog]\n")
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, SPEC, "--weights", weights, "--source", str(source), *SMALL,
                          "--conf", "0.001", "--names", str(names), "--out", str(out))
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "detections.json"]
    assert iio.imread(out / "a.png").shape == (48, 80, 3) and iio.imread(out / "b.jpg").shape == (100, 60, 3)
    report = json.loads((out / "detections.json").read_text())
    assert report["format"] == "netdsl-detections-v1" and report["names"] == ["cat", "dog"]
    assert report["classes"] == 2 and report["img"] == 64 and report["weights"] == weights
    assert [e["output"] for e in report["images"]] == ["a.png", "b.jpg"]
    lines = stdout.splitlines()
    assert len(lines) == 2
    total = 0
    for entry, line, (h, w) in zip(report["images"], lines, [(48, 80), (100, 60)]):
        assert (entry["height"], entry["width"]) == (h, w) and entry["input_size"] == [64, 64]
        dets = entry["detections"]
        total += len(dets)
        for d in dets:
            assert set(d) == {"class", "name", "confidence", "box"}
            assert d["name"] == ["cat", "dog"][d["class"]] and 0.001 < d["confidence"] <= 1
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
        assert [d["confidence"] for d in dets] == sorted((d["confidence"] for d in dets), reverse=True)
        counts = {n: sum(d["name"] == n for d in dets) for n in ("cat", "dog")}
        expected = ", ".join(f"{k} {n}{'s' * (k > 1)}" for n, k in counts.items() if k)
        assert line == f"{Path(entry['source']).name}: 64x64 {expected}"
        assert re.fullmatch(r"[ab]\.(png|jpg): 64x64 \d+ (cat|dog)s?(, \d+ (cat|dog)s?)?", line)
    assert total > 0  # a low --conf on a fresh head lets boxes through
    assert "results saved to" in err


def test_detect_matches_predict_with_default_names(weights, source, tmp_path, capsys):
    import torch

    import netdsl
    from netdsl.tasks.colourize.patches import read_rgb
    from netdsl.tasks.detect.predict import predict

    out = tmp_path / "empty"
    out.mkdir()  # an existing empty directory is fine
    rc, stdout, err = run(capsys, SPEC, "--weights", weights, "--source", str(source / "a.png"), *SMALL,
                          "--conf", "0.001", "--iou", "0.3", "--out", str(out))
    assert rc == 0, err
    report = json.loads((out / "detections.json").read_text())
    assert report["names"] == ["class0", "class1"] and len(report["images"]) == 1
    assert re.fullmatch(r"a\.png: 64x64 \d+ class[01]s?(, \d+ class1s?)?\n", stdout)
    model = netdsl.load_weights(netdsl.build(SPEC, NCLS=2, H=64, W=64), weights)
    det = predict(model, [read_rgb(source / "a.png")], img=64, conf=0.001, iou=0.3, auto=True)[0]
    got = report["images"][0]["detections"]
    assert len(got) == len(det) > 0
    assert torch.allclose(torch.tensor([d["box"] + [d["confidence"], d["class"]] for d in got]), det, atol=1e-3)


def test_predict_maps_boxes_back_to_the_original_pixels():
    import torch

    from netdsl.tasks.detect.predict import letterbox, unletterbox

    x, lb = letterbox(np.zeros((50, 100, 3), np.uint8), 64)  # scale 0.64, 32 rows, 16 rows of grey above
    assert (lb.scale, lb.left, lb.top) == (0.64, 0, 16) and float(x[:, 0].mean()) == pytest.approx(114 / 255)
    boxed = torch.tensor([[6.4, 16 + 3.2, 32.0, 16 + 32.0, 0.5, 1.0]])
    assert unletterbox(boxed, lb, (50, 100)).tolist()[0][:4] == pytest.approx([10, 5, 50, 50])


def expect_error(capsys, argv, message, out=None):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and message in err and "hint:" in err, err
    if out is not None:
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("case", ["missing source", "no images", "unreadable image", "names without names:",
                                  "missing names", "bad conf", "out not empty", "missing weights"])
def test_errors_before_building(case, weights, source, tmp_path, capsys):
    out = tmp_path / "out"
    src, extra, w = str(source), [], weights
    message = {"missing source": "source not found", "no images": "no images in the source directory",
               "unreadable image": "cannot read image", "names without names:": "no `names:` list",
               "missing names": "names file not found", "bad conf": "--conf 1.5",
               "out not empty": "not empty", "missing weights": "no such weights file"}[case]
    if case == "missing source":
        src = str(tmp_path / "nowhere")
    elif case == "no images":
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "x.txt").write_text("x")
        src = str(tmp_path / "docs")
    elif case == "unreadable image":
        (tmp_path / "bad.jpg").write_bytes(b"not a jpeg at all")
        src = str(tmp_path / "bad.jpg")
    elif case == "names without names:":
        (tmp_path / "n.yaml").write_text("classes: [a, b]\n")
        extra = ["--names", str(tmp_path / "n.yaml")]
    elif case == "missing names":
        extra = ["--names", str(tmp_path / "n.txt")]
    elif case == "bad conf":
        extra = ["--conf", "1.5"]
    elif case == "out not empty":
        out.mkdir()
        (out / "keep").write_text("x")
    elif case == "missing weights":
        w = str(tmp_path / "w.pt")
    expect_error(capsys, [SPEC, "--weights", w, "--source", src, *SMALL, *extra, "--out", str(out)], message)
    assert not out.exists() or [p.name for p in out.iterdir()] == ["keep"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_img_not_a_multiple_of_the_stride(weights, source, tmp_path, capsys):
    out = tmp_path / "out"
    expect_error(capsys, [SPEC, "--weights", weights, "--source", str(source), "--set", "NCLS=2", "--set", "H=64",
                          "--set", "W=64", "--img", "80", "--out", str(out)],
                 "--img 80 is not a multiple of the network's largest stride 32")
    assert not out.exists()


def test_weights_for_another_class_count(weights, source, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = run(capsys, SPEC, "--weights", weights, "--source", str(source), "--set", "NCLS=3",
                     "--set", "H=64", "--set", "W=64", "--img", "64", "--out", str(out))
    assert rc == 2 and "tiny2.pt" in err and "hint:" in err, err
    assert not out.exists()


def test_names_count_must_match_the_classes(weights, source, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nbird\n")
    out = tmp_path / "out"
    expect_error(capsys, [SPEC, "--weights", weights, "--source", str(source), *SMALL, "--names", str(names),
                          "--out", str(out)], "lists 3 names but the network has 2 classes")
    assert not out.exists()


def test_read_names_formats(tmp_path):
    from netdsl.commands.detect import read_names
    from netdsl.errors import NetdslError

    (tmp_path / "a.yaml").write_text("names:\n  0: person\n  1: bus\n")
    (tmp_path / "b.txt").write_text("person\n\nbus\n")
    (tmp_path / "c.yaml").write_text("names: [a, [b]]\n")
    (tmp_path / "d.yml").write_text("names: [a\n")
    assert read_names(str(tmp_path / "a.yaml")) == read_names(str(tmp_path / "b.txt")) == ["person", "bus"]
    with pytest.raises(NetdslError, match="plain names"):
        read_names(str(tmp_path / "c.yaml"))
    with pytest.raises(NetdslError, match="not valid YAML"):
        read_names(str(tmp_path / "d.yml"))


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, netdsl.commands.detect; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
