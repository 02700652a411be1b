"""Where netdsl keeps its caches, and writes that never leave a half-written file behind."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


def cache_dir() -> Path:
    """`$NETDSL_CACHE`, else `$XDG_CACHE_HOME/netdsl`, else `~/.cache/netdsl` (created on demand)."""
    explicit = os.environ.get("NETDSL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netdsl"


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], Any]) -> None:
    """Write through a temp file in the same folder, then rename: readers (and a run resumed after
    SIGKILL) see either the old file or the complete new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_rows_csv(path: Path, row_type: type, rows: Sequence[Any]) -> None:
    """Dataclass rows as CSV with a header of `row_type`'s fields: the first field (the epoch) as
    it is, the others to 6 significant digits (metrics.csv of both trainers)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = [f.name for f in dataclasses.fields(row_type)]
    w.writerow(names)
    for r in rows:
        d = dataclasses.asdict(r)
        w.writerow([d[names[0]]] + [f"{d[k]:.6g}" for k in names[1:]])
    atomic_write_text(path, buf.getvalue())


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


def fingerprint(*arrays: np.ndarray) -> str:
    """A short content hash: lets `--resume` notice that the data under a run has changed."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
