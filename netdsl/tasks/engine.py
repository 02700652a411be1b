"""The training engine every task runs on: which task a run is, the processes (DDP), the epoch loop
with its checkpoints and progress, and what a task must provide.

`netdsl train` (netdsl.commands.train) parses the flags, hands in the compiler as a `Compiler`
(the tasks layer sits below the API) and calls netdsl.tasks.train.train, which knows the tasks. The task is chosen once: from the
concrete graph of a fresh run's spec (the `task` its output op declares: detect's "detect"), or
from run.json's "task" when resuming; colourization otherwise. A task is a `Task` registered in
netdsl.tasks.train.TASKS; its epochs are run by a `TaskTrainer`.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from netdsl.concrete import ConcreteGraph, Merge
from netdsl.errors import NetdslError
from netdsl.files import atomic_write_rows_csv
from netdsl.freeze import Freeze
from netdsl.tasks import checkpoint, distributed
from netdsl.tasks.distributed import Dist
from netdsl.tasks.report import EpochProgress
from netdsl.tasks.rundir import resume_dir, run_task

DEFAULT_TASK = "colourize"


@dataclass(frozen=True)
class Compiler:
    """What training needs of the compiler. `analyse(spec, values)`: the spec's concrete graph, or
    None for a stand-in compiler that states none (tests); `build(spec, values, freeze)`: the module."""

    analyse: Callable[[Path, dict[str, int]], ConcreteGraph | None]
    build: Callable[[Path, dict[str, int], Freeze | None], nn.Module]


@dataclass
class Job:
    """One `netdsl train`: its flags, the `--set` values (parsed once), the compiler, and the concrete
    graphs of a fresh run's specs at those values (analysed once, when the task was chosen)."""

    args: argparse.Namespace
    sets: dict[str, int]
    compiler: Compiler
    graphs: dict[str, ConcreteGraph | None]


class History(Protocol):
    """What the engine reads of a trainer's history: the rows so far and the best epoch's number."""

    @property
    def rows(self) -> Sequence[Any]: ...

    @property
    def best_epoch(self) -> int: ...


class TaskTrainer(Protocol):
    """A task's trainer, as the epoch loop drives it. `run_epoch` trains one epoch (the steps over
    the task's data), validates, appends a row to `history` and returns it; `state` is the
    checkpoint (netdsl.tasks.checkpoint.header(task) first, then everything `restore` needs to
    continue exactly); `restore` loads one."""

    @property
    def epoch(self) -> int: ...

    @property
    def history(self) -> History: ...

    def run_epoch(self, on_batch: Callable[..., None] | None = None) -> Any: ...

    def state(self, extra: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def restore(self, ckpt: dict[str, Any], path: str) -> None: ...


class Task(Protocol):
    """A training task: its name (run.json's and the checkpoint's "task"), and `train`, which checks
    the flags, prepares the run (data, model, run directory) and runs its epochs with
    `train_epochs`; it returns the exit status."""

    name: str

    def train(self, job: Job, dist: Dist, device: torch.device) -> int: ...


def task_head(cg: ConcreteGraph) -> Merge | None:
    """The statement op that makes the network a task's (an output op declaring a `task`), if any."""
    for st in cg.statements:
        if st.merge is not None and st.merge.op.task:
            return st.merge
    return None


def task_of(cg: ConcreteGraph | None) -> str:
    """The task a network is trained as: the one its output op declares, else colourization."""
    head = task_head(cg) if cg is not None else None
    return str(head.op.task) if head is not None and head.op.task else DEFAULT_TASK


def choose(args: argparse.Namespace, sets: dict[str, int], compiler: Compiler,
           tasks: Mapping[str, Task]) -> tuple[Task, Job]:
    """The task of this `netdsl train`, chosen once: by run.json when resuming, else by the specs'
    concrete graphs (a spec whose output op declares a task makes the run that task's). Each spec
    is analysed once, here, and its graph handed to the task in the `Job`; a spec that does not
    compile fails here with its own located error."""
    graphs: dict[str, ConcreteGraph | None] = {}
    if getattr(args, "resume", None):
        name = run_task(resume_dir(args)) or DEFAULT_TASK
    else:
        for spec in args.specs or []:
            if spec not in graphs:
                graphs[spec] = compiler.analyse(Path(spec), dict(sets))
        named = [task_of(cg) for cg in graphs.values()]
        name = next((n for n in named if n != DEFAULT_TASK), DEFAULT_TASK)
    if name not in tasks:
        raise NetdslError(f'this netdsl cannot train the task "{name}"',
                          path=str(args.resume) if getattr(args, "resume", None) else None)
    task = tasks[name]
    return task, Job(args, sets, compiler, graphs)


def run(task: Task, job: Job) -> int:
    """Start the processes (one, or torchrun's), train, and leave together: a rank that tears gloo
    down while rank 0 still writes its plots can abort ("terminate called without an active
    exception")."""
    if job.args.device is not None:
        distributed.device_ok(job.args.device)
    dist, device = distributed.init(job.args.device)
    try:
        rc = task.train(job, dist, device)
        dist.barrier()
        return rc
    finally:
        distributed.shutdown()


def save_epoch(path: Path, trainer: TaskTrainer, extra: dict[str, Any], row_type: type) -> None:
    """The files of an epoch, in this order, each atomic: best.pt (if this epoch is the best), last.pt,
    metrics.csv. last.pt is the truth (it carries the history; `--resume` rewrites metrics.csv from
    it), so a kill between any two writes costs at most the epoch in progress."""
    state = trainer.state(extra)
    if trainer.history.best_epoch == trainer.epoch:
        checkpoint.save(path / "best.pt", state)
    checkpoint.save(path / "last.pt", state)
    atomic_write_rows_csv(path / "metrics.csv", row_type, list(trainer.history.rows))


def train_epochs(trainer: TaskTrainer, epochs: int, progress: EpochProgress[Any], save: Callable[[], None],
                 after: Callable[[], None] = lambda: None) -> checkpoint.NonFiniteLoss | None:
    """Run epochs until `epochs` are done: after each, `save` (the epoch's files), the progress line,
    then `after`. A diverging loss stops the run and is returned (the files hold the last good
    epoch); the progress display is closed either way."""
    try:
        while trainer.epoch < epochs:
            row = trainer.run_epoch(progress.on_batch)
            save()
            progress.epoch(row)
            after()
    except checkpoint.NonFiniteLoss as err:
        return err
    finally:
        progress.end()
    return None
