"""CIFAR-10 from a local copy, in either distribution: python pickles (`cifar-10-batches-py`) or
binary records (`cifar-10-batches-bin`). Training images come from `data_batch_*`, validation from
`test_batch`, as in the course.

The pickles are read with an unpickler that can build numpy arrays and nothing else: pickle can
call any importable function, so an unrestricted load of a downloaded file could run code.
"""
from __future__ import annotations

import io
import pickle
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.errors import NetdslError

CATEGORIES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
RECORD = 1 + 3 * 32 * 32


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    import codecs

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # bytes pickled by Python 3 at protocol 2 arrive as codecs.encode(str, "latin1")
        ("_codecs", "encode"): codecs.encode,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer  # type: ignore[attr-defined]  # private, and what the pickles name
    return allowed


class CifarUnpickler(pickle.Unpickler):
    """Admits only the globals a CIFAR batch needs (numpy array and dtype reconstruction)."""

    def __init__(self, file: Any, path: str) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise NetdslError(f"refusing to load {module}.{name} from a pickle: a CIFAR batch holds "
                              "only numpy arrays, lists and strings", path=self._path,
                              hint="this is not a CIFAR-10 python batch; use the original files") from None


def _parse_py(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        obj = CifarUnpickler(io.BytesIO(raw), where).load()
    except NetdslError:
        raise
    except Exception as err:  # truncated or garbled pickles raise many types
        raise NetdslError(f"corrupt CIFAR batch ({type(err).__name__}: {err})", path=where) from None
    if not isinstance(obj, dict):
        raise NetdslError("not a CIFAR batch (expected a dict)", path=where)
    get = lambda k: obj.get(k.encode(), obj.get(k))  # noqa: E731  (py2 pickles have bytes keys)
    data, labels = get("data"), get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or labels is None:
        raise NetdslError("not a CIFAR batch (expected 'data' [N, 3072] and 'labels')", path=where)
    lab = np.asarray(labels, dtype=np.int64)
    if len(lab) != len(data):
        raise NetdslError(f"CIFAR batch has {len(data)} images but {len(lab)} labels", path=where)
    return data.astype(np.uint8, copy=False), lab


def _parse_bin(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(raw) == 0 or len(raw) % RECORD:
        raise NetdslError(f"CIFAR binary batch has {len(raw)} bytes, not a multiple of {RECORD}",
                          path=where, hint="the file is truncated or not a CIFAR-10 binary batch")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    return rec[:, 1:], rec[:, 0].astype(np.int64)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise NetdslError(f"cannot read CIFAR batch: {err.strerror or err}", path=str(path)) from None


def _read_py_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    return _parse_py(_read(path), str(path))


def _read_bin_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    return _parse_bin(_read(path), str(path))


def find_cifar(path: Path) -> tuple[str, Path] | None:
    """('py' | 'bin', folder) when `path` is a CIFAR-10 folder or holds one; else None."""
    for folder in (path, path / "cifar-10-batches-py", path / "cifar-10-batches-bin"):
        if (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file():
            return "py", folder
        if (folder / "data_batch_1.bin").is_file() or (folder / "test_batch.bin").is_file():
            return "bin", folder
    return None


def category_index(category: str) -> int | None:
    """None means all categories."""
    c = category.strip().lower()
    if c == "all":
        return None
    if c.isdigit() and int(c) < len(CATEGORIES):
        return int(c)
    if c in CATEGORIES:
        return CATEGORIES.index(c)
    raise NetdslError(f"unknown CIFAR-10 category {category!r}",
                      hint=f"one of {', '.join(CATEGORIES)}, an index 0-9, or 'all'")


def load_cifar(kind: str, folder: Path, category: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) uint8 `[N, 32, 32, 3]` images of one category (or all)."""
    suffix = ".bin" if kind == "bin" else ""
    read = _read_bin_batch if kind == "bin" else _read_py_batch
    train_files = sorted(folder.glob(f"data_batch_[0-9]{suffix}"))
    test_file = folder / f"test_batch{suffix}"
    if not train_files:
        raise NetdslError(f"no data_batch_N{suffix} files in the CIFAR folder", path=str(folder))
    if not test_file.is_file():
        raise NetdslError(f"test_batch{suffix} is missing from the CIFAR folder", path=str(folder),
                          hint="validation uses the test batch, as in the course")
    return _pick([read(f) for f in train_files], category, str(folder)), \
        _pick([read(test_file)], category, str(folder))


_MEMBER = re.compile(r"(?:^|/)(data_batch_[0-9]|test_batch)(\.bin)?$")


def load_cifar_tar(path: Path, category: int | None) -> tuple[str, np.ndarray, np.ndarray]:
    """The downloaded archive itself (cifar-10-python.tar.gz or cifar-10-binary.tar.gz), read in
    memory: nothing is extracted, so member paths cannot write anywhere."""
    train: list[tuple[np.ndarray, np.ndarray]] = []
    test: list[tuple[np.ndarray, np.ndarray]] = []
    kind = "py"
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in sorted(tar.getmembers(), key=lambda m: m.name):
                hit = _MEMBER.search(m.name)
                if not hit or not m.isfile():
                    continue
                kind = "bin" if hit.group(2) else "py"
                fh = tar.extractfile(m)
                raw = fh.read() if fh else b""
                where = f"{path}:{m.name}"
                batch = _parse_bin(raw, where) if kind == "bin" else _parse_py(raw, where)
                (test if hit.group(1) == "test_batch" else train).append(batch)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise NetdslError(f"cannot read the CIFAR archive: {err}", path=str(path)) from None
    if not train or not test:
        raise NetdslError("the archive holds no CIFAR-10 data_batch_N and test_batch files", path=str(path),
                          hint="use cifar-10-python.tar.gz or cifar-10-binary.tar.gz, or an extracted folder")
    return kind, _pick(train, category, str(path)), _pick(test, category, str(path))


def _pick(batches: list[tuple[np.ndarray, np.ndarray]], category: int | None, where: str) -> np.ndarray:
    parts = []
    for data, lab in batches:
        if lab.min(initial=0) < 0 or lab.max(initial=0) >= len(CATEGORIES):
            raise NetdslError("CIFAR batch has labels outside 0-9", path=where)
        parts.append(data if category is None else data[lab == category])
    flat = np.concatenate(parts)
    return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
