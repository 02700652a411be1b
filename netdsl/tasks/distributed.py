"""Multi-process training under `torchrun`: DistributedDataParallel over gloo (CPU) or nccl (GPU).

Every rank holds all data in memory and draws the same permutation from the same seeded
generator; each trains on its slice of every global batch, so a run with N ranks takes the same
number of optimiser steps as a single-process run. Only rank 0 prints and writes files.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from netdsl.errors import NetdslError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        if self.world == 1:
            return module
        # A 1-input-channel conv's weight has ambiguous strides; DDP warns, harmlessly, every run.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            t = t.clone()
            tdist.all_reduce(t)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            tdist.barrier()


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str | None) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes in the environment (or run alone)."""
    want = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not under_torchrun():
        return Dist(), torch.device(want)
    dist = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if want.startswith("cuda"):
        torch.cuda.set_device(dist.local_rank)
        dev = torch.device("cuda", dist.local_rank)
    else:
        dev = torch.device("cpu")
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dist, dev


def shutdown() -> None:
    if under_torchrun():
        if tdist.is_initialized():
            tdist.destroy_process_group()


def device_ok(name: str) -> Any:
    """Validate `--device` before anything is written."""
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise NetdslError(f"unknown device {name!r}", hint="--device cpu or --device cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NetdslError("--device cuda, but torch sees no CUDA GPU", hint="use --device cpu")
    return name
