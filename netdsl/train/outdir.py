"""Where `netdsl train` and `netdsl detect` will write: checked before the long work (issue 18).

Import-light (no torch): `netdsl.commands.detect` uses it before anything heavy is imported.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from netdsl.errors import NetdslError


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
