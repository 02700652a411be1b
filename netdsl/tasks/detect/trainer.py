"""Detection training: SGD on `yolo_loss` with ultralytics v9.6.0's schedule.

Written from the method's description (hyp.scratch.yaml and train.py's documented behaviour), not
from ultralytics' GPL code:

- three parameter groups: BatchNorm weights (no decay), other weights (weight decay), biases (no
  decay); SGD with Nesterov momentum; frozen parameters (`requires_grad=False`) are in none;
- nominal batch 64: gradients of `accumulate = round(64 / batch)` batches are summed before a step,
  and the weight decay is scaled by `batch * accumulate / 64`;
- warmup over `max(round(warmup_epochs * nb), 1000)` iterations (nb: batches an epoch; v9.6.0's
  1000-iteration minimum, which also holds for `warmup_epochs: 0`): `accumulate` ramps from 1,
  the bias lr falls from `warmup_bias_lr` and the other lrs rise from 0 to their scheduled value,
  momentum rises from `warmup_momentum`; an optimizer step once `accumulate` iterations have
  passed since the last one (`ni - last_step >= accumulate`, counted across epochs); gradients
  left over at an epoch's end are dropped when the next epoch starts (v9.6.0 zeroes them there);
- after each epoch lr = lr0 * lf(epoch): cosine by default, as v9.6.0 ran (`one_cycle`:
  lf(x) = (1 - cos(x * pi / epochs)) / 2 * (lrf - 1) + 1), or linear with `DetHyper.linear_lr`
  (v9.6.0's `--linear-lr`: lf(x) = (1 - x / (epochs - 1)) * (1 - lrf) + lrf);
- loss gains rescaled: box *= 3/nl, cls *= nc/80 * 3/nl, obj *= (img/640)^2 * 3/nl;
- an exponential moving average of the weights (`DetHyper.ema`, on by default as in ultralytics:
  decay 0.9999 ramped by `1 - exp(-updates / 2000)`, one update after every optimizer step,
  `netdsl.tasks.ema.ModelEMA`): validation, mAP, samples.png and the checkpoints' `model` entry
  use the averaged weights (ultralytics saves its EMA as the model), so `netdsl detect --weights
  best.pt` and `--weights` fine-tuning start from them. Unlike ultralytics' EMA, BatchNorm's
  running statistics are copied from the live model, not averaged, and frozen parameters are
  copied too, so they stay bit-identical.

Several processes (`dist`, under torchrun): every rank builds the same model and draws the same
image order; each global batch of `batch_size` images is split across the ranks (rank r takes
every world-th image from r), DistributedDataParallel averages the gradients and the loss is
multiplied by the world size (as ultralytics does), so the sum over the global batch is what is
optimised, as in one process; BatchNorm's statistics are each rank's own (no SyncBatchNorm).
Every rank keeps the EMA; rank 0 alone validates (the others record zeros) and writes files.

Validation (`netdsl.tasks.detect.validate`) scores as v9.6.0's val.py does during training:
rectangular letterboxed batches of twice the training batch, multi-label NMS at conf 0.001 and
IoU 0.6, val.py's matching and AP; COCOeval's figures are kept beside them (`coco_map50`,
`coco_map50_95`).

Mixed precision (`DetHyper.precision`, resolved by `netdsl.tasks.precision`: bf16 on CPUs with
AVX-512 BF16 or AMX and on bf16 GPUs, fp16 with a gradient scaler on other GPUs, else fp32): the
training's forward pass runs under autocast, the loss on the head's outputs cast to float32
(ultralytics runs its loss under autocast too; box and IoU arithmetic in 16 bits is what the cast
avoids). Validation and `predict_letterboxed` run in float32: the heads decode boxes in their
input's type, and bf16's 8-bit mantissa would move a box edge at x = 500 px by up to 2 px, which
mAP@0.5:0.95 sees.

Not done (as of this module): multi-scale, SyncBatchNorm.

`DetTrainer.state()` holds everything that decides the next epoch (live and averaged weights,
optimizer, `accumulate` and the last step's iteration, the EMA's update count, torch's RNG (and
the epoch's unstepped gradients, which the next epoch drops, kept for the format); the data order
and augmentation are functions of (seed, epoch, index)), so a resumed run repeats an
uninterrupted one exactly on CPU.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from netdsl.errors import NetdslError
from netdsl.tasks.checkpoint import NonFiniteLoss, checkpoint_mismatch, header, restore_torch_rng, standard_layout
from netdsl.tasks.detect.data import DetectionData, DetectionSet, collate
from netdsl.tasks.detect.hyp import loss_gains
from netdsl.tasks.detect.loss import head_geometry, yolo_loss
from netdsl.tasks.detect.predict import protocol
from netdsl.tasks.detect.validate import RectLoader, eval_parts, validate
from netdsl.tasks.distributed import Dist
from netdsl.tasks.ema import ModelEMA
from netdsl.tasks.precision import of_run

TASK = "detect"
NOMINAL_BATCH = 64
EMA_DECAY, EMA_TAU = 0.9999, 2000.0  # ultralytics' ModelEMA
WARMUP_MIN = 1000  # v9.6.0 train.py: warmup iterations at least

def param_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """Trainable (BatchNorm weights, other weights, biases): ultralytics' pg0, pg1, pg2."""
    bn: list[nn.Parameter] = []
    weights: list[nn.Parameter] = []
    biases: list[nn.Parameter] = []
    seen: set[int] = set()

    def put(group: list[nn.Parameter], p: Any) -> None:
        if isinstance(p, nn.Parameter) and p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            group.append(p)

    for m in model.modules():
        put(biases, getattr(m, "bias", None))
        put(bn if isinstance(m, nn.modules.batchnorm._BatchNorm) else weights, getattr(m, "weight", None))
    for p in model.parameters():  # anything not called weight or bias decays, as a weight
        put(weights, p)
    return bn, weights, biases


