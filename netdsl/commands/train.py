"""`netdsl train SPEC...`: the flags, and the one place training meets the compiler.

The training itself is netdsl.tasks (torch, imported only when the command runs: `netdsl --help`
stays fast). `run` parses `--set` once, hands the compiler in as a netdsl.tasks.engine.Compiler
(`analyse_spec`, `build_model`; tests replace them with stand-ins) and lets the engine choose the
task from the spec's concrete graph.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from netdsl.api import analyse_text, build
from netdsl.concrete import ConcreteGraph
from netdsl.freeze import Freeze
from netdsl.parsing import read_spec_file
from netdsl.values import parse_sets

if TYPE_CHECKING:  # torch stays out of `netdsl --help`
    from torch import nn


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Train specs on the seed's colourization task: predict each pixel's palette colour "
                     "from a greyscale 32x32 image (per-pixel cross-entropy).")
    p.add_argument("specs", nargs="*", metavar="SPEC",
                   help=".net spec(s); several train one after another and end with a comparison")
    p.add_argument("--set", dest="sets", action="append", metavar="NAME=VALUE",
                   help="override a spec parameter (integer; repeatable)")
    p.add_argument("--sweep", action="append", metavar="NAME=V1,V2,...",
                   help="one run per value of a training option (batch-size, lr, epochs, seed) "
                        "or spec parameter; repeat for a grid")
    d = p.add_argument_group("data")
    d.add_argument("--data", metavar="PATH",
                   help="CIFAR-10 (python or binary batches: a folder or the .tar.gz) or a folder of "
                        "images (default: photographs bundled with scikit-image)")
    d.add_argument("--category", metavar="NAME",
                   help="CIFAR-10 category name or 0-9, or 'all' (default: horse)")
    d.add_argument("--palette", metavar="FILE.npy", help="a [K, 3] palette in [0, 1] (default: k-means)")
    d.add_argument("--colours", type=int, metavar="K", help="k-means palette size (default: 24)")
    d.add_argument("--max-train", type=int, metavar="N",
                   help="use only the first N training patches (with fresh patches: of the pool drawn from)")
    d.add_argument("--fresh-patches", action="store_true",
                   help="photographs and image folders: each epoch trains on 5000 patches drawn afresh from "
                        "every training position (default: one fixed set of 5000, as the course's data set)")
    d.add_argument("--max-val", type=int, metavar="N", help="use only the first N validation patches")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, metavar="N", help="(default: 25; with --resume: extend to N)")
    t.add_argument("--batch-size", type=int, metavar="B", help="global batch size (default: 100)")
    t.add_argument("--lr", type=float, metavar="LR", help="Adam learning rate (default: 0.001)")
    t.add_argument("--seed", type=int, metavar="S", help="initial weights and shuffles (default: 0)")
    t.add_argument("--device", metavar="DEV", help="cpu or cuda (default: cuda when available)")
    t.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help="evaluate and checkpoint a moving average of the weights (default: on; "
                        "--no-ema trains as the course did)")
    t.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto (the default): mixed precision where the hardware runs it natively (bf16 "
                        "autocast on CPUs with AVX-512 BF16 or AMX and on bf16 GPUs, fp16 with a gradient "
                        "scaler on other GPUs), else fp32; fp32 opts out; recorded in run.json")
    t.add_argument("--compile", action="store_true",
                   help="colourization: torch.compile the model (needs a C++ compiler on the CPU; "
                        "the first steps pay for the compile)")
    f = p.add_argument_group("weights and freezing")
    f.add_argument("--weights", metavar="PATH",
                   help="start from these weights: darknet .weights, or a .pt/.pth state_dict or netdsl checkpoint")
    f.add_argument("--freeze", metavar="N|NAME[,NAME]",
                   help="freeze the first N top-level statements, or statements, labels and blocks by name")
    f.add_argument("--freeze-bn", choices=("train", "eval"),
                   help="frozen BatchNorm layers: keep updating their statistics (train, the default) or not (eval)")
    det = p.add_argument_group("detection (a spec ending in detect; see netdsl/tasks/detect/)")
    det.add_argument("--img", type=int, metavar="N", help="training and validation image size, a multiple of "
                     "the largest stride (default: 640)")
    det.add_argument("--hyp", metavar="FILE.yaml", help="hyperparameters over hyp.scratch.yaml's (lr0, momentum, ...; "
                     "detect_v8 networks: over ultralytics 8's default.yaml's)")
    det.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                     help="keep decoded, resized images in memory (default: when they fit in 2 GiB and a "
                          "quarter of the memory available; --no-cache never)")
    det.add_argument("--linear-lr", action="store_true",
                     help="decay the learning rate linearly (ultralytics' --linear-lr; default: cosine, as v9.6.0)")
    det.add_argument("--optimizer", choices=("auto", "SGD", "AdamW"),
                     help="detect_v8 networks (ultralytics 8's recipe): auto (the default) picks SGD for runs of "
                          "over 10,000 iterations, else AdamW with an lr fitted to the classes")
    det.add_argument("--close-mosaic", type=int, metavar="N",
                     help="detect_v8 networks: train the last N epochs without mosaic (default: 10; 0: never)")
    det.add_argument("--skip-bad", action="store_true", help="skip (and report) bad images and label files")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="run directory (default: runs/<spec>-<timestamp>)")
    o.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (or comparison)")
    o.add_argument("--quiet", action="store_true", help="print nothing while training")


def analyse_spec(spec: Path, params: dict[str, int]) -> ConcreteGraph | None:
    """The spec's concrete graph at `params` (what chooses the task); a spec that does not compile
    fails here with the compiler's own located error."""
    return analyse_text(read_spec_file(spec), str(spec), dict(params))


def build_model(spec: Path, params: dict[str, int], freeze: Freeze | None = None) -> nn.Module:
    """A `CompiledNet` of the spec at `params` (`freeze`: a netdsl.freeze.Freeze). Tests replace it
    with stand-in `nn.Module`s, which training takes for what they are (no spec)."""
    read_spec_file(spec)  # a missing or unreadable spec fails with the compiler's own message
    # Typed loosely: the --set values go in as keyword arguments beside build's own options.
    compile_net: Callable[..., nn.Module] = build
    return compile_net(str(spec), freeze=freeze if freeze else None, **params)


def run(args: argparse.Namespace) -> int:
    from netdsl.tasks.engine import Compiler  # torch: only once the command runs, never for --help
    from netdsl.tasks.train import train

    sets = parse_sets(args.sets)  # a malformed --set is an error before anything else
    # The seams are looked up now, so a test's stand-in replaces them.
    return train(args, sets, Compiler(analyse=analyse_spec, build=build_model))
