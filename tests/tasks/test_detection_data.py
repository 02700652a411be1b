"""Detection data: YOLO-format folders and YAMLs, located errors, skip_bad, letterbox geometry,
seeded augmentation, the embedded coins set, and a batch through yolo_loss."""
from __future__ import annotations

import doctest
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import netdsl
from netdsl.errors import NetdslError
from netdsl.tasks.detect import augment as aug
from netdsl.tasks.detect import embedded
from netdsl.tasks.detect import labels as dlabels
from netdsl.tasks.detect.data import load_detection_data
from netdsl.tasks.detect.loss import head_geometry, yolo_loss

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))


def write_image(path: Path, h: int = 20, w: int = 40, value: int = 50) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.full((h, w, 3), value, np.uint8))


def write_labels(image: Path, text: str) -> Path:
    lp = dlabels.label_path(image)
    lp.parent.mkdir(parents=True, exist_ok=True)
    lp.write_text(text)
    return lp


def make_set(root: Path, split: bool = True) -> None:
    sub = ("train", "val") if split else ("",)
    for s in sub:
        for k in range(3):
            img = root / "images" / s / f"im{k}.png"
            write_image(img)
            if k < 2:  # im2 has no label file: a background image
                write_labels(img, f"{k} 0.5 0.5 0.25 0.5\n")


# --- sources -----------------------------------------------------------------------------------

