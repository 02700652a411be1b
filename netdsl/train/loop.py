"""The training loop: any `nn.Module` mapping `[N, 1, 32, 32]` to per-pixel colour scores
`[N, K, 32, 32]`, trained with per-pixel cross-entropy, Adam, reshuffled mini-batches.

Everything that decides the next epoch's numbers (weights, optimiser moments, the shuffle
generator, torch's global RNG) goes into `Trainer.state()`, so a run restored from a checkpoint
continues exactly as if it had never stopped.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from netdsl.backends.torch_module import CompiledNet
from netdsl.errors import NetdslError, Span
from netdsl.train.data import Tensors
from netdsl.train.distributed import Dist

CHECKPOINT_FORMAT = "netdsl-train-checkpoint-v1"
EVAL_BATCH = 500


@dataclass(frozen=True)
class Hyper:
    epochs: int = 25
    batch_size: int = 100
    lr: float = 1e-3
    seed: int = 0


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


class NonFiniteLoss(NetdslError):
    """Training diverged; the checkpoint on disk is the last good one."""


def check_model(model: nn.Module, num_colours: int, name: str, in_channels: int = 1, size: int = 32,
                path: str | None = None) -> None:
    """Refuse a model whose output is not `[N, num_colours, size, size]` for greyscale input.

    A `CompiledNet` (what `netdsl.build` gives) is first held to the input its spec declares, its
    errors hint at the `--set` that fixes them and point at the spec's output. Any other
    `nn.Module` (the loop trains any; tests and library users pass their own) declares nothing:
    it is only run on a probe batch, and its errors carry the generic hints.
    """
    net = model if isinstance(model, CompiledNet) else None
    if net is not None:
        _check_declared(net, name, in_channels, size, path)
    was_training = model.training
    model.eval()  # no batch statistics or dropout: the probe must not touch state or RNG
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, in_channels, size, size, device=_device_of(model)))
    except Exception as err:  # a shape error inside the model surfaces as a RuntimeError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NetdslError(f"{name} cannot run on input [N, {in_channels}, {size}, {size}]: {first}",
                          path=path) from None
    finally:
        model.train(was_training)
    want = (num_colours, size, size)
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or tuple(out.shape[1:]) != want:
        got = "[N, " + ", ".join(map(str, out.shape[1:])) + "]" if isinstance(out, torch.Tensor) else type(out).__name__
        hint = "training needs one score per palette colour at every pixel"
        if isinstance(out, torch.Tensor) and out.dim() == 4 and tuple(out.shape[2:]) != (size, size):
            hint += "; the spatial size changed, so check the padding for the kernel size (--set k=...)"
        elif isinstance(out, torch.Tensor) and out.dim() == 4 and net is not None:
            hint = _param_hint(net, int(out.shape[1]), num_colours) or hint
        err = NetdslError(f"{name}'s output is {got} for input [N, {in_channels}, {size}, {size}]; "
                          f"expected [N, {num_colours}, {size}, {size}] ({num_colours} palette colours)",
                          _output_span(net), hint=hint, path=path)
        raise err.with_source(path, _read(path) if err.span else None)


def _check_declared(net: CompiledNet, name: str, in_channels: int, size: int, path: str | None) -> None:
    """The input a compiled spec declares must be the data's: `in_channels` x `size` x `size`."""
    if net.in_channels != in_channels:
        raise NetdslError(f"{name} takes {net.in_channels} input channels, but the training data is "
                          f"greyscale ([N, {in_channels}, {size}, {size}])",
                          hint=_param_hint(net, net.in_channels, in_channels), path=path)
    shape = net.input_shape
    if len(shape) == 3 and tuple(shape[1:]) != (size, size):
        fix = " ".join(f"--set {k}={size}" for k in ("H", "W") if net.params.get(k, size) != size)
        raise NetdslError(f"{name} declares input [{', '.join(map(str, shape))}], but the training data is "
                          f"[{in_channels}, {size}, {size}]", path=path,
                          hint=fix or f"the data's patches are {size}x{size}")


def _output_span(net: CompiledNet | None) -> Span | None:
    """Where a compiled spec defines its output, so the error can point at it (None for other modules)."""
    return net.concrete.outputs[0].span if net is not None else None


def _read(path: str | None) -> str | None:
    try:
        return open(path, encoding="utf-8").read() if path else None
    except (OSError, UnicodeDecodeError):
        return None


