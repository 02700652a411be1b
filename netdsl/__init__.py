"""netdsl: a declarative language and compiler for convolutional networks.

`parse`, `shapes`, `count` and `solve` need no torch; `build` imports it when called.
"""
from netdsl.api import build, count, parse, shapes, solve
from netdsl.errors import NetdslError, Span

__all__ = ["parse", "shapes", "count", "solve", "build", "NetdslError", "Span"]
__version__ = "0.1.0"
