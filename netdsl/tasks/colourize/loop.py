"""The training loop: any `nn.Module` mapping `[N, 1, 32, 32]` to per-pixel colour scores
`[N, K, 32, 32]`, trained with per-pixel cross-entropy, Adam, reshuffled mini-batches.

Everything that decides the next epoch's numbers (weights, optimiser moments, the shuffle
generator, torch's global RNG, the EMA weights) goes into `Trainer.state()`, so a run restored
from a checkpoint continues exactly as if it had never stopped.

Speed (`bench/bench_course.py` measures each lever): the tensors are prepared once and
sliced on the device; the model and its input are channels_last; Adam takes its fused step (one
kernel over all parameters); the loss is summed on the device with no per-step host sync;
validation runs under `torch.inference_mode`. `precision` is resolved before the trainer is made
(`netdsl.tasks.precision`: `netdsl train` takes bf16 autocast by default where the hardware runs it
natively, fp16 with a gradient scaler on GPUs without bf16); `Hyper()`'s own default is fp32.
`compile=True` (`torch.compile`) is opt-in: it costs a compile.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netdsl.errors import NetdslError
from netdsl.tasks.checkpoint import NonFiniteLoss, checkpoint_mismatch, header, restore_torch_rng, standard_layout
from netdsl.tasks.colourize.data import Tensors
from netdsl.tasks.distributed import Dist
from netdsl.tasks.ema import ModelEMA
from netdsl.tasks.precision import of_run

TASK = "colourize"
EVAL_BATCH = 500


@dataclass(frozen=True)
class Hyper:
    epochs: int = 25
    batch_size: int = 100
    lr: float = 1e-3
    seed: int = 0
    # Evaluate and checkpoint an exponential moving average of the weights (see `ema_settings`).
    ema: bool = True
    precision: str = "fp32"  # "bf16"/"fp16": autocast the forward pass (and so the backward); as resolved
    compile: bool = False  # torch.compile the training model (the first steps pay for the compile)
    # Levers that change speed, not results (beyond float rounding); False gives the loop as it was.
    channels_last: bool = True
    fused: bool = True  # Adam's fused step (foreach where the device has no fused kernel)


def ema_settings(steps_per_epoch: int) -> tuple[float, float]:
    """(decay, tau) for `ModelEMA` on a run of `steps_per_epoch` optimiser steps per epoch.

    ultralytics' defaults (0.9999, tau 2000) suit runs of 10^5 steps; a colourization run has
    25 x 50 = 1250, where they would leave the ramp at 0.46 (an average over ~2 steps). Here the
    average spans about one epoch (1 / (1 - decay) = steps_per_epoch: 50 steps at the defaults,
    decay 0.98), and the ramp takes one epoch (tau = steps_per_epoch), so the first epochs'
    averages are not dragged back to the random initial weights. `bench/ema_table.py` measured
    windows of 1, 2 and 4 epochs on UNet: the longer ones score worse and swing more (the
    averaged weights drift away from the live BatchNorm statistics that `ModelEMA` copies).
    """
    s = max(1, steps_per_epoch)
    return 1.0 - 1.0 / s, float(s)


EMA_BN_SAMPLES = 1000  # training samples whose batch statistics the EMA's BatchNorm layers take


@torch.no_grad()
def recompute_bn(module: nn.Module, x: torch.Tensor, batch: int, autocast: Callable[[], Any]) -> None:
    """Give `module`'s BatchNorm layers the running statistics of its own weights: a forward pass
    over `x` with only the BatchNorm layers in training mode and momentum None (an exact average
    over the batches). Averaged weights with the live model's statistics mismatch (the longer the
    average, the worse); nothing else runs in training mode, so no random numbers are drawn."""
    keep = {id(m) for m in getattr(module, "_netdsl_frozen_bn", ())}  # `--freeze-bn eval`: statistics kept
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats and id(m) not in keep]
    if not norms or len(x) == 0:
        return
    module.eval()
    saved = [(m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for i in range(0, len(x), batch):
        with autocast():
            module(x[i:i + batch])
    for m, momentum, tracked in saved:
        m.momentum = momentum
        if tracked is not None and m.num_batches_tracked is not None:
            m.num_batches_tracked.copy_(tracked)
    module.eval()


@dataclass
class EpochRow:
    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    seconds: float
    samples_per_s: float  # training phase only: what the overhead benchmark compares


@dataclass
class History:
    rows: list[EpochRow] = field(default_factory=list)
    best_val_loss: float = math.inf
    best_epoch: int = 0

    @property
    def best(self) -> EpochRow | None:
        """The row of the epoch best.pt holds (lowest validation loss)."""
        return next((r for r in self.rows if r.epoch == self.best_epoch), None)


class Trainer:
    def __init__(self, model: nn.Module, data: Tensors, hyper: Hyper,
                 device: torch.device | str = "cpu", dist: Dist | None = None) -> None:
        self.device = torch.device(device)
        self.dist = dist or Dist()
        self.module = model.to(self.device)  # the bare module: what checkpoints hold
        self.hyper = hyper
        self.precision = of_run(hyper.precision, self.device)
        self.scaler = self.precision.scaler()
        self.memory_format = torch.channels_last if hyper.channels_last else torch.contiguous_format
        if hyper.channels_last:
            self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit memory_format; in place: `model` is `module`
            data = data.map(lambda t: _layout(t, self.memory_format))
        self.data = data.to(self.device)
        self.model: nn.Module = self.dist.wrap(self.module, self.device)
        # Frozen parameters (`@freeze`, `--freeze`) are not the optimizer's: no update, no state.
        self.optimizer = _adam([p for p in self.module.parameters() if p.requires_grad], hyper.lr,
                               hyper.fused, self.device)
        self.shuffle = torch.Generator().manual_seed(hyper.seed)  # CPU: same stream on any device
        self.history = History()
        self.ema: ModelEMA | None = None
        if hyper.ema:
            decay, tau = ema_settings(math.ceil(data.per_epoch / hyper.batch_size))
            self.ema = ModelEMA(self.module, decay=decay, tau=tau)
        self.step_model: Callable[..., Any] = self.model
        self.compile_seconds: float | None = None  # the first compiled step's time, once taken
        if hyper.compile:
            self.step_model = torch.compile(self.model)

    @property
    def eval_module(self) -> nn.Module:
        """The weights that are evaluated, checkpointed as "model" and drawn: the EMA's when on."""
        return self.ema.module if self.ema is not None else self.module

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.precision.autocast()

    @property
    def epoch(self) -> int:
        return len(self.history.rows)

    def train_epoch(self, on_batch: Callable[[int], None] | None = None) -> tuple[float, float]:
        """(mean per-pixel loss, samples/s). One global batch = `batch_size` samples across ranks."""
        model, opt, data, ema = self.step_model, self.optimizer, self.data, self.ema
        self.module.train()
        # With an epoch size (fresh patches), the first `per_epoch` of a permutation of the pool:
        # a new random subset each epoch, in random order, from the one checkpointed generator.
        n = data.per_epoch
        perm = torch.randperm(len(data.x_train), generator=self.shuffle)[:n].to(self.device)
        bs, rank, world = self.hyper.batch_size, self.dist.rank, self.dist.world
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        seen = 0
        start = time.perf_counter()
        for i in range(0, n, bs):  # the last, partial batch is trained on too
            idx = perm[i:i + bs]
            if world > 1:
                if len(idx) < world:  # too few to give every rank one: borrow from the front
                    idx = torch.cat([idx, perm[: world - len(idx)]])
                idx = idx[rank::world]
            x, y = data.x_train[idx], data.y_train[idx]
            if self.memory_format is torch.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            t_step = time.perf_counter() if self.compile_seconds is None and self.hyper.compile else 0.0
            with self.autocast():
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            if self.scaler is not None:  # fp16: a scaled loss; a step that overflowed is skipped
                self.scaler.scale(loss).backward()
                self.scaler.step(opt)
                self.scaler.update()
            else:
                loss.backward()
                opt.step()
            if t_step:
                self.compile_seconds = time.perf_counter() - t_step
            if ema is not None:
                ema.update(self.module)
            total += loss.detach() * len(idx)  # no .item(): a per-batch sync would cost on a GPU
            seen += len(idx)
            if on_batch is not None:
                on_batch(min(i + bs, n))
        totals = self.dist.sum(torch.stack([total, torch.tensor(float(seen), device=self.device, dtype=torch.float64)]))
        elapsed = time.perf_counter() - start
        return float(totals[0] / totals[1]), n / max(elapsed, 1e-9)

    def recompute_ema_bn(self, module: nn.Module | None = None) -> None:
        """An EMA's BatchNorm statistics, from the first `EMA_BN_SAMPLES` training samples (fixed:
        no random numbers; each EMA update copies the live statistics back).

        Not part of `run_epoch`: `bench/ema_table.py` measured it (the "+BN" columns) and it helps
        only the first two epochs (when the live statistics still lag), is neutral afterwards, and
        costs a forward pass over 1000 samples per epoch."""
        x = self.data.x_train[:EMA_BN_SAMPLES]
        if self.memory_format is torch.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        recompute_bn(module if module is not None else self.eval_module, x, self.hyper.batch_size, self.autocast)

    @torch.inference_mode()
    def evaluate(self, module: nn.Module | None = None) -> tuple[float, float]:
        """(mean per-pixel cross-entropy, per-pixel accuracy) on this rank's share, summed over ranks,
        of `module` (default: `eval_module`, the EMA's weights when on)."""
        module = self.eval_module if module is None else module
        module.eval()
        x_all, y_all = self.data.x_val, self.data.y_val
        if self.dist.world > 1:
            x_all, y_all = x_all[self.dist.rank::self.dist.world], y_all[self.dist.rank::self.dist.world]
        sums = torch.zeros(3, device=self.device, dtype=torch.float64)
        for i in range(0, len(x_all), EVAL_BATCH):
            x, y = x_all[i:i + EVAL_BATCH], y_all[i:i + EVAL_BATCH]
            if self.memory_format is torch.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast():
                out = module(x).float()
            sums[0] += F.cross_entropy(out, y, reduction="sum").double()
            sums[1] += (out.argmax(1) == y).sum()
            sums[2] += y.numel()
        sums = self.dist.sum(sums)
        return float(sums[0] / sums[2]), float(sums[1] / sums[2])

    def run_epoch(self, on_batch: Callable[[int], None] | None = None) -> EpochRow:
        t0 = time.perf_counter()
        train_loss, rate = self.train_epoch(on_batch)
        val_loss, val_acc = self.evaluate()
        row = EpochRow(self.epoch + 1, train_loss, val_loss, val_acc, time.perf_counter() - t0, rate)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise NonFiniteLoss(f"the loss became {train_loss if not math.isfinite(train_loss) else val_loss} "
                                f"in epoch {row.epoch}; training stopped",
                                hint="the last good checkpoint is kept; try a lower --lr")
        self.history.rows.append(row)
        if val_loss < self.history.best_val_loss:
            self.history.best_val_loss, self.history.best_epoch = val_loss, row.epoch
        return row

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, module: nn.Module | None = None) -> torch.Tensor:
        """Colour indices per pixel from `module` (default: `eval_module`, the weights now)."""
        module = self.eval_module if module is None else module
        module.eval()
        x = x.to(self.device).contiguous(memory_format=self.memory_format)
        with self.autocast():
            return module(x).float().argmax(1).cpu()

    def best_module(self, best_pt: Path) -> tuple[nn.Module, EpochRow] | None:
        """The weights of `best_pt` (what a user takes from the run) in a copy of the evaluated
        module, and their epoch's row; None where there is no best epoch yet or the file does not
        hold it (a rank that writes nothing, a file removed)."""
        row = self.history.best
        if row is None or not best_pt.is_file():
            return None
        try:
            ckpt = torch.load(best_pt, map_location=self.device, weights_only=True)
            if not isinstance(ckpt, dict) or ckpt.get("epoch") != row.epoch:
                return None
            module = copy.deepcopy(self.eval_module)
            module.load_state_dict(ckpt["model"])
        except Exception:  # any unreadable file: the caller draws the weights it has and says so
            return None
        return module, row

    # --- checkpoints -------------------------------------------------------------------------
    def state(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Plain tensors, numbers, strings, lists and dicts only: loadable with weights_only=True.

        "model" holds the weights that were evaluated (the EMA's when on: what `--weights best.pt`
        should load); with EMA, "live" holds the trained weights that `--resume` continues from and
        "ema" the average's position (updates, decay, tau)."""
        ema = {}
        if self.ema is not None:
            e = self.ema.state_dict()
            ema = {"live": standard_layout(self.module.state_dict()),
                   "ema": {"updates": e["updates"], "decay": e["decay"], "tau": e["tau"]}}
        return {
            **header(TASK),
            "epoch": self.epoch,
            "model": standard_layout(self.eval_module.state_dict()),
            **ema,
            "optimizer": self.optimizer.state_dict(),
            "shuffle_rng": self.shuffle.get_state(),
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "history": [asdict(r) for r in self.history.rows],
            "best_val_loss": self.history.best_val_loss,
            "best_epoch": self.history.best_epoch,
            **(extra or {}),
        }

    def restore(self, ckpt: dict[str, Any], path: str) -> None:
        with checkpoint_mismatch(path):
            if self.ema is not None:
                if "ema" not in ckpt or "live" not in ckpt:
                    raise KeyError("ema (the checkpoint was written without --ema)")
                self.module.load_state_dict(ckpt["live"])
                self.ema.load_state_dict({"module": ckpt["model"], **ckpt["ema"]})
            else:
                if "ema" in ckpt:
                    raise KeyError("the checkpoint was written with --ema")
                self.module.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.shuffle.set_state(ckpt["shuffle_rng"])
            if self.scaler is not None and "scaler" in ckpt:
                self.scaler.load_state_dict(ckpt["scaler"])
            restore_torch_rng(ckpt["torch_rng"], ckpt.get("cuda_rng"))
            rows = [EpochRow(**r) for r in ckpt["history"]]
        if len(rows) != ckpt.get("epoch"):
            raise NetdslError("checkpoint is inconsistent (history and epoch disagree)", path=path)
        self.history = History(rows, float(ckpt["best_val_loss"]), int(ckpt["best_epoch"]))


def _layout(t: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    return t.contiguous(memory_format=fmt) if t.dim() == 4 else t


def _adam(params: list[nn.Parameter], lr: float, fused: bool, device: torch.device) -> torch.optim.Optimizer:
    """Adam with its fused step when asked for and the device has one, else foreach, else the loop."""
    if fused:
        for make in (lambda: torch.optim.Adam(params, lr=lr, fused=True),
                     lambda: torch.optim.Adam(params, lr=lr, foreach=True)):
            try:
                return make()
            except (RuntimeError, TypeError, ValueError):  # no such kernel for this device or torch
                continue
    return torch.optim.Adam(params, lr=lr)


def fit(model: nn.Module, data: Tensors, hyper: Hyper = Hyper(), *, device: str = "cpu",
        on_epoch: Callable[[Trainer, EpochRow], None] | None = None) -> History:
    """Train in memory, no files: the library entry point (and what tests use with toy models)."""
    trainer = Trainer(model, data, hyper, device)
    while trainer.epoch < hyper.epochs:
        row = trainer.run_epoch()
        if on_epoch:
            on_epoch(trainer, row)
    return trainer.history