def _param_hint(net: CompiledNet, have: int, want: int) -> str | None:
    """`--set NAME=want` when exactly one parameter (not H or W) of the spec is `have`."""
    names = [k for k, v in net.params.items() if v == have and k not in ("H", "W")]
    if len(names) == 1:
        return f"--set {names[0]}={want}"
    return None


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class Trainer:
    def __init__(self, model: nn.Module, data: Tensors, hyper: Hyper,
                 device: torch.device | str = "cpu", dist: Dist | None = None) -> None:
        self.device = torch.device(device)
        self.dist = dist or Dist()
        self.module = model.to(self.device)  # the bare module: what checkpoints hold
        self.model: nn.Module = self.dist.wrap(self.module, self.device)
        self.data = data.to(self.device)
        self.hyper = hyper
        # Frozen parameters (`@freeze`, `--freeze`) are not the optimizer's: no update, no state.
        self.optimizer = torch.optim.Adam([p for p in self.module.parameters() if p.requires_grad], lr=hyper.lr)
        self.shuffle = torch.Generator().manual_seed(hyper.seed)  # CPU: same stream on any device
        self.history = History()

    @property
    def epoch(self) -> int:
        return len(self.history.rows)

    def train_epoch(self, on_batch: Callable[[int], None] | None = None) -> tuple[float, float]:
        """(mean per-pixel loss, samples/s). One global batch = `batch_size` samples across ranks."""
        model, opt, data = self.model, self.optimizer, self.data
        model.train()
        n = len(data.x_train)
        perm = torch.randperm(n, generator=self.shuffle).to(self.device)
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
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)  # no .item(): a per-batch sync would cost on a GPU
            seen += len(idx)
            if on_batch is not None:
                on_batch(min(i + bs, n))
        totals = self.dist.sum(torch.stack([total, torch.tensor(float(seen), device=self.device, dtype=torch.float64)]))
        elapsed = time.perf_counter() - start
        return float(totals[0] / totals[1]), n / max(elapsed, 1e-9)

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """(mean per-pixel cross-entropy, per-pixel accuracy) on this rank's share, summed over ranks."""
        self.module.eval()
        x_all, y_all = self.data.x_val, self.data.y_val
        if self.dist.world > 1:
            x_all, y_all = x_all[self.dist.rank::self.dist.world], y_all[self.dist.rank::self.dist.world]
        sums = torch.zeros(3, device=self.device, dtype=torch.float64)
        for i in range(0, len(x_all), EVAL_BATCH):
            x, y = x_all[i:i + EVAL_BATCH], y_all[i:i + EVAL_BATCH]
            out = self.module(x)
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

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.module.eval()
        return self.module(x.to(self.device)).argmax(1).cpu()

    # --- checkpoints -------------------------------------------------------------------------
    def state(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Plain tensors, numbers, strings, lists and dicts only: loadable with weights_only=True."""
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "shuffle_rng": self.shuffle.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "history": [asdict(r) for r in self.history.rows],
            "best_val_loss": self.history.best_val_loss,
            "best_epoch": self.history.best_epoch,
            **(extra or {}),
        }

    def restore(self, ckpt: dict[str, Any], path: str) -> None:
        try:
            self.module.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.shuffle.set_state(ckpt["shuffle_rng"])
            torch.set_rng_state(ckpt["torch_rng"])
            if ckpt.get("cuda_rng") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
            rows = [EpochRow(**r) for r in ckpt["history"]]
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise NetdslError(f"checkpoint does not match this run's model: {msg}", path=path,
                              hint="resume with the spec and --set values the run was started with") from None
        if len(rows) != ckpt.get("epoch"):
            raise NetdslError("checkpoint is inconsistent (history and epoch disagree)", path=path)
        self.history = History(rows, float(ckpt["best_val_loss"]), int(ckpt["best_epoch"]))


def fit(model: nn.Module, data: Tensors, hyper: Hyper = Hyper(), *, device: str = "cpu",
        on_epoch: Callable[[Trainer, EpochRow], None] | None = None) -> History:
    """Train in memory, no files: the library entry point (and what tests use with toy models)."""
    trainer = Trainer(model, data, hyper, device)
    while trainer.epoch < hyper.epochs:
        row = trainer.run_epoch()
        if on_epoch:
            on_epoch(trainer, row)
    return trainer.history
