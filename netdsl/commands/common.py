"""Helpers shared by the CLI commands."""
from __future__ import annotations

import argparse

from netdsl.values import MAX_SET_DIGITS, parse_sets

__all__ = ["MAX_SET_DIGITS", "add_set_argument", "parse_sets"]  # parse_sets: the one `--set` parser, in values


def add_set_argument(p: argparse.ArgumentParser, help: str) -> None:
    """The `--set NAME=VALUE` flag every command shares (parsed later by `parse_sets`)."""
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE", help=help)
