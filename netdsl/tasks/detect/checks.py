"""Checks of detection training's settings, made before anything is created or trained.

- hyperparameters (`--hyp` file, `--lr`, a resumed run.json's "hyp"): finite and in the range
  their meaning allows (`HYP_RANGES`); a value out of range is an error located at its line in the
  `--hyp` file. `weight_decay: 1.0e+39` is a finite double that overflowed float32 in the
  optimizer's first step and left a run directory behind;
- run.json on `--resume`: every value the resume reads, type and range, an error naming the file
  and the key (`"train.img" must be a positive integer, not 'x'`) instead of a traceback later;
- the detect head's class count against the data's, with the fix that works for the spec at
  hand: `--set P=n` when `classes=P` names a parameter, else an edit of the spec's line.

No torch here: everything runs before the model is built.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netdsl import ir
from netdsl.errors import NetdslError, Span
from netdsl.freeze import Freeze
from netdsl.limits import MAX_VALUE
from netdsl.ops import REGISTRY
from netdsl.parsing import parse_text
from netdsl.tasks.detect.labels import yaml_span

# The range each hyperparameter of hyp.scratch.yaml (plus train.py's label_smoothing) must lie in,
# as (low, high, low included, high included), from what it means there: learning rates and loss
# gains positive or non-negative, momenta below 1 (torch's Nesterov SGD needs momentum > 0),
# probabilities and fractions in [0, 1], `scale` below 1 (uniform(1 - scale, 1 + scale) must stay
# positive), angles in degrees, `perspective` 0-0.001 (the range hyp.scratch.yaml's comment gives),
# `anchor_t` at least 1 (a ratio max(r, 1/r) is never below 1). The upper bounds are far above any
# published setting: they catch typos, not experiments.
HYP_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "lr0": (0, 10, False, True), "lrf": (0, 1, True, True), "momentum": (0, 1, False, False),
    "weight_decay": (0, 1, True, True), "warmup_epochs": (0, 1e6, True, True),
    "warmup_momentum": (0, 1, True, False), "warmup_bias_lr": (0, 10, True, True),
    "box": (0, 1e3, True, True), "cls": (0, 1e3, True, True), "obj": (0, 1e3, True, True),
    "cls_pw": (0, 1e3, False, True), "obj_pw": (0, 1e3, False, True), "iou_t": (0, 1, True, True),
    "anchor_t": (1, 1e3, True, True), "fl_gamma": (0, 10, True, True),
    "hsv_h": (0, 1, True, True), "hsv_s": (0, 1, True, True), "hsv_v": (0, 1, True, True),
    "degrees": (0, 180, True, True), "translate": (0, 1, True, True), "scale": (0, 1, True, False),
    "shear": (0, 45, True, True), "perspective": (0, 0.001, True, True),
    "flipud": (0, 1, True, True), "fliplr": (0, 1, True, True), "mosaic": (0, 1, True, True),
    "mixup": (0, 1, True, True), "copy_paste": (0, 1, True, True), "label_smoothing": (0, 1, True, True),
}
# The v8 recipe's keys that hyp.scratch.yaml lacks (ultralytics 8's default.yaml): the DFL loss gain.
HYP_V8_RANGES: dict[str, tuple[float, float, bool, bool]] = {"dfl": (0, 1e3, True, True)}
_RANGES = {**HYP_RANGES, **HYP_V8_RANGES}
FLOAT32_MAX = 3.4028234663852886e38  # a key without a range still has to fit the tensors it ends up in
REPAIR = "restore run.json as the run wrote it, or start a new run"
_MISSING = object()


def _is_detect(merge: str) -> bool:
    """Whether a statement starts with the op a detector ends in (the op's `task` is "detect")."""
    op = REGISTRY.get(merge)
    return op is not None and op.task == "detect"


def _interval(lo: float, hi: float, lo_in: bool, hi_in: bool) -> str:
    if lo_in and hi_in:
        return f"between {lo:g} and {hi:g}"
    low = f"at least {lo:g}" if lo_in else f"above {lo:g}"
    return f"{low} and {'at most' if hi_in else 'below'} {hi:g}"


def hyp_problem(key: str, value: Any) -> str | None:
    """What is wrong with `value` for hyperparameter `key` (`must be ...`), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "must be a finite number"
    if key not in _RANGES:
        return None if abs(value) <= FLOAT32_MAX else f"must be at most {FLOAT32_MAX:.3g} in size"
    lo, hi, lo_in, hi_in = _RANGES[key]
    inside = (lo <= value if lo_in else lo < value) and (value <= hi if hi_in else value < hi)
    return None if inside else f"must be {_interval(lo, hi, lo_in, hi_in)}"


def check_hyp_file(hyp: Mapping[str, float], path: str | None, given: set[str],
                   defaults: Mapping[str, float], source: str = "hyp.scratch.yaml") -> None:
    """Every value of `hyp` in range; one the `--hyp` file at `path` sets (`given`: its keys) is
    located at its line there. `defaults`: `source`'s values (hyp.scratch.yaml's), for the hint."""
    for key, value in hyp.items():
        problem = hyp_problem(key, value)
        if problem is None:
            continue
        hint = f"{source} has {key}: {defaults[key]:g}" if key in defaults else None
        if path is None or key not in given:
            raise NetdslError(f"hyperparameter {key!r} is {value!r}; it {problem}", hint=hint)
        text = Path(path).read_text(encoding="utf-8")
        raise NetdslError(f"hyperparameter {key!r} is {value:g}; it {problem}", yaml_span(text, key, value=True),
                          hint, path=path, source=text, breaks="yaml")


def check_lr(lr: float) -> None:
    problem = hyp_problem("lr0", lr)
    if problem is not None:
        raise NetdslError(f"--lr {lr:g}: the learning rate {problem}", hint="e.g. --lr 0.01 (hyp.scratch.yaml's lr0)")


# --------------------------------------------------------------------------------------- run.json

def _shown(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 60 else s[:57] + "..."


def _bad(path: Path, key: str, want: str, value: Any) -> NetdslError:
    return NetdslError(f'"{key}" must be {want}, not {_shown(value)}', path=str(path), hint=REPAIR)


def _get(obj: Mapping[str, Any], key: str, path: Path, default: Any = _MISSING) -> Any:
    """run.json's value at a dotted `key` ("spec.sets"), each level checked to be an object."""
    cur: Any = obj
    walked: list[str] = []
    for part in key.split("."):
        if not isinstance(cur, dict):
            raise _bad(path, ".".join(walked), "an object", cur)
        walked.append(part)
        if part not in cur:
            if default is not _MISSING:
                return default
            raise NetdslError(f'"{key}" is missing', path=str(path), hint=REPAIR)
        cur = cur[part]
    return cur


