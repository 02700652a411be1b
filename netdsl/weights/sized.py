"""Weights that do not fit because the network was built for another input size.

Most tensors have shapes fixed by the spec's parameters; a learned tensor may also follow the
input size (ViT's position embedding has one row per patch plus the class token's). A file saved
from the network at 224x224 then does not fit the network built at 256x256, and the message
should say that the size is the cause, at the tensor's declaration, rather than "another
structure". `input_sized_misfit` finds that case; torch is only touched through the tensors
handed in.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netdsl.concrete import ConcreteGraph, Merge
from netdsl.errors import NetdslError
from netdsl.ops.learned import PARAM

if TYPE_CHECKING:
    import torch
    from torch import nn


def _learned(cg: ConcreteGraph) -> dict[str, Merge]:
    """Each learned tensor's merge by its state_dict key (the module path it is registered at)."""
    return {m.path: m for m in cg.walk() if isinstance(m, Merge) and m.op.name == PARAM}


def _input_sizes(cg: ConcreteGraph) -> set[str]:
    spec = cg.spec
    return {d.name for d in spec.dims} if spec is not None else set()


def input_sized_misfit(model: nn.Module, source: list[tuple[str, torch.Tensor]],
                       target: list[tuple[str, torch.Tensor]], pairs: list[tuple[int, int]],
                       path: str | None) -> NetdslError | None:
    """The error for the first pair whose shapes differ when the model's tensor is a learned tensor
    whose dims follow the input size; None when the first misfit is anything else.

    Located at the tensor's declaration in the spec (the file is named in the message).

    >>> input_sized_misfit(object(), [], [], [], None) is None  # not a compiled network
    True
    """
    cg: Any = getattr(model, "concrete", None)
    if not isinstance(cg, ConcreteGraph):
        return None
    for i, j in pairs:
        (sk, st), (tk, tt) = source[i], target[j]
        if st.shape == tt.shape:
            continue
        merge = _learned(cg).get(tk)
        if merge is None:
            return None
        shown = cg.show(merge.out_shape)
        sizes = sorted(_input_sizes(cg) & {str(s) for e in shown for s in e.free_symbols})
        if not sizes:
            return None
        at = ", ".join(f"{n}={cg.values[n]}" for n in sizes if n in cg.values)
        dims = ", ".join(str(e) for e in shown)
        where = f" of the file '{path}'" if path else " of the state_dict"
        err = NetdslError(
            f"tensor #{i}{where}, '{sk}', has shape {tuple(st.shape)} but the learned tensor '{tk}' "
            f"needs {tuple(tt.shape)}: its dims [{dims}] follow the input size, here {at}",
            merge.span,
            "the weights were saved from the network at another input size: build it at that size ("
            + " ".join(f"--set {n}=..." for n in sizes) + "), or resize the tensor to this size before "
            "loading (as torchvision's interpolate_embeddings does for a ViT's position embedding)")
        spec_path, text = cg.source
        return err.with_source(spec_path, text)
    return None

