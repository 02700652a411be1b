"""Which arithmetic a training run uses, chosen once per run: `--precision auto|fp32|bf16|fp16`.

`auto` (the default) takes mixed precision where the hardware runs it natively, as ultralytics
takes AMP by default on CUDA:
- a CPU with AVX-512 BF16 or AMX: bf16 autocast (oneDNN's bf16 kernels);
- a CPU without them: fp32. bf16 there is emulated: UNet trained 5x slower in bf16 than in fp32
  on an AVX2-only CPU (docs/results.md, "Speed against the course's detector");
- CUDA: bf16 autocast where the GPU has bf16 (compute capability 8.0 and up), else fp16 with a
  gradient scaler.
An explicit choice is taken as given (bf16 on any CPU, for the tests and for checking quality),
except fp16 on a CPU, which is refused: torch's CPU fp16 kernels are slow without AMX-FP16 and
the gradient scaler is CUDA's.

Under autocast, convolutions and matrix products run in 16 bits on 16-bit copies of their
inputs and weights; the parameters, the optimizer's state, BatchNorm's statistics and the loss
stay float32 (the tasks cast the network's outputs to float32 before the loss).

The choice (`Precision`) is printed at the start of a run and recorded in run.json
(`"precision": {"requested", "used", "why"}`); `--resume` keeps the precision the run used.

>>> p = resolve("fp32", "cpu")
>>> (p.used, p.requested, p.scaled)
('fp32', 'fp32', False)
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from netdsl.errors import NetdslError

CHOICES = ("auto", "fp32", "bf16", "fp16")
USED = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A run's arithmetic: `used` (fp32, bf16 or fp16), what was asked for, and why this."""

    used: str
    requested: str
    why: str
    device_type: str = "cpu"

    @property
    def dtype(self) -> torch.dtype | None:
        """autocast's 16-bit type, or None for fp32."""
        return DTYPES.get(self.used)

    @property
    def scaled(self) -> bool:
        """fp16 needs its loss scaled (its gradients underflow); bf16 has float32's range."""
        return self.used == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context a forward pass runs in (nothing for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        """fp16's gradient scaler, None otherwise."""
        return torch.amp.GradScaler(self.device_type) if self.scaled else None

    def to_json(self) -> dict[str, str]:
        return {"requested": self.requested, "used": self.used, "why": self.why}

    def describe(self) -> str:
        """The line a run prints: `precision: bf16 (auto: ...)`."""
        how = "as asked" if self.requested == self.used else f"{self.requested}: {self.why}"
        return f"precision: {self.used} ({how}; --precision fp32 opts out)" if self.used != "fp32" else \
            f"precision: fp32 ({how})"


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bf16() -> str | None:
    """What makes this CPU fast at bf16 (`"AMX"`, `"AVX-512 BF16"`), or None. torch's own checks
    (cpuinfo) first, the kernel's flags where this torch lacks them."""
    checks = (("AMX", "_is_amx_tile_supported", "amx_bf16"), ("AVX-512 BF16", "_is_avx512_bf16_supported", "avx512_bf16"))
    flags: set[str] | None = None
    for name, probe, flag in checks:
        fn = getattr(torch.cpu, probe, None)
        if callable(fn):
            if fn():
                return name
            continue
        flags = _cpu_flags() if flags is None else flags
        if flag in flags:
            return name
    return None


def resolve(requested: str | None, device: torch.device | str) -> Precision:
    """The precision a run on `device` uses for `requested` (None: auto).

    >>> resolve("bf16", "cpu").describe()
    'precision: bf16 (as asked; --precision fp32 opts out)'
    """
    req = requested or "auto"
    if req not in CHOICES:
        raise NetdslError(f"unknown precision {req!r}", hint="auto, fp32, bf16 or fp16")
    kind = torch.device(device).type
    if req == "fp16" and kind != "cuda":
        raise NetdslError("--precision fp16 needs a CUDA device (mixed fp16 on a CPU is slow and has no "
                          "gradient scaler)", hint="use bf16 on a CPU, or --device cuda")
    if req != "auto":
        return Precision(req, req, "asked for", kind)
    if kind == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", req, "this GPU runs bf16", kind)
        return Precision("fp16", req, "this GPU has no bf16: fp16 with a gradient scaler", kind)
    if kind == "cpu":
        have = cpu_bf16()
        if have is not None:
            return Precision("bf16", req, f"this CPU has {have}", kind)
        return Precision("fp32", req, "this CPU has no AVX-512 BF16 or AMX, so bf16 would be emulated and slower", kind)
    return Precision("fp32", req, f"no mixed precision on {kind}", kind)


def of_run(used: str, device: torch.device | str, path: str | None = None) -> Precision:
    """The precision a run was resolved to (its hyper-parameters' `precision`, run.json's on
    `--resume`), on `device`: a run that trained in fp16 needs CUDA to go on.

    >>> of_run("bf16", "cpu").dtype
    torch.bfloat16
    """
    if used not in USED:
        raise NetdslError(f'"train.precision" must be one of {", ".join(USED)}, not {used!r}', path=path,
                          hint="the precision the run was started with")
    kind = torch.device(device).type
    if used == "fp16" and kind != "cuda":
        raise NetdslError("this run trains in fp16, which needs a CUDA device", path=path,
                          hint="--device cuda, or start a new run with --precision bf16 or fp32")
    return Precision(used, used, "as the run was started", kind)
