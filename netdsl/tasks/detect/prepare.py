"""A detection run checked and ready before its directory is made: a fresh one from the flags and the
spec's concrete graph (analysed once, when the task was chosen), or a resumed one from run.json."""
from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from netdsl.concrete import ConcreteGraph, Merge
from netdsl.errors import NetdslError
from netdsl.freeze import parse_freeze
from netdsl.ops.detect_v8 import DetectV8 as DetectV8Op
from netdsl.parsing import read_spec_file
from netdsl.tasks.checkpoint import load_checkpoint
from netdsl.tasks.detect.augment import DEFAULT_AUGMENT
from netdsl.tasks.detect.checks import REPAIR, check_hyp_file, check_lr, class_count_error, resume_settings
from netdsl.tasks.detect.data import DetectionData, load_detection_data
from netdsl.tasks.detect.hyp import HYP_SCRATCH, HYP_V8, HYP_V8_SOURCE, read_hyp
from netdsl.tasks.detect.predict import detect_head, max_stride
from netdsl.tasks.detect.trainer import TASK, DetHyper, data_fingerprint
from netdsl.tasks.detect.trainer_v8 import OPTIMIZERS, RECIPE, V8Hyper, v8_head
from netdsl.tasks.engine import Job, task_head
from netdsl.tasks.precision import Precision, of_run, resolve
from netdsl.tasks.rundir import ensure_fresh, read_json, resume_dir
from netdsl.weights import load_weights

# Flags of the v8 recipe (a network ending in detect_v8) that the YOLOv3 one does not take.
V8_FLAGS = ("optimizer", "close_mosaic")
# Colourization flags that mean nothing for detection.
COLOUR_FLAGS = ("sweep", "category", "palette", "colours", "max_train", "max_val", "fresh_patches", "compile")
DEFAULT_IMG = 640
# run.json's "augment": runs without it were made before mosaic and affine augmentation existed and
# resume without them (so they still repeat exactly).
AUGMENT_VERSION = "mosaic-affine-v1"


@dataclass
class Prepared:
    """The run: its directory, model, data and settings; `create` (run.json, spec text) when fresh,
    `ckpt` (last.pt) when resumed."""

    dir: Path
    model: nn.Module
    data: DetectionData
    hyper: DetHyper | V8Hyper  # V8Hyper: the v8 recipe (recipe "v8")
    hyp: dict[str, float]
    fingerprint: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    create: tuple[dict[str, Any], str] | None = None
    ckpt: dict[str, Any] | None = None
    recipe: str = "v3"  # "v8": trainer_v8.V8Trainer
    precision: Precision | None = None  # how a fresh run's precision was chosen (None: resumed)


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) not in (None, [], False)]


def augment_hyp(hyp: dict[str, float]) -> dict[str, float]:
    """The hyperparameters the data augmentation takes (netdsl.tasks.detect.augment.DEFAULT_AUGMENT's keys)."""
    return {k: hyp[k] for k in DEFAULT_AUGMENT}


def ema_wanted(args: argparse.Namespace) -> bool:
    """EMA weights unless `--no-ema` (`args.ema` False; a BooleanOptionalAction defaulting to None):
    on by default for detection, as in ultralytics."""
    ema = getattr(args, "ema", None)
    return True if ema is None else bool(ema)


def _options(args: argparse.Namespace) -> tuple[DetHyper, dict[str, float], list[str]]:
    hyp, notes = read_hyp(args.hyp)
    check_hyp_file(hyp, args.hyp, _hyp_keys(args.hyp), read_hyp(None)[0])
    if args.lr is not None:
        check_lr(args.lr)
        hyp["lr0"] = float(args.lr)
    h = DetHyper()
    over = {k: getattr(args, k) for k in ("epochs", "batch_size", "seed") if getattr(args, k) is not None}
    over["ema"] = ema_wanted(args)
    over["linear_lr"] = bool(getattr(args, "linear_lr", False))
    hyper = DetHyper(**{**h.__dict__, **over})
    if hyper.epochs < 1 or hyper.batch_size < 1:
        raise NetdslError("--epochs and --batch-size must be at least 1")
    if hyper.seed < 0:
        raise NetdslError(f"--seed {hyper.seed}: need a non-negative integer")
    return hyper, hyp, notes


