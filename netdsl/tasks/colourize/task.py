"""The colourization task (the seed's): predict each pixel's palette colour from a greyscale 32x32
image, per-pixel cross-entropy. Several specs, or a `--sweep`, train one after another and end with
a comparison (group.json, comparison.md, curves.png in the group directory).

The run directory: netdsl.tasks.colourize.rundir; the loop: netdsl.tasks.colourize.loop.Trainer.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from netdsl.errors import NetdslError
from netdsl.files import atomic_write_json, atomic_write_text
from netdsl.tasks.colourize import plots
from netdsl.tasks.colourize.data import Tensors, to_tensors
from netdsl.tasks.colourize.loop import TASK, Trainer
from netdsl.tasks.colourize.prepare import Prepared, prepare_fresh, prepare_resume, refuse_detection_flags
from netdsl.tasks.colourize.report import Reporter, Summary, done_line, print_table, table_markdown
from netdsl.tasks.distributed import Dist
from netdsl.tasks.engine import Job, train_epochs
from netdsl.tasks.rundir import GROUP_FORMAT


class Colourize:
    name = TASK

    def train(self, job: Job, dist: Dist, device: torch.device) -> int:
        refuse_detection_flags(job.args)
        prepared, group = prepare_resume(job, device) if job.args.resume else prepare_fresh(job, device)
        reporter = Reporter.choose(job.args.quiet, dist.is_main)
        if prepared and prepared[0].precision is not None:
            reporter.message(prepared[0].precision.describe())
        _create(prepared, group, dist, device)
        tensors: dict[str, Tensors] = {}
        summaries: list[Summary] = []
        failures: list[NetdslError] = []
        for p in prepared:
            if p.tensors_key not in tensors:
                tensors[p.tensors_key] = to_tensors(p.data)
            summary, failure = _train_one(p, tensors[p.tensors_key], reporter, dist, device)
            summaries.append(summary)
            if failure is not None:
                failures.append(failure)
                if len(prepared) == 1:
                    raise failure
        if group is not None:
            if dist.is_main:
                atomic_write_text(group / "comparison.md", table_markdown(summaries))
                plots.combined({s.label: s.rows for s in summaries}, group / "curves.png")
            print_table(reporter, summaries)
            reporter.message(f"comparison written to {group}")
        elif summaries[0].rows:
            reporter.message(done_line(summaries[0], prepared[0].rundir.path))
        for err in failures:
            print(err.render(), file=sys.stderr)
        return 2 if failures else 0


COLOURIZE = Colourize()


def _create(prepared: list[Prepared], group: Path | None, dist: Dist, device: torch.device) -> None:
    """The directories, only now that every run has passed its checks (rank 0 writes)."""
    if group is not None and dist.is_main:
        group.mkdir(parents=True, exist_ok=True)
        if not (group / "group.json").exists():
            atomic_write_json(group / "group.json", {"format": GROUP_FORMAT, "members": [p.label for p in prepared]})
    for p in prepared:
        p.rundir.write = dist.is_main
        if p.create is not None:
            run_json, text = p.create
            run_json["world_size"], run_json["device"] = dist.world, str(device)
            p.rundir.create(run_json, text, p.data.palette)


def _intro(p: Prepared, trainer: Trainer) -> str:
    how = ", ".join(x for x in ("EMA weights" if trainer.ema is not None else "",
                                p.hyper.precision if p.hyper.precision != "fp32" else "",
                                "compiled" if p.hyper.compile else "") if x)
    pool = len(p.data.train_rgb)
    drawn = f" drawn each epoch from {pool}" if p.data.per_epoch < pool else ""
    return (f"{p.label}: {p.spec_name}, {p.data.per_epoch} training{drawn} / {len(p.data.val_rgb)} "
            f"validation patches, {len(p.data.palette)} colours, {p.hyper.epochs} epochs"
            + (f" ({how})" if how else "") + " "
            f"-> {p.rundir.path}" + (f" (resuming after epoch {trainer.epoch})" if trainer.epoch else ""))


def _train_one(p: Prepared, tensors: Tensors, reporter: Reporter, dist: Dist,
               device: torch.device) -> tuple[Summary, NetdslError | None]:
    """One run of the comparison: its epochs, its figures, its summary, and the error that stopped it."""
    trainer = Trainer(p.model, tensors, p.hyper, device, dist)
    if p.create is None:
        p.rundir.clean_temp()
    if p.ckpt is not None:
        trainer.restore(p.ckpt, str(p.rundir.path / "last.pt"))
        p.rundir.write_metrics(trainer.history.rows)  # drop any row written after last.pt
    fp = p.data.fingerprint()
    reporter.message(_intro(p, trainer))
    compiled_said = False

    def after() -> None:
        nonlocal compiled_said
        if trainer.compile_seconds is not None and not compiled_said:
            compiled_said = True
            reporter.message(f"{p.label}: the first (compiling) step took {trainer.compile_seconds:.1f} s")

    reporter.start(p.label, p.hyper.epochs, trainer.epoch, p.data.per_epoch)
    failure = train_epochs(trainer, p.hyper.epochs, reporter, lambda: p.rundir.save_epoch(trainer, fp), after)
    status = "done"
    if failure is not None:
        failure.path = str(p.rundir.path / "last.pt") if trainer.epoch else str(p.rundir.path)
        status = "stopped: loss not finite"
    p.rundir.finish(trainer, tensors, p.data.palette)
    return (Summary(p.label, p.spec_name, p.hyper.epochs, trainer.history.rows, trainer.history.best_val_loss,
                    trainer.history.best_epoch, status), failure)
