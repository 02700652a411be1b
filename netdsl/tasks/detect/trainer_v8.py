"""Detection training with ultralytics 8.4's recipe, for networks ending in `detect_v8` (YOLOv8,
YOLO11): `yolo_v8_loss`, and the schedule of ultralytics' engine/trainer.py with cfg/default.yaml's
values (`netdsl.tasks.detect.hyp.HYP_V8`). Written from that recipe's documented behaviour, not from
its AGPL code. What differs from the YOLOv3 recipe (`trainer.DetTrainer`, whose data order, DDP
split, EMA, validation and checkpoints this one shares by inheritance):

- the optimizer (`--optimizer`, `choose_optimizer`): `auto` takes SGD (lr 0.01, momentum 0.9)
  when the run's iterations `ceil(n / max(batch, 64)) * epochs` exceed 10,000 (ultralytics 8.4.190
  takes its MuSGD there, which netdsl does not have: SGD is what 8.x took before it), else AdamW with lr
  `round(0.002 * 5 / (4 + nc), 6)` and betas (0.9, 0.999), ignoring lr0 and momentum, and sets
  `warmup_bias_lr` to 0; `SGD` (Nesterov) and `AdamW` take lr0 and momentum (AdamW's beta1).
  Three parameter groups (`param_groups_v8`): every parameter whose dotted name contains "bias"
  (no decay), the weights of normalisation layers (no decay), all others (decay
  `weight_decay * batch * accumulate / 64`);
- warmup over `max(round(warmup_epochs * nb), 100)` iterations (none when warmup_epochs is 0):
  the bias lr falls from warmup_bias_lr, the others rise from 0, momentum (SGD only: AdamW's groups
  have none) rises from warmup_momentum to the hyperparameter `momentum` (also when `auto` chose
  0.9: ultralytics does the same), `accumulate` ramps from 1 to 64 / batch;
- linear decay `lf(x) = max(1 - x / epochs, 0) * (1 - lrf) + lrf`, applied after each epoch;
- the gradients' norm clipped to 10.0 before every optimizer step;
- `close_mosaic` (default 10): no mosaic from epoch `epochs - close_mosaic` (0-based) on, as an
  uninterrupted ultralytics run does (`epoch == epochs - close_mosaic` switches it off; a run of
  fewer epochs than close_mosaic keeps mosaic throughout); the images' other draws stay functions of
  (seed, epoch, index), so a resumed run repeats an uninterrupted one;
- metrics.csv's losses are box, cls and dfl (`V8Row`), each gained (7.5, 0.5, 1.5 by default).

Validation is `validate.validate`, which post-processes a detect_v8 head's output with ultralytics
8.4's NMS (`nms.V8`: conf 0.001, IoU 0.7, multi-label); samples.png predicts with `nms.V8`'s
conf 0.25 and IoU 0.7.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from netdsl.backends.torch_detect_v8 import DetectV8
from netdsl.errors import NetdslError
from netdsl.tasks.detect.data import DetectionData
from netdsl.tasks.detect.loss_v8 import yolo_v8_loss
from netdsl.tasks.detect.trainer import EMA_DECAY, EMA_TAU, NOMINAL_BATCH, DetHistory, DetTrainer
from netdsl.tasks.ema import ModelEMA

RECIPE = "v8"
OPTIMIZERS = ("auto", "SGD", "AdamW")
WARMUP_MIN = 100  # ultralytics 8: warmup iterations at least
MAX_GRAD_NORM = 10.0  # ultralytics 8's optimizer_step clips to this norm
AUTO_SGD_ITERATIONS = 10_000  # `auto` takes SGD above this many iterations


@dataclass(frozen=True)
class V8Hyper:
    """The v8 recipe's settings (cfg/default.yaml's epochs, batch, imgsz, optimizer, close_mosaic)."""
    epochs: int = 100
    batch_size: int = 16
    img: int = 640
    seed: int = 0
    ema: bool = True
    optimizer: str = "auto"
    close_mosaic: int = 10
    precision: str = "fp32"  # as resolved (netdsl.tasks.precision); runs from before it trained in fp32
    channels_last: bool = True  # NHWC model and input; runs from before: False


@dataclass
class V8Row:
    """One epoch of metrics.csv for the v8 recipe."""
    LOSSES: ClassVar[tuple[str, str, str]] = ("box", "cls", "dfl")
    epoch: int
    box: float
    cls: float
    dfl: float
    val_box: float
    val_cls: float
    val_dfl: float
    precision: float
    recall: float
    map50: float
    map50_95: float
    lr: float
    seconds: float
    samples_per_s: float
    coco_map50: float = 0.0
    coco_map50_95: float = 0.0


@dataclass(frozen=True)
class OptimizerChoice:
    name: str  # "SGD" or "AdamW"
    lr: float
    momentum: float  # SGD's momentum or AdamW's beta1
    auto: bool  # chosen by `auto` (which also zeroes warmup_bias_lr)


def choose_optimizer(name: str, lr0: float, momentum: float, images: int, batch: int, epochs: int,
                     nc: int) -> OptimizerChoice:
    """ultralytics 8's `build_optimizer` choice: `auto` by the run's iterations, else as asked.

    >>> choose_optimizer("auto", 0.01, 0.937, 8, 4, 2, 2)
    OptimizerChoice(name='AdamW', lr=0.001667, momentum=0.9, auto=True)
    """
    if name != "auto":
        return OptimizerChoice(name, lr0, momentum, False)
    iterations = math.ceil(images / max(batch, NOMINAL_BATCH)) * epochs
    if iterations > AUTO_SGD_ITERATIONS:
        return OptimizerChoice("SGD", 0.01, 0.9, True)
    return OptimizerChoice("AdamW", round(0.002 * 5 / (4 + nc), 6), 0.9, True)


_NORMS = tuple(v for k, v in vars(nn).items() if "Norm" in k and isinstance(v, type))  # BatchNorm2d, LayerNorm, ...


def param_groups_v8(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """Trainable (biases, normalisation weights, other weights), as ultralytics 8 groups them: by
    the parameter's dotted name ("bias" in it) and its module's type."""
    biases: list[nn.Parameter] = []
    norms: list[nn.Parameter] = []
    weights: list[nn.Parameter] = []
    seen: set[int] = set()
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{mname}.{pname}" if mname else pname
            (biases if "bias" in full else norms if isinstance(module, _NORMS) else weights).append(p)
    return biases, norms, weights


def v8_head(model: nn.Module) -> DetectV8 | None:
    """The model's `detect_v8` module, if it has one."""
    return next((m for m in model.modules() if isinstance(m, DetectV8)), None)


