"""Flag parsing that needs no torch: `--sweep NAME=V1,V2`, run labels (`--set` is parsed once by netdsl.commands.train)."""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from netdsl.errors import NetdslError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Training options a sweep may vary; anything else names a spec parameter.
HYPER_NAMES = {"batch-size": "batch_size", "batch_size": "batch_size", "lr": "lr",
               "epochs": "epochs", "seed": "seed"}
SHORT = {"batch_size": "bs", "lr": "lr", "epochs": "ep", "seed": "seed"}


@dataclass(frozen=True)
class Sweep:
    name: str  # a Hyper field or a spec parameter
    values: tuple[Any, ...]
    hyper: bool


def parse_sweeps(items: list[str] | None) -> list[Sweep]:
    sweeps: list[Sweep] = []
    for item in items or []:
        name, eq, values = item.partition("=")
        name = name.strip()
        field = HYPER_NAMES.get(name)
        if not eq or not (field or _NAME.match(name)):
            raise NetdslError(f"--sweep {item!r}: expected NAME=V1,V2,...",
                              hint="for example --sweep batch-size=32,64,128 or --sweep k=3,5")
        conv = float if field == "lr" else int
        try:
            vals = tuple(conv(v) for v in values.split(",") if v.strip())
        except ValueError:
            raise NetdslError(f"--sweep {item!r}: values must be {'numbers' if conv is float else 'integers'}") from None
        if not vals or len(set(vals)) != len(vals):
            raise NetdslError(f"--sweep {item!r}: give distinct values separated by commas")
        if any(s.name == (field or name) for s in sweeps):
            raise NetdslError(f"--sweep {name} is given twice")
        sweeps.append(Sweep(field or name, vals, field is not None))
    return sweeps


@dataclass(frozen=True)
class Plan:
    label: str
    spec: Path
    sets: dict[str, int]
    hyper: Any  # loop.Hyper; kept untyped so this module needs no torch


def plan_runs(specs: list[str], sets: dict[str, int], sweeps: list[Sweep], hyper: Any) -> list[Plan]:
    """Every spec times every combination of sweep values, with short unique labels."""
    stems = [Path(s).stem for s in specs]
    labels = [s if stems.count(s) == 1 else f"{s}{i + 1}" for i, s in enumerate(stems)]
    plans: list[Plan] = []
    for spec, base in zip(specs, labels):
        for combo in itertools.product(*(s.values for s in sweeps)):
            h, st, label = hyper, dict(sets), base
            for sw, v in zip(sweeps, combo):
                if sw.hyper:
                    h = replace(h, **{sw.name: v})
                    label += f"-{SHORT[sw.name]}{v:g}" if isinstance(v, float) else f"-{SHORT[sw.name]}{v}"
                else:
                    st[sw.name] = v
                    label += f"-{sw.name}{v}"
            plans.append(Plan(label, Path(spec), st, h))
    return plans


def check_hyper(h: Any) -> None:
    if h.epochs < 1:
        raise NetdslError(f"--epochs {h.epochs}: need at least 1")
    if h.batch_size < 1:
        raise NetdslError(f"--batch-size {h.batch_size}: need at least 1")
    if not (math.isfinite(h.lr) and h.lr > 0):
        raise NetdslError(f"--lr {h.lr}: need a positive number")
    if h.seed < 0:
        raise NetdslError(f"--seed {h.seed}: need a non-negative integer")
