"""Golden per-layer shapes for every buildable spec, checked against a real forward pass.

`pytest --update-golden` rewrites tests/golden/<spec>.shapes.json from the current compiler.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl import ir
from netdsl.commands.build import build_report

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _buildable(path: Path) -> bool:
    # Specs with open arguments (`?`) are for `netdsl solve`, not for building.
    g = netdsl.parse(path)
    return not any(isinstance(v, ir.Hole) for n in g.nodes for op in n.layers if isinstance(op, ir.Op)
                   for v in op.args.values())


SPECS = sorted(p for p in [*(ROOT / "specs").glob("*.net"), *(ROOT / "specs" / "zoo").glob("*.net")] if _buildable(p))


def _golden_view(report: dict) -> dict:
    return {
        "net": report["net"],
        "values": report["values"],
        "input_shape": {"symbolic": report["input_shape_symbolic"], "at_values": report["input_shape"]},
        "layers": [{"name": layer["name"], "op": layer["op"], "line": layer["line"],
                    "symbolic": layer["out_shape_symbolic"], "at_values": layer["out_shape"],
                    "params": layer["params"], **({"stored": layer["stored_shape"]} if "stored_shape" in layer else {})}
                   for layer in report["layers"]],
        "output_shape": {"symbolic": report["output_shape_symbolic"], "at_values": report["output_shape"]},
        "inputs": report["inputs"],
        "outputs": report["outputs"],
        "total_params": report["total_params"],
    }


def _names(dim: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_]\w*", dim))  # read as text: the shapes are never evaluated


def _floors_of_the_input_size(view: dict) -> list[str]:
    """The shapes with a floor in the input sizes (a stride that does not divide them). A floor
    in the parameters alone is exact arithmetic, not a lost row: YOLOv8's and YOLO11's widths
    are ultralytics' `make_divisible`, ceil(c * width / 8) * 8, written with `//`."""
    sizes = {n for t in view["inputs"] for d in t["shape_symbolic"] for n in _names(d)}
    dims = [d for layer in view["layers"] for d in layer["symbolic"]]
    dims += [d for t in view["outputs"] for d in t["shape_symbolic"]] + list(view["output_shape"]["symbolic"])
    return [d for d in dims if "floor" in d and sizes & _names(d)]


def test_specs_found() -> None:
    assert {p.stem for p in SPECS} >= {"pool_upsample", "conv_transpose", "unet"}


CASES = [(p, {}) for p in SPECS] + [(ROOT / "specs" / f"{n}.net", {"H": 416, "W": 416}) for n in ("yolov3", "yolov3-tiny")]


def _first(out: object) -> torch.Tensor:
    """A detection head returns (decoded, raw) in eval mode: its shape is the decoded one's."""
    return out[0] if isinstance(out, tuple) else out  # type: ignore[index,return-value]


@pytest.mark.parametrize(("spec", "sets"), CASES, ids=lambda c: c.stem if isinstance(c, Path) else "_".join(map(str, c.values())))
def test_golden_shapes(spec: Path, sets: dict[str, int], update_golden: bool) -> None:
    report, model = build_report(spec.read_text(encoding="utf-8"), str(spec), sets)
    view = _golden_view(report)

    # The golden file only ever records shapes that a real forward pass produced.
    seen: dict[str, list[int]] = {}
    wanted = {layer["name"] for layer in view["layers"]}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, list(_first(out).shape[1:])))
             for name, m in model.named_modules() if name in wanted]
    model.eval()
    with torch.no_grad():
        out = _first(model(torch.zeros(1, *report["input_shape"])))
    for h in hooks:
        h.remove()
    assert list(out.shape[1:]) == view["output_shape"]["at_values"]
    params = dict(model.named_parameters())
    for layer in view["layers"]:
        if layer["name"] in params:  # a learned tensor: its row is the parameter, shaped as declared
            # (`@batch_axis` stores it with a leading 1, as torchvision's class token [1, 1, D])
            declared = [1, *layer["at_values"]] if "stored" in layer else layer["at_values"]
            assert list(params[layer["name"]].shape) == declared, layer["name"]
            continue
        assert seen[layer["name"]] == layer["at_values"], layer["name"]
    if spec.parent.name != "zoo":
        assert _floors_of_the_input_size(view) == []  # the assumptions make every seed shape exact

    size = f"_{sets['H']}" if sets else ""
    path = GOLDEN / (("zoo_" if spec.parent.name == "zoo" else "") + f"{spec.stem}{size}.shapes.json")
    text = json.dumps(view, indent=2) + "\n"
    if update_golden or not path.exists():
        path.write_text(text, encoding="utf-8")
        if not update_golden:
            pytest.fail(f"{path.name} did not exist; written now, rerun to compare")
    assert json.loads(path.read_text(encoding="utf-8")) == view, f"run pytest --update-golden if {path.name} should change"


def test_only_a_floor_in_the_input_size_is_an_inexact_shape() -> None:
    # a stride-2 conv on any H (no `where`): its rows are a floor of H; a channel count from `//`
    # in the parameters (C // 3) is exact
    text = "net F(C = 8)\ninput x: [3, H = 9, W = 9]\noutput = x |> conv(C // 3, 1) -> conv(4, 3, stride=2, padding=1)\n"
    report, _ = build_report(text, None, {})
    view = _golden_view(report)
    assert _floors_of_the_input_size(view) != [] and all("H" in d or "W" in d for d in _floors_of_the_input_size(view))
    even = text.replace("W = 9]", "W = 10] where H % 2 == 0, W % 2 == 0").replace("H = 9", "H = 10")
    exact = _golden_view(build_report(even, None, {})[0])
    assert "floor" in json.dumps(exact["layers"][0]) and _floors_of_the_input_size(exact) == []
