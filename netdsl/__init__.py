"""netdsl: a declarative language and compiler for convolutional networks.

`parse`, `shapes`, `count` and `solve` need no torch; `build` imports it when called.
"""
from netdsl.api import build, count, parse, shapes, solve
from netdsl.errors import NetdslError, Span
from netdsl.weights import load_weights, save_weights

__all__ = ["parse", "shapes", "count", "solve", "build", "load_weights", "save_weights", "NetdslError", "Span"]
__version__ = "0.1.0"
