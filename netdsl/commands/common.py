"""Helpers shared by the CLI commands."""
from __future__ import annotations

import argparse
import re

from netdsl.errors import NetdslError

_SET = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(-?[0-9]+)\s*$")


def parse_sets(items: list[str]) -> dict[str, int]:
    """`--set NAME=VALUE` flags as a dict; values are integers."""
    out: dict[str, int] = {}
    for item in items:
        m = _SET.match(item)
        if m is None:
            raise NetdslError(f"--set {item!r} is not NAME=INTEGER", hint="write e.g. --set k=5")
        if len(m.group(2)) > 18:
            raise NetdslError(f"--set {item!r}: the value is too large", hint="values are limited to 18 digits")
        out[m.group(1)] = int(m.group(2))
    return out


def add_set_argument(p: argparse.ArgumentParser, help: str) -> None:
    """The `--set NAME=VALUE` flag every command shares (parsed later by `parse_sets`)."""
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE", help=help)
