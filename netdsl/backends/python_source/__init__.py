"""Concrete graph -> one standalone Python file: an `nn.Module` class per net (`export --to python`).

The file imports only torch. Its main class is named after the net and takes the spec's
parameters as constructor arguments, defaulting to the values in use; every size that follows
from them (channels, paddings, features) is a formula of them in `__init__`. Each graph block
becomes a class of its own, taking its input's channels and the block's arguments. Names that
decide the structure (repetition counts, conditions) are written at their values, and the class
docstring says so. Children are named as in the compiled module (`build`), so its state_dict
loads with `strict=True`; `forward` uses the spec's tensor names.

The package: `analyse` makes the class models (`model`) from the concrete graph, each argument a
formula checked against the values in use; `write` prints them, formulas through `expr`; the
YOLO head and any other class torch.nn lacks are copied from `netdsl.backends.torch_layers`.
"""
from __future__ import annotations

import torch

from netdsl.backends.python_source.analyse import analyse
from netdsl.backends.python_source.write import write
from netdsl.backends.torch_module import to_module
from netdsl.concrete import ConcreteGraph
from netdsl.errors import located

__all__ = ["check_compiles", "to_python_source"]


def to_python_source(cg: ConcreteGraph) -> str:
    """The network as one standalone Python file: torch imports and an `nn.Module` per net.

    Refuses (NetdslError) what `build` refuses: names that clash with torch's attributes,
    arguments PyTorch rejects. Nothing in the text is run to make it.

    >>> from netdsl.api import shapes
    >>> text = to_python_source(shapes("net Tiny(C = 4)\\ninput x: [1, H = 8, W = 8]\\n"
    ...                                "y = x |> conv(C, 3, padding=1) -> relu\\noutput = y |> conv(2*C, 1)"))
    >>> print(text[text.index("class Tiny"):])  # doctest: +ELLIPSIS
    class Tiny(nn.Module):
        \"\"\"net Tiny, line 1 of the spec...
    <BLANKLINE>
        def __init__(self, C: int = 4) -> None:
            super().__init__()
            # line 3: y = x |> conv(C, 3, padding=1) -> relu
            self.y = nn.Sequential(
                nn.Conv2d(1, C, 3, padding=1),
                nn.ReLU(),
            )
            # line 4: output = y |> conv(2*C, 1)
            self.output = nn.Conv2d(C, 2 * C, 1)
    <BLANKLINE>
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.y(x)
            output = self.output(y)
            return output
    <BLANKLINE>
    """
    check_compiles(cg)
    return write(analyse(cg), cg)


def check_compiles(cg: ConcreteGraph) -> None:
    """What `build` refuses, refused here: the compiled module is made on the meta device (no
    memory is allocated), which runs every name and argument check of the torch backend."""
    path, text = cg.source
    with located(path, text or ""), torch.device("meta"):
        to_module(cg)
