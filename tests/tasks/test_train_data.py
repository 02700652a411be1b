"""Training data: the embedded photographs, CIFAR-10 in both distributions, image folders, palettes."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import use_stand_in
from netdsl.cli import main
from netdsl.errors import NetdslError
from netdsl.tasks.colourize import cifar, patches
from netdsl.tasks.colourize.data import DataSpec, load_data, to_tensors
from netdsl.tasks.colourize.palette import kmeans_palette, labels, load_palette


class Toy(nn.Module):
    def __init__(self, NC: int = 24) -> None:
        super().__init__()
        self.spec_name, self.in_channels, self.params = "Toy", 1, {"NC": NC}
        self.conv = nn.Conv2d(1, NC, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_stand_in(monkeypatch, tmp_path, Toy)


# --- CIFAR-10 --------------------------------------------------------------------------------
def fake_cifar(root: Path, per_batch: int = 40, seed: int = 0) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """The same small images written as python pickles (as the Python 2 originals: bytes keys) and
    as binary records. Labels cycle through the ten categories."""
    rng = np.random.default_rng(seed)
    py, bn = root / "cifar-10-batches-py", root / "cifar-10-batches-bin"
    py.mkdir(parents=True)
    bn.mkdir(parents=True)
    batches = {}
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        lab = [int(i % 10) for i in range(per_batch)]
        batches[name] = data
        obj = {b"batch_label": name.encode(), b"labels": lab, b"data": data,
               b"filenames": [f"{i}.png".encode() for i in range(per_batch)]}
        (py / name).write_bytes(pickle.dumps(obj, protocol=2))
        rec = np.concatenate([np.array(lab, np.uint8)[:, None], data], axis=1)
        rec.tofile(bn / f"{name}.bin")
    (py / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in cifar.CATEGORIES]}))
    return py, bn, batches


def test_cifar_python_and_binary_agree(tmp_path: Path) -> None:
    py, bn, batches = fake_cifar(tmp_path)
    a_tr, a_va = cifar.load_cifar("py", py, 7)
    b_tr, b_va = cifar.load_cifar("bin", bn, 7)
    assert a_tr.shape == (8, 32, 32, 3) and a_va.shape == (4, 32, 32, 3)  # horses: labels 7, 17, ...
    assert np.array_equal(a_tr, b_tr) and np.array_equal(a_va, b_va)
    # CHW rows become HWC images: pixel (0, 0)'s red, green, blue are bytes 0, 1024, 2048
    first = batches["data_batch_1"][7]
    assert list(a_tr[0, 0, 0]) == [first[0], first[1024], first[2048]]
    assert cifar.find_cifar(tmp_path) == ("py", py) and cifar.find_cifar(bn) == ("bin", bn)
    all_tr, _ = cifar.load_cifar("py", py, cifar.category_index("all"))
    assert len(all_tr) == 80
    with pytest.raises(NetdslError, match="unknown CIFAR-10 category"):
        cifar.category_index("unicorn")


def test_cifar_archives(tmp_path: Path) -> None:
    import tarfile

    py, bn, _ = fake_cifar(tmp_path / "x")
    want_tr, want_va = cifar.load_cifar("py", py, 7)
    for folder, name in ((py, "cifar-10-python.tar.gz"), (bn, "cifar-10-binary.tar.gz")):
        with tarfile.open(tmp_path / name, "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
        kind, tr, va = cifar.load_cifar_tar(tmp_path / name, 7)
        assert kind == ("bin" if folder == bn else "py")
        assert np.array_equal(tr, want_tr) and np.array_equal(va, want_va)
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(NetdslError, match="cannot read the CIFAR archive"):
        cifar.load_cifar_tar(tmp_path / "bad.tar.gz", 7)


def test_cifar_modern_pickle_protocols(tmp_path: Path) -> None:
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    for proto in (4, 5):
        f = tmp_path / f"b{proto}"
        f.write_bytes(pickle.dumps({"data": data, "labels": [7, 1]}, protocol=proto))
        got, lab = cifar._read_py_batch(f)
        assert np.array_equal(got, data) and list(lab) == [7, 1]


class Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch pwned",))


def test_cifar_unpickler_refuses_code(tmp_path: Path) -> None:
    py, _, _ = fake_cifar(tmp_path)
    (py / "data_batch_2").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(NetdslError, match="refusing to load (posix|os).system"):
        cifar.load_cifar("py", py, 7)
    assert not (tmp_path / "pwned").exists()


def test_cifar_damaged_files(tmp_path: Path) -> None:
    py, bn, _ = fake_cifar(tmp_path)
    raw = (bn / "test_batch.bin").read_bytes()
    (bn / "test_batch.bin").write_bytes(raw[:-5])
    with pytest.raises(NetdslError, match="not a multiple of 3073"):
        cifar.load_cifar("bin", bn, 7)
    (py / "test_batch").write_bytes((py / "test_batch").read_bytes()[:100])
    with pytest.raises(NetdslError, match="corrupt CIFAR batch"):
        cifar.load_cifar("py", py, 7)
    (py / "test_batch").unlink()
    with pytest.raises(NetdslError, match="test_batch is missing"):
        cifar.load_cifar("py", py, 7)


def test_train_on_cifar(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fake_cifar(tmp_path / "c", per_batch=60)
    base = ["train", "toy.net", "--data", str(tmp_path / "c"), "--epochs", "1", "--colours", "8",
            "--set", "NC=8", "--quiet"]
    assert main([*base, "--out", "run"]) == 0
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["train_patches"] == 12 and meta["val_patches"] == 6  # horses only
    assert "CIFAR-10 horse (py batches" in meta["data_description"]
    assert main([*base, "--category", "ship", "--out", "ships"]) == 0
    assert json.loads((tmp_path / "ships" / "run.json").read_text())["data"]["category"] == "ship"
    assert main([*base, "--category", "pony", "--out", "x"]) == 2
    assert "unknown CIFAR-10 category" in capsys.readouterr().err and not (tmp_path / "x").exists()


# --- patches, palettes -------------------------------------------------------------------------
def test_cut_keeps_validation_band_apart() -> None:
    """Encode each pixel's row in red: validation patches must come from the band's rows only."""
    h, w = 100, 120  # smaller than every scale, so never resized and rows stay exact
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = np.arange(h)[:, None]
    p = patches.cut([img], 500, 500, bands=[0.5])
    hv = max(patches.PATCH, round(h * patches.VAL_FRACTION))
    top = round(h * 0.5)
    val_rows = np.unique(p.val[..., 0])
    train_rows = np.unique(p.train[..., 0])
    assert val_rows.min() >= top and val_rows.max() < top + hv
    assert not set(train_rows) & set(val_rows)
    assert len(p.val) > 0 and len(p.train) > 0


def test_palette_kmeans_and_labels() -> None:
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, (6, 3))
    px = np.clip(centres[rng.integers(0, 6, 5000)] + rng.integers(-3, 4, (5000, 3)), 0, 255).astype(np.uint8)
    a = kmeans_palette(px, 6)
    assert np.array_equal(a, kmeans_palette(px, 6))  # deterministic
    assert a.shape == (6, 3) and a.dtype == np.float32
    assert np.abs(np.sort((a * 256).sum(1)) - np.sort(centres.sum(1))).max() < 10
    img = px[:4096].reshape(4, 32, 32, 3)
    lab = labels(img, a)
    brute = np.linalg.norm(img[..., None, :] / 256.0 - a[None, None, None], axis=-1).argmin(-1)
    assert lab.shape == (4, 32, 32) and (lab == brute).mean() > 0.999


DISTINCT = np.linspace(0, 0.99, 72).reshape(24, 3)  # a palette's colours must differ


@pytest.mark.parametrize("arr, ok", [
    (DISTINCT, True),
    (DISTINCT.reshape(1, 24, 3), True),
    (DISTINCT.reshape(24, 3, 1, 1), True),
    (np.full((24, 3), 0.5), False),  # 24 equal colours
    (DISTINCT + 0j, False),  # complex
    (np.full((24, 4), 0.5), False),
    (np.full((1, 3), 0.5), False),
    (np.full((24, 3), 200.0), False),
    (np.array([[0.1, 0.2, np.nan]] * 4), False),
])
def test_load_palette_shapes(tmp_path: Path, arr: np.ndarray, ok: bool) -> None:
    np.save(tmp_path / "p.npy", arr)
    if ok:
        assert load_palette(tmp_path / "p.npy").shape == (24, 3)
    else:
        with pytest.raises(NetdslError):
            load_palette(tmp_path / "p.npy")


def test_load_palette_refuses_pickles(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(NetdslError, match="cannot read the palette"):
        load_palette(tmp_path / "obj.npy")


def test_cut_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (140, 150 + 10 * i, 3), dtype=np.uint8) for i in range(2)]
    a, b = patches.cut(imgs, 300, 60), patches.cut(imgs, 300, 60)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert a.train.shape == (300, 32, 32, 3) and a.val.shape == (60, 32, 32, 3)


def test_embedded_data_and_cache(tmp_path: Path) -> None:
    a = load_data(DataSpec())
    assert a.train_rgb.shape == (5000, 32, 32, 3) and a.val_rgb.shape == (1000, 32, 32, 3)
    assert a.epoch_size is None and a.per_epoch == 5000
    assert a.palette.shape == (24, 3) and "embedded photographs" in a.description
    cached = list((tmp_path / "cache").glob("embedded-*/*"))
    assert {p.name for p in cached} == {"patches.npz", "palette-k24.npy"}
    b = load_data(DataSpec(max_train=100, max_val=10))  # from the cache now
    assert np.array_equal(a.palette, b.palette) and np.array_equal(a.train_rgb[:100], b.train_rgb)
    t = to_tensors(b)
    assert t.x_train.shape == (100, 1, 32, 32) and t.y_train.shape == (100, 32, 32)
    assert float(t.x_train.max()) < 1 and t.y_train.dtype == torch.int64
    # greyscale = mean of R, G, B over 256, as in the course
    assert torch.allclose(t.x_train[0, 0], torch.from_numpy(b.train_rgb[0].mean(-1) / 256).float())


def test_fresh_patches_pool_every_training_position() -> None:
    """--fresh-patches: every training position of the photographs is a pool (the validation
    band's never among them); 5000 are drawn from it per epoch."""
    fixed, fresh = load_data(DataSpec()), load_data(DataSpec(patches="fresh"))
    assert fresh.epoch_size == 5000 and fresh.per_epoch == 5000 and len(fresh.train_rgb) > 4 * 5000
    assert np.array_equal(fresh.val_rgb, fixed.val_rgb)  # one validation set for both
    pool = {p.tobytes() for p in fresh.train_rgb}
    assert all(p.tobytes() in pool for p in fixed.train_rgb[:500])  # the fixed set is drawn from the pool
    assert not any(p.tobytes() in pool for p in fresh.val_rgb[:200])
    t = to_tensors(fresh)
    assert t.epoch_size == 5000 and t.per_epoch == 5000 and t.to("cpu").epoch_size == 5000
    # run.json written before the option existed: a fixed set, as those runs trained
    assert DataSpec.from_json({k: v for k, v in DataSpec().to_json().items() if k != "patches"}).patches == "fixed"
    with pytest.raises(NetdslError, match="patch mode"):
        load_data(DataSpec(patches="random"))