@dataclass(frozen=True)
class DetHyper:
    epochs: int = 30
    batch_size: int = 16
    img: int = 640
    seed: int = 0
    ema: bool = True
    linear_lr: bool = False  # v9.6.0's --linear-lr; cosine (its default) otherwise
    precision: str = "fp32"  # as resolved (netdsl.tasks.precision); runs from before it trained in fp32
    channels_last: bool = True  # the model and its input in NHWC (oneDNN's faster layout); runs from before: False


@dataclass
class DetRow:
    LOSSES: ClassVar[tuple[str, str, str]] = ("box", "obj", "cls")
    epoch: int
    box: float
    obj: float
    cls: float
    val_box: float
    val_obj: float
    val_cls: float
    precision: float
    recall: float
    map50: float
    map50_95: float
    lr: float
    seconds: float
    samples_per_s: float
    # COCOeval's figures on the same detections (absent from checkpoints written before they were measured)
    coco_map50: float = 0.0
    coco_map50_95: float = 0.0


@dataclass
class DetHistory:
    rows: list[Any] = field(default_factory=list)  # DetRow (trainer_v8: V8Row)
    best_map: float = -1.0
    best_epoch: int = 0


def truth(targets: torch.Tensor, n: int, img: int) -> list[dict[str, Any]]:
    """Per image of a batch the ground truth `evaluate` takes, in letterboxed pixels."""
    t = targets.detach().cpu().double()
    out = []
    for j in range(n):
        r = t[t[:, 0] == j]
        xy, wh = r[:, 2:4] * img, r[:, 4:6] * img
        out.append({"height": img, "width": img, "boxes": torch.cat((xy - wh / 2, xy + wh / 2), 1).numpy(),
                    "classes": r[:, 1].numpy()})
    return out


