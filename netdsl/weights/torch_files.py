"""Torch weights files (`.pt`/`.pth`): read safely, checked whole, mapped onto a model by order.

A file's tensors go to the model's in order, except that children named alike in the file and
the model pair by name (`netdsl.weights_match`). Every check runs before anything is copied.
"""
from __future__ import annotations

import pickle
import re
import warnings
from typing import Any, BinaryIO

import torch
from torch import nn

from netdsl.errors import NetdslError
from netdsl.files import CHECKPOINT_FORMATS
from netdsl.weights.sized import input_sized_misfit
from netdsl.weights_match import pair_keys

# Buffers ultralytics' Detect keeps in its state_dict; here the anchors are in the spec instead.
_FOREIGN_BUFFERS = ("anchors", "anchor_grid")

ULTRALYTICS_HINT = (
    "convert it where its classes are importable and you trust it (ultralytics' own environment): open the "
    "checkpoint there as `ckpt`, run torch.save(ckpt['model'].float().state_dict(), 'yolov3_state_dict.pt'), "
    "then load that file; or export darknet .weights from it and load those")


def torch_load(path: str, fh: BinaryIO | None = None) -> Any:
    """The unpickled file, through torch's safe loader; `fh` is the file already opened (and
    checked) as `path`, else `path` is opened here."""
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before failing
            warnings.simplefilter("ignore")
            return torch.load(fh if fh is not None else path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NetdslError("weights file not found", path=path, hint="check the path") from None
    except Exception as err:  # zip and pickle errors vary by torch version
        # torch's own text advises weights_only=False, which runs whatever code the file holds:
        # never pass any of it on.
        text = str(err)
        found = re.search(r"GLOBAL ([\w.]+)|Unsupported class ([\w.]+)", text)
        if found:
            raise NetdslError(f"the file pickles whole Python objects ({found.group(1) or found.group(2)}), which "
                              "netdsl does not load: unpickling them could run any code", path=path,
                              hint=ULTRALYTICS_HINT) from None
        if isinstance(err, pickle.UnpicklingError) or re.search(r"weights.?only|pickl", text, re.I):
            first = "torch's safe loader cannot read it"
        elif isinstance(err, EOFError):
            first = "the file ends early"
        else:
            first = re.split(r"(?<=\.)\s", (text.strip().splitlines() or [""])[0])[0].rstrip(".")
            if not first or len(first) > 160:
                first = type(err).__name__
        raise NetdslError(f"not a readable torch file ({first})", path=path,
                          hint="give a state_dict saved with torch.save(model.state_dict(), PATH), or a netdsl "
                               "training checkpoint; a truncated or foreign file cannot be read") from None


def state_dict_from(obj: Any, path: str) -> dict[str, Any]:
    """The state_dict in a plain state_dict, a netdsl checkpoint or a {'model'/'state_dict': ...} dict."""
    if isinstance(obj, dict) and obj.get("format") in CHECKPOINT_FORMATS:
        obj = obj.get("model")
    elif isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise NetdslError("the file holds no state_dict (a dict of tensors)", path=path,
                          hint="save one with torch.save(model.state_dict(), PATH)")
    for k, v in obj.items():
        _check_entry(k, v, path)
    return obj


def _check_entry(key: Any, value: Any, path: str) -> None:
    """Refuse an entry that could not be copied into a model: checked for every entry before any
    is used, so that a file fails whole and never after part of the model was overwritten."""
    again = "save one with torch.save(model.state_dict(), PATH)"
    if not isinstance(key, str):
        raise NetdslError(f"the state_dict has a key {key!r} of type {type(key).__name__}; its keys must be "
                          "strings (tensor names)", path=path, hint=again)
    if not isinstance(value, torch.Tensor):
        raise NetdslError(f"entry '{key}' of the state_dict is of type {type(value).__name__}, not a tensor", path=path,
                          hint=again)
    why = ("is on the meta device: it has a shape but no values" if value.is_meta
           else f"is a {value.layout} tensor, not a dense one" if value.layout != torch.strided
           else "is a nested tensor" if value.is_nested
           else "is quantized" if value.is_quantized
           else f"is on the {value.device.type} device" if value.device.type != "cpu"
           else f"is of type {value.dtype}, not of real numbers" if not _real_dtype(value.dtype)
           else "")
    if why:
        raise NetdslError(f"entry '{key}' of the state_dict {why}", path=path,
                          hint="save the state_dict of a model whose weights were loaded or trained"
                          if value.is_meta else "save the weights as dense CPU tensors of real numbers: "
                          "torch.save({k: v.to_dense().cpu() for k, v in model.state_dict().items()}, PATH)")
    # NaN or infinity in a weight makes every output NaN: such a file is refused, not loaded
    wide = value.float() if value.element_size() == 1 else value  # isfinite lacks the float8 types
    if value.is_floating_point() and not bool(torch.isfinite(wide).all()):
        raise NetdslError(f"entry '{key}' of the state_dict holds NaN or infinite values", path=path,
                          hint="the weights come from a training run that diverged; use an earlier checkpoint")


def _real_dtype(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point or dtype in (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32,
                                                torch.int64)


def distinct(items: Any) -> list[tuple[str, torch.Tensor]]:
    """Entries of a state_dict, counting tensors that share storage (one module registered twice) once."""
    seen: set[tuple[int, tuple[int, ...], tuple[int, ...]]] = set()
    out = []
    for k, t in items:
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride())) if t.numel() else (id(t), (), ())
        if key in seen:
            continue
        seen.add(key)
        out.append((k, t))
    return out


