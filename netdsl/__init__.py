"""netdsl: a declarative language and compiler for convolutional networks.

`parse` and `shapes` need no torch; `build` imports it when called.
"""
from netdsl.api import build, parse, shapes
from netdsl.errors import NetdslError, Span

__all__ = ["parse", "shapes", "build", "NetdslError", "Span"]
__version__ = "0.1.0"
