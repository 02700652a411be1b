"""Pretrained weights for compiled networks: darknet `.weights` files and torch `.pt`/`.pth` files.

`load_weights(model, path)` picks the format by suffix, reads and checks the whole file, and only
then copies into the model: a file that does not fit leaves the model as it was.
`save_weights(model, path)` writes the same formats (darknet for `.weights`, a state_dict for `.pt`).

Darknet's layout: a header (major, minor, revision as int32; `seen` as int64 when
major*10+minor >= 2, else int32), then per convolution in darknet's order, float32 little-endian:
with a batchnorm after it, the batchnorm's beta (bias), gamma (weight), running mean, running
variance, then the kernel; without one, the convolution's bias, then the kernel.

Darknet's order is found from the structure (`darknet_layout`): the convolutions in forward order,
each detect level's 1x1 convolution placed right after the last convolution up to the end of the
statement that produces that level's input, levels placed after the same convolution in the order
of those statements (where darknet's cfg puts it, just before its [yolo] section: `netdsl import`
writes a statement at the [yolo]'s place where that is needed).

torch and numpy are imported when a function is called, so `import netdsl` stays light.
"""
from __future__ import annotations

import pickle
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Union

from netdsl.errors import NetdslError

if TYPE_CHECKING:
    import os

    import torch
    from torch import nn

    from netdsl.concrete import Layer, Statement

PathLike = Union[str, "os.PathLike[str]"]

DARKNET_SUFFIXES = (".weights",)
TORCH_SUFFIXES = (".pt", ".pth")
# Buffers ultralytics' Detect keeps in its state_dict; here the anchors are in the spec instead.
_FOREIGN_BUFFERS = ("anchors", "anchor_grid")

ULTRALYTICS_HINT = (
    "convert it where its classes are importable and you trust it (ultralytics' own environment): open the "
    "checkpoint there as `ckpt`, run torch.save(ckpt['model'].float().state_dict(), 'yolov3_state_dict.pt'), "
    "then load that file; or export darknet .weights from it and load those")


@dataclass(frozen=True)
class Slot:
    """One run of floats in a darknet file: tensor `attr` of the module at `path`, `shape` in the file.

    `attr` is None where the model has no such tensor (a convolution without bias and without
    batchnorm): the file still holds the floats, which must all be `fill`. `in_file` is False for a
    tensor the file has no place for (a convolution's own bias before a batchnorm): loading sets it
    to `fill`, saving requires it to be `fill`.
    """

    path: str
    attr: str | None
    role: str                   # "bias", "gamma", "mean", "variance", "kernel"
    shape: tuple[int, ...]
    fill: float = 0.0
    in_file: bool = True

    @property
    def count(self) -> int:
        """Floats in the file."""
        n = 1
        for s in self.shape:
            n *= s
        return n if self.in_file else 0

    @property
    def name(self) -> str:
        return f"{self.path}.{self.attr}" if self.attr else f"{self.path} (no {self.role})"


@dataclass(frozen=True)
class DarknetConv:
    """One [convolutional] section of darknet's cfg, as it maps onto the model."""

    path: str                   # the Conv2d's module path
    bn: str | None              # the BatchNorm2d's module path, if one follows the conv
    filters: int
    size: int                   # kernel size (square in darknet; kh for a non-square kernel)
    slots: tuple[Slot, ...]     # in file order
    detect_level: int | None = None  # which level of a detect head, for its 1x1 convs

    @property
    def batch_normalize(self) -> bool:
        return self.bn is not None

    @property
    def count(self) -> int:
        return sum(s.count for s in self.slots)


# -- darknet's order ------------------------------------------------------------------------------

