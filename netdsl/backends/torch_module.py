"""IR -> torch.nn.Module. One child module per tensor statement, registered in spec order."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from netdsl import ir
from netdsl.errors import NetdslError
from netdsl.passes.shapes import ShapeResult


def _value(v: ir.Value, shapes: ShapeResult) -> Any:
    if isinstance(v, (ir.Float, ir.Str, ir.Bool)):
        return v.value
    return int(shapes.env.at(shapes.env.sym(v)))  # type: ignore[arg-type]


def make_layer(op: ir.Op, in_channels: int, shapes: ShapeResult) -> nn.Module:
    """The torch module for one op, given the channels flowing into it."""
    a = {k: _value(v, shapes) for k, v in op.args.items()}
    kind = op.op
    if kind == "conv":
        return nn.Conv2d(in_channels, a["out"], a["kernel"], stride=a["stride"], padding=a["padding"],
                         dilation=a["dilation"], groups=a["groups"], bias=a["bias"])
    if kind == "convT":
        return nn.ConvTranspose2d(in_channels, a["out"], a["kernel"], stride=a["stride"], padding=a["padding"],
                                  output_padding=a["output_padding"], groups=a["groups"], bias=a["bias"],
                                  dilation=a["dilation"])
    if kind == "maxpool":
        return nn.MaxPool2d(a["kernel"], stride=a["stride"], padding=a["padding"], dilation=a["dilation"])
    if kind == "avgpool":
        return nn.AvgPool2d(a["kernel"], stride=a["stride"], padding=a["padding"])
    if kind == "upsample":
        bilinear = a["mode"] == "bilinear"
        return nn.Upsample(scale_factor=a["scale"], mode=a["mode"],
                           align_corners=a["align_corners"] if bilinear else None)
    if kind == "batchnorm":
        return nn.BatchNorm2d(in_channels, eps=a["eps"], momentum=a["momentum"], affine=a["affine"])
    if kind == "relu":
        return nn.ReLU()
    if kind == "leaky_relu":
        return nn.LeakyReLU(a["slope"])
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "tanh":
        return nn.Tanh()
    if kind == "dropout":
        return nn.Dropout(a["p"])
    raise NetdslError(f"the torch backend has no '{kind}'", op.span)  # pragma: no cover - lower() rejects it


class CompiledNet(nn.Module):
    """A network compiled from a netdsl spec.

    Attributes: `spec_name`, `params` (every parameter and input size in use), `in_channels`,
    `input_shape`/`output_shape` (per sample, at the values in use), `ir` (the Graph).
    """

    def __init__(self, graph: ir.Graph, shapes: ShapeResult) -> None:
        super().__init__()
        self.ir = graph
        self.spec_name = graph.name
        self.params = dict(shapes.env.values)
        self.input_shape = tuple(shapes.at(shapes.input_shape))
        self.output_shape = tuple(shapes.at(shapes.output_shape))
        self.in_channels = self.input_shape[0]
        self._input = graph.input.name
        self._output = graph.output
        plan: list[tuple[str, str, tuple[str, ...], bool]] = []
        it = iter(shapes.layers)
        for node in graph.nodes:
            if hasattr(nn.Module, node.name) or node.name in self.__dict__ or node.name in ("ir", "spec_name", "params"):
                raise NetdslError(f"the tensor name '{node.name}' clashes with a torch.nn.Module attribute",
                                  node.span, "rename the tensor")
            mods: list[tuple[str, nn.Module]] = []
            for op in node.layers:
                ls = next(it)
                try:
                    mods.append((op.name, make_layer(op, int(shapes.env.at(ls.in_shape[0])), shapes)))
                except (ValueError, RuntimeError, TypeError) as e:  # torch's own argument checks
                    raise NetdslError(f"PyTorch rejects this '{op.op}': {e}", op.span,
                                      "check the layer's arguments") from e
            if len(mods) == 1 and mods[0][0] == "0":
                self.add_module(node.name, mods[0][1])
            elif mods:
                self.add_module(node.name, nn.Sequential(OrderedDict(mods)))
            plan.append((node.name, node.merge, tuple(i.name for i in node.inputs), bool(mods)))
        self._plan = tuple(plan)

    def _get_name(self) -> str:
        return self.spec_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self._input: x}
        for name, merge, inputs, has_module in self._plan:
            if merge == "ref":
                t = env[inputs[0]]
            elif merge == "cat":
                t = torch.cat([env[i] for i in inputs], dim=1)
            else:
                t = env[inputs[0]]
                for i in inputs[1:]:
                    t = t + env[i]
            if has_module:
                t = self._modules[name](t)
            env[name] = t
        return env[self._output]


def to_module(graph: ir.Graph, shapes: ShapeResult) -> CompiledNet:
    """Compile a checked graph (with its shapes; see `netdsl.api.compile_spec`) into a CompiledNet."""
    return CompiledNet(graph, shapes)


def load_in_order(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a state_dict from another module with the same tensors in the same order.

    Keys are ignored: the i-th distinct tensor of `state_dict` goes to the i-th entry of
    `model.state_dict()`. Entries sharing storage (a module registered twice, as in the seed's
    `self.conv1` + `self.sequence1`) count once. Shapes must match one by one.
    """
    seen: set[tuple[int, tuple[int, ...], tuple[int, ...]]] = set()
    source: list[tuple[str, torch.Tensor]] = []
    for k, t in state_dict.items():
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride())) if t.numel() else (id(t), (), ())
        if key in seen:
            continue
        seen.add(key)
        source.append((k, t))
    target = model.state_dict()
    if len(source) != len(target):
        raise NetdslError(f"the state_dict has {len(source)} distinct tensors, the model {len(target)}",
                          hint="the two networks differ in structure")
    mapped = {}
    for (sk, st), (tk, tt) in zip(source, target.items()):
        if st.shape != tt.shape:
            raise NetdslError(f"tensor '{sk}' has shape {tuple(st.shape)} but '{tk}' needs {tuple(tt.shape)}",
                              hint="the two networks differ in structure or parameter values")
        mapped[tk] = st
    model.load_state_dict(mapped)
