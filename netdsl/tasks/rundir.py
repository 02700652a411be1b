"""What every task's run directory shares: the output place checked before any work, run.json and
group.json read back with their formats, and the directory `--resume` names.

Every run directory holds run.json (`RUN_FORMAT`, with the task's settings), spec.net, metrics.csv,
last.pt / best.pt (see netdsl.tasks.checkpoint), curves.png and samples.png; a comparison of several
runs holds group.json (`GROUP_FORMAT`) and one run directory per member.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from netdsl.errors import NetdslError
from netdsl.files import check_writable

RUN_FORMAT = "netdsl-run-v1"
GROUP_FORMAT = "netdsl-group-v1"
# Flags `--resume` may be combined with; every other setting comes from the run directory.
# `--ema`/`--no-ema` only when it agrees with the run (checked by each task's resume).
RESUME_FLAGS = {"epochs", "device", "quiet", "ema", "compile"}


def ensure_fresh(path: Path) -> None:
    for p in (path, *path.parents):  # a file where a directory must go: say so, not "not empty" later
        if p.is_dir():
            break
        if p.exists() or p.is_symlink():
            kind = "a file" if p.is_file() else "not a directory"
            msg = (f"the output path is {kind}" + (", not a directory" if p.is_file() else "") if p == path
                   else f"{p} is {kind}, so the output directory cannot be made inside it")
            raise NetdslError(msg, path=str(path), hint="choose another --out")
    if path.exists() and any(path.iterdir()):
        raise NetdslError("output directory already exists and is not empty", path=str(path),
                          hint="choose another --out, or continue it with --resume")
    check_writable(path)


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise NetdslError(f"not a netdsl {what} directory ({path.name} is missing)", path=str(path.parent)) from None
    except (OSError, ValueError) as err:
        raise NetdslError(f"cannot read {path.name}: {err}", path=str(path)) from None
    if not isinstance(obj, dict):
        raise NetdslError(f"{path.name} is not a JSON object", path=str(path))
    return obj


def resume_dir(args: argparse.Namespace) -> Path:
    """The run directory `--resume` names, refusing every flag a resumed run takes from run.json."""
    given = [k for k, v in vars(args).items()
             if k not in RESUME_FLAGS | {"resume", "debug", "func", "command"} and v not in (None, [], False)]
    if given:
        flags = ", ".join("SPEC" if g == "specs" else "--" + g.replace("_", "-") for g in given)
        raise NetdslError(f"--resume takes its settings from the run directory; drop {flags}",
                          hint="only --epochs (to extend), --device and --quiet may change")
    root = Path(args.resume)
    if root.exists() and not root.is_dir():
        raise NetdslError("--resume names a file, not a run directory", path=str(root),
                          hint="--resume takes the run directory (the folder holding run.json and last.pt)")
    if not root.is_dir():
        raise NetdslError("run directory not found", path=str(root))
    return root


def run_task(root: Path) -> str | None:
    """The task a run directory (or a comparison's first member) belongs to: run.json's "task", which
    runs of the colourization task written before there were several tasks do not carry."""
    for rj in (root / "run.json", *sorted(root.glob("*/run.json"))[:1]):
        try:
            obj = json.loads(rj.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(obj, dict):
            task = obj.get("task")
            return str(task) if task is not None else None
    return None
