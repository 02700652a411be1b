"""Detection's hyperparameters: ultralytics v9.6.0's hyp.scratch.yaml, a `--hyp` YAML over it, and
the loss gains train.py derives from them."""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping

import yaml

from netdsl.errors import NetdslError

# ultralytics v9.6.0 data/hyp.scratch.yaml
HYP_SCRATCH: dict[str, float] = {
    "lr0": 0.01, "lrf": 0.1, "momentum": 0.937, "weight_decay": 0.0005, "warmup_epochs": 3.0,
    "warmup_momentum": 0.8, "warmup_bias_lr": 0.1, "box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0,
    "obj_pw": 1.0, "iou_t": 0.2, "anchor_t": 4.0, "fl_gamma": 0.0, "hsv_h": 0.015, "hsv_s": 0.7,
    "hsv_v": 0.4, "degrees": 0.0, "translate": 0.1, "scale": 0.5, "shear": 0.0, "perspective": 0.0,
    "flipud": 0.0, "fliplr": 0.5, "mosaic": 1.0, "mixup": 0.0, "copy_paste": 0.0,
}
# ultralytics 8.4.190 cfg/default.yaml: the hyperparameters the v8 recipe (trainer_v8) reads. Its
# `nbs` (64) and `close_mosaic` (10) are trainer_v8.NOMINAL_BATCH and `--close-mosaic`.
HYP_V8: dict[str, float] = {
    "lr0": 0.01, "lrf": 0.01, "momentum": 0.937, "weight_decay": 0.0005, "warmup_epochs": 3.0,
    "warmup_momentum": 0.8, "warmup_bias_lr": 0.1, "box": 7.5, "cls": 0.5, "dfl": 1.5, "hsv_h": 0.015,
    "hsv_s": 0.7, "hsv_v": 0.4, "degrees": 0.0, "translate": 0.1, "scale": 0.5, "shear": 0.0,
    "perspective": 0.0, "flipud": 0.0, "fliplr": 0.5, "mosaic": 1.0, "mixup": 0.0, "copy_paste": 0.0,
}
HYP_V8_SOURCE = "ultralytics 8.4's default.yaml"
# Keys of hyp.scratch.yaml that this trainer does not use (iou_t: ultralytics' loss does not either).
NOT_IMPLEMENTED = ("iou_t", "mixup", "copy_paste")
EXTRA_KEYS = {"label_smoothing": 0.0}  # train.py's option, accepted in --hyp too


def read_hyp(path: str | None, base: Mapping[str, float] | None = None,
             source: str = "hyp.scratch.yaml") -> tuple[dict[str, float], list[str]]:
    """hyp.scratch.yaml's values (or `base`'s, named `source` in messages: the v8 recipe's
    default.yaml) overridden by the YAML at `path`; `(hyp, notes)`."""
    defaults = dict(base) if base is not None else {**HYP_SCRATCH, **EXTRA_KEYS}
    hyp = dict(defaults)
    if path is None:
        return hyp, []
    try:
        text = open(path, encoding="utf-8").read()
        cfg = yaml.safe_load(text)
    except FileNotFoundError:
        raise NetdslError("hyperparameter file not found", path=path, hint="check the path given to --hyp") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise NetdslError(f"cannot read the hyperparameter YAML: {str(err).splitlines()[0]}", path=path) from None
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise NetdslError(f"a hyperparameter YAML is a mapping of names to numbers (as {source})", path=path)
    notes = []
    for k, v in cfg.items():
        if k not in hyp:
            close = difflib.get_close_matches(str(k), list(hyp), 1)
            raise NetdslError(f"unknown hyperparameter {k!r}", path=path,
                              hint=f"did you mean {close[0]!r}?" if close else f"the keys of {source}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise NetdslError(f"hyperparameter {k!r} must be a number, not {v!r}", path=path)
        hyp[str(k)] = float(v)
    used = [k for k in NOT_IMPLEMENTED if k in cfg and k in defaults and cfg[k] != defaults[k]]
    if used:
        notes.append(f"{path}: {', '.join(used)} ignored (mixup and copy-paste augmentation are not implemented; "
                     f"iou_t is unused, as in ultralytics)")
    return hyp, notes


def loss_gains(hyp: Mapping[str, float], nl: int, nc: int, img: int) -> dict[str, float]:
    """The loss hyperparameters as train.py rescales them for the head's levels, classes and size."""
    h = dict(hyp)
    h["box"] = hyp["box"] * 3.0 / nl
    h["cls"] = hyp["cls"] * nc / 80.0 * 3.0 / nl
    h["obj"] = hyp["obj"] * (img / 640.0) ** 2 * 3.0 / nl
    return h
