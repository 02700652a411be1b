"""Darknet's `.weights` format: where each float of the file goes in a compiled network.

Darknet's layout: a header (major, minor, revision as int32; `seen` as int64 when
major*10+minor >= 2, else int32), then per convolution in darknet's order, float32 little-endian:
with a batchnorm after it, the batchnorm's beta (bias), gamma (weight), running mean, running
variance, then the kernel; without one, the convolution's bias, then the kernel.

Darknet's order is found from the structure (`darknet_layout`): the convolutions in forward order
(ops whose `darknet_role` is "conv", each with the "bn" op right after it), each detect level's 1x1
convolution (the "head" op's) placed right after the last convolution up to the end of the
statement that produces that level's input, levels placed after the same convolution in the order
of those statements (where darknet's cfg puts it, just before its [yolo] section: `netdsl import`
writes a statement at the [yolo]'s place where that is needed).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netdsl.concrete import Block, Layer, Merge, Statement
from netdsl.errors import NetdslError
from netdsl.files import atomic_write


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


# -- darknet's order ---------------------------------------------------------------------------

def darknet_layout(model: nn.Module) -> list[DarknetConv]:
    """The model's convolutions in darknet's order, each with its floats' places (see the package doc).

    Raises NetdslError when the model holds weights darknet's format has no place for.
    """
    cg = getattr(model, "concrete", None)
    if cg is None:
        raise NetdslError("darknet weights need a network compiled by netdsl (its concrete graph gives "
                          "darknet's layer order)", hint="build the model with netdsl.build")
    return _Layout(model).run(cg.statements)


class _Layout:
    """Walks the concrete graph in forward order, collecting darknet's entries and the tensors they cover."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules = dict(model.named_modules())
        self.entries: list[DarknetConv] = []
        self.after: dict[int, list[tuple[int, DarknetConv]]] = {}  # entry index -> (statement's place, head conv)
        self.covered: set[str] = set()

    def run(self, statements: list[Statement]) -> list[DarknetConv]:
        self.statements(statements)
        layout: list[DarknetConv] = []
        for i, e in enumerate(self.entries):
            layout.append(e)
            layout.extend(e for _, e in sorted(self.after.get(i, []), key=lambda pe: pe[0]))
        for key in self.model.state_dict():
            if key not in self.covered and not key.endswith("num_batches_tracked"):
                raise NetdslError(f"'{key}' has no place in darknet's format, which holds convolutions (each with an "
                                  "optional batchnorm) and detect heads only", hint="use a .pt file")
        return layout

    def statements(self, statements: list[Statement]) -> None:
        # statement name -> (the last convolution up to its end, its place)
        last: dict[str, tuple[int, int]] = {}
        names = {st.name for st in statements}
        for place, st in enumerate(statements):
            if st.merge is not None and st.merge.op.darknet_role == "head":
                self.head(st.merge, last, names)
            for i, it in enumerate(st.items):
                if isinstance(it, Block):
                    self.statements(it.statements)
                    continue
                if it.op.darknet_role != "conv":
                    continue
                nxt = st.items[i + 1] if i + 1 < len(st.items) else None
                bn = nxt if isinstance(nxt, Layer) and nxt.op.darknet_role == "bn" else None
                self.entries.append(self.conv(it, bn))
            if self.entries:
                last[st.name] = (len(self.entries) - 1, place)

    def conv(self, conv: Layer, bn: Layer | None) -> DarknetConv:
        c = self.modules[conv.path]
        if not isinstance(c, nn.Conv2d):
            raise NetdslError(f"layer '{conv.path}' is not a Conv2d", hint="use a .pt file")
        slots = self.bn_slots(bn, conv.path, c) if bn is not None else [self.bias_slot(conv.path, c)]
        slots.append(Slot(conv.path, "weight", "kernel", tuple(c.weight.shape)))
        self.covered.add(f"{conv.path}.weight")
        return DarknetConv(conv.path, bn.path if bn else None, c.out_channels, c.kernel_size[0], tuple(slots))

    def bias_slot(self, path: str, c: nn.Conv2d) -> Slot:
        self.covered.add(f"{path}.bias")
        return Slot(path, "bias" if c.bias is not None else None, "bias", (c.out_channels,))

    def bn_slots(self, bn: Layer, conv_path: str, c: nn.Conv2d) -> list[Slot]:
        """A batchnorm's four runs, and the place of the convolution's own bias darknet does not store."""
        b = self.modules[bn.path]
        if not isinstance(b, nn.BatchNorm2d) or b.running_mean is None:
            raise NetdslError(f"batchnorm '{bn.path}' keeps no running statistics, which darknet's "
                              "format stores", hint="use a .pt file")
        n = b.num_features
        affine = b.weight is not None
        slots = [Slot(bn.path, "bias" if affine else None, "bias", (n,), 0.0),
                 Slot(bn.path, "weight" if affine else None, "gamma", (n,), 1.0),
                 Slot(bn.path, "running_mean", "mean", (n,)),
                 Slot(bn.path, "running_var", "variance", (n,))]
        self.covered.update(f"{bn.path}.{a}" for a in ("weight", "bias", "running_mean", "running_var",
                                                         "num_batches_tracked"))
        if c.bias is not None:  # darknet has no place for it: loaded as zero, saved only if zero
            slots.append(Slot(conv_path, "bias", "bias", tuple(c.bias.shape), in_file=False))
            self.covered.add(f"{conv_path}.bias")
        return slots

    def head(self, merge: Merge, last: dict[str, tuple[int, int]], names: set[str]) -> None:
        """A detect head's per-level 1x1 convolutions, each placed after its input's last convolution."""
        convs = getattr(self.modules.get(merge.path), "m", None)
        if convs is None or len(convs) != len(merge.inputs):
            raise NetdslError(f"the detect head '{merge.path}' has no per-level convolutions", hint="use a .pt file")
        for level, (src, c) in enumerate(zip(merge.inputs, convs)):
            if src not in last:
                why = "has no convolution before it" if src in names else "is not a statement of the same graph"
                raise NetdslError(f"cannot place detect level {level}'s convolution in darknet's order: its "
                                  f"input '{src}' {why}", hint="use a .pt file")
            path = f"{merge.path}.m.{level}"
            slots = (self.bias_slot(path, c), Slot(path, "weight", "kernel", tuple(c.weight.shape)))
            self.covered.add(f"{path}.weight")
            entry, place = last[src]
            self.after.setdefault(entry, []).append(
                (place, DarknetConv(path, None, c.out_channels, c.kernel_size[0], slots, detect_level=level)))


# -- darknet files -----------------------------------------------------------------------------

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


def read_darknet(model: nn.Module, path: str, data: bytes) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(target tensor, new values) pairs for every slot; nothing is copied yet."""
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


def write_darknet(model: nn.Module, path: Path, seen: int) -> None:
    """Write `model`'s weights as darknet's .weights, version 0.2.0 (`seen`: images trained on)."""
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
