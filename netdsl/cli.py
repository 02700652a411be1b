"""The `netdsl` command line: build, count, solve, train, detect, export, import.

Heavy imports (torch, sympy passes) happen inside each command so `netdsl --help` stays fast.
"""
from __future__ import annotations

import argparse
import errno
import gc
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from netdsl.commands.common import add_set_argument
from netdsl.errors import NetdslError

Command = Callable[[argparse.Namespace], int]


def _add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="compile a spec to a torch.nn.Module and show shapes and parameters")
    p.add_argument("spec", help="path to a .net spec")
    add_set_argument(p, "override a declared parameter or input size (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--emit-ir", action="store_true", help="print the typed IR as JSON and stop")
    p.add_argument("--max-memory", type=float, metavar="GIB",
                   help="refuse networks estimated to need more memory than this (default 8 GiB)")
    p.add_argument("--freeze", metavar="N|NAME[,NAME]",
                   help="freeze the first N top-level statements, or statements, labels and blocks by name")
    p.add_argument("--freeze-bn", choices=("train", "eval"),
                   help="frozen BatchNorm layers: keep updating their statistics (train, the default) or not (eval)")
    p.add_argument("--weights", metavar="PATH",
                   help="load pretrained weights after building: darknet .weights, or a .pt/.pth state_dict "
                        "or netdsl checkpoint")

    def run(args: argparse.Namespace) -> int:
        from netdsl.commands.build import run_build

        return run_build(args)

    p.set_defaults(func=run)


def _add_plugin(sub: argparse._SubParsersAction, name: str, module: str, help: str) -> None:
    """A command whose module defines `add_arguments(parser)` and `run(args) -> int`.

    Those modules must not import torch at import time, so `netdsl --help` stays fast.
    """
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:  # a command still being written is simply not offered
        if e.name and module.startswith(e.name):
            return
        raise
    p = sub.add_parser(name, help=help)
    mod.add_arguments(p)
    p.set_defaults(func=mod.run)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netdsl", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_build(sub)
    _add_plugin(sub, "count", "netdsl.commands.count", "exact symbolic weights, outputs and connections; check claims")
    _add_plugin(sub, "solve", "netdsl.commands.solve", "find values for open arguments (`?`) that make the annotated shapes hold")
    _add_plugin(sub, "train", "netdsl.train.command", "train specs: colourization, or detection for a spec ending in detect")
    _add_plugin(sub, "detect", "netdsl.commands.detect", "run a detection spec with weights on images; draw boxes")
    _add_plugin(sub, "export", "netdsl.commands.export", "write a spec as PyTorch source, ONNX, or a picture")
    _add_plugin(sub, "import", "netdsl.commands.import_spec", "read a darknet .cfg or Ultralytics YAML into a spec")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line (default: sys.argv); its exit status."""
    return _command(argv)[0]


def _command(argv: Sequence[str] | None) -> tuple[int, str]:
    """(exit status, the command that ran)."""
    # A command allocates many long-lived objects (SymPy expressions, torch modules) and few that
    # die young; the default thresholds make the collector sweep them again and again. Rarer
    # collections (as mypy's main does) for the command's duration, then the caller's thresholds.
    thresholds = gc.get_threshold()
    gc.freeze()  # what is imported so far lives as long as the process: never scan it
    gc.set_threshold(100_000, 50, 100)
    try:
        return _main(argv)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _main(argv: Sequence[str] | None) -> tuple[int, str]:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, not only before the subcommand.
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = make_parser()
    args = parser.parse_args(argv)
    args.debug = debug
    return _status(args, debug), args.command


def _status(args: argparse.Namespace, debug: bool) -> int:
    try:
        return int(args.func(args) or 0)
    except NetdslError as err:
        if debug:
            raise
        print(err.render(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        if debug or err.errno not in _NO_ROOM:
            raise
        # a full disk or quota is the machine's state, not a bug: say so, without a traceback
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: cannot write{where}: {err.strerror}", file=sys.stderr)
        print("  hint: free some space, or write elsewhere (--out, or redirect the output)", file=sys.stderr)
        return 2


_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


# Commands that only read their inputs and print: nothing of theirs needs the interpreter's
# teardown (no open files, threads or atexit work), and that teardown (freeing SymPy's caches
# object by object) costs `netdsl count` about a quarter of its time.
_FAST_EXIT = ("count", "solve")


def run() -> NoReturn:
    """The `netdsl` console script: `main()`, then exit; a symbolic command skips the teardown."""
    code, command = _command(None)
    if command in _FAST_EXIT and "torch" not in sys.modules and threading.active_count() == 1:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # output lost (a full disk, a closed pipe): as Python's own exit, status 120
            os._exit(120)
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