def darknet_layout(model: nn.Module) -> list[DarknetConv]:
    """The model's convolutions in darknet's order, each with its floats' places (see module doc).

    Raises NetdslError when the model holds weights darknet's format has no place for.
    """
    from torch import nn

    cg = getattr(model, "concrete", None)
    if cg is None:
        raise NetdslError("darknet weights need a network compiled by netdsl (its concrete graph gives "
                          "darknet's layer order)", hint="build the model with netdsl.build")
    modules = dict(model.named_modules())
    entries: list[DarknetConv] = []
    after: dict[int, list[tuple[int, DarknetConv]]] = {}  # entry index -> (statement's place, detect conv)
    covered: set[str] = set()

    def conv_entry(conv: Layer, bn: Layer | None) -> DarknetConv:
        c = modules[conv.path]
        if not isinstance(c, nn.Conv2d):
            raise NetdslError(f"layer '{conv.path}' is not a Conv2d", hint="use a .pt file")
        slots: list[Slot] = []
        if bn is not None:
            b = modules[bn.path]
            if not isinstance(b, nn.BatchNorm2d) or b.running_mean is None:
                raise NetdslError(f"batchnorm '{bn.path}' keeps no running statistics, which darknet's "
                                  "format stores", hint="use a .pt file")
            n = b.num_features
            affine = b.weight is not None
            slots += [Slot(bn.path, "bias" if affine else None, "bias", (n,), 0.0),
                      Slot(bn.path, "weight" if affine else None, "gamma", (n,), 1.0),
                      Slot(bn.path, "running_mean", "mean", (n,)),
                      Slot(bn.path, "running_var", "variance", (n,))]
            covered.update(f"{bn.path}.{a}" for a in ("weight", "bias", "running_mean", "running_var",
                                                        "num_batches_tracked"))
            if c.bias is not None:  # darknet has no place for it: loaded as zero, saved only if zero
                slots.append(Slot(conv.path, "bias", "bias", tuple(c.bias.shape), in_file=False))
                covered.add(f"{conv.path}.bias")
        else:
            slots.append(Slot(conv.path, "bias" if c.bias is not None else None, "bias", (c.out_channels,)))
            covered.add(f"{conv.path}.bias")
        slots.append(Slot(conv.path, "weight", "kernel", tuple(c.weight.shape)))
        covered.add(f"{conv.path}.weight")
        return DarknetConv(conv.path, bn.path if bn else None, c.out_channels, c.kernel_size[0], tuple(slots))

    def detect_entries(merge: Any, last: dict[str, tuple[int, int]], names: set[str]) -> None:
        det = modules.get(merge.path)
        convs = getattr(det, "m", None)
        if convs is None or len(convs) != len(merge.inputs):
            raise NetdslError(f"the detect head '{merge.path}' has no per-level convolutions", hint="use a .pt file")
        for level, (src, c) in enumerate(zip(merge.inputs, convs)):
            if src not in last:
                why = "has no convolution before it" if src in names else "is not a statement of the same graph"
                raise NetdslError(f"cannot place detect level {level}'s convolution in darknet's order: its "
                                  f"input '{src}' {why}", hint="use a .pt file")
            path = f"{merge.path}.m.{level}"
            slots = (Slot(path, "bias" if c.bias is not None else None, "bias", (c.out_channels,)),
                     Slot(path, "weight", "kernel", tuple(c.weight.shape)))
            covered.update((f"{path}.weight", f"{path}.bias"))
            entry, place = last[src]
            after.setdefault(entry, []).append(
                (place, DarknetConv(path, None, c.out_channels, c.kernel_size[0], slots, detect_level=level)))

    def go(statements: list[Statement]) -> None:
        # statement name -> (the last convolution up to its end, its place)
        last: dict[str, tuple[int, int]] = {}
        names = {st.name for st in statements}
        for place, st in enumerate(statements):
            if st.merge is not None and st.merge.merge.name == "detect":
                detect_entries(st.merge, last, names)
            for i, it in enumerate(st.items):
                if not hasattr(it, "op"):  # a graph block: its own statements
                    go(it.statements)  # type: ignore[union-attr]
                    continue
                if it.op.name != "conv":
                    continue
                nxt = st.items[i + 1] if i + 1 < len(st.items) else None
                bn = nxt if getattr(getattr(nxt, "op", None), "name", "") == "batchnorm" else None
                entries.append(conv_entry(it, bn))  # type: ignore[arg-type]
            if entries:
                last[st.name] = (len(entries) - 1, place)

    go(cg.statements)
    layout: list[DarknetConv] = []
    for i, e in enumerate(entries):
        layout.append(e)
        layout.extend(e for _, e in sorted(after.get(i, []), key=lambda pe: pe[0]))
    for key, t in model.state_dict().items():
        if key not in covered and not key.endswith("num_batches_tracked"):
            raise NetdslError(f"'{key}' has no place in darknet's format, which holds convolutions (each with an "
                              "optional batchnorm) and detect heads only", hint="use a .pt file")
    return layout


# -- darknet files --------------------------------------------------------------------------------

def _header_error(path: str, msg: str) -> NetdslError:
    return NetdslError(f"not a darknet .weights file: {msg}", path=path,
                       hint="darknet files start with major, minor, revision (int32) and seen; "
                            "check the file was fully downloaded")


