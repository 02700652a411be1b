"""One image reader for detection
training and `netdsl detect`, bounded class counts, located errors for names and list files, and
images decoded in full up front but held a batch at a time. Images are made with Pillow."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import netdsl
from netdsl.cli import main
from netdsl.commands import detect as detect_command
from netdsl.errors import NetdslError
from netdsl.tasks.detect import images, labels
from netdsl.tasks.detect.data import MAX_CLASSES, load_detection_data
from spec_fixtures import SDET

LABEL = "0 0.47 0.42 0.31 0.42\n"


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))


def folder_with(root: Path, name: str, save) -> Path:
    """A YOLO folder whose training image `name` is written by `save(path)`, next to a plain one;
    the validation split is a plain image. Returns the special image's path."""
    for split, stem in (("train", "plain"), ("val", "plain")):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(root / "images" / split / f"{stem}.png")
        (root / "labels" / split / f"{stem}.txt").write_text(LABEL)
    path = root / "images" / "train" / name
    save(path)
    (root / "labels" / "train" / (path.stem + ".txt")).write_text(LABEL)
    return path


def training_pixels(root: Path, path: Path) -> np.ndarray:
    """The pixels the training loader reads for `path`."""
    split = load_detection_data(root, img=64).train
    return split.read([Path(f) for f in split.images].index(path))


# --- item 12: one image reader ------------------------------------------------------------------

def grey16(path: Path) -> None:
    Image.fromarray(np.full((20, 30), 30000, np.uint16)).save(path)


def two_rows(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (2, 50, 3), dtype=np.uint8)).save(path)


def grey_alpha(path: Path) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (20, 30, 2), dtype=np.uint8), "LA").save(path)


def frames(path: Path) -> None:
    first, second = (Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 200))
    first.save(path, save_all=True, append_images=[second])