class DetTrainer:
    # What the v8 recipe (trainer_v8.V8Trainer) sets otherwise: metrics.csv's row, the gradient-norm
    # clip before each step (none here, as v9.6.0). The NMS follows the head (predict.protocol).
    row_type: Any = DetRow
    max_grad_norm: float | None = None

    def __init__(self, model: nn.Module, data: DetectionData, hyper: DetHyper, hyp: Mapping[str, float],
                 device: torch.device | str = "cpu", dist: Any = None) -> None:
        self.place(model, hyper, device, dist)
        self.data, self.hyper, self.hyp = data, hyper, dict(hyp)
        anchors, strides, nc = head_geometry(model)
        if nc != data.nc:
            raise NetdslError(f"the network's detect head has {nc} classes, the data {data.nc}",
                              hint=f"build it with --set NCLS={data.nc}")
        self.anchors, self.strides, self.nc = anchors.to(self.device), strides.to(self.device), nc
        self.loss_hyp = loss_gains(self.hyp, len(strides), nc, hyper.img)
        bs = hyper.batch_size
        self.base_accumulate = max(round(NOMINAL_BATCH / bs), 1)
        self.accumulate = self.base_accumulate
        self.last_step = -1  # the iteration of the last optimizer step (v9.6.0's last_opt_step)
        self._val_loader: Any = None  # built on first validation (it reads every image's size)
        decay = self.hyp["weight_decay"] * bs * self.base_accumulate / NOMINAL_BATCH
        bn, weights, biases = param_groups(model)
        groups: list[dict[str, Any]] = [{"params": ps, "kind": kind, "weight_decay": wd}
                  for ps, kind, wd in ((bn, "bn", 0.0), (weights, "weight", decay), (biases, "bias", 0.0)) if ps]
        if not groups:
            raise NetdslError("every parameter of the network is frozen: nothing to train",
                              hint="freeze fewer statements (--freeze)")
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=self.hyp["lr0"], momentum=self.hyp["momentum"],
                                                                nesterov=True)
        for g in self.optimizer.param_groups:
            g["initial_lr"] = self.hyp["lr0"]
        self.history = DetHistory()
        self.ema = ModelEMA(self.model, EMA_DECAY, EMA_TAU) if hyper.ema else None

    def place(self, model: nn.Module, hyper: Any, device: torch.device | str, dist: Any) -> None:
        """The model on its device in its layout, wrapped for the processes (DDP under torchrun),
        and the run's arithmetic (`precision`, fp16's gradient `scaler`)."""
        self.device = torch.device(device)
        self.dist = dist or Dist()
        self.precision = of_run(hyper.precision, self.device)
        self.scaler = self.precision.scaler()
        self.memory_format = torch.channels_last if hyper.channels_last else torch.contiguous_format
        # the bare module: what checkpoints (in the standard layout, `state`) and the EMA hold
        self.model = model.to(self.device, memory_format=self.memory_format)  # type: ignore[call-overload]  # torch's stubs omit memory_format
        self.net = self.dist.wrap(self.model, self.device)  # what trains

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model

    # --- schedule ------------------------------------------------------------------------------
    def lf(self, epoch: float) -> float:
        """The lr factor of `epoch`: v9.6.0's `one_cycle` cosine from 1 to lrf, or linear."""
        e, lrf = self.hyper.epochs, self.hyp["lrf"]
        if self.hyper.linear_lr:
            return (1 - epoch / max(e - 1, 1)) * (1.0 - lrf) + lrf
        return (1 - math.cos(epoch * math.pi / e)) / 2 * (lrf - 1) + 1

    @property
    def epoch(self) -> int:
        return len(self.history.rows)

    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.data.train) / self.hyper.batch_size)

    def warmup_iters(self) -> int:
        """v9.6.0's `max(round(warmup_epochs * nb), 1000)`: at least 1000 iterations."""
        return max(round(self.hyp["warmup_epochs"] * self.batches_per_epoch()), WARMUP_MIN)

    def warmup(self, ni: int, epoch: int) -> None:
        nw = self.warmup_iters()
        if ni > nw:
            return
        xi = [0, nw]
        self.accumulate = max(1, int(np.interp(ni, xi, [1, NOMINAL_BATCH / self.hyper.batch_size]).round()))
        for g in self.optimizer.param_groups:
            start = self.hyp["warmup_bias_lr"] if g["kind"] == "bias" else 0.0
            g["lr"] = float(np.interp(ni, xi, [start, g["initial_lr"] * self.lf(epoch)]))
            g["momentum"] = float(np.interp(ni, xi, [self.hyp["warmup_momentum"], self.hyp["momentum"]]))

    def scheduler_step(self, epoch: int) -> None:
        """After `epoch` (0-based): every group's lr for the next one (LambdaLR's step)."""
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * self.lf(epoch + 1)

    # --- one step and one epoch ----------------------------------------------------------------
    def step(self, images: torch.Tensor, targets: torch.Tensor, ni: int) -> torch.Tensor:
        """Forward, loss (times the world under DDP), backward and, every `accumulate` iterations, an
        optimizer step (after clipping the gradients' norm where `max_grad_norm` says); the detached
        weighted loss items (`row_type.LOSSES`)."""
        with self.precision.autocast():
            raw = self.net(images)
        loss, items = self.loss(as_float(raw), targets)
        loss = loss.sum()
        loss = loss * self.dist.world if self.dist.world > 1 else loss
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if ni - self.last_step >= self.accumulate:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            if self.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=self.max_grad_norm)
            if self.scaler is not None:  # skips the step when fp16 overflowed, and adapts the scale
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.model)
            self.last_step = ni
        return items

    def global_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, int]]:
        """Per global batch of the epoch (the training set's order, cut into `batch_size`), this
        rank's image indices and the global batch's size. With several ranks a batch smaller
        than the world borrows images from the start of the order."""
        order = self.data.train.order(self.hyper.seed, epoch)
        bs, rank, world = self.hyper.batch_size, self.dist.rank, self.dist.world
        for k in range(0, len(order), bs):
            idx = order[k:k + bs]
            size = len(idx)
            if world > 1:
                if len(idx) < world:
                    idx = np.concatenate([idx, order[:world - len(idx)]])
                idx = idx[rank::world]
            yield idx, size

    def train_epoch(self, on_batch: Callable[[int, torch.Tensor], None] | None = None) -> tuple[list[float], float]:
        """([box, obj, cls] means over the epoch's batches (and ranks), samples/s over all ranks)."""
        e, nb = self.epoch, self.batches_per_epoch()
        self.net.train()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        start = time.perf_counter()
        done = 0
        self.optimizer.zero_grad(set_to_none=True)  # v9.6.0 drops the last epoch's unstepped gradients
        for i, (size, (images, targets)) in enumerate(self.prefetched(e)):
            ni = i + nb * e
            self.warmup(ni, e)
            images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            items = self.step(images, targets.to(self.device), ni)
            sums += items.double()
            done += size
            if on_batch is not None:
                on_batch(done, sums / (i + 1))
        sums = self.dist.sum(sums) / self.dist.world
        elapsed = time.perf_counter() - start
        return (sums / nb).tolist(), done / max(elapsed, 1e-9)

    def prefetched(self, epoch: int) -> Iterator[tuple[int, tuple[torch.Tensor, torch.Tensor]]]:
        """(global batch size, this rank's batch) for each batch of the epoch, the next one made in a
        thread while the caller trains on this one. A batch is a function of (seed, epoch, indices)
        alone, so making it elsewhere changes nothing; decoding, resizing and numpy's array work
        release the GIL. An error in the thread is raised here, at its batch. (At the lowest
        priority it was slower: torch's idle threads spin and starved it.)"""
        batches = iter(self.global_batches(epoch))
        pool = ThreadPoolExecutor(1, thread_name_prefix="netdsl-batches")
        try:
            ahead: Future | None = None
            first = next(batches, None)
            if first is not None:
                ahead = pool.submit(self.train_batch, first[0], epoch)
            size = first[1] if first is not None else 0
            while ahead is not None:
                following = next(batches, None)
                batch = ahead.result()
                ahead = pool.submit(self.train_batch, following[0], epoch) if following is not None else None
                yield size, batch
                size = following[1] if following is not None else 0
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def train_batch(self, idx: np.ndarray, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's images and targets of a global batch (trainer_v8 turns mosaic off in some epochs)."""
        return self.data.train.batch(idx, self.hyper.seed, epoch)

    def loss(self, raw: Any, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss to differentiate, the detached weighted items) of the head's training output."""
        return yolo_loss(raw, targets, self.anchors, self.strides, self.nc, self.loss_hyp)

    def validate(self, batch: int | None = None) -> tuple[list[float], dict[str, Any]]:
        """(val loss items' means, `netdsl.tasks.detect.validate.validate`'s metrics): val.py's
        protocol, in batches of `batch` (default twice the training batch, as train.py)."""
        batch = batch or 2 * self.hyper.batch_size
        if self._val_loader is None or self._val_loader.batch != batch:
            self._val_loader = RectLoader.of(self.data.val, batch, self.hyper.img, int(self.strides.max()))
        return validate(self.eval_model, self._val_loader, self.nc, lambda raw, t: self.loss(raw, t)[1], self.device)

    def run_epoch(self, on_batch: Callable[[int, torch.Tensor], None] | None = None) -> DetRow:
        t0 = time.perf_counter()
        losses, rate = self.train_epoch(on_batch)
        e = self.epoch
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.scheduler_step(e)
        if not all(math.isfinite(v) for v in losses):
            raise NonFiniteLoss(f"the loss became {losses} ({', '.join(self.row_type.LOSSES)}) in epoch {e + 1}; "
                                "training stopped",
                                hint="the last good checkpoint is kept; try a lower lr0 (--hyp)")
        if self.dist.is_main:
            val, m = self.validate()
        else:  # rank 0 validates and writes; the others only count the epoch
            val, m = [0.0, 0.0, 0.0], dict.fromkeys(("precision", "recall", "map50", "map50_95", "coco_map50",
                                                      "coco_map50_95"), 0.0)
        row = self.row_type(e + 1, *losses, *val, m["precision"], m["recall"], m["map50"], m["map50_95"], lr,
                            time.perf_counter() - t0, rate, m["coco_map50"], m["coco_map50_95"])
        self.history.rows.append(row)
        if row.map50_95 > self.history.best_map:
            self.history.best_map, self.history.best_epoch = row.map50_95, row.epoch
        return row

    @torch.no_grad()
    def predict_letterboxed(self, images: torch.Tensor, conf: float | None = None,
                            iou: float | None = None) -> list[torch.Tensor]:
        """Detections on letterboxed images with the head's NMS (its reference's thresholds by default)."""
        model = self.eval_model
        p = protocol(model)
        was_training = model.training
        model.eval()
        try:
            decoded, _ = eval_parts(model(images.to(self.device).contiguous(memory_format=self.memory_format)))
            return [d.cpu() for d in p.suppress(decoded.float(), p.conf if conf is None else conf,
                                                p.iou if iou is None else iou)]
        finally:
            model.train(was_training)

    # --- checkpoints ---------------------------------------------------------------------------
    def state(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Tensors, numbers, strings, lists and dicts only (weights_only=True loads it); no tensor
        at the top level, so `netdsl.load_weights` finds the `model` entry: the EMA's weights when
        training keeps one (the live ones are then `live_model`), as ultralytics saves its EMA."""
        ema = {}
        if self.ema is not None:
            ema = {"live_model": standard_layout(self.model.state_dict()),
                   "ema": {"updates": self.ema.updates, "decay": self.ema.decay, "tau": self.ema.tau}}
        return {
            **header(TASK),
            "epoch": self.epoch,
            "model": standard_layout(self.eval_model.state_dict()),
            **ema,
            "optimizer": self.optimizer.state_dict(),
            "grads": [p.grad.detach().cpu().contiguous().clone() if p.grad is not None else None for p in self.params],
            "accumulate": self.accumulate,
            "last_step": self.last_step,
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "history": [asdict(r) for r in self.history.rows],
            "best_map": self.history.best_map,
            "best_epoch": self.history.best_epoch,
            **(extra or {}),
        }

    def restore(self, ckpt: dict[str, Any], path: str) -> None:
        if (self.ema is None) != ("ema" not in ckpt):
            raise NetdslError("checkpoint " + ("has no" if self.ema is not None else "has") + " EMA weights, "
                              "but this run " + ("keeps" if self.ema is not None else "does not keep") + " them",
                              path=path, hint="resume with the settings the run was started with")
        with checkpoint_mismatch(path):
            if self.ema is not None:
                self.model.load_state_dict(ckpt["live_model"])
                self.ema.load_state_dict({"module": ckpt["model"], **ckpt["ema"]})
            else:
                self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            grads = ckpt["grads"]
            if len(grads) != len(self.params):
                raise ValueError(f"{len(grads)} gradients for {len(self.params)} trainable parameters")
            for p, g in zip(self.params, grads):
                p.grad = None if g is None else g.to(p.device).reshape(p.shape).clone()
            self.accumulate = int(ckpt["accumulate"])
            # absent from older checkpoints: v9.6.0's own start value, a step at the first iteration
            self.last_step = int(ckpt.get("last_step", -1))
            if self.scaler is not None and "scaler" in ckpt:
                self.scaler.load_state_dict(ckpt["scaler"])
            restore_torch_rng(ckpt["rng"]["torch"], ckpt["rng"].get("cuda"))
            rows = [self.row_type(**r) for r in ckpt["history"]]
        if len(rows) != ckpt.get("epoch"):
            raise NetdslError("checkpoint is inconsistent (history and epoch disagree)", path=path)
        self.history = DetHistory(rows, float(ckpt["best_map"]), int(ckpt["best_epoch"]))


def as_float(raw: Any) -> Any:
    """The head's outputs (a tensor, or a list or tuple of them, nested) in float32: the loss
    and NMS run in float32 whatever autocast computed them in."""
    if isinstance(raw, torch.Tensor):
        return raw.float()
    if isinstance(raw, (list, tuple)):
        return type(raw)(as_float(r) for r in raw)
    return raw


def data_fingerprint(data: DetectionData, legacy: bool = False) -> str:
    """A hash of both splits' labels and images: arrays by content, files by size and by their
    path below the folder all of them share. Not by the path as given: a run started with a
    relative `--data` resumes from run.json's absolute one and must hash the same.

    `legacy`: the hash of the paths as given, which runs made before that fix recorded."""
    h = hashlib.sha256()
    files = [os.path.abspath(im) for s in (data.train, data.val) for im in s.images if not isinstance(im, np.ndarray)]
    root = os.path.commonpath([os.path.dirname(f) for f in files]) if files else ""
    for split in (data.train, data.val):
        for im, lb in zip(split.images, split.labels):
            if isinstance(im, np.ndarray):
                h.update(np.ascontiguousarray(im).tobytes())
            else:
                name = str(Path(im)) if legacy else os.path.relpath(os.path.abspath(im), root)
                size = os.stat(im).st_size if os.path.exists(im) else -1
                h.update(f"{name}|{size}".encode())
            h.update(np.ascontiguousarray(lb, np.float32).tobytes())
        if not legacy:  # an image moved from one split to the other is other data
            h.update(b"|split|")
    h.update(str(data.nc).encode())
    return h.hexdigest()[:16]


def sample_images(split: DetectionSet, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `n` letterboxed images spread over the split, as a batch `(images, targets)`."""
    pick = np.unique(np.linspace(0, len(split) - 1, min(n, len(split))).round().astype(int))
    return collate([split.load(int(i)) for i in pick])
