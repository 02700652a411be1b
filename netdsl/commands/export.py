"""`netdsl export SPEC --to FORMAT [-o PATH]`: the network as Python source, ONNX, or a picture.

Every format reads the concrete graph at the values in use (`--set` changes them). The file is
written by `netdsl.files.atomic_write`, so an error leaves nothing half-written, and the spec
or weights being read are never overwritten. Each backend (torch, onnx, graphviz) is imported
only when its format is written, as are the compiler's passes (SymPy) and the file writer (numpy):
`netdsl --help` imports this module. `onnx` needs the optional extra (`pip install "netdsl[onnx]"`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from netdsl.api import load
from netdsl.commands.common import add_set_argument
from netdsl.errors import NetdslError
from netdsl.values import parse_sets

FORMATS = {"python": ".py", "onnx": ".onnx", "dot": ".dot", "svg": ".svg", "png": ".png"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Export a spec: a standalone PyTorch module (python), an ONNX model (onnx), "
                     "or a picture of the network (dot, svg, png).")
    p.add_argument("spec", help="path to a .net spec")
    p.add_argument("--to", required=True, choices=sorted(FORMATS), help="what to write")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="file to write (default: the spec's name with the format's suffix, in the current folder)")
    add_set_argument(p, "override a declared parameter or input size (repeatable)")
    p.add_argument("--opset", type=int, default=18, metavar="N", help="ONNX opset (>= 17; default 18)")
    p.add_argument("--weights", metavar="FILE",
                   help="onnx: the weights to export (darknet .weights, or a .pt/.pth state_dict or checkpoint); "
                        "default: a fresh initialisation")
    p.add_argument("--expand", action="store_true",
                   help="pictures: a row per layer and a frame per block call (default: sequence-block calls "
                        "and block statements on one line, identical repeats drawn once)")


def output_path(spec: str, fmt: str, given: str | None, inputs: list[str]) -> Path:
    """Where the export goes; a folder, a missing parent folder, one of `inputs` (the spec, the
    weights), a read-only or special file are refused before any work is done."""
    from netdsl.files import check_output

    out = Path(given) if given else Path(Path(spec).stem + FORMATS[fmt])
    if out.is_dir():
        raise NetdslError(f"-o {out}: is a folder; give a file name", hint=f"e.g. -o {out / (Path(spec).stem + FORMATS[fmt])}")
    if not out.parent.is_dir() and str(out.parent) not in ("", "."):
        raise NetdslError(f"-o {out}: the folder {out.parent} does not exist", hint="create it first")
    check_output(out, inputs)
    return out


def run(args: argparse.Namespace) -> int:
    from netdsl.passes.front import analyse_text

    fmt = args.to
    inputs = [args.spec] + ([args.weights] if args.weights is not None else [])
    out = output_path(args.spec, fmt, args.output, inputs)
    if fmt == "onnx":
        from netdsl.backends.onnx_export import check_opset

        check_opset(args.opset, "--opset")
    if args.weights is not None and fmt != "onnx":
        raise NetdslError(f"--weights has no effect with --to {fmt}", hint="weights are exported with --to onnx")
    text, path = load(args.spec)
    cg = analyse_text(text, path, parse_sets(args.sets))
    if fmt == "python":
        from netdsl.backends.python_source import to_python_source
        from netdsl.files import atomic_write_text

        atomic_write_text(out, to_python_source(cg), inputs=inputs)
        message = f"wrote {out}"
    elif fmt == "onnx":
        from netdsl.backends.onnx_export import export_onnx

        message = export_onnx(cg, out, opset=args.opset, weights=args.weights)
    else:
        from netdsl.backends.picture import write_picture

        message = write_picture(cg, out, fmt, expand=args.expand)
    print(message)
    return 0
