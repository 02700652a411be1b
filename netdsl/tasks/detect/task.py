"""The detection task: a network ending in `detect` trains as YOLO (yolo_loss, ultralytics v9.6.0's
recipe: SGD with warmup, cosine or linear decay, EMA weights, mosaic and affine augmentation); one
ending in `detect_v8` (YOLOv8, YOLO11) with ultralytics 8.4's (`trainer_v8`: yolo_v8_loss, auto
SGD/AdamW, linear decay, gradient clipping, close_mosaic), run.json's "recipe": "v8".

The run directory (as colourization's): run.json, spec.net, metrics.csv, curves.png, samples.png,
last.pt and best.pt (best mAP@0.5:0.95); after every epoch best.pt (if improved), last.pt, then
metrics.csv, each written to a temp file and renamed.

Under torchrun (`torchrun --nproc_per_node N -m netdsl.cli train SPEC ...`) every rank trains its
share of each global batch (`DetTrainer`); rank 0 alone validates, prints and writes; run.json
records `world_size`. Checkpoints are the same as one process's, so either may resume the other.
"""
from __future__ import annotations

from typing import Any

import torch

from netdsl.errors import NetdslError
from netdsl.files import atomic_write_json, atomic_write_text
from netdsl.tasks.checkpoint import NonFiniteLoss
from netdsl.tasks.detect.outputs import Progress, V8Progress, curves, samples, write_metrics
from netdsl.tasks.detect.prepare import Prepared, prepare_fresh, prepare_resume
from netdsl.tasks.detect.trainer import TASK, DetTrainer
from netdsl.tasks.detect.trainer_v8 import RECIPE, V8Hyper, V8Trainer
from netdsl.tasks.distributed import Dist
from netdsl.tasks.engine import Job, save_epoch, train_epochs
from netdsl.tasks.report import EpochProgress
from netdsl.tasks.rundir import RUN_FORMAT


def after_epoch(trainer: DetTrainer) -> None:
    """Called after each epoch's files are written (a seam for tests that interrupt a run)."""


class Detect:
    name = TASK

    def train(self, job: Job, dist: Dist, device: torch.device) -> int:
        p = prepare_resume(job, device) if job.args.resume else prepare_fresh(job, device)
        dist.barrier()  # every rank has checked the run directory before rank 0 creates it
        trainer = _trainer(p, device, dist)
        main = dist.is_main
        if main:
            _open(p, dist, device)
        if p.ckpt is not None:
            trainer.restore(p.ckpt, str(p.dir / "last.pt"))
            if main:
                write_metrics(p.dir, trainer.history.rows, trainer.row_type)
        rep: EpochProgress[Any] = (V8Progress.choose(job.args.quiet, main) if p.recipe == RECIPE
                                   else Progress.choose(job.args.quiet, main))
        _intro(rep, p, trainer, dist)
        rep.start(p.dir.name, p.hyper.epochs, trainer.epoch, len(p.data.train))

        def save() -> None:
            if main:
                save_epoch(p.dir, trainer, {"fingerprint": p.fingerprint}, trainer.row_type)

        failure: NonFiniteLoss | None = train_epochs(trainer, p.hyper.epochs, rep, save, lambda: after_epoch(trainer))
        if failure is not None:
            failure.path = str(p.dir / "last.pt") if trainer.epoch else str(p.dir)
        if trainer.history.rows and main:
            _finish(rep, p, trainer)
        if failure is not None:
            raise failure
        return 0


DETECT = Detect()


def _trainer(p: Prepared, device: torch.device, dist: Dist) -> DetTrainer:
    """The recipe's trainer: ultralytics 8's for a detect_v8 network (run.json's "recipe": "v8"), else YOLOv3's."""
    if isinstance(p.hyper, V8Hyper):
        return V8Trainer(p.model, p.data, p.hyper, p.hyp, device, dist)
    return DetTrainer(p.model, p.data, p.hyper, p.hyp, device, dist)


def _open(p: Prepared, dist: Dist, device: torch.device) -> None:
    """Create a fresh run's directory, or clear the temp files a killed run left in a resumed one."""
    if p.create is None:
        for tmp in p.dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        return
    run_json, text = p.create
    run_json["device"], run_json["world_size"] = str(device), dist.world
    try:
        p.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p.dir / "spec.net", text)
        atomic_write_json(p.dir / "run.json", {"format": RUN_FORMAT, **run_json})
    except OSError as err:  # checked writable before; this is a place that changed since
        raise NetdslError(f"cannot create the run directory: {err.strerror or err}", path=str(p.dir),
                          hint="choose another --out") from None


def _intro(rep: EpochProgress[Any], p: Prepared, trainer: DetTrainer, dist: Dist) -> None:
    for note in p.notes:
        rep.message(f"note: {note}")
    if p.precision is not None:
        rep.message(p.precision.describe())
    if p.warnings:
        rep.message(f"warning: {len(p.warnings)} data problems skipped, e.g. {p.warnings[0]}")
    h, data = p.hyper, p.data
    rep.message(f"{p.dir.name}: {trainer.model.spec_name if hasattr(trainer.model, 'spec_name') else 'model'}, "
                f"{data.description}, {data.nc} classes, img {h.img}, batch {h.batch_size} "
                f"(accumulate {trainer.base_accumulate}), {h.epochs} epochs"
                f"{', EMA weights' if h.ema else ''}{_optimizer_note(trainer)}, {h.precision}"
                f"{f', {dist.world} processes' if dist.world > 1 else ''} -> {p.dir}"
                + (f" (resuming after epoch {trainer.epoch})" if trainer.epoch else ""))


def _optimizer_note(trainer: DetTrainer) -> str:
    if not isinstance(trainer, V8Trainer):
        return ""
    c = trainer.choice
    return f", {c.name}(lr={c.lr:g}, momentum={c.momentum:g}){' chosen by --optimizer auto' if c.auto else ''}"


def _finish(rep: EpochProgress[Any], p: Prepared, trainer: DetTrainer) -> None:
    """The figures and the last line."""
    rows, label, out = trainer.history.rows, p.dir.name, p.dir
    curves(rows, out / "curves.png", label)
    last = rows[-1]
    samples(trainer, out / "samples.png", f"{label}: epoch {last.epoch}, mAP@0.5 {last.map50:.3f}, "
                                          f"mAP@0.5:0.95 {last.map50_95:.3f}", p.data.names)
    best = next(r for r in rows if r.epoch == trainer.history.best_epoch)
    rep.message(f"done: P {last.precision:.3f} R {last.recall:.3f} mAP@0.5 {last.map50:.3f} "
                f"mAP@0.5:0.95 {last.map50_95:.3f} (best mAP@0.5:0.95 {best.map50_95:.3f} at epoch "
                f"{best.epoch}) -> {out}")