def _options_v8(args: argparse.Namespace) -> tuple[V8Hyper, dict[str, float], list[str]]:
    """The v8 recipe's settings: default.yaml's hyperparameters under `--hyp`, `--optimizer`, `--close-mosaic`."""
    hyp, notes = read_hyp(args.hyp, HYP_V8, HYP_V8_SOURCE)
    check_hyp_file(hyp, args.hyp, _hyp_keys(args.hyp), HYP_V8, HYP_V8_SOURCE)
    if args.lr is not None:
        check_lr(args.lr)
        hyp["lr0"] = float(args.lr)
    over: dict[str, Any] = {k: getattr(args, k) for k in ("epochs", "batch_size", "seed", "optimizer", "close_mosaic")
                            if getattr(args, k, None) is not None}
    over["ema"] = ema_wanted(args)
    hyper = V8Hyper(**{**V8Hyper().__dict__, **over})
    if hyper.epochs < 1 or hyper.batch_size < 1:
        raise NetdslError("--epochs and --batch-size must be at least 1")
    if hyper.seed < 0:
        raise NetdslError(f"--seed {hyper.seed}: need a non-negative integer")
    if hyper.close_mosaic < 0:
        raise NetdslError(f"--close-mosaic {hyper.close_mosaic}: need a number of epochs, 0 or more",
                          hint="0 keeps mosaic to the end")
    if hyper.optimizer == "auto" and (args.lr is not None or "lr0" in _hyp_keys(args.hyp)):
        notes.append("--optimizer auto chooses its own lr and momentum (as ultralytics): lr0 is ignored; "
                     "give --optimizer SGD or AdamW to use it")
    if getattr(args, "linear_lr", False):
        notes.append("--linear-lr: the v8 recipe decays the learning rate linearly already")
    return hyper, hyp, notes


def _is_v8(head: Merge) -> bool:
    """Whether the network's head is detect_v8 (trained with the v8 recipe)."""
    return isinstance(head.op, DetectV8Op)


def _hyp_keys(path: str | None) -> set[str]:
    """The keys the `--hyp` file sets (read_hyp has read it already, so it parses)."""
    if path is None:
        return set()
    cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return {str(k) for k in cfg} if isinstance(cfg, dict) else set()


def _head(cg: ConcreteGraph, spec: Path, text: str) -> Merge:
    head = task_head(cg)
    if head is None:  # chosen for this spec's graph, so it has one
        raise NetdslError("the spec has no detect head", path=str(spec))
    decode = head.args.get("decode", "ultralytics")
    if decode != "ultralytics":
        # yolo_loss trains ultralytics' box parametrisation; darknet's decoding would then read the
        # trained outputs wrongly at inference.
        raise NetdslError(f'detect(decode="{decode}"): netdsl trains the ultralytics '
                          "parametrisation of boxes only", head.span,
                          'drop decode="darknet" to train (the weights load as before; the head adapts)'
                          ).with_source(str(spec), text)
    return head


