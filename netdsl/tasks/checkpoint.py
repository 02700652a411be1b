"""Training checkpoints: one format for every task, with a `task` field naming the task that wrote it.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (torch's safe loader reads
it): {"format": CHECKPOINT_FORMAT, "task": "colourize" | "detect" | ..., "epoch", "model", ...}, the
rest being the task trainer's own state. Checkpoints written before the format named its task
("netdsl-train-checkpoint-v1" for colourization, "netdsl-detect-checkpoint-v1" for detection) are
read as the new format with the task their format implies, so older runs still resume.
"""
from __future__ import annotations

import contextlib
import pickle
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from netdsl.errors import NetdslError
from netdsl.files import CHECKPOINT_FORMAT, OLD_CHECKPOINT_FORMATS, atomic_write


class NonFiniteLoss(NetdslError):
    """Training diverged; the checkpoint on disk is the last good one."""


def standard_layout(state: dict[str, Any]) -> dict[str, Any]:
    """A state_dict in the standard (contiguous) layout: checkpoints do not depend on channels_last."""
    return {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def header(task: str) -> dict[str, str]:
    """The first entries of every checkpoint `task` writes."""
    return {"format": CHECKPOINT_FORMAT, "task": task}


def save(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (a kill leaves the previous file whole)."""
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: Path, task: str, what: str = "training") -> dict[str, Any]:
    """A checkpoint dict of `task` (in the current format, or an older one read as it), or NetdslError
    for anything torn, foreign or tampered with; `what` names the kind of checkpoint expected
    ("detection training")."""
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before failing
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NetdslError("checkpoint not found", path=str(path)) from None
    except Exception as err:  # zip/pickle errors from truncated or foreign files vary by version
        # torch's own text for a refused pickle advises loading again with weights_only=False, which
        # runs whatever code the file holds: never pass that on, whatever the torch version words it.
        first = re.split(r"(?<=\.)\s", (str(err).strip().splitlines() or [""])[0])[0].rstrip(".")
        if isinstance(err, pickle.UnpicklingError) or re.search(r"weights.?only|trust|pickle", first, re.I):
            first = "torch's safe loader refuses its contents"
        elif isinstance(err, EOFError):
            first = "the file ends early"
        elif not first or len(first) > 160:
            first = type(err).__name__
        raise NetdslError(f"corrupt or unreadable checkpoint, or not a netdsl checkpoint ({first})", path=str(path),
                          hint="delete it to restart that run from its previous checkpoint, or start a new run") from None
    if not isinstance(ckpt, dict) or checkpoint_task(ckpt) != task:
        raise NetdslError(f"not a netdsl {what} checkpoint", path=str(path))
    return {**ckpt, **header(task)}


def checkpoint_task(ckpt: dict[str, Any]) -> str | None:
    """The task a checkpoint belongs to: its `task` field, or the one its older format implies."""
    fmt = ckpt.get("format")
    if fmt == CHECKPOINT_FORMAT:
        task = ckpt.get("task")
        return task if isinstance(task, str) else None
    return OLD_CHECKPOINT_FORMATS.get(fmt) if isinstance(fmt, str) else None


@contextlib.contextmanager
def checkpoint_mismatch(path: str) -> Iterator[None]:
    """Loading a checkpoint into this run's objects: any failure is one NetdslError naming the file
    (every trainer's `restore` runs inside it)."""
    try:
        yield
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise NetdslError(f"checkpoint does not match this run's model: {msg}", path=path,
                          hint="resume with the spec and --set values the run was started with") from None


def restore_torch_rng(cpu: torch.Tensor, cuda: list[torch.Tensor] | None) -> None:
    """torch's generators as a checkpoint saved them (CUDA's only where there is CUDA)."""
    torch.set_rng_state(cpu)
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
