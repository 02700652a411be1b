"""The front every command and backend shares: spec text to the lowered IR, or to the concrete
graph at the values in use. No torch."""
from __future__ import annotations

from netdsl import ir
from netdsl.concrete import ConcreteGraph
from netdsl.errors import located
from netdsl.freeze import Freeze
from netdsl.parsing import parse_text
from netdsl.passes.freeze_check import check_effect, check_reachable
from netdsl.passes.lower import check_header, lower
from netdsl.passes.shapes import analyse
from netdsl.passes.symbols import make_env


def analyse_text(text: str, path: str | None, params: dict[str, int] | None = None,
                 freeze: Freeze | None = None) -> ConcreteGraph:
    """Spec text to its concrete graph at the values in use; errors carry `path` and `text`."""
    with located(path, text):
        spec = parse_text(text, path)
        if freeze:
            check_reachable(spec, freeze)
        cg = analyse(spec, params, freeze=freeze or Freeze())
        if freeze:
            check_effect(freeze, cg)
    cg.source = (path, text)
    return cg


def lower_text(text: str, path: str | None, params: dict[str, int] | None = None) -> ir.Graph:
    """Spec text to the lowered IR at the values in use (blocks and repetition expanded; no shapes)."""
    with located(path, text):
        spec = parse_text(text, path)
        check_header(spec)
        return lower(spec, make_env(spec, params).values)
