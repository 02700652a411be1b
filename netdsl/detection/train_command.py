"""`netdsl train SPEC` for a spec whose head is `detect`: checks, run directory, progress, resume.

`netdsl.train.command.run` hands a run here when `is_detection_run(args)` says so: a single spec
whose compiled graph has a `detect` merge, or `--resume` of a run whose run.json says
`"task": "detect"`. Nothing heavy is imported at module level (`netdsl --help` stays fast).

Run directory (as the colourization trainer's): run.json, spec.net, metrics.csv (train box/obj/cls
losses, validation losses, precision, recall, mAP@0.5, mAP@0.5:0.95, lr, seconds, samples/s),
curves.png, samples.png (validation images, true boxes above, predicted below), last.pt and
best.pt (best mAP@0.5:0.95); after every epoch best.pt (if improved), last.pt, then metrics.csv,
each written to a temp file and renamed.

Under torchrun (`torchrun --nproc_per_node N -m netdsl.cli train SPEC ...`) every rank trains its
share of each global batch (`DetTrainer`); rank 0 alone validates, prints and writes; run.json
records `world_size`. Checkpoints are the same as one process's, so either may resume the other.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from netdsl.detection.checks import REPAIR, check_hyp_file, check_lr, class_count_error, resume_settings
from netdsl.errors import NetdslError
from netdsl.train.report import EpochProgress

TASK = "detect"
DETECTION_FLAGS = ("img", "hyp", "cache", "skip_bad", "linear_lr")
# Colourization flags that mean nothing for detection.
COLOUR_FLAGS = ("sweep", "category", "palette", "colours", "max_train", "max_val", "fresh_patches", "precision",
                "compile")
DEFAULT_IMG = 640
# run.json's "augment": runs without it were made before mosaic and affine augmentation existed and
# resume without them (so they still repeat exactly).
AUGMENT_VERSION = "mosaic-affine-v1"


# --------------------------------------------------------------------------------------- dispatch

def _detect_merge(cg: Any) -> Any:
    for st in cg.statements:
        if st.merge is not None and st.merge.merge.name == "detect":
            return st.merge
    return None


def spec_is_detection(spec: str, sets: dict[str, int]) -> bool:
    """True when the spec compiles (at `sets`) to a graph with a `detect` head. A spec that does
    not compile is not judged here: the colourization path reports its errors as before."""
    try:
        text = Path(spec).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if "detect" not in text:  # cheap: most colourization specs never get compiled here
        return False
    try:
        from netdsl.api import analyse_text

        return _detect_merge(analyse_text(text, spec, {k: v for k, v in sets.items()})) is not None
    except Exception:  # noqa: BLE001 - a spec error at other values: try the spec's defaults
        try:
            return _detect_merge(analyse_text(text, spec, {})) is not None
        except Exception:  # noqa: BLE001
            return False


def is_detection_run(args: argparse.Namespace) -> bool:
    """Whether `netdsl train` should run the detection trainer; refuses detection-only flags
    for a colourization run."""
    from netdsl.commands.common import parse_sets

    if getattr(args, "resume", None):
        rj = Path(args.resume) / "run.json"
        try:
            task = json.loads(rj.read_text()).get("task")
        except (OSError, ValueError, AttributeError):
            task = None
        det = task == TASK
    else:
        try:
            sets = parse_sets(args.sets)
        except NetdslError:
            sets = {}
        det = any(spec_is_detection(s, sets) for s in args.specs or [])
    if not det:
        given = [f for f in DETECTION_FLAGS if getattr(args, f, None) not in (None, False)]
        if given:
            raise NetdslError(f"--{given[0].replace('_', '-')} applies to detection specs (a spec ending in detect)",
                              hint="drop it for colourization training")
    return det


# --------------------------------------------------------------------------------------- checks

def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) not in (None, [], False)]


def augment_hyp(hyp: dict[str, float]) -> dict[str, float]:
    """The hyperparameters the data augmentation takes (netdsl.detection.augment.DEFAULT_AUGMENT's keys)."""
    from netdsl.detection.augment import DEFAULT_AUGMENT

    return {k: hyp[k] for k in DEFAULT_AUGMENT}


def ema_wanted(args: argparse.Namespace) -> bool:
    """EMA weights unless `--no-ema` (`args.ema` False; netdsl/train/command.py defines the flag, a
    BooleanOptionalAction defaulting to None): on by default for detection, as in ultralytics."""
    ema = getattr(args, "ema", None)
    return True if ema is None else bool(ema)


def _options(args: argparse.Namespace) -> tuple[Any, dict[str, float], list[str]]:
    from netdsl.detection.trainer import DetHyper, read_hyp

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


def _hyp_keys(path: str | None) -> set[str]:
    """The keys the `--hyp` file sets (read_hyp has read it already, so it parses)."""
    if path is None:
        return set()
    import yaml

    cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return {str(k) for k in cfg} if isinstance(cfg, dict) else set()


def _prepare_fresh(args: argparse.Namespace) -> dict[str, Any]:
    from netdsl.api import analyse_text
    from netdsl.commands.common import parse_sets
    from netdsl.detection.data import load_detection_data
    from netdsl.freeze import parse_freeze
    from netdsl.parsing import read_spec_file
    from netdsl.train.rundir import ensure_fresh

    if len(args.specs) != 1:
        raise NetdslError("detection training takes one spec at a time", hint="run netdsl train once per spec")
    bad = _given(args, COLOUR_FLAGS)
    if bad:
        raise NetdslError(f"{bad[0]} applies to colourization training, not to a detection spec")
    spec = Path(args.specs[0])
    text = read_spec_file(spec)
    sets = parse_sets(args.sets)
    hyper, hyp, notes = _options(args)
    cg = analyse_text(text, str(spec), dict(sets))
    merge = _detect_merge(cg)
    if merge is not None and merge.args.get("decode", "ultralytics") != "ultralytics":
        # yolo_loss trains ultralytics' box parametrisation; darknet's decoding would then read the
        # trained outputs wrongly at inference.
        from netdsl.api import located

        with located(str(spec), text):
            raise NetdslError(f'detect(decode="{merge.args.get("decode")}"): netdsl trains the ultralytics '
                              "parametrisation of boxes only", merge.span,
                              'drop decode="darknet" to train (the weights load as before; the head adapts)')
    params = cg.values
    strides = [int(s) for s in (merge.args.get("strides") or [32])] if merge is not None else [32]
    stride = max(strides)
    img = args.img
    if img is None:
        hw = {sets[k] for k in ("H", "W") if k in sets}
        img = hw.pop() if len(hw) == 1 else DEFAULT_IMG
    for k in ("H", "W"):
        if k in sets and sets[k] != img:
            raise NetdslError(f"--set {k}={sets[k]} differs from --img {img}", hint="give the size once, with --img")
    if img < stride or img % stride:
        up = max(stride, -(-img // stride) * stride)
        raise NetdslError(f"--img {img} is not a multiple of the network's largest stride {stride}", hint=f"--img {up}")
    hyper = type(hyper)(**{**hyper.__dict__, "img": img})
    out = Path(args.out) if args.out else Path("runs") / f"{spec.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    ensure_fresh(out)  # before the data is read: both checks are cheap, reading a large set is not
    nc_arg = sets.get("NCLS")
    data = load_detection_data(args.data, img, stride=stride, nc=nc_arg, skip_bad=bool(args.skip_bad),
                               cache=bool(args.cache), hyp=augment_hyp(hyp))
    if "NCLS" in params and nc_arg is None:
        sets["NCLS"] = data.nc
    for k in ("H", "W"):
        if k in params:
            sets[k] = img
    freeze = parse_freeze(args.freeze, args.freeze_bn)
    if args.weights is not None and not Path(args.weights).is_file():
        raise NetdslError("no such weights file", path=args.weights, hint="check the path given to --weights")
    import torch

    from netdsl.api import build

    torch.manual_seed(hyper.seed)
    model = build(str(spec), freeze=freeze, **sets) if freeze else build(str(spec), **sets)
    from netdsl.detection.predict import detect_head

    classes = detect_head(model).classes
    if classes != data.nc:  # DetTrainer refuses it too, but cannot name the spec's line
        raise class_count_error(text, str(spec), classes, data.nc)
    if args.weights is not None:
        from netdsl.weights import load_weights

        load_weights(model, args.weights)
    from netdsl.detection.trainer import data_fingerprint

    run_json = {"task": TASK, "label": spec.stem,
                "spec": {"path": str(spec), "name": model.spec_name, "sets": sets, "params": dict(model.params)},
                "train": hyper.__dict__, "hyp": hyp, "hyp_file": args.hyp,
                "data": {"source": str(Path(args.data).expanduser().resolve()) if args.data else None,
                         "skip_bad": bool(args.skip_bad), "cache": bool(args.cache)},
                "data_description": data.description, "data_fingerprint": data_fingerprint(data),
                "nc": data.nc, "names": data.names, "train_images": len(data.train), "val_images": len(data.val),
                "torch": torch.__version__, "freeze": {"first": freeze.first, "names": list(freeze.names),
                                                       "bn": freeze.bn},
                "weights": args.weights, "augment": AUGMENT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return {"dir": out, "model": model, "data": data, "hyper": hyper, "hyp": hyp, "notes": notes + data.notes,
            "warnings": data.warnings, "create": (run_json, text), "ckpt": None, "fingerprint": run_json["data_fingerprint"]}


def _prepare_resume(args: argparse.Namespace) -> dict[str, Any]:
    from netdsl.api import build
    from netdsl.detection.data import load_detection_data
    from netdsl.detection.predict import max_stride
    from netdsl.detection.trainer import CHECKPOINT_FORMAT, HYP_SCRATCH, DetHyper, data_fingerprint, read_hyp
    from netdsl.train.command import resume_dir
    from netdsl.train.rundir import load_checkpoint, read_json

    d = resume_dir(args)
    bad = _given(args, COLOUR_FLAGS)
    if bad:
        raise NetdslError(f"{bad[0]} applies to colourization training, not to a detection run", path=str(d))
    rj = read_json(d / "run.json", "run")
    known = read_hyp(None)[0]
    # runs written before EMA existed trained without one, before --linear-lr linearly
    st = resume_settings(rj, d / "run.json", DetHyper, {"ema": False, "linear_lr": True}, set(known),
                         set(HYP_SCRATCH) | {"label_smoothing"})
    hyper, hyp = st.hyper, dict(st.hyp)
    if rj.get("augment") != AUGMENT_VERSION:
        hyp.update(mosaic=0.0, degrees=0.0, translate=0.0, scale=0.0, shear=0.0, perspective=0.0)
    if getattr(args, "ema", None) is not None and bool(args.ema) != hyper.ema:
        raise NetdslError(f"this run was started {'with' if hyper.ema else 'without'} EMA weights; "
                          f"--resume keeps that", path=str(d), hint="drop --ema / --no-ema")
    if args.epochs is not None:
        if args.epochs < 1:
            raise NetdslError(f"--epochs {args.epochs}: need at least 1")
        hyper = DetHyper(**{**hyper.__dict__, "epochs": args.epochs})
    import torch

    torch.manual_seed(hyper.seed)  # as a fresh run seeds before it builds: a restart initialises alike
    spec = d / "spec.net"
    model = build(str(spec), freeze=st.freeze, **st.sets) if st.freeze else build(str(spec), **st.sets)
    # the network's stride, not load_detection_data's default 32: a run at --img 48 of a stride-16 net resumes
    stride = max_stride(model)
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
    ckpt = None
    if (d / "last.pt").exists():
        ckpt = load_checkpoint(d / "last.pt", CHECKPOINT_FORMAT, "detection training")
        if ckpt.get("fingerprint") != fp:
            raise NetdslError("checkpoint belongs to another run (its data differs)", path=str(d / "last.pt"))
        if int(ckpt.get("epoch", 0)) > hyper.epochs:
            raise NetdslError(f"the run has done {ckpt['epoch']} epochs already; --epochs {hyper.epochs} is fewer",
                              path=str(d))
    return {"dir": d, "model": model, "data": data, "hyper": hyper, "hyp": hyp, "notes": [], "warnings": [],
            "create": None, "ckpt": ckpt, "fingerprint": fp}


# --------------------------------------------------------------------------------------- files

def write_metrics(path: Path, rows: list[Any]) -> None:
    from netdsl.detection.trainer import DetRow
    from netdsl.train.files import atomic_write_rows_csv

    atomic_write_rows_csv(path / "metrics.csv", DetRow, rows)


def save_epoch(path: Path, trainer: Any, fingerprint: str) -> None:
    import torch

    from netdsl.train.files import atomic_write

    state = trainer.state({"fingerprint": fingerprint})
    if trainer.history.best_epoch == trainer.epoch:
        atomic_write(path / "best.pt", lambda fh: torch.save(state, fh))
    atomic_write(path / "last.pt", lambda fh: torch.save(state, fh))
    write_metrics(path, trainer.history.rows)


def curves(rows: list[Any], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    from netdsl.train.plots import _save

    fig = Figure(figsize=(12, 4))
    ax_l, ax_m = fig.subplots(1, 2)
    ep = [r.epoch for r in rows]
    for i, k in enumerate(("box", "obj", "cls")):
        ax_l.plot(ep, [getattr(r, k) for r in rows], color=f"C{i}", marker="o", ms=3, label=f"train {k}")
        ax_l.plot(ep, [getattr(r, "val_" + k) for r in rows], color=f"C{i}", ls="--", label=f"val {k}")
    for i, (k, name) in enumerate((("precision", "precision"), ("recall", "recall"), ("map50", "mAP@0.5"),
                                   ("map50_95", "mAP@0.5:0.95"))):
        ax_m.plot(ep, [getattr(r, k) for r in rows], color=f"C{i}", marker="o", ms=3, label=name)
    ax_l.set(xlabel="epoch", ylabel="weighted loss", title=f"{title}: losses")
    ax_m.set(xlabel="epoch", title="validation", ylim=(0, 1))
    for ax in (ax_l, ax_m):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def samples(trainer: Any, path: Path, title: str, names: list[str]) -> None:
    """Validation images: true boxes (top row), predictions at conf 0.25 (bottom row)."""
    import numpy as np
    from matplotlib.figure import Figure

    from netdsl.detection.draw import draw_detections
    from netdsl.detection.trainer import sample_images, truth
    from netdsl.train.plots import _save

    images, targets = sample_images(trainer.data.val)
    dets = trainer.predict_letterboxed(images)
    gts = truth(targets, len(images), trainer.hyper.img)
    n = len(images)
    fig = Figure(figsize=(2.2 * n, 4.8))
    axes = fig.subplots(2, n, squeeze=False)
    for c in range(n):
        im = (images[c].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        g = gts[c]
        true = np.concatenate([g["boxes"], np.ones((len(g["boxes"]), 1)), g["classes"][:, None]], 1)
        for r, boxes in enumerate((true, dets[c].numpy())):
            ax = axes[r][c]
            ax.imshow(draw_detections(im, boxes, names), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_ylabel("truth")
    axes[1][0].set_ylabel("prediction")
    fig.suptitle(title)
    _save(fig, path)


# --------------------------------------------------------------------------------------- progress

class Progress(EpochProgress[Any]):
    """The detection trainer's display: the bar notes the running box/obj/cls losses."""

    def line(self, row: Any) -> str:
        return (f"{self._label}  epoch {row.epoch}/{self._epochs}  box {row.box:.4f}  obj {row.obj:.4f}  "
                f"cls {row.cls:.4f}  P {row.precision:.3f}  R {row.recall:.3f}  mAP@0.5 {row.map50:.3f}  "
                f"mAP@0.5:0.95 {row.map50_95:.3f}  {row.seconds:.1f}s")

    def batch_note(self, *state: Any) -> str:
        (means,) = state  # DetTrainer passes the epoch's running mean losses
        b, o, c = means.tolist()
        return f"box {b:.4f} obj {o:.4f} cls {c:.4f}"


def after_epoch(trainer: Any) -> None:
    """Called after each epoch's files are written (a seam for tests that interrupt a run)."""


# --------------------------------------------------------------------------------------- run

def run(args: argparse.Namespace) -> int:
    from netdsl.train import distributed

    if args.device is not None:
        distributed.device_ok(args.device)
    dist, device = distributed.init(args.device)
    try:
        rc = _run(args, dist, device)
        # Ranks leave together: one tearing gloo down while rank 0 still writes can abort.
        dist.barrier()
        return rc
    finally:
        distributed.shutdown()


def _run(args: argparse.Namespace, dist: Any, device: Any) -> int:
    p = _prepare_resume(args) if args.resume else _prepare_fresh(args)
    dist.barrier()  # every rank has checked the run directory before rank 0 creates it
    from netdsl.detection.trainer import DetTrainer
    from netdsl.train.files import atomic_write_json, atomic_write_text

    out: Path = p["dir"]
    trainer = DetTrainer(p["model"], p["data"], p["hyper"], p["hyp"], device, dist)
    main = dist.is_main
    if p["create"] is not None and main:
        run_json, text = p["create"]
        run_json["device"], run_json["world_size"] = str(device), dist.world
        try:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "spec.net", text)
            atomic_write_json(out / "run.json", {"format": "netdsl-run-v1", **run_json})
        except OSError as err:  # checked writable before; this is a place that changed since
            raise NetdslError(f"cannot create the run directory: {err.strerror or err}", path=str(out),
                              hint="choose another --out") from None
    elif main:
        for tmp in out.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    if p["ckpt"] is not None:
        trainer.restore(p["ckpt"], str(out / "last.pt"))
        if main:
            write_metrics(out, trainer.history.rows)
    rep = Progress.choose(args.quiet, main)
    for note in p["notes"]:
        rep.message(f"note: {note}")
    if p["warnings"]:
        rep.message(f"warning: {len(p['warnings'])} data problems skipped, e.g. {p['warnings'][0]}")
    h, data, label = p["hyper"], p["data"], out.name
    rep.message(f"{label}: {trainer.model.spec_name if hasattr(trainer.model, 'spec_name') else 'model'}, "
                f"{data.description}, {data.nc} classes, img {h.img}, batch {h.batch_size} "
                f"(accumulate {trainer.base_accumulate}), {h.epochs} epochs"
                f"{', EMA weights' if h.ema else ''}"
                f"{f', {dist.world} processes' if dist.world > 1 else ''} -> {out}"
                + (f" (resuming after epoch {trainer.epoch})" if trainer.epoch else ""))
    failure = None
    rep.start(label, h.epochs, trainer.epoch, len(data.train))
    try:
        while trainer.epoch < h.epochs:
            row = trainer.run_epoch(rep.on_batch)
            if main:
                save_epoch(out, trainer, p["fingerprint"])
            rep.epoch(row)
            after_epoch(trainer)
    except NetdslError as err:
        if type(err).__name__ != "NonFiniteLoss":
            raise
        err.path = str(out / "last.pt") if trainer.epoch else str(out)
        failure = err
    finally:
        rep.end()
    rows = trainer.history.rows
    if rows and main:
        curves(rows, out / "curves.png", label)
        last = rows[-1]
        samples(trainer, out / "samples.png", f"{label}: epoch {last.epoch}, mAP@0.5 {last.map50:.3f}, "
                                                 f"mAP@0.5:0.95 {last.map50_95:.3f}", data.names)
        best = next(r for r in rows if r.epoch == trainer.history.best_epoch)
        rep.message(f"done: P {last.precision:.3f} R {last.recall:.3f} mAP@0.5 {last.map50:.3f} "
                    f"mAP@0.5:0.95 {last.map50_95:.3f} (best mAP@0.5:0.95 {best.map50_95:.3f} at epoch "
                    f"{best.epoch}) -> {out}")
    if failure is not None:
        raise failure
    return 0