def map_in_order(model: nn.Module, state_dict: dict[str, torch.Tensor],
                 path: str | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(target, source) pairs mapping the distinct tensors of `state_dict` onto the model's.

    In order (the i-th onto the i-th, whatever the keys), except that children named alike in the
    file and the model pair by name (`weights_match`: ultralytics' C3 registers cv1, cv2, cv3, m,
    its import cv1, cv2, m, cv3). Shapes must match one by one; ultralytics' Detect buffers
    (`anchors`, `anchor_grid`) are skipped when the model has none. Raises NetdslError naming the
    first mismatching tensor. Nothing is copied.
    """
    own = model.state_dict(keep_vars=True)
    own_leaves = {k.rsplit(".", 1)[-1] for k in own}
    source = distinct((k, t) for k, t in state_dict.items()
                       if not (k.rsplit(".", 1)[-1] in _FOREIGN_BUFFERS and k.rsplit(".", 1)[-1] not in own_leaves))
    target = distinct(own.items())
    fits = lambda i, j: (source[i][1].shape == target[j][1].shape  # noqa: E731
                         and source[i][1].is_floating_point() == target[j][1].is_floating_point())
    matched = pair_keys([k for k, _ in source], [k for k, _ in target])
    flat = list(zip(range(len(source)), range(len(target))))
    for pairs in (matched, flat):
        if pairs is not None and len(source) == len(target) and all(fits(i, j) for i, j in pairs):
            return [(target[j][1], source[i][1].to(target[j][1].dtype)) for i, j in pairs]
    tried = matched if matched is not None else flat
    # a learned tensor sized by the input (a position embedding): the input size is what differs
    raise input_sized_misfit(model, source, target, tried, path) or _misfit(source, target, tried, path)


def _misfit(source: list[tuple[str, torch.Tensor]], target: list[tuple[str, torch.Tensor]],
            pairs: list[tuple[int, int]], path: str | None) -> NetdslError:
    """The error for the first pair that does not fit (`pairs` paired by name what they could, so
    it is where the two really differ), or for the tensors left over."""
    hint = "the file was saved from a network of another structure or other parameter values (check --set, e.g. NCLS)"
    kinds = lambda entries: sorted((tuple(t.shape), t.is_floating_point()) for _, t in entries)  # noqa: E731
    if kinds(source) == kinds(target):
        hint = ("the file holds the model's tensors in another order: they pair in order, and by name where a "
                "module's children have the same names in the file and the model; name the spec's statements as "
                "the file names its modules (`netdsl import` does, for an Ultralytics C3), or save the file in the "
                "model's order")
    for i, j in pairs:
        (sk, st), (tk, tt) = source[i], target[j]
        if st.shape != tt.shape:
            return NetdslError(f"tensor #{i} of the file, '{sk}', has shape {tuple(st.shape)} but the model's "
                               f"'{tk}' needs {tuple(tt.shape)}", path=path, hint=hint)
        if st.is_floating_point() != tt.is_floating_point():
            return NetdslError(f"tensor #{i} of the file, '{sk}', is {st.dtype} but the model's '{tk}' is {tt.dtype}",
                               path=path, hint=hint)
    extra = (f"the first extra one is the file's '{source[len(target)][0]}'" if len(source) > len(target)
             else f"the first one missing is the model's '{target[len(source)][0]}'")
    return NetdslError(f"the file has {len(source)} distinct tensors, the model {len(target)}; {extra}",
                       path=path, hint=hint)
