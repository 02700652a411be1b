"""The export backends' own modules: the YOLO head is written once (`netdsl.backends.torch_layers`)
and `export --to python` copies that definition; the split modules' docstring examples run."""
from __future__ import annotations

import ast
import doctest
import inspect
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from netdsl.api import compile_spec, shapes
from netdsl.backends import onnx_axes, picture_text, torch_layers
from netdsl.backends.python_source import to_python_source
from netdsl.ops import REGISTRY

SPEC = ("net D(NC = 3)\ninput x: [3, H = 64, W = 64]\na = x |> conv(8, 3, stride=8, padding=1)\nb = a |> maxpool(2)\n"
        "output = detect(a, b, classes=NC, strides=[8, 16], anchors=[[10, 14, 23, 27], [37, 58, 81, 82]])\n")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ModuleType]:
    """The spec's exported file: its text, and the file imported as a module."""
    src = to_python_source(shapes(SPEC))
    folder = tmp_path_factory.mktemp("exported")
    (folder / "exported_head.py").write_text(src, encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        import exported_head  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(folder))
    return src, exported_head


def test_the_exported_head_is_the_modules_own_source(exported: tuple[str, ModuleType]) -> None:
    src, _ = exported
    tree = ast.parse(src)
    written = {n.name: ast.get_source_segment(src, n) for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    for name, obj in (("Detect", torch_layers.Detect), ("_log", torch_layers._log)):
        assert written[name] == inspect.getsource(obj).rstrip("\n"), name
    assert [f.__name__ for f in torch_layers.STANDALONE["Detect"]] == ["_log", "Detect"]


@pytest.mark.parametrize("decode", ["ultralytics", "darknet"])
def test_the_exported_head_computes_what_the_module_computes(exported: tuple[str, ModuleType], decode: str) -> None:
    _, module = exported
    args = {"classes": 3, "anchors": [[10, 14, 23, 27], [37, 58, 81, 82]], "strides": [8, 16],
            "in_channels": [8, 8], "decode": decode}
    torch.manual_seed(0)
    ours = torch_layers.Detect(**args)
    torch.manual_seed(0)
    theirs = module.Detect(**args)
    assert repr(ours) == repr(theirs)
    want = ours.state_dict()
    got = theirs.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)  # the same initialisation
    xs = (torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4))
    for train in (True, False):
        ours.train(train)
        theirs.train(train)
        traced = torch.fx.symbolic_trace(_TwoLevels(ours))  # fx traces the head inside a net, as export's test does
        a, b, c = ours(*xs), theirs(*xs), traced(*xs)
        assert torch.equal(_flat(a), _flat(b)) and torch.equal(_flat(a), _flat(c))


class _TwoLevels(torch.nn.Module):
    """The head called with two named inputs: fx cannot trace a root module's `*xs`."""

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple:
        return self.head(a, b)


def _flat(out: torch.Tensor | tuple) -> torch.Tensor:
    """Every number of a head's output (a tensor, or nested tuples of them) in one flat tensor."""
    if isinstance(out, torch.Tensor):
        return out.flatten()
    return torch.cat([_flat(x) for x in out])


def test_the_exported_net_loads_the_compiled_weights(exported: tuple[str, ModuleType]) -> None:
    _, module = exported
    torch.manual_seed(0)
    ref = compile_spec(SPEC, None, {})[1].eval()
    net = module.D().eval()
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    (want, want_raw), (got, got_raw) = ref(x), net(x)
    assert torch.equal(want, got) and all(torch.equal(w, g) for w, g in zip(want_raw, got_raw))


def test_forward_joins_the_inputs_as_the_op_says(monkeypatch: pytest.MonkeyPatch) -> None:
    # The exporter asks the op that starts a statement for its Python form; it knows no op by name.
    spec = ("net M(C = 4)\ninput x: [C, H = 8, W = 8]\ny = x |> relu\ns = add(x, y) |> conv(C, 1)\n"
            "output = cat(s, y)\n")
    before = to_python_source(shapes(spec))
    assert "s = self.s(x + y)" in before and "output = torch.cat((s, y), dim=1)" in before
    monkeypatch.setattr(type(REGISTRY["add"]), "source", lambda self, inputs: f"torch.add({', '.join(inputs)})")
    assert "s = self.s(torch.add(x, y))" in to_python_source(shapes(spec))


@pytest.mark.parametrize(("module", "least"), [(onnx_axes, 2), (picture_text, 6)], ids=lambda m: getattr(m, "__name__", m))
def test_docstring_examples(module: ModuleType, least: int) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= least and result.failed == 0


def test_the_picture_modules_need_no_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "from netdsl.api import shapes\nfrom netdsl.backends.picture import to_dot\n"
            f"print(to_dot(shapes({SPEC!r})).startswith('digraph'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