def read_darknet_header(data: bytes, path: str) -> tuple[tuple[int, int, int, int], int]:
    """((major, minor, revision, seen), header size in bytes), or NetdslError."""
    if len(data) < 12:
        raise _header_error(path, f"the file has {len(data)} bytes, fewer than the 12 of major, minor and revision")
    if data[:4] == b"PK\x03\x04":
        raise NetdslError("not a darknet .weights file: it is a zip archive, as torch.save writes", path=path,
                          hint="give a torch file a .pt suffix")
    major, minor, revision = struct.unpack_from("<3i", data)
    if not (0 <= major < 1000 and 0 <= minor < 1000 and 0 <= revision < 1_000_000):
        raise _header_error(path, f"absurd version {major}.{minor}.{revision} in the header")
    wide = major * 10 + minor >= 2
    size = 20 if wide else 16
    if len(data) < size:
        raise _header_error(path, f"the header is cut short: version {major}.{minor}.{revision} needs {size} bytes, "
                                  f"the file has {len(data)}")
    seen = struct.unpack_from("<q" if wide else "<i", data, 12)[0]
    return (major, minor, revision, seen), size


def _read_darknet(model: nn.Module, path: str, data: bytes) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(target tensor, new values) pairs for every slot; nothing is copied yet."""
    import numpy as np
    import torch

    layout = darknet_layout(model)
    _, start = read_darknet_header(data, path)
    body = len(data) - start
    expected = sum(e.count for e in layout)
    if body % 4:
        raise NetdslError(f"expected {expected} floats after the header, got {body} bytes, not a whole number "
                          "of float32s", path=path, hint="the file is truncated or not a darknet .weights file")
    got = body // 4
    if got != expected:
        if got < expected:
            pos = 0
            where = ""
            for e in layout:
                for s in e.slots:
                    if pos + s.count > got:
                        where = f"; it ends in layer '{e.path}' ({s.role} of {s.name})"
                        break
                    pos += s.count
                if where:
                    break
            msg, hint = (f"expected {expected} floats after the header, got {got}{where}",
                         "the file is truncated, or is for a smaller network (check the spec and --set values)")
        else:
            msg, hint = (f"expected {expected} floats after the header, got {got} ({got - expected} too many)",
                         "the file is for a larger network (check the spec and --set values, e.g. NCLS)")
        raise NetdslError(msg, path=path, hint=hint)
    floats = np.frombuffer(data, dtype="<f4", offset=start)
    state = model.state_dict(keep_vars=True)
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    pos = 0
    for e in layout:
        for s in e.slots:
            n = s.count
            if not s.in_file:  # a tensor darknet has no place for
                target = state[f"{s.path}.{s.attr}"]
                pairs.append((target, torch.full_like(target, s.fill)))
                continue
            values = torch.from_numpy(floats[pos:pos + n].astype(np.float32)).view(s.shape)
            pos += n
            if s.attr is None:
                if not bool((values == s.fill).all()):
                    raise NetdslError(f"the file gives layer '{s.path}' a {s.role} other than {s.fill:g}, which the "
                                      "model has no tensor for", path=path,
                                      hint=f"give the layer a {s.role} in the spec (e.g. bias=true)")
                continue
            pairs.append((state[f"{s.path}.{s.attr}"], values))
    return pairs


def _write_darknet(model: nn.Module, path: Path, seen: int) -> None:
    import numpy as np
    import torch

    from netdsl.train.files import atomic_write

    layout = darknet_layout(model)
    state = model.state_dict()
    chunks: list[np.ndarray] = []
    for e in layout:
        for s in e.slots:
            if not s.in_file:
                if bool(state[f"{s.path}.{s.attr}"].ne(s.fill).any()):
                    raise NetdslError(f"'{s.path}.{s.attr}' is not zero, and darknet's format has no place for a "
                                      "convolution's bias when a batchnorm follows it", path=str(path),
                                      hint="save a .pt file instead")
                continue
            if s.attr is None:
                chunks.append(np.full(s.count, s.fill, dtype="<f4"))
            else:
                t = state[f"{s.path}.{s.attr}"].detach().to("cpu", torch.float32).contiguous()
                chunks.append(t.numpy().reshape(-1).astype("<f4"))
    header = struct.pack("<3iq", 0, 2, 0, seen)
    atomic_write(path, lambda fh: (fh.write(header), [fh.write(c.tobytes()) for c in chunks]))


# -- torch files ----------------------------------------------------------------------------------

def _torch_load(path: str, fh: BinaryIO | None = None) -> Any:
    """The unpickled file, through torch's safe loader; `fh` is the file already opened (and
    checked) as `path`, else `path` is opened here."""
    import torch

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


def _state_dict_from(obj: Any, path: str) -> dict[str, Any]:
    """The state_dict in a plain state_dict, a netdsl checkpoint or a {'model'/'state_dict': ...} dict."""
    import torch

    from netdsl.train.loop import CHECKPOINT_FORMAT

    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
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
    import torch

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
    import torch

    return dtype.is_floating_point or dtype in (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32,
                                                torch.int64)


def _distinct(items: Any) -> list[tuple[str, torch.Tensor]]:
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
    from netdsl.weights_match import pair_keys

    own = model.state_dict(keep_vars=True)
    own_leaves = {k.rsplit(".", 1)[-1] for k in own}
    source = _distinct((k, t) for k, t in state_dict.items()
                       if not (k.rsplit(".", 1)[-1] in _FOREIGN_BUFFERS and k.rsplit(".", 1)[-1] not in own_leaves))
    target = _distinct(own.items())
    fits = lambda i, j: (source[i][1].shape == target[j][1].shape  # noqa: E731
                         and source[i][1].is_floating_point() == target[j][1].is_floating_point())
    matched = pair_keys([k for k, _ in source], [k for k, _ in target])
    flat = list(zip(range(len(source)), range(len(target))))
    for pairs in (matched, flat):
        if pairs is not None and len(source) == len(target) and all(fits(i, j) for i, j in pairs):
            return [(target[j][1], source[i][1].to(target[j][1].dtype)) for i, j in pairs]
    raise _misfit(source, target, matched if matched is not None else flat, path)


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


# -- the public functions -------------------------------------------------------------------------

def _format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in DARKNET_SUFFIXES:
        return "darknet"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    raise NetdslError(f"unknown weights format '{Path(path).suffix or '(no suffix)'}'", path=path,
                      hint="use a darknet .weights file, or a torch .pt/.pth file (a state_dict or a netdsl checkpoint)")


def load_weights(model: nn.Module, path: PathLike) -> nn.Module:
    """Load pretrained weights into `model` in place and return it.

    `.weights`: darknet's format, mapped onto the network's structure (`darknet_layout`).
    `.pt`/`.pth`: a state_dict or a netdsl training checkpoint, read with torch's safe loader
    (`weights_only=True`) and mapped by order with a shape check (`map_in_order`).
    The whole file is read and checked before anything is copied: on any NetdslError the model is
    unchanged.
    """
    import torch

    from netdsl.parsing import open_input, read_limited

    path = str(path)
    kind = _format(path)
    p = Path(path)
    if p.is_dir():
        raise NetdslError("the weights path is a directory, not a file", path=path, hint="give the weights file")
    if not p.exists():
        raise NetdslError("weights file not found", path=path, hint="check the path")
    limit = max_weights_bytes(model)
    too_large = "it is for a much larger network, or not a weights file (check the spec and --set values)"
    # size and kind are checked before reading, and reads are bounded: a 5 GB file or a link to
    # /dev/zero is refused without being read into memory
    with open_input(p, "weights file for this network", "weights file", limit, too_large) as fh:
        if kind == "darknet":
            data = read_limited(fh, path, "weights file for this network", limit, too_large)
            try:
                pairs = _read_darknet(model, path, data)
            except NetdslError as err:
                if err.path is None:
                    err.path = path
                raise
        else:
            import io

            src = fh if fh.seekable() else io.BytesIO(read_limited(fh, path, "weights file", limit, too_large))
            pairs = map_in_order(model, _state_dict_from(_torch_load(path, src), path), path)
    # the values in the targets' own device and type first, so the copies below cannot fail half-way
    ready = [(target, values.to(device=target.device, dtype=target.dtype)) for target, values in pairs]
    with torch.no_grad():
        for target, values in ready:
            target.copy_(values)
    return model


def max_weights_bytes(model: nn.Module) -> int:
    """The largest weights file `model` can have: 64 MiB for headers and pickled extras, plus 64
    bytes a number (darknet's files hold 4 a number; a training checkpoint holds the weights, the
    trained and averaged copies and the optimizer's moments, float32 or float64)."""
    return 64 * 2**20 + 64 * sum(t.numel() for t in model.state_dict().values())


def save_weights(model: nn.Module, path: PathLike, seen: int = 0) -> None:
    """Write `model`'s weights: darknet's format for `.weights` (version 0.2.0, `seen` images), a
    state_dict for `.pt`/`.pth`. The file appears whole or not at all."""
    import torch

    from netdsl.train.files import atomic_write

    p = Path(path)
    kind = _format(str(p))
    if kind == "darknet":
        try:
            _write_darknet(model, p, seen)
        except NetdslError as err:
            if err.path is None:
                err.path = str(p)
            raise
    else:
        state = model.state_dict()
        atomic_write(p, lambda fh: torch.save(state, fh))
