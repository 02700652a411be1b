"""`netdsl export --to python` of the YOLOv8 and YOLO11 specs (their smallest scale, n, at 64x64):
the written file's class has the compiled module's state_dict keys, loads it strictly, and gives
the same outputs, bit for bit: in eval mode the detect_v8 head's decoded tensor and its raw
per-level maps, in training mode the raw maps; YOLO11 carries C2PSA's psa_attention/psa_values.
About 45 s of CPU for both (mostly compiling and writing the source).

Their ONNX export (onnxruntime against torch within 1e-4, the decoded output included) is in
`test_export_onnx.py`'s SLOW specs: about 70 s (YOLOv8n) and 130 s (YOLO11n) of CPU to export,
so it runs with NETDSL_TEST_ONNX_ALL=1.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from netdsl.api import analyse_text, load
from netdsl.backends.python_source import to_python_source
from netdsl.backends.torch_module import to_module

ROOT = Path(__file__).resolve().parents[2]
SETS = {"H": 64, "W": 64, "NCLS": 3}


def spec_path(name: str) -> Path:
    """specs/NAME (or specs/yolo/NAME, where the YOLOv8 specs were first written)."""
    return next(p for p in (ROOT / "specs" / name, ROOT / "specs" / "yolo" / name) if p.exists())


def flat(out: object) -> list[torch.Tensor]:
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flat(o)]
    assert isinstance(out, torch.Tensor)
    return [out]


@pytest.mark.parametrize(("name", "ops"), [("yolov8.net", ["class DetectV8(nn.Module)"]),
                                           ("yolo11.net", ["class DetectV8(nn.Module)", "class PSAttention("])])
def test_python_source_rebuilds_the_module(name: str, ops: list[str], tmp_path: Path) -> None:
    text, path = load(str(spec_path(name)))
    cg = analyse_text(text, path, SETS)
    source = to_python_source(cg)
    assert all(op in source for op in ops)
    file = tmp_path / f"exported_{Path(name).stem}.py"
    file.write_text(source)
    module_spec = importlib.util.spec_from_file_location(file.stem, file)
    assert module_spec is not None and module_spec.loader is not None
    mod = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(mod)  # the file netdsl wrote
    torch.manual_seed(0)
    compiled = to_module(cg)
    exported = getattr(mod, cg.name)(NCLS=3)  # H and W are not constructor arguments: any size runs
    assert list(exported.state_dict()) == list(compiled.state_dict())
    exported.load_state_dict(compiled.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for training in (False, True):
        compiled.train(training)
        exported.train(training)
        with torch.no_grad():
            want, got = flat(compiled(x)), flat(exported(x))
        # eval: decoded [2, 4 + 3, 64 + 16 + 4] and three raw maps; training: the three raw maps
        assert len(want) == (3 if training else 4) and len(got) == len(want)
        assert training or tuple(want[0].shape) == (2, 7, 84)
        assert all(torch.equal(g, w) for g, w in zip(got, want)), training
