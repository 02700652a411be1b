"""`netdsl fmt [--check] [--diff] PATH...`: rewrite specs in the canonical layout (docs/commands/fmt.md).

Exit status: 0; 1 with --check when a file is not formatted; 2 when a file cannot be read or parsed
(then nothing is written). Never imports torch or the compiler's passes.
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from pathlib import Path

from netdsl.editor.format import format_text
from netdsl.errors import NetdslError, located
from netdsl.parsing import MAX_SPEC_BYTES, read_spec_file

SUFFIXES = (".net", ".netdsl")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Rewrite specs in netdsl's one layout: spacing, indentation, aligned `=` in runs of one-line "
                     "statements, tables of call arguments kept aligned, long chains wrapped before `->`, comments kept. "
                     "Folders: every *.net and *.netdsl under them. `-` reads stdin and writes stdout.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="a spec, a folder of specs, or - for stdin")
    p.add_argument("--check", action="store_true",
                   help="write nothing; print a diff of each file that is not formatted and exit 1 if there is one")
    p.add_argument("--diff", action="store_true", help="write nothing; print a diff of each file that would change")


def spec_files(paths: list[str]) -> list[str]:
    """`paths` with each folder replaced by the specs under it, sorted."""
    out: list[str] = []
    for p in paths:
        if p != "-" and Path(p).is_dir():
            out.extend(sorted(str(f) for f in Path(p).rglob("*") if f.suffix in SUFFIXES and f.is_file()))
        else:
            out.append(p)
    return out


def _write(path: str, text: str) -> None:
    # a temporary file in the same folder, then one rename: the spec is whole at every moment
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".netdsl-fmt-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _diff(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{path} (original)",
                                        f"{path} (formatted)"))


def run(args: argparse.Namespace) -> int:
    results: list[tuple[str, str, str]] = []
    failed = 0
    for path in spec_files(args.paths):
        try:
            text = sys.stdin.read(MAX_SPEC_BYTES + 1) if path == "-" else read_spec_file(path)
            with located("<stdin>" if path == "-" else path, text):
                results.append((path, text, format_text(text)))
        except NetdslError as e:
            print(e.render(), file=sys.stderr)
            failed += 1
    if failed:
        return 2
    changed = 0
    for path, old, new in results:
        if path == "-" and not (args.check or args.diff):
            sys.stdout.write(new)
        elif old != new:
            changed += 1
            if args.check or args.diff:
                sys.stdout.write(_diff(path, old, new))
            else:
                _write(path, new)
    return 1 if args.check and changed else 0