def test_cache_by_default_when_the_resized_images_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cache=None caches small sets (each image then decoded once), not what exceeds the budget; the
    sizes loading found are the images' own, so validation's plan needs no second decoding."""
    import netdsl.tasks.detect.data as ddata

    make_set(tmp_path / "a")
    d = load_detection_data(tmp_path / "a", img=64)
    # three 20 x 40 images per split, long side to 64: 32 x 64 x 3 bytes each
    assert d.train.resized_bytes() == d.val.resized_bytes() == 3 * 32 * 64 * 3
    assert d.train.cache and d.val.cache
    assert [d.train.size(i) for i in range(3)] == [d.train.read(i).shape[:2] for i in range(3)] == [(20, 40)] * 3
    reads = []
    monkeypatch.setattr(ddata, "read_image", lambda path, hint: reads.append(path) or np.zeros((20, 40, 3), np.uint8))
    for _ in range(3):
        d.train.batch([0, 1, 2], epoch=0)
    assert len(reads) == 3  # once each, however often the mosaics take them
    monkeypatch.setattr(ddata, "CACHE_BUDGET", 2 * 32 * 64 * 3 * 2)  # less than both splits' six images
    assert not load_detection_data(tmp_path / "a", img=64).train.cache
    assert not load_detection_data(tmp_path / "a", img=64, cache=False).val.cache
    assert load_detection_data(tmp_path / "a", img=64, cache=True).val.cache

def test_folder_sources(tmp_path: Path) -> None:
    make_set(tmp_path / "a")
    d = load_detection_data(tmp_path / "a", img=64)
    assert (len(d.train), len(d.val), d.nc, d.names) == (3, 3, 2, ["class0", "class1"])
    assert [len(lb) for lb in d.train.labels] == [1, 1, 0]  # missing label file: background
    assert d.train.augment and not d.val.augment and not d.warnings
    make_set(tmp_path / "b", split=False)
    d = load_detection_data(tmp_path / "b", img=64, nc=3)
    assert len(d.train) == len(d.val) == 3 and d.nc == 3 and "validating on every image" in d.notes[0]


def test_yaml_paths_relative_to_path_and_yaml_folder(tmp_path: Path) -> None:
    make_set(tmp_path / "sets" / "toy")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "toy.yaml").write_text("path: ../sets/toy\ntrain: images/train\nval: [images/val]\nnc: 2\n"
                                  "names: [cat, dog]\ndownload: https://example.com/toy.zip\n")
    d = load_detection_data(cfg / "toy.yaml", img=64)
    assert (len(d.train), len(d.val), d.names) == (3, 3, ["cat", "dog"])
    assert any("download" in n for n in d.notes)
    # a .txt list of images ('./' relative to the list's folder), names as a mapping
    (tmp_path / "sets" / "toy" / "train.txt").write_text("./images/train/im0.png\n./images/train/im1.png\n")
    (cfg / "list.yaml").write_text(f"path: {tmp_path / 'sets' / 'toy'}\ntrain: train.txt\nval: images/val\n"
                                   "nc: 2\nnames: {0: cat, 1: dog}\n")
    d = load_detection_data(cfg / "list.yaml", img=64)
    assert len(d.train) == 2 and d.names == ["cat", "dog"]


@pytest.mark.parametrize(("yaml_text", "match"), [
    ("path: .\ntrain: nowhere\nval: nowhere\nnc: 1\ndownload: x\n", "'train' path does not exist"),
    ("path: .\ntrain: images/train\nnc: 2\n", "no 'val' entry"),
    ("train: images/train\nval: images/val\nnc: 2\nnames: [a]\n", "'names' has 1 entries but nc is 2"),
    ("train: images/train\nval: images/val\nnc: zero\n", "'nc' must be a positive integer"),
    ("- just\n- a list\n", "must be a mapping"),
    ("train: [unclosed\n", "invalid YAML"),
    ("train: !!python/object/apply:os.system ['echo hi']\nval: x\nnc: 1\n", "invalid YAML"),
])
def test_yaml_errors(tmp_path: Path, yaml_text: str, match: str) -> None:
    make_set(tmp_path)
    (tmp_path / "d.yaml").write_text(yaml_text)
    with pytest.raises(NetdslError, match=match) as e:
        load_detection_data(tmp_path / "d.yaml", img=64)
    assert e.value.path == str(tmp_path / "d.yaml")


def test_img_must_be_a_multiple_of_the_stride(tmp_path: Path) -> None:
    with pytest.raises(NetdslError, match="multiple of the network's largest stride 32") as e:
        load_detection_data(None, img=100)
    assert e.value.hint == "use 128"


def test_no_images_and_not_a_data_folder(tmp_path: Path) -> None:
    (tmp_path / "images" / "train").mkdir(parents=True)
    with pytest.raises(NetdslError, match="no training images found"):
        load_detection_data(tmp_path, img=64)
    with pytest.raises(NetdslError, match="must hold images/ and labels/"):
        load_detection_data(tmp_path / "images", img=64)
    with pytest.raises(NetdslError, match="does not exist"):
        load_detection_data(tmp_path / "missing", img=64)


# --- bad labels and images: file:line, and skip_bad --------------------------------------------

BAD_LINES = [
    ("0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n", 2, "class 2 is not in [0, 2)"),
    ("0 0.5 0.5 0.2\n", 1, "expected 5 fields"),
    ("\n0 0.5 0.5 0.2 0.2 1 1 1\n", 2, "expected 5 fields"),
    ("0 0.5 abc 0.2 0.2\n", 1, "'abc' is not a number"),
    ("0 0.5 0.5 nan 0.2\n", 1, "'nan' is not a number"),
    ("1.5 0.5 0.5 0.2 0.2\n", 1, "class 1.5 is not in"),
    ("-1 0.5 0.5 0.2 0.2\n", 1, "class -1 is not in"),
    ("0 1.2 0.5 0.2 0.2\n", 1, "cx = 1.2 is outside"),
    ("0 0.5 -0.01 0.2 0.2\n", 1, "cy = -0.01 is outside"),
    ("0 0.5 0.5 0 0.2\n", 1, "zero width or height"),
]


@pytest.mark.parametrize(("text", "line", "match"), BAD_LINES)
def test_bad_label_lines_name_file_and_line(tmp_path: Path, text: str, line: int, match: str) -> None:
    make_set(tmp_path)
    lp = write_labels(tmp_path / "images" / "val" / "im1.png", text)
    with pytest.raises(NetdslError, match=re.escape(match)) as e:
        load_detection_data(tmp_path, img=64, nc=2)
    err = e.value
    assert err.path == str(lp) and err.span is not None and err.span.line == line and err.hint
    assert err.render().startswith(f"{lp}:{line}:")
    d = load_detection_data(tmp_path, img=64, nc=2, skip_bad=True)
    assert (len(d.train), len(d.val), d.skipped) == (3, 2, 1)
    assert d.warnings == [f"{lp}:{line}: {err.message} (image skipped)"]


def test_tolerance_clips_and_duplicates_are_reported(tmp_path: Path) -> None:
    make_set(tmp_path)
    write_labels(tmp_path / "images" / "train" / "im0.png", "0 1.00001 0.5 0.2 0.2\n0 1.00001 0.5 0.2 0.2\n")
    d = load_detection_data(tmp_path, img=64)
    assert d.train.labels[0].tolist() == [[0, 1, 0.5, pytest.approx(0.2), pytest.approx(0.2)]]
    assert "1 duplicate label rows dropped" in d.warnings[0] and d.skipped == 0


def test_bad_images_and_skip_bad_counting(tmp_path: Path) -> None:
    make_set(tmp_path)
    bad = tmp_path / "images" / "train" / "im1.png"
    bad.write_bytes(b"not a png at all")
    (tmp_path / "images" / "train" / "im0.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(NetdslError, match="cannot read image") as e:
        load_detection_data(tmp_path, img=64)
    assert e.value.path == str(tmp_path / "images" / "train" / "im0.png")
    write_labels(tmp_path / "images" / "val" / "im0.png", "7 0.5 0.5 0.1 0.1\n")
    d = load_detection_data(tmp_path, img=64, nc=2, skip_bad=True)
    assert (len(d.train), len(d.val), d.skipped) == (1, 2, 3)
    assert all(w.endswith("(image skipped)") for w in d.warnings)
    write_image(tmp_path / "images" / "train" / "im2.png", 1, 1)  # too small
    with pytest.raises(NetdslError, match="every training image was bad"):
        load_detection_data(tmp_path, img=64, nc=2, skip_bad=True)


# --- geometry and augmentation -----------------------------------------------------------------

def test_letterbox_maps_boxes_to_their_pixels(tmp_path: Path) -> None:
    # a 40x80 image (h x w) with a white box at rows 10-19, columns 20-59
    im = np.zeros((40, 80, 3), np.uint8)
    im[10:20, 20:60] = 255
    img = tmp_path / "images" / "train" / "a.png"
    img.parent.mkdir(parents=True)
    iio.imwrite(img, im)
    write_labels(img, "0 0.5 0.375 0.5 0.25\n")
    d = load_detection_data(tmp_path, img=160)
    out, lb = d.val.load(0)
    assert out.shape == (160, 160, 3)
    # scale 2: content is 80x160, padded by 40 rows above and below with grey 114
    assert (out[:40] == 114).all() and (out[120:] == 114).all() and (out[40:120] != 114).all()
    cls, cx, cy, w, h = lb[0]
    x0, x1, y0, y1 = (cx - w / 2) * 160, (cx + w / 2) * 160, (cy - h / 2) * 160, (cy + h / 2) * 160
    assert (x0, x1, y0, y1) == pytest.approx((40, 120, 60, 80))
    # bilinear upscaling blurs the edges: the white mass and its centre are those of the box
    white = np.zeros((160, 160))
    white[40:120] = out[40:120, :, 0] / 255.0
    ys, xs = np.mgrid[0:160, 0:160] + 0.5
    assert white.sum() == pytest.approx((x1 - x0) * (y1 - y0), rel=0.01)
    assert (np.sum(white * xs) / white.sum(), np.sum(white * ys) / white.sum()) == pytest.approx((80, 70), abs=0.1)
    assert (out[61:79, 41:119] == 255).all() and (out[40:58, :, 0] == 0).all() and (out[82:120, :, 0] == 0).all()
    # odd padding: the extra pixel goes to the bottom
    padded, (left, top) = aug.letterbox(np.zeros((5, 8, 3), np.uint8), 8)
    assert (left, top) == (0, 1) and (padded[:1] == 114).all() and (padded[6:] == 114).all()


def test_flip_and_hsv_are_deterministic_given_the_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    im = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    img = tmp_path / "images" / "x.png"
    img.parent.mkdir(parents=True)
    iio.imwrite(img, im)
    write_labels(img, "0 0.25 0.5 0.25 0.5\n")
    d = load_detection_data(tmp_path, img=32, cache=True)
    d.train.hyp.update(mosaic=0, translate=0, scale=0)  # colour and flips only (geometry: test_detection_augment)
    runs = [d.train.item(0, seed=s, epoch=e) for s, e in [(1, 0), (1, 0), (2, 0), (1, 1)] + [(s, 0) for s in range(3, 20)]]
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[2][0]) and not np.array_equal(runs[0][0], runs[3][0])
    cxs = {round(float(lb[0, 1]), 4) for _, lb in runs}
    assert cxs == {0.25, 0.75}  # both flipped and unflipped occur
    plain, lb = d.train.load(0)
    assert 0 in d.train._store  # cache=True keeps the resized image
    for out, _ in runs:  # HSV changes colours, not where things are: the grey padding stays grey
        assert (out[:5] == out[:5, :, :1]).all() and not (out[6:26] == out[6:26, :, :1]).all()
    # no jitter and no flip: the augmented item is the letterboxed image itself
    d.train.hyp.update(hsv_h=0, hsv_s=0, hsv_v=0, fliplr=0)
    assert np.array_equal(d.train.item(0, seed=5)[0], plain)
    # a grey image stays grey under HSV jitter; value gains scale brightness
    grey = np.full((4, 4, 3), 100, np.uint8)
    out = aug.augment_hsv(grey, np.random.default_rng(3), 0.5, 0.7, 0.4)
    assert (out == out[0, 0, 0]).all()
    # the HSV round trip is exact
    back = aug._hsv_to_rgb(aug._rgb_to_hsv(im.astype(np.float32) / 255)) * 255
    assert np.abs(back - im).max() < 1e-3


def test_batches_format_and_shuffle(tmp_path: Path) -> None:
    make_set(tmp_path)
    d = load_detection_data(tmp_path, img=64)
    batches = list(d.train.batches(2, seed=0))
    assert [b[0].shape[0] for b in batches] == [2, 1]
    images, targets = batches[0]
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    assert targets.shape[1] == 6 and set(targets[:, 0].tolist()) <= {0.0, 1.0}
    again = list(d.train.batches(2, seed=0))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    images, targets = next(d.val.batches(3))
    assert targets.tolist() == [[0, 0, 0.5, 0.5, 0.25, 0.25], [1, 1, 0.5, 0.5, 0.25, 0.25]]


# --- the embedded set --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def coins(tmp_path_factory: pytest.TempPathFactory) -> embedded.Embedded:
    mp = pytest.MonkeyPatch()
    mp.setenv("NETDSL_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        first = embedded.load_embedded()
        second = embedded.load_embedded()  # from the cache
    finally:
        mp.undo()
    assert np.array_equal(first.train_images, second.train_images)
    assert all(np.array_equal(a, b) for a, b in zip(first.train_labels, second.train_labels))
    return second


def test_embedded_size_classes_and_boxes(coins: embedded.Embedded) -> None:
    assert coins.train_images.shape == (embedded.N_TRAIN, 80, 160, 3)
    assert coins.val_images.shape == (embedded.N_VAL, 80, 160, 3)
    assert len(coins.coins) == 24 and np.bincount(coins.coins[:, 0]).tolist() == [14, 10]
    for labels in (coins.train_labels, coins.val_labels):
        rows = np.concatenate(labels)
        assert set(rows[:, 0].tolist()) == {0.0, 1.0}
        assert (rows[:, 3:] > 0).all()
        assert (rows[:, 1] - rows[:, 3] / 2 >= -1e-6).all() and (rows[:, 1] + rows[:, 3] / 2 <= 1 + 1e-6).all()
        assert (rows[:, 2] - rows[:, 4] / 2 >= -1e-6).all() and (rows[:, 2] + rows[:, 4] / 2 <= 1 + 1e-6).all()
        assert all(len(lb) for lb in labels)


def test_embedded_validation_region_is_never_in_training(coins: embedded.Embedded) -> None:
    grey = embedded.photograph()
    # every validation crop is a piece of rows < VAL_ROWS; every coin is wholly on one side
    top, bottom = coins.coins[:, 1] < embedded.VAL_ROWS, coins.coins[:, 3] <= embedded.VAL_ROWS
    assert np.array_equal(top, bottom) and top.sum() == 6
    band = grey[:embedded.VAL_ROWS]
    for v in coins.val_images[:4, :, :, 0]:
        assert any(np.array_equal(band[y:y + 80, x:x + 160], v) for y in range(6) for x in range(225))
    # training crops (before their flips and noise) come from rows >= VAL_ROWS: each one matches
    # some crop there far better than any crop of the band
    rest = grey[embedded.VAL_ROWS:].astype(np.float32)
    for t in coins.train_images[:2, :, :, 0].astype(np.float32):
        def best(src: np.ndarray, t: np.ndarray = t) -> float:
            errs = []
            for im in (t, t[::-1], t[:, ::-1], t[::-1, ::-1]):
                z = (im - im.mean()) / (im.std() + 1e-6)
                for y in range(0, src.shape[0] - 79, 3):
                    for x in range(0, src.shape[1] - 159, 3):
                        c = src[y:y + 80, x:x + 160]
                        errs.append(np.mean(z * (c - c.mean()) / (c.std() + 1e-6)))
            return max(errs)
        assert best(rest) > 0.9 > best(band.astype(np.float32))


def test_embedded_as_a_source_feeds_yolo_loss(coins: embedded.Embedded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "load_embedded", lambda: coins)
    d = load_detection_data("embedded", img=64)
    assert (len(d.train), len(d.val), d.nc, d.names) == (512, 32, 2, ["small coin", "large coin"])
    images, targets = next(d.train.batches(4, seed=0))
    assert images.shape == (4, 3, 64, 64) and targets.shape[1] == 6 and len(targets) > 0
    torch.manual_seed(0)
    model = netdsl.build(ROOT / "specs" / "yolov3-tiny.net", H=64, W=64, NCLS=d.nc)
    model.train()
    anchors, strides, nc = head_geometry(model)
    assert nc == d.nc
    loss, items = yolo_loss(model(images), targets, anchors, strides, nc)
    assert torch.isfinite(loss).all() and items.shape == (3,) and (items > 0).all()
    loss.backward()


def test_docstring_examples() -> None:
    for module in (aug, dlabels):  # label_path's example lives in labels
        result = doctest.testmod(module)
        assert result.attempted >= 1 and result.failed == 0


def test_hsv_to_rgb_is_the_formula_bit_for_bit() -> None:
    """The in-place conversion gives the bits of the formula written out (as it was before)."""
    rng = np.random.default_rng(0)
    hsv = aug._rgb_to_hsv(rng.integers(0, 256, (37, 53, 3)).astype(np.float32) / 255.0)
    hsv[..., 0] = (hsv[..., 0] * 1.013) % 1.0
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]

    def channel(n: int) -> np.ndarray:
        k = (n + h * 6) % 6
        return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)

    want = np.stack([channel(5), channel(3), channel(1)], -1)
    got = aug._hsv_to_rgb(hsv)
    assert got.dtype == want.dtype == np.float32 and np.array_equal(got, want)
