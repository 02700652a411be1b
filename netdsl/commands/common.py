"""Helpers shared by the CLI commands."""
from __future__ import annotations

import argparse
import re

from netdsl.errors import NetdslError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"-?[0-9]+")
MAX_SET_DIGITS = 18


def parse_sets(items: list[str] | None) -> dict[str, int]:
    """`--set NAME=VALUE` flags as a dict; values are integers of at most 18 digits.

    The one parser of `--set` for every command (build, count, solve, train). Spaces around the
    name and the value are allowed; `+5`, `5.0`, `1e3` and `5_000` are not integers here.
    """
    out: dict[str, int] = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq:
            raise NetdslError(f"--set {item!r} is not NAME=INTEGER (no '=')", hint="write e.g. --set k=5")
        if not _NAME.fullmatch(name):
            raise NetdslError(f"--set {item!r} is not NAME=INTEGER: {name!r} is not a name",
                              hint="a name is letters, digits and _, not starting with a digit; e.g. --set k=5")
        if not _INT.fullmatch(value):
            raise NetdslError(f"--set {item!r} is not NAME=INTEGER: {value!r} is not an integer",
                              hint=f"spec parameters are integers, e.g. --set {name}=5")
        if len(value.lstrip("-")) > MAX_SET_DIGITS:
            raise NetdslError(f"--set {name}=...: the value has {len(value.lstrip('-'))} digits; it is too large",
                              hint=f"values are limited to {MAX_SET_DIGITS} digits")
        out[name] = int(value)
    return out


def add_set_argument(p: argparse.ArgumentParser, help: str) -> None:
    """The `--set NAME=VALUE` flag every command shares (parsed later by `parse_sets`)."""
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE", help=help)
