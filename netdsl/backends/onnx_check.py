"""The check of an exported ONNX model: `onnx.checker` (full check), then onnxruntime against the
torch module at the values in use and, when sizes are dynamic, at other valid sizes and batches.

Outputs must agree element by element within ATOL + RTOL * |torch|. A failure is `Failed`: the
reason (for the message when sizes are fixed instead) and the error to raise otherwise.
onnx and onnxruntime are an optional extra: imported when a check runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from netdsl.backends.onnx_axes import SizeAxis, declared_sizes
from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError

# onnxruntime against torch: |ort - torch| <= ATOL + RTOL * |torch|, element by element. Decoded
# detections are in input pixels (hundreds), where float32's own spacing is about 1e-5.
ATOL = 1e-4
RTOL = 1e-4


class Failed(Exception):
    """An export or check that failed: `reason` for the message when sizes are fixed instead,
    `error` to raise when they already are."""

    def __init__(self, reason: str, error: NetdslError) -> None:
        super().__init__(reason)
        self.reason, self.error = reason, error


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line.split(" For more information")[0][:300]


def flat(x: Any) -> list[Any]:
    if isinstance(x, torch.Tensor):
        return [x]
    return [y for item in x for y in flat(item)]


def example_inputs(cg: ConcreteGraph, axes: list[SizeAxis], sizes: dict[str, int], batch: int, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    xs = []
    for t in cg.inputs:
        shape = [batch, *t.at]
        for a in axes:
            if a.input == t.name and a.name in sizes:
                shape[a.axis] = sizes[a.name]
        xs.append(torch.randn(*shape, generator=g))
    return tuple(xs)


def check_against_torch(cg: ConcreteGraph, model: nn.Module, tmp: Path, axes: list[SizeAxis], names: list[str],
                          second: dict[str, int] | None) -> list[tuple[str, float]]:
    import onnx  # the optional extra: imported when a check runs
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except Exception as e:  # noqa: BLE001
        raise Failed(f"onnx.checker rejects the dynamic model ({first_line(e)})",
                      NetdslError(f"onnx.checker rejects the exported model: {first_line(e)}",
                                  hint="this is a bug in netdsl or PyTorch's exporter; please report it")) from e
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(tmp), opts, providers=["CPUExecutionProvider"])
    runs: list[tuple[dict[str, int], int, int]] = [({}, 2, 1)]  # (sizes, batch, seed)
    if second:
        runs.append((second, 3, 2))
        least = {a.name: a.low for a in axes if a.dynamic}
        if any(least[a.name] != a.value for a in axes if a.dynamic):
            runs.append((least, 1, 3))
        declared = declared_sizes(cg, axes)
        if declared is not None and declared not in (second, least):
            runs.append((declared, 1, 4))
    results = []
    for sizes, batch, seed in runs:
        xs = example_inputs(cg, axes, sizes, batch, seed)
        with torch.no_grad():
            want = [t.numpy() for t in flat(model(*xs))]
        try:
            got = session.run(names, {t.name: x.numpy() for t, x in zip(cg.inputs, xs)})
        except Exception as e:  # noqa: BLE001
            raise Failed(f"onnxruntime fails at {shape_text(xs)} ({first_line(e)})",
                          NetdslError(f"onnxruntime cannot run the exported model: {first_line(e)}",
                                      hint="this is a bug in netdsl or PyTorch's exporter; please report it")) from e
        worst = 0.0
        for n, w, g in zip(names, want, got):
            if w.shape != g.shape or not np.allclose(g, w, rtol=RTOL, atol=ATOL):
                diff = float(np.abs(g - w).max()) if w.shape == g.shape else float("inf")
                detail = f"output '{n}' differs from torch at {shape_text(xs)}: " + \
                    (f"max |difference| {diff:.3g}" if w.shape == g.shape else f"shape {g.shape} != {w.shape}")
                raise Failed(detail, NetdslError(f"the exported model's {detail}",
                                                  hint="this is a bug in netdsl or PyTorch's exporter; please report it"))
            worst = max(worst, float(np.abs(g - w).max()) if w.size else 0.0)
        results.append((shape_text(xs), worst))
    return results


def shape_text(xs: tuple) -> str:
    return " + ".join("x".join(str(d) for d in x.shape) for x in xs)
