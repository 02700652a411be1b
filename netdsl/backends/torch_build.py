"""Spec text to a torch module: the one path every build takes (the API's, the commands', training's)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from netdsl.concrete import ConcreteGraph
from netdsl.errors import located
from netdsl.freeze import Freeze
from netdsl.limits import DEFAULT_MAX_BYTES
from netdsl.passes.front import analyse_text
from netdsl.passes.memory import check_memory

if TYPE_CHECKING:
    from netdsl.backends.torch_module import CompiledNet


def compile_spec(text: str, path: str | None, params: dict[str, int],
                 max_bytes: int | None = DEFAULT_MAX_BYTES,
                 freeze: Freeze | None = None) -> tuple[ConcreteGraph, CompiledNet]:
    """Parse, check, size and compile spec text.

    The memory estimate is checked before torch is even imported, so an absurd size is refused
    in a fraction of a second and nothing is allocated.
    """
    cg = analyse_text(text, path, params, freeze)
    with located(path, text):
        check_memory(cg, max_bytes)
        from netdsl.backends.torch_module import to_module  # torch only after the memory check passed

        return cg, to_module(cg)
