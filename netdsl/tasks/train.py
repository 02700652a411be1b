"""The tasks `netdsl train` knows, and its entry point: choose the task once, then run it on the engine.

A new task is one folder, netdsl/tasks/<name>/, whose `task.py` defines a `Task`
(netdsl.tasks.engine); it is added to `TASKS` here, and an op declares it (`OpDef.task`) so
that a network ending in that op trains as it.
"""
from __future__ import annotations

import argparse

from netdsl.tasks.colourize.task import COLOURIZE
from netdsl.tasks.detect.task import DETECT
from netdsl.tasks.engine import Compiler, Task, choose, run

TASKS: dict[str, Task] = {t.name: t for t in (COLOURIZE, DETECT)}


def train(args: argparse.Namespace, sets: dict[str, int], compiler: Compiler) -> int:
    """`netdsl train` after its flags are parsed: the exit status."""
    task, job = choose(args, sets, compiler, TASKS)
    return run(task, job)
