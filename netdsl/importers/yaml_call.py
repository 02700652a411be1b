"""One row's module call in an Ultralytics model YAML, as the module handlers (`yaml_blocks`,
`yaml_more`) receive it."""
from __future__ import annotations

from dataclasses import dataclass

from netdsl.importers.spec_writer import Shape, Stmt, Tensor
from netdsl.importers.yaml_nodes import Y

Emitted = tuple[Stmt, Shape]


@dataclass
class RowCall:
    """One row's module call: the module, the tensors it reads, its arguments (`a`; `args` their
    list node), its copies (`number`; `n` the row's number node)."""

    mod: str
    ins: list[Tensor]
    a: list[Y]
    number: int
    n: Y
    args: Y
    c2: int = 0  # the output channels, for the modules in SIZED

    def arg(self, k: int) -> Y | None:
        return self.a[k] if k < len(self.a) else None

    @property
    def shape(self) -> Shape:
        """The (first) input's shape."""
        return self.ins[0].shape

    @property
    def rep(self) -> str:
        return f" * {self.number}" if self.number > 1 else ""

    def chain(self, chain: list[str], shape: Shape) -> Emitted:
        """A statement reading the first input through `chain`."""
        return Stmt("", [self.ins[0].name], chain, "", None), shape