def _checked_int(v: Any, key: str, path: Path, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v < MAX_VALUE:
        raise _bad(path, key, "a positive integer" if low == 1 else f"an integer of at least {low}", v)
    return v


def _int(obj: Mapping[str, Any], key: str, path: Path, low: int, default: Any = _MISSING) -> int:
    return _checked_int(_get(obj, key, path, default), key, path, low)


def _bool(obj: Mapping[str, Any], key: str, path: Path, default: bool) -> bool:
    v = _get(obj, key, path, default)
    if not isinstance(v, bool):
        raise _bad(path, key, "true or false", v)
    return v


def _dict(obj: Mapping[str, Any], key: str, path: Path, default: Any = _MISSING) -> dict[str, Any]:
    v = _get(obj, key, path, default)
    if not isinstance(v, dict):
        raise _bad(path, key, "an object", v)
    return v


def _hyper(rj: Mapping[str, Any], path: Path, hyper_type: type, legacy: Mapping[str, Any]) -> Any:
    """`hyper_type` (DetHyper) from "train": every field checked against its default's type;
    `legacy`: values for fields that runs from before the field existed lack."""
    train = _dict(rj, "train", path)
    fields = {f.name: f.default for f in dataclasses.fields(hyper_type)}
    unknown = sorted(set(train) - set(fields))
    if unknown:
        raise NetdslError(f'"train.{unknown[0]}" is not a training setting', path=str(path), hint=REPAIR)
    values = {**legacy, **train}
    for name, default in fields.items():
        if name not in values:
            continue
        key, v = f"train.{name}", values[name]
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise _bad(path, key, "true or false", v)
        elif isinstance(default, str):  # a choice (the v8 recipe's optimizer): the hyper type checks which
            if not isinstance(v, str):
                raise _bad(path, key, "a string", v)
        elif isinstance(default, int):
            _checked_int(v, key, path, 0 if name in ("seed", "close_mosaic") else 1)
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _bad(path, key, "a finite number", v)
    return hyper_type(**values)


def _hyp(rj: Mapping[str, Any], path: Path, known: set[str], required: set[str]) -> dict[str, float]:
    hyp = _dict(rj, "hyp", path)
    missing = sorted(required - set(hyp))
    if missing:
        raise NetdslError(f'"hyp.{missing[0]}" is missing', path=str(path), hint=REPAIR)
    for k, v in hyp.items():
        if k not in known:
            raise NetdslError(f'"hyp.{k}" is not a hyperparameter', path=str(path), hint=REPAIR)
        problem = hyp_problem(k, v)
        if problem is not None:
            raise NetdslError(f'"hyp.{k}" {problem}, not {_shown(v)}', path=str(path), hint=REPAIR)
    return {k: float(v) for k, v in hyp.items()}


def _sets(rj: Mapping[str, Any], path: Path) -> dict[str, int]:
    sets = _dict(rj, "spec.sets", path)
    for k, v in sets.items():
        if isinstance(v, bool) or not isinstance(v, int) or abs(v) >= MAX_VALUE:
            raise _bad(path, f"spec.sets.{k}", "an integer", v)
    return dict(sets)


def _strings(obj: Mapping[str, Any], key: str, path: Path, default: Any = _MISSING) -> list[str]:
    v = _get(obj, key, path, default)
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise _bad(path, key, "a list of strings", v)
    return v


@dataclass(frozen=True)
class ResumeSettings:
    """What `--resume` reads from a detection run's run.json, each value checked."""
    hyper: Any  # DetHyper
    hyp: dict[str, float]
    sets: dict[str, int]
    source: str | None
    skip_bad: bool
    cache: bool
    nc: int
    freeze: Any  # netdsl.freeze.Freeze
    fingerprint: str


def resume_settings(rj: Mapping[str, Any], path: Path, hyper_type: type, legacy: Mapping[str, Any],
                    known_hyp: set[str], required_hyp: set[str]) -> ResumeSettings:
    """run.json's settings, or a NetdslError naming `path` and the key of the first bad value.
    `hyper_type`: DetHyper; `legacy`: its values for runs made before a field existed."""
    hyper = _hyper(rj, path, hyper_type, legacy)
    hyp = _hyp(rj, path, known_hyp, required_hyp)
    sets = _sets(rj, path)
    _dict(rj, "data", path)
    source = _get(rj, "data.source", path, None)
    if source is not None and not isinstance(source, str):
        raise _bad(path, "data.source", "a path (a string) or null", source)
    nc = _int(rj, "nc", path, 1)
    names = _strings(rj, "names", path, None) if rj.get("names") is not None else None
    if names is not None and len(names) != nc:
        raise NetdslError(f'"names" lists {len(names)} names but "nc" is {nc}', path=str(path), hint=REPAIR)
    _dict(rj, "freeze", path, {})
    bn = _get(rj, "freeze.bn", path, "train")
    if bn not in ("train", "eval"):
        raise _bad(path, "freeze.bn", '"train" or "eval"', bn)
    freeze = Freeze(first=_int(rj, "freeze.first", path, 0, 0), names=tuple(_strings(rj, "freeze.names", path, [])),
                    bn=bn)
    fp = _get(rj, "data_fingerprint", path)
    if not isinstance(fp, str):
        raise _bad(path, "data_fingerprint", "a string", fp)
    return ResumeSettings(hyper, hyp, sets, source, _bool(rj, "data.skip_bad", path, False),
                          _bool(rj, "data.cache", path, False), nc, freeze, fp)


# --------------------------------------------------------------------------------------- classes

def class_count_error(text: str, spec: str, classes: int, nc: int) -> NetdslError:
    """The head has `classes`, the data `nc`: an error at the detect's `classes=` with the fix
    that works for this spec (`classes_fix`)."""
    span, hint = classes_fix(text, spec, nc, "netdsl train sets from the data")
    message = f"the network's detect head has {classes} classes, the data {nc}"
    return NetdslError(message, span, hint, path=spec, source=text if span else None)


def classes_fix(text: str, spec: str, n: int, param_note: str) -> tuple[Span | None, str]:
    """Where the spec's `detect(..., classes=...)` is and how to make it `n`: `--set P=n` when it
    is a parameter P, else an edit of that line (`--set` cannot change a literal). `param_note`
    says who sets a parameter named NCLS ("netdsl train sets from the data")."""
    try:
        tree = parse_text(text, spec)
    except NetdslError:
        return None, f"make the detect head's classes {n}"
    params = {p.name for p in tree.params}
    arg = next((a for st in tree.assigns if _is_detect(st.merge) for a in st.args if a.name == "classes"), None)
    if arg is None:
        return None, f"make the detect head's classes {n}"
    v, line = arg.value, arg.span.line
    if isinstance(v, ir.Name) and v.id in params:
        return arg.span, f"build it with --set {v.id}={n}"
    if isinstance(v, ir.Int):
        return arg.span, (f"edit line {line} of {spec} to classes={n} (or to classes=NCLS with a parameter NCLS, "
                          f"which {param_note}); --set cannot change a literal")
    names = sorted(params & {x.id for x in _names(v)})
    return arg.span, (f"classes is computed on line {line} of {spec}: edit it, or its parameters "
                      f"({', '.join(names)}) with --set, so that it is {n}" if names
                      else f"classes is computed on line {line} of {spec}: edit it so that it is {n}")


def _names(node: Any) -> list[Any]:
    """The `ir.Name`s inside an expression node."""
    if isinstance(node, ir.Name):
        return [node]
    out: list[Any] = []
    for field_name in type(node).model_fields:
        child = getattr(node, field_name)
        for c in child if isinstance(child, list) else [child]:
            if isinstance(c, ir.Node):
                out += _names(c)
    return out