class V8Trainer(DetTrainer):
    """The v8 recipe (module doc) on DetTrainer's loop: its own optimizer, schedule, step and loss."""

    row_type = V8Row
    max_grad_norm = MAX_GRAD_NORM

    def __init__(self, model: nn.Module, data: DetectionData, hyper: V8Hyper, hyp: Mapping[str, float],
                 device: torch.device | str = "cpu", dist: Any = None) -> None:
        # DetTrainer.__init__ reads the YOLOv3 head's anchors; everything it sets is set here instead.
        self.place(model, hyper, device, dist)
        # DetTrainer's loop reads hyper's epochs, batch_size, img, seed and ema, which V8Hyper has too
        self.data, self.hyper, self.hyp = data, hyper, dict(hyp)  # type: ignore[assignment]
        self.settings = hyper
        head = v8_head(model)
        if head is None:
            raise NetdslError("the network has no detect_v8 head", hint="the v8 recipe trains specs ending in detect_v8")
        if head.classes != data.nc:
            raise NetdslError(f"the network's detect head has {head.classes} classes, the data {data.nc}",
                              hint=f"build it with --set NCLS={data.nc}")
        self.nc, self.reg_max, self.level_strides = head.classes, head.reg_max, list(head.strides)
        self.strides = torch.tensor(self.level_strides, dtype=torch.float32)
        self.gains = (self.hyp["box"], self.hyp["cls"], self.hyp["dfl"])
        bs = hyper.batch_size
        self.base_accumulate = self.accumulate = max(round(NOMINAL_BATCH / bs), 1)
        self.last_step = -1
        self._val_loader: Any = None
        self.choice = choose_optimizer(hyper.optimizer, self.hyp["lr0"], self.hyp["momentum"], len(data.train),
                                       bs, hyper.epochs, data.nc)
        self.warmup_bias_lr = 0.0 if self.choice.auto else self.hyp["warmup_bias_lr"]
        self.optimizer = self._optimizer(model, self.hyp["weight_decay"] * bs * self.base_accumulate / NOMINAL_BATCH)
        self.history = DetHistory()
        self.ema = ModelEMA(self.model, EMA_DECAY, EMA_TAU) if hyper.ema else None

    def _optimizer(self, model: nn.Module, decay: float) -> torch.optim.Optimizer:
        biases, norms, weights = param_groups_v8(model)
        # ultralytics 8.4's order (decayed weights, norms, biases), so metrics.csv's lr is its lr/pg0
        groups: list[dict[str, Any]] = [{"params": ps, "kind": kind, "weight_decay": wd} for ps, kind, wd in
                                        ((weights, "weight", decay), (norms, "bn", 0.0), (biases, "bias", 0.0)) if ps]
        if not groups:
            raise NetdslError("every parameter of the network is frozen: nothing to train",
                              hint="freeze fewer statements (--freeze)")
        self.params = [p for g in groups for p in g["params"]]
        c = self.choice
        opt: torch.optim.Optimizer
        if c.name == "SGD":
            opt = torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=True)
        elif c.name == "AdamW":
            opt = torch.optim.AdamW(groups, lr=c.lr, betas=(c.momentum, 0.999), weight_decay=0.0)
        else:
            raise NetdslError(f"--optimizer {c.name}: not one of {', '.join(OPTIMIZERS)}")
        for g in opt.param_groups:
            g["initial_lr"] = c.lr
        return opt

    # --- schedule ------------------------------------------------------------------------------
    def lf(self, epoch: float) -> float:
        """The lr factor of `epoch`: linear from 1 to lrf over the run."""
        lrf = self.hyp["lrf"]
        return max(1 - epoch / self.hyper.epochs, 0) * (1.0 - lrf) + lrf

    def warmup_iters(self) -> int:
        """`max(round(warmup_epochs * nb), 100)`, or -1 (no warmup) when warmup_epochs is 0."""
        if self.hyp["warmup_epochs"] <= 0:
            return -1
        return max(round(self.hyp["warmup_epochs"] * self.batches_per_epoch()), WARMUP_MIN)

    def warmup(self, ni: int, epoch: int) -> None:
        nw = self.warmup_iters()
        if ni > nw:
            return
        xi = [0, nw]
        self.accumulate = max(1, int(np.interp(ni, xi, [1, NOMINAL_BATCH / self.hyper.batch_size]).round()))
        for g in self.optimizer.param_groups:
            start = self.warmup_bias_lr if g["kind"] == "bias" else 0.0
            g["lr"] = float(np.interp(ni, xi, [start, g["initial_lr"] * self.lf(epoch)]))
            if "momentum" in g:  # SGD's; AdamW's beta1 stays
                g["momentum"] = float(np.interp(ni, xi, [self.hyp["warmup_momentum"], self.hyp["momentum"]]))

    def mosaic_on(self, epoch: int) -> bool:
        """Whether `epoch` (0-based) trains with mosaic: not from `epochs - close_mosaic` on."""
        close = self.settings.close_mosaic
        return not (close > 0 and 0 <= self.hyper.epochs - close <= epoch)

    # --- one step and one epoch ----------------------------------------------------------------
    def train_batch(self, idx: np.ndarray, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.train.batch(idx, self.hyper.seed, epoch, mosaic=self.mosaic_on(epoch))

    def loss(self, raw: Any, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return yolo_v8_loss(list(raw), targets, self.level_strides, self.nc, self.reg_max, self.gains)

    # --- checkpoints ---------------------------------------------------------------------------
    def state(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {**super().state(extra), "recipe": RECIPE}

    def restore(self, ckpt: dict[str, Any], path: str) -> None:
        if ckpt.get("recipe") != RECIPE:
            raise NetdslError("checkpoint was written by the YOLOv3 recipe, not the v8 one", path=path,
                              hint="resume a run with the checkpoint it wrote")
        super().restore(ckpt, path)
