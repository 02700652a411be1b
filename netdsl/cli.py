"""The `netdsl` command line: build, count, solve, train, detect, export, import.

Each command is a module under netdsl.commands with `add_arguments` and `run`; heavy imports
(torch, SymPy's passes) happen when a command runs, so `netdsl --help` stays fast.
"""
from __future__ import annotations

import argparse
import errno
import gc
import importlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from netdsl.errors import NetdslError

Command = Callable[[argparse.Namespace], int]


class BrokenCommand(Exception):
    """A command's module failed to import: a bug in netdsl, shown as such rather than hidden."""

    def __init__(self, name: str, module: str, cause: BaseException) -> None:
        super().__init__(f"error: the `{name}` command cannot be loaded: importing {module} failed: "
                         f"{type(cause).__name__}: {cause}")
        self.hint = "  hint: this is a bug in netdsl; run with --debug for the traceback"


def _add_plugin(sub: argparse._SubParsersAction, name: str, module: str, help: str) -> None:
    """A command whose module defines `add_arguments(parser)` and `run(args) -> int`.

    Those modules must not import torch at import time, so `netdsl --help` stays fast. A module
    that fails to import is a BrokenCommand: every command line says so, not only that command's.
    """
    try:
        mod = importlib.import_module(module)
    except Exception as e:
        raise BrokenCommand(name, module, e) from e
    p = sub.add_parser(name, help=help)
    mod.add_arguments(p)
    p.set_defaults(func=mod.run)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netdsl", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_plugin(sub, "build", "netdsl.commands.build", "compile a spec to a torch.nn.Module and show shapes and parameters")
    _add_plugin(sub, "count", "netdsl.commands.count", "exact symbolic counts, memory and receptive fields; check claims")
    _add_plugin(sub, "diff", "netdsl.commands.diff", "compare two specs: totals, memory and receptive fields as formulas, B - A")
    _add_plugin(sub, "fit", "netdsl.commands.fit", "the largest batch or input size whose exact memory fits a budget")
    _add_plugin(sub, "solve", "netdsl.commands.solve", "find values for open arguments (`?`) that make the annotated shapes hold")
    _add_plugin(sub, "train", "netdsl.commands.train", "train specs: colourization, or detection for a spec ending in detect")
    _add_plugin(sub, "detect", "netdsl.commands.detect_args", "run a detection spec with weights on images; draw boxes")
    _add_plugin(sub, "export", "netdsl.commands.export", "write a spec as PyTorch source, ONNX, or a picture")
    _add_plugin(sub, "import", "netdsl.commands.import_spec", "read a darknet .cfg or Ultralytics YAML into a spec")
    _add_plugin(sub, "fmt", "netdsl.commands.fmt", "rewrite specs in the canonical layout; --check for CI")
    _add_plugin(sub, "lsp", "netdsl.commands.lsp", "a language server for editors: diagnostics, hover, completion, rename")
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
    try:
        parser = make_parser()
    except BrokenCommand as err:
        if debug:
            raise
        print(err, err.hint, sep="\n", file=sys.stderr)
        return 1, ""
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
_FAST_EXIT = ("count", "solve", "fit")


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