def rotated(path: Path) -> None:
    im = Image.fromarray(np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[images.ORIENTATION] = 6  # stored sideways: turn 90 degrees clockwise to view
    im.save(path, exif=exif)


def expected_pixels(path: Path) -> np.ndarray:
    """What the file shows, by Pillow's own means: frame 0, upright, 16 bits scaled by 255/65535."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I;16"):
            v = np.asarray(im).astype(np.float64) * 255 / 65535
            return np.repeat(np.floor(v + 0.5).astype(np.uint8)[:, :, None], 3, axis=2)
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize(("name", "save"), [
    ("two_rows.png", two_rows), ("grey16.png", grey16), ("grey_alpha.png", grey_alpha),
    ("animated.gif", frames), ("pages.tiff", frames), ("rotated.png", rotated),
])
def test_training_and_detect_read_the_same_pixels(tmp_path: Path, name: str, save) -> None:
    path = folder_with(tmp_path / "data", name, save)
    want = expected_pixels(path)
    got_train = training_pixels(tmp_path / "data", path)
    got_detect = detect_command.read_image(path)
    assert got_train.dtype == got_detect.dtype == np.uint8
    assert np.array_equal(got_train, want) and np.array_equal(got_detect, want)
    if name == "grey16.png":
        assert int(want[0, 0, 0]) == round(30000 * 255 / 65535)  # 117, not 255 (clipped) as training read it
    if name == "rotated.png":
        assert want.shape == (30, 20, 3)  # EXIF 6: 20 rows stored, 30 shown


def test_one_and_two_row_images_keep_their_shape_in_detect(tmp_path: Path) -> None:
    for h in (1, 2):
        a = np.random.default_rng(h).integers(0, 256, (h, 50, 3), dtype=np.uint8)
        Image.fromarray(a).save(tmp_path / f"{h}.png")
        assert np.array_equal(detect_command.read_image(tmp_path / f"{h}.png"), a)  # was [50, 3, 3]


def test_predict_scales_16_bit_arrays_as_files_are_scaled() -> None:
    from netdsl.tasks.detect.predict import as_rgb

    a = np.array([[0, 30000, 65535]], np.uint16)
    assert as_rgb(a)[0, :, 0].tolist() == [round(v * 255 / 65535) for v in a[0].tolist()]  # was 0, 255, 255
    assert as_rgb(a.astype(">u2"))[0, :, 0].tolist() == as_rgb(a)[0, :, 0].tolist()


def test_pixels_of_unknown_range_are_refused_in_both(tmp_path: Path) -> None:
    path = folder_with(tmp_path / "data", "float.tif",
                       lambda p: Image.fromarray(np.full((20, 30), 0.5, np.float32)).save(p))
    for read in (lambda: load_detection_data(tmp_path / "data", img=64), lambda: detect_command.read_image(path)):
        with pytest.raises(NetdslError, match="no known range") as e:
            read()
        assert e.value.path == str(path)


@pytest.fixture
def sdet_weights(tmp_path: Path) -> tuple[str, str]:
    import torch

    spec = tmp_path / "sdet.net"
    spec.write_text(SDET)
    torch.manual_seed(0)
    weights = tmp_path / "sdet.pt"
    netdsl.save_weights(netdsl.build(str(spec)), weights)
    return str(spec), str(weights)


def test_detect_on_a_two_row_image_reports_its_own_size(tmp_path: Path, sdet_weights, capsys) -> None:
    spec, weights = sdet_weights
    two_rows(tmp_path / "strip.png")
    out = tmp_path / "out"
    rc = main(["detect", spec, "--weights", weights, "--source", str(tmp_path / "strip.png"), "--img", "64",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    entry = json.loads((out / "detections.json").read_text())["images"][0]
    assert (entry["height"], entry["width"]) == (2, 50)
    assert np.asarray(Image.open(out / "strip.png")).shape == (2, 50, 3)


# --- item 9: bounded class counts ---------------------------------------------------------------

def load_under_memory_limit(source: Path) -> subprocess.CompletedProcess[str]:
    """`load_detection_data(source)` in a child limited to 2 GiB of address space, so that a list
    of 10**20 names fails fast there instead of swapping this machine."""
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "from netdsl.tasks.detect.data import load_detection_data\n"
            "from netdsl.errors import NetdslError\n"
            "try:\n"
            "    load_detection_data(sys.argv[1], img=64)\n"
            "except NetdslError as err:\n"
            "    print(err.render(), file=sys.stderr)\n"
            "    sys.exit(2)\n")
    return subprocess.run([sys.executable, "-c", code, str(source)], capture_output=True, text=True, timeout=120)


def test_huge_nc_in_a_data_yaml_is_a_located_error(tmp_path: Path) -> None:
    folder_with(tmp_path, "x.png", two_rows)
    (tmp_path / "d.yaml").write_text("train: images/train\nval: images/val\nnc: 100000000000000000000\n")
    done = load_under_memory_limit(tmp_path / "d.yaml")
    assert done.returncode == 2, done.stderr
    assert f"{tmp_path / 'd.yaml'}:3:1: error: nc = 1.00e+20 is beyond netdsl's limit of 100,000 classes" \
        in done.stderr and "MemoryError" not in done.stderr


def test_huge_class_in_a_label_file_is_a_located_error(tmp_path: Path) -> None:
    path = folder_with(tmp_path, "x.png", two_rows)
    labels.label_path(path).write_text(LABEL + "1e30 0.5 0.5 0.1 0.1\n")
    done = load_under_memory_limit(tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{labels.label_path(path)}:2:1: error: class 1e30 is beyond netdsl's limit" in done.stderr


def test_class_count_limit_edges(tmp_path: Path) -> None:
    path = folder_with(tmp_path, "x.png", two_rows)
    labels.label_path(path).write_text(f"{MAX_CLASSES - 1} 0.5 0.5 0.1 0.1\n")
    d = load_detection_data(tmp_path, img=64)
    assert d.nc == MAX_CLASSES == len(d.names) and d.names[-1] == f"class{MAX_CLASSES - 1}"
    labels.label_path(path).write_text(f"{MAX_CLASSES} 0.5 0.5 0.1 0.1\n")
    with pytest.raises(NetdslError, match="beyond netdsl's limit"):
        load_detection_data(tmp_path, img=64)
    with pytest.raises(NetdslError, match="classes asked for"):
        load_detection_data(tmp_path, img=64, nc=10 ** 20)


# --- item 13: names and list files --------------------------------------------------------------

@pytest.mark.parametrize(("names", "line", "match"), [
    ("{0: a, b: c}", 4, "needs the integer keys 0, 1, ..., n-1, not 'b'"),
    ("5", 4, "must be a list of class names or a mapping from 0, 1, ..., not int 5"),
    ("{0: a, 2: b}", 4, "needs the keys 0 to 1; 1 is missing"),
    ("[a, [b]]", 4, "plain names"),
])
def test_bad_names_in_a_data_yaml_are_located(tmp_path: Path, names: str, line: int, match: str) -> None:
    folder_with(tmp_path, "x.png", two_rows)
    (tmp_path / "d.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n")
    with pytest.raises(NetdslError, match=match) as e:
        load_detection_data(tmp_path / "d.yaml", img=64)
    assert e.value.path == str(tmp_path / "d.yaml") and e.value.span.line == line and e.value.hint


def test_names_file_with_mixed_keys_is_a_located_cli_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "names.yaml").write_text("# classes\nnames: {0: a, b: c}\n")
    (tmp_path / "sdet.net").write_text(SDET)
    two_rows(tmp_path / "x.png")
    rc = main(["detect", str(tmp_path / "sdet.net"), "--weights", "w.pt", "--source", str(tmp_path / "x.png"),
               "--names", str(tmp_path / "names.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{tmp_path / 'names.yaml'}:2:" in err and "not 'b'" in err and "hint:" in err, err
    assert "Traceback" not in err


def test_image_list_that_is_not_utf8_is_a_located_error(tmp_path: Path) -> None:
    folder_with(tmp_path, "x.png", two_rows)
    (tmp_path / "train.txt").write_bytes(b"images/train/x.png\nimages/train/\xffplain.png\n")
    (tmp_path / "d.yaml").write_text("train: train.txt\nval: images/val\nnc: 1\n")
    with pytest.raises(NetdslError, match=r"not UTF-8 text \(byte 0xff\)") as e:
        load_detection_data(tmp_path / "d.yaml", img=64)
    assert e.value.path == str(tmp_path / "train.txt")
    assert (e.value.span.line, e.value.span.column) == (2, len("images/train/") + 1)


# --- item 16: decode in full up front, a batch at a time later -----------------------------------

def truncated_jpeg(path: Path) -> None:
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def test_truncated_jpeg_is_found_when_the_data_is_loaded(tmp_path: Path) -> None:
    path = folder_with(tmp_path, "cut.jpg", truncated_jpeg)
    with Image.open(path) as im:
        im.verify()  # the header check the loader relied on passes it
    with pytest.raises(NetdslError, match="truncated") as e:
        load_detection_data(tmp_path, img=64)
    assert e.value.path == str(path)
    d = load_detection_data(tmp_path, img=64, skip_bad=True)
    assert d.skipped == 1 and path not in [Path(f) for f in d.train.images]
    for epoch in range(2):  # every batch of every epoch now reads
        assert sum(len(x) for x, _ in d.train.batches(2, epoch=epoch)) == len(d.train)


def test_cli_skip_bad_trains_past_a_truncated_jpeg(tmp_path: Path, sdet_weights, capsys) -> None:
    spec, _ = sdet_weights
    path = folder_with(tmp_path / "data", "cut.jpg", truncated_jpeg)
    base = ["train", spec, "--data", str(tmp_path / "data"), "--img", "64", "--epochs", "1",
            "--batch-size", "2", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "truncated" in err and not (tmp_path / "no").exists()
    assert main([*base, "--skip-bad", "--out", str(tmp_path / "yes")]) == 0, capsys.readouterr().err
    assert (tmp_path / "yes" / "last.pt").is_file()


def test_a_file_spoilt_after_loading_does_not_repeat_the_skip_bad_hint(tmp_path: Path) -> None:
    path = folder_with(tmp_path, "late.jpg", lambda p: Image.fromarray(np.full((48, 64, 3), 7, np.uint8)).save(p))
    d = load_detection_data(tmp_path, img=64, skip_bad=True)
    truncated_jpeg(path)
    with pytest.raises(NetdslError, match="cannot read image") as e:
        list(d.train.batches(2, shuffle=False))
    assert "skip" not in e.value.hint and "changed" in e.value.hint


def test_running_out_of_memory_is_not_blamed_on_the_image(tmp_path: Path, monkeypatch) -> None:
    from PIL import ImageFile

    folder_with(tmp_path, "fine.png", two_rows)

    def no_memory(self, *args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_memory)
    for skip_bad in (False, True):  # skip_bad skips bad files, and this file is fine
        with pytest.raises(images.NotEnoughMemory, match=r"not enough memory to decode this \d+x\d+ image") as e:
            load_detection_data(tmp_path, img=64, skip_bad=skip_bad)
        assert "not at fault" in e.value.hint
    with pytest.raises(NetdslError, match="not enough memory"):
        detect_command.read_image(tmp_path / "images" / "train" / "fine.png")


def test_detect_decodes_a_batch_at_a_time(tmp_path: Path, sdet_weights, capsys, monkeypatch) -> None:
    from netdsl.tasks.detect import predict as predict_module

    spec, weights = sdet_weights
    for k in range(5):
        Image.fromarray(np.full((40, 56, 3), 20 * k, np.uint8)).save(tmp_path / f"{k}.png")
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / f"{k}.png").rename(tmp_path / "src" / f"{k}.png")
    live = {"decoded": 0, "most": 0}
    read, predict = detect_command.read_image, predict_module.predict

    def counting_read(path: Path) -> np.ndarray:
        live["decoded"] += 1
        live["most"] = max(live["most"], live["decoded"])
        return read(path)

    def counting_predict(model, ims, **kw):
        live["decoded"] -= len(ims)  # predicted, drawn and dropped before the next batch is read
        return predict(model, ims, **kw)

    monkeypatch.setattr(detect_command, "read_image", counting_read)
    monkeypatch.setattr(predict_module, "predict", counting_predict)
    monkeypatch.setattr(detect_command, "DECODE_BATCH", 2)
    out = tmp_path / "out"
    rc = main(["detect", spec, "--weights", weights, "--source", str(tmp_path / "src"), "--img", "64",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert live["most"] == 2  # all 5 at once before
    assert len(json.loads((out / "detections.json").read_text())["images"]) == 5


def test_image_reader_docstring_examples() -> None:
    import doctest

    result = doctest.testmod(images)
    assert result.attempted >= 2 and result.failed == 0
