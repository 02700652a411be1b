"""Which layers to freeze, as the command line and the API ask for it (`--freeze`, `--freeze-bn`).

A spec freezes layers with `@freeze`; a `Freeze` request adds to that at build time: the first N
top-level statements (`--freeze 10`, as ultralytics' `--freeze` and the course meant it), or
statements, layer labels and blocks by name. A name that matches nothing is an error, and so is one
that freezes nothing: a block whose calls repeat 0 times, a statement without parameters (a cat, an
activation), or a statement inside a graph block (which `--freeze` cannot reach by name); those
checks need the compiler and live in `netdsl.passes.freeze_check`.

>>> parse_freeze("10"), parse_freeze("b0,fc").names
(Freeze(first=10, names=(), bn='train'), ('b0', 'fc'))
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from netdsl.errors import NetdslError

BN_POLICIES = ("train", "eval")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Freeze:
    first: int = 0                 # the first N top-level statements
    names: tuple[str, ...] = ()    # statements, labels or blocks
    # Frozen BatchNorm layers: "train" keeps updating their running statistics in training mode
    # (what the course's code did: requires_grad=False only); "eval" keeps them in eval mode.
    bn: Literal["train", "eval"] = "train"

    def __bool__(self) -> bool:
        return bool(self.first or self.names)


NO_FREEZE = Freeze()  # the default: the spec's own @freeze only


def parse_freeze(text: str | None, bn: str | None = None) -> Freeze:
    """`--freeze N` or `--freeze NAME[,NAME...]`, and `--freeze-bn train|eval`."""
    out = Freeze()
    if bn is not None:
        if bn not in BN_POLICIES:
            raise NetdslError(f"--freeze-bn {bn!r}: use train or eval",
                              hint="train: frozen BatchNorm still updates its statistics; eval: it does not")
        out = replace(out, bn=bn)  # type: ignore[arg-type]
    if text is None:
        return out
    text = text.strip()
    if text.isdigit():
        if len(text) > 6:
            raise NetdslError(f"--freeze {text}: too many statements", hint="give the number of top-level statements")
        return replace(out, first=int(text))
    names = tuple(n.strip() for n in text.split(","))
    bad = next((n for n in names if not _NAME.match(n)), None)
    if bad is not None:
        raise NetdslError(f"--freeze {text!r}: {bad!r} is neither a number nor a name",
                          hint="write --freeze 10 (the first 10 statements) or --freeze NAME,NAME")
    return replace(out, names=names)


def as_freeze(freeze: int | str | list[str] | tuple[str, ...] | Freeze | None, bn: str | None = None) -> Freeze:
    """The API's `freeze=` argument (a count, a name, names, or a Freeze) as a Freeze."""
    if bn is not None and (not isinstance(bn, str) or bn not in BN_POLICIES):
        raise NetdslError(f"freeze_bn={bn!r}: use 'train' or 'eval'",
                          hint="train: frozen BatchNorm still updates its statistics; eval: it does not")
    if isinstance(freeze, (list, tuple)) and not all(isinstance(x, str) for x in freeze):
        bad = next(x for x in freeze if not isinstance(x, str))
        raise NetdslError(f"freeze={freeze!r}: {bad!r} is not a name", hint="e.g. freeze=['b0', 'fc']")
    if isinstance(freeze, Freeze):
        return freeze if bn is None else replace(freeze, bn=parse_freeze(None, bn).bn)
    if freeze is None:
        return parse_freeze(None, bn)
    if isinstance(freeze, bool) or not isinstance(freeze, (int, str, list, tuple)):
        raise NetdslError(f"freeze={freeze!r}: give a number of statements or names",
                          hint="e.g. freeze=10 or freeze=['b0', 'fc']")
    if isinstance(freeze, int):
        if freeze < 0:
            raise NetdslError(f"freeze={freeze}: give a non-negative number of statements")
        return parse_freeze(str(freeze), bn)
    text = freeze if isinstance(freeze, str) else ",".join(str(x) for x in freeze)
    return parse_freeze(text, bn)
