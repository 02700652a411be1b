"""A fresh network's head branches, initialised as ultralytics initialises its anchor-free head.

Ultralytics' `Detect.bias_init` sets the bias of the last convolution of each level's box branch
and class branch, which in netdsl are ordinary statements before `detect_v8`. `init_heads` finds
them through the concrete graph: a head module that asks for them (`init_branch_biases`, as
`DetectV8` does, with `branch_channels`) reads per level a two-input merge (`cat(box, cls)`) whose inputs have the head's
box and class channel counts; each branch's statement ends with a convolution with a bias (or a
graph block whose `output` statement does). A level whose branches cannot be found so leaves every
bias as torch initialised it. Weights loaded later (`--weights`, a checkpoint) replace these.
"""
from __future__ import annotations

import torch
from torch import nn

from netdsl.concrete import Block, Layer, Statement


def _last_bias(net: nn.Module, statements: dict[str, Statement], name: str) -> torch.Tensor | None:
    """The bias of the convolution the tensor `name` ends with, or None."""
    st = statements.get(name)
    while st is not None and not st.items and st.merge is None and len(st.inputs) == 1:
        st = statements.get(st.inputs[0])  # `b = a`: a name for another tensor
    if st is None or not st.items:
        return None
    last = st.items[-1]
    if isinstance(last, Block):
        inner = {s.name: s for s in last.statements}
        return _last_bias(net, inner, "output")
    assert isinstance(last, Layer)
    module = net.get_submodule(last.path)
    return module.bias if isinstance(module, nn.Conv2d) and module.bias is not None else None


def _branches(net: nn.Module, statements: dict[str, Statement], name: str,
              box: int, classes: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The two branch biases of the level map `name`: a two-input merge (through names for other
    tensors, and into a graph block whose `output` is one)."""
    st = statements.get(name)
    while st is not None and not st.items and st.merge is None and len(st.inputs) == 1:
        st = statements.get(st.inputs[0])
    if st is not None and st.items and isinstance(st.items[-1], Block) and len(st.items) == 1:
        block = st.items[-1]
        return _branches(net, {s.name: s for s in block.statements}, "output", box, classes)
    if st is None or st.merge is None or len(st.inputs) != 2 or st.items:
        return None
    a, b = (statements.get(i) for i in st.inputs)
    if a is None or b is None or (a.at[:1], b.at[:1]) != ((box,), (classes,)):
        return None
    found = _last_bias(net, statements, a.name), _last_bias(net, statements, b.name)
    if found[0] is None or found[1] is None:
        return None
    return found[0], found[1]


def init_heads(net: nn.Module, statements: list[Statement]) -> None:
    """Set the branch biases of every head in `statements` (top level) that asks for them."""
    by_name = {st.name: st for st in statements}
    for st in statements:
        head = net._modules.get(st.name)
        init = getattr(head, "init_branch_biases", None)
        channels = getattr(head, "branch_channels", None)
        if init is None or channels is None:
            continue
        box, classes = channels()
        found = [_branches(net, by_name, i, box, classes) for i in st.inputs]
        if all(f is not None for f in found):
            init([f[0] for f in found if f], [f[1] for f in found if f])
