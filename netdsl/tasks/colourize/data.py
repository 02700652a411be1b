"""Resolve `--data` / `--palette` into in-memory training tensors, building and caching patch sets
and palettes on first use."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netdsl.errors import NetdslError
from netdsl.files import atomic_save_npy, atomic_save_npz, cache_dir, fingerprint
from netdsl.tasks.colourize import cifar, patches
from netdsl.tasks.colourize import palette as pal

N_TRAIN = 5000  # training patches: the fixed set, or those drawn per epoch from the pool
N_VAL = 1000
# Fresh patches (opt-in): the pool is every training position of the photographs (21,773 for the
# embedded ones; a folder of many images has far more than one fixed set of 5000 can show), and
# each epoch trains on N_TRAIN of them drawn anew. On the embedded data it neither steadied the
# validation loss nor separated the seed networks better (docs/results.md, "Embedded data"), so the
# default stays the course's one fixed set.
N_POOL = 100_000
PATCH_MODES = ("fresh", "fixed")


def per_epoch(available: int, epoch_size: int | None) -> int:
    """How many training samples an epoch uses: all, or `epoch_size` drawn from them."""
    return available if epoch_size is None else min(epoch_size, available)


@dataclass(frozen=True)
class DataSpec:
    """What the user asked for; stored in run.json so `--resume` rebuilds the same data."""

    path: str | None = None  # None: the embedded photographs
    category: str | None = None  # CIFAR only; None: horse, as in the course
    colours: int = 24
    palette: str | None = None  # a .npy file; None: k-means on the training pixels
    max_train: int | None = None
    max_val: int | None = None
    # Photographs and image folders: "fixed" cuts one set of N_TRAIN, as the course trained on a
    # fixed set; "fresh" draws each epoch's N_TRAIN patches anew from every training position.
    # CIFAR-10 has no positions to draw from: every image, every epoch, either way.
    patches: str = "fixed"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DataSpec:
        return cls(**{k: obj.get(k, getattr(cls, k)) for k in cls.__dataclass_fields__})


@dataclass
class ColourData:
    train_rgb: np.ndarray  # uint8 [N, 32, 32, 3]
    val_rgb: np.ndarray
    palette: np.ndarray  # float32 [K, 3], 8-bit values / 256
    description: str
    epoch_size: int | None = None  # patches drawn from train_rgb per epoch; None: all of them

    @property
    def per_epoch(self) -> int:
        return per_epoch(len(self.train_rgb), self.epoch_size)

    def fingerprint(self) -> str:
        return fingerprint(self.train_rgb, self.val_rgb, self.palette)


@dataclass
class Tensors:
    x_train: torch.Tensor  # float32 [N, 1, 32, 32]: mean of R, G, B, each / 256
    y_train: torch.Tensor  # int64 [N, 32, 32]: palette index
    x_val: torch.Tensor
    y_val: torch.Tensor
    epoch_size: int | None = None  # samples drawn from x_train per epoch; None: all, reshuffled

    def to(self, device: Any) -> Tensors:
        return self.map(lambda t: t.to(device))

    def map(self, f: Any) -> Tensors:
        """The same data with `f` applied to each tensor (device, memory layout)."""
        return Tensors(f(self.x_train), f(self.y_train), f(self.x_val), f(self.y_val), self.epoch_size)

    @property
    def per_epoch(self) -> int:
        return per_epoch(len(self.x_train), self.epoch_size)


def _hash_files(files: list[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def _cached_patches(key: str, build: Any) -> tuple[patches.Patches, Path]:
    folder = cache_dir() / key
    f = folder / "patches.npz"
    if f.is_file():
        try:
            with np.load(f, allow_pickle=False) as z:
                return patches.Patches(z["train"], z["val"]), folder
        except Exception:  # a damaged cache is rebuilt, not an error: it is ours, not the user's
            pass
    p = build()
    atomic_save_npz(f, train=p.train, val=p.val)
    return p, folder


@dataclass
class _Source:
    train: np.ndarray
    val: np.ndarray
    folder: Path | None  # the cache folder for the palette
    description: str
    pool: bool = False  # train is a pool of positions to draw each epoch's patches from
    palette_pixels: np.ndarray | None = None  # what k-means runs on; None: train


def _photographs(kind: str, files: list[Path], bands: list[float] | None, fresh: bool,
                 description: str) -> _Source:
    """One fixed cut (its validation set and palette serve both modes, so fresh and fixed runs
    are compared on the same validation patches and colours) and, for fresh patches, a cut of
    every training position."""
    def cut(n_train: int, n_val: int, recipe: str) -> tuple[patches.Patches, Path]:
        key = f"{kind}-{recipe}-{_hash_files(files, kind)}"
        return _cached_patches(key, lambda: patches.cut([patches.read_rgb(f) for f in files], n_train, n_val, bands))

    fixed, folder = cut(N_TRAIN, N_VAL, patches.RECIPE)
    if not fresh:
        return _Source(fixed.train, fixed.val, folder, description)
    pool, _ = cut(N_POOL, 0, f"{patches.RECIPE}-pool")
    return _Source(pool.train, fixed.val, folder, description, pool=True, palette_pixels=fixed.train)


def _source(spec: DataSpec) -> _Source:
    fresh = spec.patches == "fresh"
    if spec.path is None:
        files = patches.embedded_files()
        return _photographs("embedded", files, [b for _, b in patches.EMBEDDED_IMAGES], fresh,
                            f"embedded photographs ({len(files)} scikit-image images)")
    root = Path(spec.path).expanduser()
    if not root.exists():
        raise NetdslError("data path does not exist", path=str(root),
                          hint="a CIFAR-10 folder (python or binary batches) or a folder of images")
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz", ".tar")):
        cat = cifar.category_index(spec.category or "horse")
        kind, train, val = cifar.load_cifar_tar(root, cat)
        name = "all categories" if cat is None else cifar.CATEGORIES[cat]
        if len(train) == 0 or len(val) == 0:
            raise NetdslError(f"no {name} images in the CIFAR archive", path=str(root))
        key = f"cifar-{_hash_files([root], f'tar|{cat}')}"
        return _Source(train, val, cache_dir() / key, f"CIFAR-10 {name} ({kind} batches in {root})")
    if not root.is_dir():
        raise NetdslError("data path is not a folder or a CIFAR-10 archive", path=str(root),
                          hint="point --data at the folder that holds the CIFAR batches or the images, "
                               "or at cifar-10-python.tar.gz")
    try:
        found = cifar.find_cifar(root)
    except PermissionError as err:
        raise NetdslError(f"cannot read the data folder: {err.strerror}", path=str(root)) from None
    if found:
        kind, folder = found
        cat = cifar.category_index(spec.category or "horse")
        train, val = cifar.load_cifar(kind, folder, cat)
        name = "all categories" if cat is None else cifar.CATEGORIES[cat]
        if len(train) == 0 or len(val) == 0:
            raise NetdslError(f"no {name} images in the CIFAR batches", path=str(folder))
        batch_files = sorted(folder.glob("*_batch*"))
        key = f"cifar-{_hash_files(batch_files, f'{kind}|{cat}')}"
        return _Source(train, val, cache_dir() / key, f"CIFAR-10 {name} ({kind} batches in {folder})")
    if spec.category is not None:
        raise NetdslError("--category applies to CIFAR-10 data, but this folder holds no CIFAR batches",
                          path=str(root), hint="drop --category, or point --data at cifar-10-batches-py or -bin")
    try:
        files = patches.folder_files(root)
    except PermissionError as err:
        raise NetdslError(f"cannot read the data folder: {err.strerror}", path=str(root)) from None
    return _photographs("images", files, None, fresh, f"{len(files)} images in {root}")


def load_data(spec: DataSpec, palette_override: np.ndarray | None = None) -> ColourData:
    """Everything is validated here, before a run directory exists."""
    if spec.palette is not None and palette_override is None:
        palette_override = pal.load_palette(spec.palette)  # cheap check first: fail fast
    if not 2 <= spec.colours <= 256:
        raise NetdslError(f"--colours {spec.colours} is out of range", hint="use 2 to 256 colours")
    if spec.patches not in PATCH_MODES:
        raise NetdslError(f"unknown patch mode {spec.patches!r}", hint="fresh or fixed")
    src = _source(spec)
    train, val, folder = src.train, src.val, src.folder
    if len(train) == 0 or len(val) == 0:
        raise NetdslError(f"the data gives {len(train)} training and {len(val)} validation patches; "
                          "both must be non-empty", path=spec.path,
                          hint="add more or larger images (validation uses the bottom quarter of each)")
    palette: np.ndarray | None
    if palette_override is not None:
        palette = palette_override
    else:
        assert folder is not None
        pf = folder / f"palette-k{spec.colours}.npy"
        palette = None
        if pf.is_file():
            try:
                palette = pal.load_palette(pf)
            except NetdslError:
                palette = None  # damaged cache: recompute
        if palette is None or len(palette) != spec.colours:
            palette = pal.kmeans_palette(train if src.palette_pixels is None else src.palette_pixels, spec.colours)
            atomic_save_npy(pf, palette)
    if spec.max_train is not None:
        train = train[: spec.max_train]
    if spec.max_val is not None:
        val = val[: spec.max_val]
    assert palette is not None  # given, read from the cache, or computed
    return ColourData(train, val, palette, src.description, N_TRAIN if src.pool else None)


def to_tensors(data: ColourData) -> Tensors:
    def grey(rgb: np.ndarray) -> torch.Tensor:
        g = rgb.astype(np.float32).mean(axis=3, keepdims=True) / pal.MAX_PIXEL
        return torch.from_numpy(np.ascontiguousarray(g.transpose(0, 3, 1, 2)))

    return Tensors(grey(data.train_rgb), torch.from_numpy(pal.labels(data.train_rgb, data.palette)),
                   grey(data.val_rgb), torch.from_numpy(pal.labels(data.val_rgb, data.palette)), data.epoch_size)
