"""Colourization runs checked and ready before any directory is made: a fresh run (or comparison,
or sweep) from the flags, or a resumed one from its run directory."""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netdsl.backends.torch_module import CompiledNet
from netdsl.errors import NetdslError
from netdsl.freeze import Freeze, parse_freeze
from netdsl.parsing import read_spec_file
from netdsl.tasks.checkpoint import load_checkpoint
from netdsl.tasks.colourize import data as D
from netdsl.tasks.colourize import options
from netdsl.tasks.colourize.loop import TASK, Hyper
from netdsl.tasks.colourize.model_check import check_model
from netdsl.tasks.colourize.options import Plan, Sweep
from netdsl.tasks.colourize.palette import load_palette
from netdsl.tasks.colourize.rundir import RunDir
from netdsl.tasks.engine import Job
from netdsl.tasks.precision import Precision, of_run, resolve
from netdsl.tasks.rundir import GROUP_FORMAT, ensure_fresh, read_json, resume_dir
from netdsl.weights import load_weights

# The detection task's flags: given for a colourization run, they are a mistake to report.
DETECTION_FLAGS = ("img", "hyp", "cache", "skip_bad", "linear_lr", "optimizer", "close_mosaic")


@dataclass
class Prepared:
    """One run, checked and ready: nothing of it is on disk yet (unless resumed)."""

    label: str
    rundir: RunDir
    model: nn.Module  # a CompiledNet, or a stand-in nn.Module (see `identity`)
    spec_name: str
    hyper: Hyper
    data: D.ColourData
    tensors_key: str
    ckpt: dict[str, Any] | None = None
    create: tuple[dict[str, Any], str] | None = None  # (run.json, spec text) for a fresh run
    precision: Precision | None = None  # how a fresh run's precision was chosen (None: resumed)


def identity(model: nn.Module, name: str, params: dict[str, int]) -> tuple[str, dict[str, int]]:
    """(name, every parameter in use) of a model: a `CompiledNet` states its own; any other
    `nn.Module` declares none, so it gets the given name and parameters (the `--set` values)."""
    if isinstance(model, CompiledNet):
        return model.spec_name, dict(model.params or params)
    return name, dict(params)


def refuse_detection_flags(args: argparse.Namespace) -> None:
    # `is`, not `in`: --close-mosaic 0 is given, though 0 == False
    given = [f for f in DETECTION_FLAGS if getattr(args, f, None) is not None and getattr(args, f) is not False]
    if given:
        raise NetdslError(f"--{given[0].replace('_', '-')} applies to detection specs (a spec ending in detect)",
                          hint="drop it for colourization training")


def _hyper_from_args(args: argparse.Namespace, precision: Precision) -> Hyper:
    h = Hyper()
    over = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "seed", "ema")
            if getattr(args, k, None) is not None}
    over["precision"] = precision.used
    if getattr(args, "compile", False):
        over["compile"] = True
    return Hyper(**{**h.__dict__, **over})


def _data_spec(args: argparse.Namespace) -> D.DataSpec:
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
    return dspec


def _run_dirs(args: argparse.Namespace, plans: list[Plan], sweeps: list[Sweep]) -> tuple[list[Path], Path | None]:
    """Each run's directory, and the comparison's when there are several runs; all checked fresh."""
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
    return dirs, group


