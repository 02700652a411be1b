"""`netdsl import FILE [-o SPEC]`: a darknet .cfg or an Ultralytics model YAML as a netdsl spec.

The format comes from the suffix (`.cfg`; `.yaml`/`.yml`) or `--format`. The spec is printed, or
with `-o` written by `netdsl.files.atomic_write`, so an error leaves nothing half-written and
the file being imported is never overwritten.
Every refusal (an unsupported section, key, module or argument; an index out of range) is an
error at the source file's line and column. torch is never imported.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netdsl.errors import NetdslError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Read a darknet .cfg or an Ultralytics model YAML (YOLOv3/v5 family, YOLOv8, YOLO11) and "
                     "print, or write with -o, the same network as a readable netdsl spec.")
    p.add_argument("file", help="a darknet .cfg, or an Ultralytics model .yaml/.yml")
    p.add_argument("-o", "--output", metavar="SPEC", help="write the spec to this file (default: print it)")
    p.add_argument("--format", choices=("cfg", "yaml"), help="the input's format (default: from its suffix)")
    p.add_argument("--scale", metavar="NAME", help="which of an ultralytics 8.x YAML's scales: to build (n, s, m, l, "
                   "x); default: the file name's (yolov8n.yaml reads scale n of its scales:), else the first")


def output_path(given: str, source: str) -> Path:
    """Where -o writes; a folder, a missing parent folder, the input itself (a link to it too), a
    read-only or special file are refused before any work."""
    from netdsl.files import check_output  # numpy: loaded by `netdsl import` only, not by every command's parser

    out = Path(given)
    if out.is_dir():
        raise NetdslError(f"-o {out}: is a folder; give a file name",
                          hint=f"e.g. -o {out / (Path(source).stem + '.net')}")
    if str(out.parent) not in ("", ".") and not out.parent.is_dir():
        raise NetdslError(f"-o {out}: the folder {out.parent} does not exist", hint="create it first")
    check_output(out, [source])
    return out


def run(args: argparse.Namespace) -> int:
    # The importers (SymPy, PyYAML) and the writer (numpy) load when `netdsl import` runs: the CLI
    # imports this module to build its parser for every command and for --help.
    from netdsl.importers import import_file

    out = output_path(args.output, args.file) if args.output else None
    text = import_file(args.file, args.format, args.scale)
    if out is None:
        sys.stdout.write(text)
        return 0
    from netdsl.files import atomic_write_text  # as check_output

    atomic_write_text(out, text, inputs=[args.file])
    print(f"wrote {out}")
    return 0
