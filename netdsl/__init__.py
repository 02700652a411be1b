"""netdsl: a declarative language and compiler for convolutional networks.

`parse`, `shapes`, `count`, `solve`, `fit` and `diff` need no torch; `build` imports it when called, and
`yolo_loss` (netdsl.tasks.detect.loss) and `yolo_v8_loss` (netdsl.tasks.detect.loss_v8) when first used.
"""
from typing import Any

from netdsl.api import build, count, diff, fit, parse, shapes, solve
from netdsl.errors import NetdslError, Span
from netdsl.weights import load_weights, save_weights

__all__ = ["parse", "shapes", "count", "solve", "fit", "diff", "build", "load_weights", "save_weights", "yolo_loss",
           "yolo_v8_loss", "NetdslError", "Span"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:  # lazy re-exports, so `import netdsl` does not import torch
    if name == "yolo_loss":
        from netdsl.tasks.detect.loss import yolo_loss

        return yolo_loss
    if name == "yolo_v8_loss":
        from netdsl.tasks.detect.loss_v8 import yolo_v8_loss

        return yolo_v8_loss
    raise AttributeError(f"module 'netdsl' has no attribute {name!r}")
