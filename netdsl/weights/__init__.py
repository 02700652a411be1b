"""Pretrained weights for compiled networks: darknet `.weights` files and torch `.pt`/`.pth` files.

`load_weights(model, path)` picks the format by suffix, reads and checks the whole file, and only
then copies into the model: a file that does not fit leaves the model as it was.
`save_weights(model, path)` writes the same formats (darknet for `.weights`, a state_dict for `.pt`).
`load_in_order(model, state_dict)` copies another module's tensors in order (the zoo and the seed).
The formats live in `netdsl.weights.darknet` and `netdsl.weights.torch_files`; this module loads
them (and torch) when a function is called, so `import netdsl` stays without torch.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Union

from netdsl.errors import NetdslError
from netdsl.parsing import open_input, read_limited

if TYPE_CHECKING:
    import os

    import torch
    from torch import nn

PathLike = Union[str, "os.PathLike[str]"]

DARKNET_SUFFIXES = (".weights",)
TORCH_SUFFIXES = (".pt", ".pth")


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
    # torch and the format modules load here: `import netdsl` imports this package without torch
    from netdsl.weights.darknet import read_darknet
    from netdsl.weights.torch_files import map_in_order, state_dict_from, torch_load

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
                pairs = read_darknet(model, path, data)
            except NetdslError as err:
                if err.path is None:
                    err.path = path
                raise
        else:
            src = fh if fh.seekable() else io.BytesIO(read_limited(fh, path, "weights file", limit, too_large))
            pairs = map_in_order(model, state_dict_from(torch_load(path, src), path), path)
    _copy(pairs)
    return model


def load_in_order(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a state_dict from another module with the same tensors in the same order (`map_in_order`:
    keys are ignored except where children are named alike; tensors sharing storage, a module
    registered twice as in the seed's `self.conv1` + `self.sequence1`, count once). Shapes must match
    one by one; on a NetdslError the model is unchanged."""
    from netdsl.weights.torch_files import distinct, map_in_order

    have, want = len(distinct(state_dict.items())), len(distinct(model.state_dict().items()))
    if have != want:  # said first: a pair that does not fit would only be a symptom of it
        raise NetdslError(f"the state_dict has {have} distinct tensors, the model {want}",
                          hint="the two networks differ in structure")
    _copy(map_in_order(model, state_dict))


def _copy(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    import torch

    # the values in the targets' own device and type first, so the copies below cannot fail half-way
    ready = [(target, values.to(device=target.device, dtype=target.dtype)) for target, values in pairs]
    with torch.no_grad():
        for target, values in ready:
            target.copy_(values)


def max_weights_bytes(model: nn.Module) -> int:
    """The largest weights file `model` can have: 64 MiB for headers and pickled extras, plus 64
    bytes a number (darknet's files hold 4 a number; a training checkpoint holds the weights, the
    trained and averaged copies and the optimizer's moments, float32 or float64)."""
    return 64 * 2**20 + 64 * sum(t.numel() for t in model.state_dict().values())


def save_weights(model: nn.Module, path: PathLike, seen: int = 0) -> None:
    """Write `model`'s weights: darknet's format for `.weights` (version 0.2.0, `seen` images), a
    state_dict for `.pt`/`.pth`. The file appears whole or not at all."""
    import torch

    from netdsl.files import atomic_write  # numpy: not for `import netdsl`
    from netdsl.weights.darknet import write_darknet

    p = Path(path)
    kind = _format(str(p))
    if kind == "darknet":
        try:
            write_darknet(model, p, seen)
        except NetdslError as err:
            if err.path is None:
                err.path = str(p)
            raise
    else:
        state = model.state_dict()
        atomic_write(p, lambda fh: torch.save(state, fh))