def _image_size(args: argparse.Namespace, sets: dict[str, int], stride: int) -> int:
    img: int | None = args.img
    if img is None:
        hw = {sets[k] for k in ("H", "W") if k in sets}
        img = hw.pop() if len(hw) == 1 else DEFAULT_IMG
    for k in ("H", "W"):
        if k in sets and sets[k] != img:
            raise NetdslError(f"--set {k}={sets[k]} differs from --img {img}", hint="give the size once, with --img")
    if img < stride or img % stride:
        up = max(stride, -(-img // stride) * stride)
        raise NetdslError(f"--img {img} is not a multiple of the network's largest stride {stride}", hint=f"--img {up}")
    return img


def _run_json(spec: Path, model: Any, sets: dict[str, int], hyper: DetHyper | V8Hyper, hyp: dict[str, float],
              args: argparse.Namespace, data: DetectionData, freeze: Any) -> dict[str, Any]:
    return {"task": TASK, "label": spec.stem,
            "spec": {"path": str(spec), "name": model.spec_name, "sets": sets, "params": dict(model.params)},
            "train": hyper.__dict__, "hyp": hyp, "hyp_file": args.hyp,
            "data": {"source": str(Path(args.data).expanduser().resolve()) if args.data else None,
                     "skip_bad": bool(args.skip_bad), "cache": data.train.cache},
            "data_description": data.description, "data_fingerprint": data_fingerprint(data),
            "nc": data.nc, "names": data.names, "train_images": len(data.train), "val_images": len(data.val),
            "torch": torch.__version__, "freeze": {"first": freeze.first, "names": list(freeze.names),
                                                   "bn": freeze.bn},
            "weights": args.weights, "augment": AUGMENT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "recipe": RECIPE if isinstance(hyper, V8Hyper) else "v3"}


def prepare_fresh(job: Job, device: torch.device | str = "cpu") -> Prepared:
    args = job.args
    if len(args.specs) != 1:
        raise NetdslError("detection training takes one spec at a time", hint="run netdsl train once per spec")
    bad = _given(args, COLOUR_FLAGS)
    if bad:
        raise NetdslError(f"{bad[0]} applies to colourization training, not to a detection spec")
    spec = Path(args.specs[0])
    text = read_spec_file(spec)
    sets = dict(job.sets)
    cg = job.graphs[args.specs[0]]
    if cg is None:
        raise NetdslError("detection training needs the spec's concrete graph", path=str(spec))
    head = _head(cg, spec, text)
    v8 = _is_v8(head)
    if not v8 and _given(args, V8_FLAGS):
        raise NetdslError(f"{_given(args, V8_FLAGS)[0]} applies to networks ending in detect_v8 (ultralytics 8's "
                          "recipe); a detect network trains with YOLOv3's SGD recipe")
    hyper, hyp, notes = _options_v8(args) if v8 else _options(args)
    stride = max(int(s) for s in (head.args.get("strides") or [32]))
    img = _image_size(args, sets, stride)
    precision = resolve(getattr(args, "precision", None), device)
    hyper = dataclasses.replace(hyper, img=img, precision=precision.used)
    out = Path(args.out) if args.out else Path("runs") / f"{spec.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    ensure_fresh(out)  # before the data is read: both checks are cheap, reading a large set is not
    nc_arg = sets.get("NCLS")
    data = load_detection_data(args.data, img, stride=stride, nc=nc_arg, skip_bad=bool(args.skip_bad),
                               cache=args.cache, hyp=augment_hyp(hyp))
    if "NCLS" in cg.values and nc_arg is None:
        sets["NCLS"] = data.nc
    for k in ("H", "W"):
        if k in cg.values:
            sets[k] = img
    freeze = parse_freeze(args.freeze, args.freeze_bn)
    if args.weights is not None and not Path(args.weights).is_file():
        raise NetdslError("no such weights file", path=args.weights, hint="check the path given to --weights")
    torch.manual_seed(hyper.seed)
    model = job.compiler.build(spec, sets, freeze)
    classes = _head_module(model, v8).classes
    if classes != data.nc:  # DetTrainer refuses it too, but cannot name the spec's line
        raise class_count_error(text, str(spec), classes, data.nc)
    if args.weights is not None:
        load_weights(model, args.weights)
    run_json = {**_run_json(spec, model, sets, hyper, hyp, args, data, freeze), "precision": precision.to_json()}
    return Prepared(out, model, data, hyper, hyp, run_json["data_fingerprint"], notes + data.notes, data.warnings,
                    create=(run_json, text), recipe=RECIPE if v8 else "v3", precision=precision)


def _head_module(model: nn.Module, v8: bool) -> Any:
    """The built network's head module: detect_v8's, or detect's (ValueError without one)."""
    head = v8_head(model) if v8 else detect_head(model)
    if head is None:
        raise ValueError("the model has no detect_v8 head")
    return head


def _last_checkpoint(d: Path, fingerprint: str, epochs: int) -> dict[str, Any] | None:
    if not (d / "last.pt").exists():
        return None
    ckpt = load_checkpoint(d / "last.pt", TASK, "detection training")
    if ckpt.get("fingerprint") != fingerprint:
        raise NetdslError("checkpoint belongs to another run (its data differs)", path=str(d / "last.pt"))
    if int(ckpt.get("epoch", 0)) > epochs:
        raise NetdslError(f"the run has done {ckpt['epoch']} epochs already; --epochs {epochs} is fewer", path=str(d))
    return ckpt


def prepare_resume(job: Job, device: torch.device | str = "cpu") -> Prepared:
    args = job.args
    d = resume_dir(args)
    bad = _given(args, COLOUR_FLAGS)
    if bad:
        raise NetdslError(f"{bad[0]} applies to colourization training, not to a detection run", path=str(d))
    rj = read_json(d / "run.json", "run")
    v8 = rj.get("recipe") == RECIPE
    if v8:
        st = resume_settings(rj, d / "run.json", V8Hyper, {"channels_last": False}, set(HYP_V8), set(HYP_V8))
        if st.hyper.optimizer not in OPTIMIZERS:
            raise NetdslError(f'"train.optimizer" must be one of {", ".join(OPTIMIZERS)}, not {st.hyper.optimizer!r}',
                              path=str(d / "run.json"), hint=REPAIR)
    else:
        # runs written before EMA existed trained without one, before --linear-lr linearly, before
        # channels_last in the standard layout
        st = resume_settings(rj, d / "run.json", DetHyper, {"ema": False, "linear_lr": True, "channels_last": False},
                             set(read_hyp(None)[0]),
                             set(HYP_SCRATCH) | {"label_smoothing"})
    hyper, hyp = st.hyper, dict(st.hyp)
    if not v8 and rj.get("augment") != AUGMENT_VERSION:
        hyp.update(mosaic=0.0, degrees=0.0, translate=0.0, scale=0.0, shear=0.0, perspective=0.0)
    of_run(hyper.precision, device, str(d / "run.json"))  # a bad value or an fp16 run on a CPU: refused here
    if getattr(args, "ema", None) is not None and bool(args.ema) != hyper.ema:
        raise NetdslError(f"this run was started {'with' if hyper.ema else 'without'} EMA weights; "
                          f"--resume keeps that", path=str(d), hint="drop --ema / --no-ema")
    if args.epochs is not None:
        if args.epochs < 1:
            raise NetdslError(f"--epochs {args.epochs}: need at least 1")
        hyper = dataclasses.replace(hyper, epochs=args.epochs)
    torch.manual_seed(hyper.seed)  # as a fresh run seeds before it builds: a restart initialises alike
    model = job.compiler.build(d / "spec.net", st.sets, st.freeze)
    # the network's stride, not load_detection_data's default 32: a run at --img 48 of a stride-16 net resumes
    stride = max(_head_module(model, True).strides) if v8 else max_stride(model)
    if hyper.img % stride:
        raise NetdslError(f'"train.img" must be a multiple of the network\'s largest stride {stride}, not {hyper.img}',
                          path=str(d / "run.json"), hint=REPAIR)
    data = load_detection_data(st.source, hyper.img, stride=stride, nc=st.nc, skip_bad=st.skip_bad,
                               cache=st.cache, hyp=augment_hyp(hyp))
    fp = data_fingerprint(data)
    if fp != st.fingerprint and data_fingerprint(data, legacy=True) == st.fingerprint:
        fp = st.fingerprint  # a run from before the fingerprint ignored where the data lies: its own hash
    if fp != st.fingerprint:
        raise NetdslError("the training data differs from the data this run started with", path=str(d),
                          hint="restore the original data, or start a new run")
    return Prepared(d, model, data, hyper, hyp, fp, ckpt=_last_checkpoint(d, fp, hyper.epochs),
                    recipe=RECIPE if v8 else "v3")
