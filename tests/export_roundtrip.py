"""Round trips for small specs: `export --to python` (the file imported and run against the
compiled module) and `export --to onnx` (onnxruntime against torch), for the op tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.api import analyse_text
from netdsl.backends.python_source import to_python_source
from netdsl.backends.torch_module import to_module


def python_round_trip(text: str, tmp_path: Path, train_too: bool = True) -> str:
    """Export `text` to Python, import the file, load the compiled module's state_dict into its
    class (strict) and check the outputs are identical in eval (and train) mode; the source."""
    cg = analyse_text(text, None, {})
    source = to_python_source(cg)
    path = tmp_path / f"exported_{cg.name.lower()}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # the file netdsl wrote, not user text
    torch.manual_seed(0)
    compiled = to_module(cg)
    exported = getattr(mod, cg.name)()
    exported.load_state_dict(compiled.state_dict(), strict=True)
    x = torch.randn(2, *cg.inputs[0].at)
    for training in ((False, True) if train_too else (False,)):
        compiled.train(training)
        exported.train(training)
        with torch.no_grad():
            torch.manual_seed(1)
            want = compiled(x)
            torch.manual_seed(1)
            got = exported(x)
        assert torch.equal(got, want), training
    return source


def onnx_round_trip(text: str, tmp_path: Path) -> list[str]:
    """Export `text` to ONNX; onnxruntime's outputs equal torch's (eval mode); the dynamic sizes."""
    ort = pytest.importorskip("onnxruntime")
    from netdsl.backends.onnx_export import export_model

    cg = analyse_text(text, None, {})
    torch.manual_seed(0)
    model = to_module(cg).eval()
    out = tmp_path / "net.onnx"
    report = export_model(cg, out, model=model)
    assert report.checks and report.max_diff < 1e-4, report.message()
    x = np.random.default_rng(3).standard_normal((2, *cg.inputs[0].at), dtype=np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    return list(report.dynamic)
