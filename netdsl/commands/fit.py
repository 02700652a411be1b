"""`netdsl fit SPEC --memory 24GiB`: the largest batch, or input size, whose exact memory fits.

Exit status: 0 with an answer, 1 when nothing fits (not even a batch of one, or the smallest
size the spec admits), 2 for an error (a bad budget, a budget below the parameters alone).
Never imports torch; SymPy's passes are imported when a fit runs.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from netdsl.api import load
from netdsl.commands.common import add_set_argument
from netdsl.values import parse_sets

if TYPE_CHECKING:
    from netdsl.passes.fit import FitResult

# as passes.memory_model has them, which imports SymPy: `netdsl --help` reads these (tests check they agree)
DTYPES = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("adam", "sgd", "sgd-momentum", "none")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("The largest batch (or input size) whose exact memory fits a budget: train_bytes for "
                     "training (parameters, gradients, optimizer state and what autograd saves), peak_bytes plus "
                     "parameters and buffers for inference. The answer is checked on both sides of the boundary.")
    p.add_argument("spec", help="path to a .net spec")
    p.add_argument("--memory", required=True, metavar="BYTES",
                   help="the budget: 24GiB, 512MiB (powers of 2), 16GB (powers of 10), 1.5e9 or a number of bytes")
    p.add_argument("--for", dest="solve_for", default=None, metavar="NAME",
                   help="what to solve for: the batch N (default), an input size H (the others keep their values), "
                        "or H,W (the largest square input)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--train", dest="mode", action="store_const", const="train", default="train",
                      help="fit a training step: train_bytes (default)")
    mode.add_argument("--infer", dest="mode", action="store_const", const="infer",
                      help="fit an eval forward under no_grad: peak_bytes + parameters + buffers")
    add_set_argument(p, "override a parameter or input size, or the batch for --for H (--set N=16); repeatable")
    p.add_argument("--dtype", choices=DTYPES, default="fp32", help="activations as autocast would keep them")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="whose state counts in training")
    p.add_argument("--json", action="store_true", help="print one JSON object keyed by the solved names")


def _print(r: FitResult) -> None:
    console = Console(highlight=False, soft_wrap=True)  # lines, whole: formulas are long
    names = ",".join(r.solve_for)
    what = "batch" if r.solve_for == (r.batch,) else "square input size" if len(r.solve_for) > 1 else "input size"
    how = f"trains with {r.options.optimizer}" if r.mode == "train" else "runs an eval forward"
    others = ", ".join(f"{k}={v}" for k, v in r.values.items() if k not in r.solve_for)
    console.print(Text(f"{r.net}  ({r.spec or '<input>'}): the largest {what} {names} that {how} "
                       f"({r.options.dtype}) in {_bytes(r.budget)}", style="bold"))
    console.print(f"at {others}")
    if r.formula != r.solved:
        console.print(f"{r.metric} = {r.formula}", style="dim")
    console.print(f"{r.metric} = {r.solved}")
    if r.answer is not None:
        console.print(Text(f"{_eq(r, r.answer)}: {r.at_answer:,} bytes <= {r.budget:,}", style="green"))
    if r.at_next is not None:
        console.print(f"{_eq(r, r.next)}: {r.at_next:,} bytes > {r.budget:,}")
    if r.answer is None:
        console.print(Text(f"nothing fits: even {_eq(r, r.next)} needs more than {_bytes(r.budget)}", style="red"))
    for note in r.notes:
        console.print(f"note: {note}")


def _eq(r: FitResult, v: int) -> str:
    return " = ".join([*r.solve_for, str(v)])


def _bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            q = n / size
            return f"{q:,.0f} {unit} ({n:,} bytes)" if q >= 1000 else f"{q:.4g} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"


def run(args: argparse.Namespace) -> int:
    from netdsl.errors import located
    from netdsl.passes.fit import fit_text
    from netdsl.passes.fit_search import parse_budget
    from netdsl.passes.memory_model import MemoryOptions

    budget = parse_budget(args.memory)
    text, path = load(args.spec)
    with located(path, text):
        r = fit_text(text, path, parse_sets(args.sets), budget, args.solve_for, args.mode,
                     MemoryOptions(args.dtype, args.optimizer))
    if args.json:
        sys.stdout.write(json.dumps(r.to_json(), indent=2) + "\n")
    else:
        _print(r)
    return 0 if r.fits else 1
