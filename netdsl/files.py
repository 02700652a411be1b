"""Where netdsl keeps its caches, its one file writer (`atomic_write`) and the check that an output
place is writable. `atomic_write` never leaves a half-written file behind, never overwrites a command's
input and never replaces a device or FIFO with a plain file. Import-light (numpy, no torch): every
layer writes through it."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np

from netdsl.errors import NetdslError


def cache_dir() -> Path:
    """`$NETDSL_CACHE`, else `$XDG_CACHE_HOME/netdsl`, else `~/.cache/netdsl` (created on demand)."""
    explicit = os.environ.get("NETDSL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netdsl"


# Training checkpoints (written by netdsl.tasks; netdsl.weights reads the model out of them): the current
# format, which names its task, and the two formats of the colourization and detection trainers before.
CHECKPOINT_FORMAT = "netdsl-checkpoint-v2"
OLD_CHECKPOINT_FORMATS = {"netdsl-train-checkpoint-v1": "colourize", "netdsl-detect-checkpoint-v1": "detect"}
CHECKPOINT_FORMATS = frozenset({CHECKPOINT_FORMAT, *OLD_CHECKPOINT_FORMATS})

OutputPath = Union[str, "os.PathLike[str]"]


def _stat(path: OutputPath) -> os.stat_result | None:
    """`os.stat` following links, or None where nothing is there (a dangling link included)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise NetdslError(f"cannot write the file: {e.strerror}", path=str(path),
                          hint="check the path and its permissions") from None


def _is_stream(st: os.stat_result | None) -> bool:
    return st is not None and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode))


def is_stream(path: OutputPath) -> bool:
    """Whether `path` is a FIFO or character device, which `atomic_write` writes directly."""
    try:
        return _is_stream(os.stat(path))
    except OSError:
        return False


def check_output(path: OutputPath, inputs: Sequence[OutputPath] = ()) -> None:
    """Refuse, as a NetdslError, to write `path` where that would lose data or cannot work.

    Refused: a file that is one of `inputs` (compared by device and inode, so a symlink or a hard
    link to it counts too), a folder, a block device or socket, a read-only file or folder. A FIFO
    or character device (`/dev/null`, a terminal, a pipe behind `/dev/stdout`) is accepted: it is
    written directly, see `atomic_write`. Commands call this before their work, `atomic_write`
    again at the end.
    """
    st = _stat(path)
    if st is not None:
        _check_existing(path, st, inputs)
    if not _is_stream(st):  # a new or replacing file is made in the folder, then renamed
        folder = Path(os.path.realpath(path)).parent
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise NetdslError(f"cannot write the file: the folder {folder} is read-only", path=str(path),
                              hint="write somewhere else, or make the folder writable")


def _check_existing(path: OutputPath, st: os.stat_result, inputs: Sequence[OutputPath]) -> None:
    for given in inputs:
        try:
            other = os.stat(given)
        except OSError:  # an input that is not there cannot be lost
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            alias = "" if os.path.abspath(given) == os.path.abspath(path) else f" (as {given})"
            raise NetdslError(f"refusing to overwrite the file being read{alias}", path=str(path),
                              hint="give the output another name")
    if stat.S_ISDIR(st.st_mode):
        raise NetdslError("cannot write the file: it is a folder", path=str(path), hint="give a file name")
    if not (stat.S_ISREG(st.st_mode) or _is_stream(st)):
        kind = "block device" if stat.S_ISBLK(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "special file"
        raise NetdslError(f"refusing to write to a {kind}", path=str(path),
                          hint="give a regular file, a FIFO or /dev/null")
    if not os.access(path, os.W_OK):
        raise NetdslError("cannot write the file: it is read-only", path=str(path),
                          hint="write somewhere else, or make the file writable")


def atomic_write(path: OutputPath, write: Callable[[BinaryIO], Any], *, inputs: Sequence[OutputPath] = (),
                 replace: bool = True) -> None:
    """netdsl's one way to write a file: every output (specs, pictures, ONNX, weights, run files).

    A regular file is written through a temp file in its folder and renamed over it: readers (and
    a run resumed after SIGKILL) see either the old file or the complete new one, never a torn
    one; a symlink is written through (its target replaced, the link kept) and a replaced file
    keeps its permissions. A FIFO or character device is written directly, since renaming onto it
    would swap the device or pipe itself for a plain file (as root, `-o /dev/null` replaced
    /dev/null); the content is made in full in a temp file first, so a failure still writes nothing.
    `check_output` refusals (an input of the command, a read-only target, ...) and OS failures are
    NetdslErrors; with `replace=False` an existing file is refused too, atomically.
    """
    path = Path(path)
    check_output(path, inputs)
    try:
        if _is_stream(_stat(path)):
            _write_stream(path, write)
        else:
            _write_renamed(path, write, replace)
    except OSError as e:
        raise NetdslError(f"cannot write the file: {e.strerror or e}", path=str(path),
                          hint="check the folder, its permissions and the free space") from None


def _write_stream(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    with tempfile.TemporaryFile() as buf:
        write(buf)
        buf.seek(0)
        with open(path, "wb") as fh:
            shutil.copyfileobj(buf, fh)


def _write_renamed(path: Path, write: Callable[[BinaryIO], Any], replace: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    real = Path(os.path.realpath(path))
    old = _stat(real)
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes 0600; run outputs are meant to be shared, a replaced file keeps its mode
        os.chmod(tmp, stat.S_IMODE(old.st_mode) if old is not None else 0o644)
        if replace:
            os.replace(tmp, real)
        else:  # link() fails if the name exists: no window in which another file could be lost
            _link_new(tmp, real, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _link_new(tmp: str, real: Path, path: Path) -> None:
    try:
        os.link(tmp, real)
    except FileExistsError:
        raise NetdslError("the file exists already; it was left as it is", path=str(path),
                          hint="remove it or give another name") from None
    except OSError:  # a file system without hard links: check, then rename (a short window)
        if os.path.lexists(real):
            raise NetdslError("the file exists already; it was left as it is", path=str(path),
                              hint="remove it or give another name") from None
        os.replace(tmp, real)
        return
    os.unlink(tmp)


def atomic_write_text(path: OutputPath, text: str, *, inputs: Sequence[OutputPath] = (), replace: bool = True) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), inputs=inputs, replace=replace)


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
    savez: Callable[..., None] = np.savez  # typed loosely: the arrays' names are keyword arguments
    atomic_write(path, lambda fh: savez(fh, **arrays))


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


def check_writable(path: Path, *, beside: bool = False, flag: str = "--out") -> None:
    """Make and remove a folder where the output directory `path` will be written (in it when it
    exists; `beside`: next to it, where `netdsl detect` builds its results before renaming them
    into place), so an unwritable place is an error now, not a PermissionError after the training
    or the inference. Trying is the only test: root ignores permission bits, a read-only mount
    does not."""
    base = next((p for p in ((*path.parents,) if beside else (path, *path.parents)) if p.is_dir()), Path("."))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".netdsl-probe-", dir=base))
    except OSError as err:
        raise NetdslError(f"cannot write in {base}: {err.strerror or err}", path=str(path),
                          hint=f"choose another {flag}, or make {base} writable") from None
