"""`netdsl train SPEC...`: flags, pre-flight checks, and the run orchestration.

`add_arguments` imports nothing heavy, so `netdsl --help` stays fast. `run` validates everything
(specs, shapes, data, palette, checkpoints, output paths) before it creates any directory.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netdsl.errors import NetdslError
from netdsl.parsing import read_spec_file

if TYPE_CHECKING:  # torch stays out of `netdsl --help`
    from torch import nn

# Flags `--resume` may be combined with; every other setting comes from the run directory.
# `--ema`/`--no-ema` only when it agrees with the run (checked by each trainer's resume).
RESUME_FLAGS = {"epochs", "device", "quiet", "ema", "compile"}


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
    t.add_argument("--precision", choices=("fp32", "bf16"),
                   help="colourization: bf16 autocasts the forward pass (faster on CPUs with AVX-512 BF16 "
                        "or AMX, and on recent GPUs; default: fp32)")
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
    det = p.add_argument_group("detection (a spec ending in detect; see netdsl/detection/train_command.py)")
    det.add_argument("--img", type=int, metavar="N", help="training and validation image size, a multiple of "
                     "the largest stride (default: 640)")
    det.add_argument("--hyp", metavar="FILE.yaml", help="hyperparameters over hyp.scratch.yaml's (lr0, momentum, ...)")
    det.add_argument("--cache", action="store_true", help="keep decoded, letterboxed images in memory")
    det.add_argument("--linear-lr", action="store_true",
                     help="decay the learning rate linearly (ultralytics' --linear-lr; default: cosine, as v9.6.0)")
    det.add_argument("--skip-bad", action="store_true", help="skip (and report) bad images and label files")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="run directory (default: runs/<spec>-<timestamp>)")
    o.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (or comparison)")
    o.add_argument("--quiet", action="store_true", help="print nothing while training")


@dataclass
class Prepared:
    """One run, checked and ready: nothing of it is on disk yet (unless resumed)."""

    label: str
    rundir: Any  # rundir.RunDir
    model: nn.Module  # a CompiledNet, or a stand-in nn.Module (see `identity`)
    spec_name: str
    hyper: Any
    data: Any  # data.ColourData
    tensors_key: str
    ckpt: dict[str, Any] | None = None
    create: tuple[dict[str, Any], str] | None = None  # (run.json, spec text) for a fresh run


def build_model(spec: Path, params: dict[str, int], freeze: Any = None) -> nn.Module:
    """The one place training meets the compiler: a `CompiledNet` (`freeze`: a netdsl.freeze.Freeze).
    Tests replace it with stand-in `nn.Module`s, which `identity` and `loop.check_model` take for
    what they are (no spec)."""
    read_spec_file(spec)  # a missing or unreadable spec fails with the compiler's own message
    try:
        from netdsl import build
    except ImportError:
        raise NetdslError("this netdsl has no compiler (netdsl.build is missing)", path=str(spec)) from None
    return build(str(spec), freeze=freeze, **params) if freeze else build(str(spec), **params)


def _freeze_json(freeze: Any) -> dict[str, Any]:
    return {"first": freeze.first, "names": list(freeze.names), "bn": freeze.bn}


def identity(model: nn.Module, name: str, params: dict[str, int]) -> tuple[str, dict[str, int]]:
    """(name, every parameter in use) of a model: a `CompiledNet` states its own; any other
    `nn.Module` declares none, so it gets the given name and parameters (the `--set` values)."""
    from netdsl.backends.torch_module import CompiledNet

    if isinstance(model, CompiledNet):
        return model.spec_name, dict(model.params or params)
    return name, dict(params)


def run(args: argparse.Namespace) -> int:
    # Issue 10: a spec whose head is `detect` (or a detection run to resume) trains as a detector.
    from netdsl.detection import train_command as detection

    if detection.is_detection_run(args):
        return detection.run(args)
    from netdsl.train import distributed

    if args.device is not None:
        distributed.device_ok(args.device)
    dist, device = distributed.init(args.device)
    try:
        prepared, group = _prepare_resume(args) if args.resume else _prepare_fresh(args)
        from netdsl.train.report import Reporter

        reporter = Reporter.choose(args.quiet, dist.is_main)
        rc = _train_all(prepared, group, reporter, dist, device)
        # Ranks leave together: a rank that tears gloo down while rank 0 still writes its plots can
        # abort ("terminate called without an active exception").
        dist.barrier()
        return rc
    finally:
        distributed.shutdown()


def _hyper_from_args(args: argparse.Namespace) -> Any:
    from netdsl.train.loop import Hyper

    h = Hyper()
    over = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "seed", "ema", "precision")
            if getattr(args, k, None) is not None}
    if getattr(args, "compile", False):
        over["compile"] = True
    return Hyper(**{**h.__dict__, **over})


def _prepare_fresh(args: argparse.Namespace) -> tuple[list[Prepared], Path | None]:
    from netdsl.train import data as D
    from netdsl.train import options
    from netdsl.train.loop import check_model
    from netdsl.train.rundir import RunDir, ensure_fresh

    if not args.specs:
        raise NetdslError("no spec to train", hint="netdsl train specs/unet.net")
    sets = options.parse_sets(args.sets)
    sweeps = options.parse_sweeps(args.sweep)
    plans = options.plan_runs(args.specs, sets, sweeps, _hyper_from_args(args))
    for plan in plans:
        options.check_hyper(plan.hyper)
    for n, flag in ((args.max_train, "--max-train"), (args.max_val, "--max-val")):
        if n is not None and n < 1:
            raise NetdslError(f"{flag} {n}: need at least 1")
    dspec = D.DataSpec(path=str(Path(args.data).expanduser().resolve()) if args.data else None,
                       category=args.category, colours=24 if args.colours is None else args.colours,
                       palette=str(Path(args.palette).expanduser().resolve()) if args.palette else None,
                       max_train=args.max_train, max_val=args.max_val,
                       patches="fresh" if args.fresh_patches else "fixed")
    if args.category and not args.data:
        raise NetdslError("--category applies to CIFAR-10 data", hint="add --data PATH/TO/cifar-10-batches-py")
    if args.palette and args.colours is not None:
        raise NetdslError("--colours sets the k-means palette size; it cannot be combined with --palette")
    texts = {}
    for plan in plans:
        if plan.spec not in texts:
            texts[plan.spec] = read_spec_file(plan.spec)  # the compiler's own checks and messages
    data = D.load_data(dspec)
    k = len(data.palette)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    group: Path | None = None
    if len(plans) == 1:
        dirs = [Path(args.out) if args.out else Path("runs") / f"{plans[0].label}-{stamp}"]
    else:
        name = "+".join(dict.fromkeys(Path(s).stem for s in args.specs))
        name = name if len(name) <= 60 else "compare"
        if sweeps:
            name += "-sweep-" + "-".join(s.name.replace("_", "") for s in sweeps)
        group = Path(args.out) if args.out else Path("runs") / f"{name}-{stamp}"
        ensure_fresh(group)
        dirs = [group / p.label for p in plans]
    for d in dirs:
        ensure_fresh(d)
    import torch

    from netdsl.freeze import parse_freeze

    freeze = parse_freeze(args.freeze, args.freeze_bn)
    if args.weights is not None and not Path(args.weights).is_file():
        raise NetdslError("no such weights file", path=args.weights, hint="check the path given to --weights")
    fp = data.fingerprint()
    out: list[Prepared] = []
    for plan, d in zip(plans, dirs):
        torch.manual_seed(plan.hyper.seed)  # the same initial weights whatever else runs first
        model = build_model(plan.spec, plan.sets, freeze)
        if args.weights is not None:
            from netdsl.weights import load_weights

            load_weights(model, args.weights)
        name, params = identity(model, type(model).__name__, plan.sets)
        check_model(model, k, name, path=str(plan.spec))
        run_json = {"label": plan.label, "spec": {"path": str(plan.spec), "name": name, "sets": plan.sets,
                                                   "params": params},
                    "train": plan.hyper.__dict__, "data": dspec.to_json(), "data_description": data.description,
                    "data_fingerprint": fp, "num_colours": k, "train_patches": len(data.train_rgb),
                    "train_patches_per_epoch": data.per_epoch,
                    "val_patches": len(data.val_rgb), "torch": torch.__version__,
                    "freeze": _freeze_json(freeze), "weights": args.weights,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        out.append(Prepared(plan.label, RunDir(d, plan.label), model, name, plan.hyper, data, "0",
                            create=(run_json, texts[plan.spec])))
    return out, group


def resume_dir(args: argparse.Namespace) -> Path:
    """The run directory `--resume` names, refusing every flag a resumed run takes from run.json."""
    given = [k for k, v in vars(args).items()
             if k not in RESUME_FLAGS | {"resume", "debug", "func", "command"} and v not in (None, [], False)]
    if given:
        flags = ", ".join("SPEC" if g == "specs" else "--" + g.replace("_", "-") for g in given)
        raise NetdslError(f"--resume takes its settings from the run directory; drop {flags}",
                          hint="only --epochs (to extend), --device and --quiet may change")
    root = Path(args.resume)
    if root.exists() and not root.is_dir():
        raise NetdslError("--resume names a file, not a run directory", path=str(root),
                          hint="--resume takes the run directory (the folder holding run.json and last.pt)")
    if not root.is_dir():
        raise NetdslError("run directory not found", path=str(root))
    return root


def _prepare_resume(args: argparse.Namespace) -> tuple[list[Prepared], Path | None]:
    from netdsl.freeze import Freeze
    from netdsl.train import data as D
    from netdsl.train.loop import Hyper, check_model
    from netdsl.train.palette import load_palette
    from netdsl.train.rundir import GROUP_FORMAT, RunDir, load_checkpoint, read_json

    root = resume_dir(args)
    group: Path | None = None
    members = [root]
    if (root / "group.json").is_file():
        g = read_json(root / "group.json", "comparison")
        if g.get("format") != GROUP_FORMAT or not isinstance(g.get("members"), list):
            raise NetdslError("group.json is not a netdsl comparison", path=str(root / "group.json"))
        group, members = root, [root / str(m) for m in g["members"]]
    import torch

    datas: dict[str, Any] = {}
    out: list[Prepared] = []
    for d in members:
        rj = read_json(d / "run.json", "run")
        try:
            label, spec_info = str(rj["label"]), rj["spec"]
            # Runs written before issue 12 trained without EMA, in the contiguous layout, with
            # Adam's for-loop step: resumed as they started.
            hyper = Hyper(**{"ema": False, "channels_last": False, "fused": False, **rj["train"]})
            dspec = D.DataSpec.from_json(rj["data"])
            sets = {str(k): int(v) for k, v in spec_info["sets"].items()}
            fz = rj.get("freeze") or {}
            freeze = Freeze(first=int(fz.get("first", 0)), names=tuple(str(n) for n in fz.get("names", [])),
                            bn=str(fz.get("bn", "train")))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as err:
            raise NetdslError(f"run.json is incomplete ({err})", path=str(d / "run.json")) from None
        if getattr(args, "ema", None) is not None and bool(args.ema) != hyper.ema:
            raise NetdslError(f"this run was started {'with' if hyper.ema else 'without'} EMA weights; "
                              "--resume keeps that", path=str(d), hint="drop --ema / --no-ema")
        if args.epochs is not None:
            hyper = Hyper(**{**hyper.__dict__, "epochs": args.epochs})
        if getattr(args, "compile", False):
            hyper = Hyper(**{**hyper.__dict__, "compile": True})
        palette = load_palette(d / "palette.npy")
        key = f"{dspec.to_json()}|{palette.tobytes().hex()}"
        if key not in datas:
            datas[key] = D.load_data(dspec, palette_override=palette)
        data = datas[key]
        if data.fingerprint() != rj.get("data_fingerprint"):
            raise NetdslError("the training data differs from the data this run started with",
                              path=str(d), hint="restore the original data (or cache), or start a new run")
        ckpt = None
        if (d / "last.pt").exists():
            ckpt = load_checkpoint(d / "last.pt")
            if ckpt.get("fingerprint") != rj.get("data_fingerprint"):
                raise NetdslError("checkpoint belongs to another run (its data differs)", path=str(d / "last.pt"))
            if int(ckpt.get("epoch", 0)) > hyper.epochs:
                raise NetdslError(f"the run has done {ckpt['epoch']} epochs already; --epochs {hyper.epochs} is fewer",
                                  path=str(d))
        torch.manual_seed(hyper.seed)
        model = build_model(d / "spec.net", sets, freeze)
        name, _ = identity(model, str(spec_info.get("name", label)), sets)
        check_model(model, len(data.palette), name, path=str(d / "spec.net"))
        if ckpt is not None:  # shape check now, so a mismatch is refused before any training
            _check_state(model, ckpt, d / "last.pt")
        out.append(Prepared(label, RunDir(d, label), model, name, hyper, data, key, ckpt=ckpt))
    return out, group


def _check_state(model: nn.Module, ckpt: dict[str, Any], path: Path) -> None:
    state = ckpt.get("model")
    own = model.state_dict()
    if not isinstance(state, dict) or set(state) != set(own) or any(
            getattr(state[k], "shape", None) != own[k].shape for k in own):
        raise NetdslError("checkpoint does not match the spec's model (different layers or shapes)",
                          path=str(path), hint="resume with the spec and --set values the run was started with")


def _train_all(prepared: list[Prepared], group: Path | None, reporter: Any, dist: Any, device: Any) -> int:
    from netdsl.train import plots
    from netdsl.train.data import to_tensors
    from netdsl.train.files import atomic_write_json, atomic_write_text
    from netdsl.train.loop import NonFiniteLoss, Trainer
    from netdsl.train.report import Summary, done_line, print_table, table_markdown
    from netdsl.train.rundir import GROUP_FORMAT

    if group is not None and dist.is_main:
        group.mkdir(parents=True, exist_ok=True)
        if not (group / "group.json").exists():
            atomic_write_json(group / "group.json", {"format": GROUP_FORMAT, "members": [p.label for p in prepared]})
    for p in prepared:  # directories only now that every run has passed its checks
        p.rundir.write = dist.is_main
        if p.create is not None:
            run_json, text = p.create
            run_json["world_size"], run_json["device"] = dist.world, str(device)
            p.rundir.create(run_json, text, p.data.palette)
    tensors: dict[str, Any] = {}
    summaries: list[Summary] = []
    failures: list[NetdslError] = []
    for p in prepared:
        if p.tensors_key not in tensors:
            tensors[p.tensors_key] = to_tensors(p.data)
        trainer = Trainer(p.model, tensors[p.tensors_key], p.hyper, device, dist)
        if p.create is None:
            p.rundir.clean_temp()
        if p.ckpt is not None:
            trainer.restore(p.ckpt, str(p.rundir.path / "last.pt"))
            p.rundir.write_metrics(trainer.history.rows)  # drop any row written after last.pt
        fp = p.data.fingerprint()
        how = ", ".join(x for x in ("EMA weights" if trainer.ema is not None else "",
                                    "bf16" if p.hyper.precision == "bf16" else "",
                                    "compiled" if p.hyper.compile else "") if x)
        pool = len(p.data.train_rgb)
        drawn = f" drawn each epoch from {pool}" if p.data.per_epoch < pool else ""
        reporter.message(f"{p.label}: {p.spec_name}, {p.data.per_epoch} training{drawn} / {len(p.data.val_rgb)} "
                         f"validation patches, {len(p.data.palette)} colours, {p.hyper.epochs} epochs"
                         + (f" ({how})" if how else "") + " "
                         f"-> {p.rundir.path}" + (f" (resuming after epoch {trainer.epoch})" if trainer.epoch else ""))
        status = "done"
        compiled_said = False
        reporter.start(p.label, p.hyper.epochs, trainer.epoch, p.data.per_epoch)
        try:
            while trainer.epoch < p.hyper.epochs:
                row = trainer.run_epoch(reporter.on_batch)
                p.rundir.save_epoch(trainer, fp)
                reporter.epoch(row)
                if trainer.compile_seconds is not None and not compiled_said:
                    compiled_said = True
                    reporter.message(f"{p.label}: the first (compiling) step took {trainer.compile_seconds:.1f} s")
        except NonFiniteLoss as err:
            err.path = str(p.rundir.path / "last.pt") if trainer.epoch else str(p.rundir.path)
            status = "stopped: loss not finite"
            failures.append(err)
        finally:
            reporter.end()
        p.rundir.finish(trainer, tensors[p.tensors_key], p.data.palette)
        summaries.append(Summary(p.label, p.spec_name, p.hyper.epochs, trainer.history.rows,
                                 trainer.history.best_val_loss, trainer.history.best_epoch, status))
        if len(prepared) == 1 and failures:
            raise failures[0]
    if group is not None:
        if dist.is_main:
            atomic_write_text(group / "comparison.md", table_markdown(summaries))
            plots.combined({s.label: s.rows for s in summaries}, group / "curves.png")
        print_table(reporter, summaries)
        reporter.message(f"comparison written to {group}")
    else:
        if summaries[0].rows:
            reporter.message(done_line(summaries[0], prepared[0].rundir.path))
    for err in failures:
        print(err.render(), file=sys.stderr)
    return 2 if failures else 0
