"""Detection training and inference helpers for the `detect` head (issue 10).

`yolo_loss` (YOLOv3's training loss), `nms` and `non_max_suppression` (its inference
post-processing). Kept import-light: torch is imported when one of them is first used.
"""
from __future__ import annotations

__all__ = ["yolo_loss", "nms", "non_max_suppression"]


def __getattr__(name: str):  # lazy re-exports, so `import netdsl.detection` stays cheap
    if name == "yolo_loss":
        from netdsl.detection.loss import yolo_loss

        return yolo_loss
    if name in ("nms", "non_max_suppression"):
        from netdsl.detection import nms as module

        return getattr(module, name)
    raise AttributeError(name)