def _run_json(plan: Plan, name: str, params: dict[str, int], dspec: D.DataSpec, data: D.ColourData, fp: str,
              freeze: Freeze, weights: str | None) -> dict[str, Any]:
    return {"task": TASK, "label": plan.label,
            "spec": {"path": str(plan.spec), "name": name, "sets": plan.sets, "params": params},
            "train": plan.hyper.__dict__, "data": dspec.to_json(), "data_description": data.description,
            "data_fingerprint": fp, "num_colours": len(data.palette),
            "train_patches": len(data.train_rgb), "train_patches_per_epoch": data.per_epoch,
            "val_patches": len(data.val_rgb), "torch": torch.__version__,
            "freeze": {"first": freeze.first, "names": list(freeze.names), "bn": freeze.bn}, "weights": weights,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def prepare_fresh(job: Job, device: torch.device | str = "cpu") -> tuple[list[Prepared], Path | None]:
    args = job.args
    if not args.specs:
        raise NetdslError("no spec to train", hint="netdsl train specs/unet.net")
    sweeps = options.parse_sweeps(args.sweep)
    precision = resolve(getattr(args, "precision", None), device)
    plans = options.plan_runs(args.specs, job.sets, sweeps, _hyper_from_args(args, precision))
    for plan in plans:
        options.check_hyper(plan.hyper)
    dspec = _data_spec(args)
    texts = {}
    for plan in plans:
        if plan.spec not in texts:
            texts[plan.spec] = read_spec_file(plan.spec)  # the compiler's own checks and messages
    data = D.load_data(dspec)
    dirs, group = _run_dirs(args, plans, sweeps)
    freeze = parse_freeze(args.freeze, args.freeze_bn)
    if args.weights is not None and not Path(args.weights).is_file():
        raise NetdslError("no such weights file", path=args.weights, hint="check the path given to --weights")
    fp = data.fingerprint()
    out: list[Prepared] = []
    for plan, d in zip(plans, dirs):
        torch.manual_seed(plan.hyper.seed)  # the same initial weights whatever else runs first
        model = job.compiler.build(Path(plan.spec), plan.sets, freeze)
        if args.weights is not None:
            load_weights(model, args.weights)
        name, params = identity(model, type(model).__name__, plan.sets)
        check_model(model, len(data.palette), name, path=str(plan.spec))
        out.append(Prepared(plan.label, RunDir(d, plan.label), model, name, plan.hyper, data, "0",
                            create=({**_run_json(plan, name, params, dspec, data, fp, freeze, args.weights),
                                     "precision": precision.to_json()}, texts[plan.spec]), precision=precision))
    return out, group


def _members(root: Path) -> tuple[list[Path], Path | None]:
    """The run directories `--resume` continues: the one named, or a comparison's members."""
    if not (root / "group.json").is_file():
        return [root], None
    g = read_json(root / "group.json", "comparison")
    if g.get("format") != GROUP_FORMAT or not isinstance(g.get("members"), list):
        raise NetdslError("group.json is not a netdsl comparison", path=str(root / "group.json"))
    return [root / str(m) for m in g["members"]], root


def _settings(d: Path, args: argparse.Namespace) -> tuple[str, dict[str, Any], Hyper, D.DataSpec, dict[str, int],
                                                          Freeze, dict[str, Any]]:
    """(label, spec entry, hyper-parameters, data, --set values, freeze, run.json) a run was started with."""
    rj = read_json(d / "run.json", "run")
    try:
        label, spec_info = str(rj["label"]), rj["spec"]
        # Runs written before EMA, channels-last and the fused Adam step existed trained without them:
        # resumed as they started.
        hyper = Hyper(**{"ema": False, "channels_last": False, "fused": False, **rj["train"]})
        dspec = D.DataSpec.from_json(rj["data"])
        sets = {str(k): int(v) for k, v in spec_info["sets"].items()}
        fz = rj.get("freeze") or {}
        freeze = Freeze(first=int(fz.get("first", 0)), names=tuple(str(n) for n in fz.get("names", [])),
                        bn=str(fz.get("bn", "train")))  # type: ignore[arg-type]  # checked by Freeze itself
    except (KeyError, TypeError, ValueError) as err:
        raise NetdslError(f"run.json is incomplete ({err})", path=str(d / "run.json")) from None
    if getattr(args, "ema", None) is not None and bool(args.ema) != hyper.ema:
        raise NetdslError(f"this run was started {'with' if hyper.ema else 'without'} EMA weights; "
                          "--resume keeps that", path=str(d), hint="drop --ema / --no-ema")
    if args.epochs is not None:
        hyper = Hyper(**{**hyper.__dict__, "epochs": args.epochs})
    if getattr(args, "compile", False):
        hyper = Hyper(**{**hyper.__dict__, "compile": True})
    return label, spec_info, hyper, dspec, sets, freeze, rj


def _last_checkpoint(d: Path, fingerprint: Any, epochs: int) -> dict[str, Any] | None:
    if not (d / "last.pt").exists():
        return None
    ckpt = load_checkpoint(d / "last.pt", TASK)
    if ckpt.get("fingerprint") != fingerprint:
        raise NetdslError("checkpoint belongs to another run (its data differs)", path=str(d / "last.pt"))
    if int(ckpt.get("epoch", 0)) > epochs:
        raise NetdslError(f"the run has done {ckpt['epoch']} epochs already; --epochs {epochs} is fewer", path=str(d))
    return ckpt


def prepare_resume(job: Job, device: torch.device | str = "cpu") -> tuple[list[Prepared], Path | None]:
    members, group = _members(resume_dir(job.args))
    datas: dict[str, D.ColourData] = {}
    out: list[Prepared] = []
    for d in members:
        label, spec_info, hyper, dspec, sets, freeze, rj = _settings(d, job.args)
        of_run(hyper.precision, device, str(d / "run.json"))
        palette = load_palette(d / "palette.npy")
        key = f"{dspec.to_json()}|{palette.tobytes().hex()}"
        if key not in datas:
            datas[key] = D.load_data(dspec, palette_override=palette)
        data = datas[key]
        if data.fingerprint() != rj.get("data_fingerprint"):
            raise NetdslError("the training data differs from the data this run started with",
                              path=str(d), hint="restore the original data (or cache), or start a new run")
        ckpt = _last_checkpoint(d, rj.get("data_fingerprint"), hyper.epochs)
        torch.manual_seed(hyper.seed)
        model = job.compiler.build(d / "spec.net", sets, freeze)
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
