"""What a claim is and what checking it gives (`passes.claims` checks them), and the order in
which the counterexample search visits points."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import sympy as sp

from netdsl import ir
from netdsl.errors import source_text
from netdsl.passes.counts import Convention


@dataclass(frozen=True)
class Assumption:
    """An assumption the symbolic passes apply by substitution: `name % modulus == residue`,
    or, with modulus 0, `name == residue` (a `where` equality or a structural parameter)."""

    name: str
    text: str          # as it reads in the spec: "k: odd", "H % 4 == 0", "k == 3"
    modulus: int
    residue: int
    structural: bool = False


@dataclass(frozen=True)
class ClaimSource:
    """A claim with the file it was written in (for error rendering and reports)."""

    claim: ir.Claim
    path: str | None
    text: str

    def snippet(self) -> str:
        """The claim as written, on one line."""
        return source_text(self.text, self.claim.span) or f"claim {self.claim.metric.name}"


@dataclass
class ClaimResult:
    source: ClaimSource
    metric: str
    convention: Convention
    doubled: bool
    at: dict[str, sp.Expr]              # size/parameter options, in user symbols
    claimed: sp.Expr                    # the claim's right side as written (options are not substituted)
    counted: sp.Expr                    # netdsl's total at the options, user symbols
    status: str                         # "holds", "fails" or "unknown"
    difference: sp.Expr | None = None   # claimed - counted, factored (None when it holds)
    counterexample: dict[str, int] = field(default_factory=dict)
    claimed_value: int | None = None    # both sides at the counterexample
    counted_value: int | None = None
    values_in_use: tuple[int, int] | None = None  # (claimed, counted) at the values in use

    @property
    def holds(self) -> bool:
        return self.status == "holds"

    @property
    def line(self) -> int:
        return self.source.claim.span.line


def small_first(sizes: list[int]) -> Iterator[tuple[int, ...]]:
    """Index tuples (i_1 < sizes[0], ...) in order of increasing sum, generated lazily: with many
    symbols the full grid is far too large to sort, and the first few points usually suffice."""
    room = [sum(n - 1 for n in sizes[k:]) for k in range(len(sizes) + 1)]  # the most the rest can add

    def parts(total: int, k: int) -> Iterator[tuple[int, ...]]:
        if total > room[k]:
            return
        if k == len(sizes):
            yield ()
            return
        for i in range(min(total, sizes[k] - 1), -1, -1):
            for rest in parts(total - i, k + 1):
                yield (i, *rest)

    for total in range(sum(n - 1 for n in sizes) + 1):
        yield from parts(total, 0)
