"""The importers' structure: classes that own their state, collaborators given what they need, one
writer and one size helper held equal to netdsl's own window arithmetic."""
from __future__ import annotations

import ast
import itertools
from fractions import Fraction
from pathlib import Path

import pytest
import sympy as sp

from netdsl.errors import NetdslError
from netdsl.importers import import_text
from netdsl.importers.darknet_cfg import DarknetImporter
from netdsl.importers.darknet_layers import CfgLayers
from netdsl.importers.spec_writer import INPUT_SIZE, Shape, Size, Source, Tensor
from netdsl.importers.ultralytics_yaml import YamlImporter
from netdsl.importers.yaml_blocks import Modules, RowCall
from netdsl.importers.yaml_nodes import Values, read_yaml
from netdsl.ops.base import window_out

FOLDER = Path(__file__).resolve().parents[2] / "netdsl" / "importers"
CFG = "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\n" \
      "activation=leaky\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=1\nactivation=leaky\n" \
      "[shortcut]\nfrom=-2\n"
YAML = "nc: 2\ndepth_multiple: 1.0\nwidth_multiple: 1.0\nanchors: 3\nbackbone:\n  [[-1, 1, Conv, [8, 3, 2]],\n" \
       "   [-1, 1, nn.MaxPool2d, [2, 2, 0]]]\nhead:\n  [[-1, 1, Conv, [16, 1, 1]]]\n"


@pytest.mark.parametrize(("k", "s", "p", "step"), list(itertools.product((1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 4))))
def test_size_window_is_window_out_at_every_admissible_size(k: int, s: int, p: int, step: int) -> None:
    """The importers track a size as a*H + b, exactly where H % S == 0; ops.base.window_out is
    PyTorch's formula. On H/step (a multiple of `step`) the two agree for every such H."""
    size = Size(Fraction(1, step), 0).window(k, s, 2 * p)
    for h in range(step * max(k, s) * 2, step * 40, step):
        if (Fraction(h, step) - k + 2 * p) < 0:
            continue
        want = window_out(sp.Integer(h // step), sp.Integer(k), sp.Integer(s), sp.Integer(p))
        if size.a * h % 1 == 0:  # the spec's `where H % S == 0` admits this H
            assert size.at(h) == int(want), (k, s, p, step, h)


def test_shape_window_and_scale() -> None:
    x = Shape(3, INPUT_SIZE, INPUT_SIZE)
    assert x.window(8, (3, 3), (2, 2), (2, 2)) == Shape(8, Size(Fraction(1, 2), 0), Size(Fraction(1, 2), 0))
    assert x.window(8, (3, 1), (1, 1), (0, 0)).show() == "[8, H - 2, W]"
    assert x.scaled(2).show() == "[3, H*2, W*2]"


def test_darknet_importer_owns_its_state() -> None:
    imp = DarknetImporter(Source("t.cfg", CFG))
    text = imp.run()
    assert text == import_text(CFG, "t.cfg", "cfg")
    assert set(imp.out) == {0, 2}  # layer 1 is inside the residual unit 1-2
    assert all(isinstance(t, Tensor) for t in imp.out.values())
    assert imp.out[2].name == "output"
    assert imp.residuals.blocks and not imp.head.levels
    assert "residual(8)" in text


def test_cfg_layers_refuse_before_anything_is_written() -> None:
    cfg = CfgLayers(Source("t.cfg", CFG))
    assert (cfg.height, cfg.width, cfg.channels) == (32, 32, 3)
    assert cfg.layers[2].targets == [0] and cfg.refs == {0: {2}}
    assert cfg.comment(1, 2) == "cfg lines 12-17, layers 1-2" and cfg.name_of(2, "add2") == "output"
    with pytest.raises(NetdslError) as e:
        CfgLayers(Source("t.cfg", CFG.replace("from=-2", "from=5")))
    assert "names layer 5, but layer 2 can only read layers 0 to 1" in e.value.message


def test_yaml_modules_are_given_what_they_need() -> None:
    src = Source("t.yaml", YAML, "yaml")
    values = Values(src)
    values.names.update(nc=2)
    imp = YamlImporter(src)
    modules = Modules(values, imp.w, 2, 21, 1.0)
    row = read_yaml(src).value["backbone"][1].value[0]
    ins = [Tensor("x", Shape(3, INPUT_SIZE, INPUT_SIZE))]
    stmt, shape = modules.emit(RowCall("Conv", ins, list(row.value[3].value), 1, row.value[1], row.value[3]))
    assert stmt.chain == ["cba(8, 3, 2)"] and shape.show() == "[8, H/2, W/2]"
    assert list(modules.used) == ["cba"]
    assert imp.run() == import_text(YAML, "t.yaml", "yaml")


def test_importers_hide_no_cycles_and_reach_into_no_private_state() -> None:
    """No TYPE_CHECKING imports, and no module reads another's underscored names."""
    for path in FOLDER.glob("*.py"):
        tree = ast.parse(path.read_text())
        assert "TYPE_CHECKING" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}, path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("netdsl.importers"):
                assert not any(a.name.startswith("_") for a in node.names), (path.name, node.module)
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                assert isinstance(base, ast.Name) and base.id in ("self", "yaml"), (path.name, node.attr)
