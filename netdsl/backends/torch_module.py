"""Concrete graph -> torch.nn.Module. One child module per tensor statement, in spec order.

A graph-block call becomes a child module of its own (its statements inside); a statement with
one unlabelled layer registers that layer directly, others an nn.Sequential of their layers.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from netdsl.concrete import Block, ConcreteGraph, Layer, Statement
from netdsl.errors import NetdslError, Span

# Attributes the compiled classes set themselves; user names must not take them.
_OWN = frozenset({"_netdsl_plan", "_netdsl_inputs", "_netdsl_outputs", "_netdsl_name", "_netdsl_frozen_bn", "ir", "concrete",
                  "spec_name", "params", "input_shape", "output_shape", "in_channels", "inputs", "outputs"})


def _check_name(owner: nn.Module, name: str, span: Span, what: str) -> None:
    # An instance, not the class: nn.Module sets `training`, `_modules`, ... in __init__.
    if name in _OWN or hasattr(owner, name) or name.startswith("__"):
        cls = type(owner).__name__
        raise NetdslError(f"the {what} '{name}' clashes with an attribute of {cls}, the torch.nn.Module "
                          "it compiles to", span, f"rename the {what}")


def _construct(cls: str, kwargs: dict[str, Any], what: str, span: Span, attrs: frozenset[str]) -> nn.Module:
    from netdsl.backends import torch_layers

    try:
        module = getattr(nn, cls, None) or getattr(torch_layers, cls)
        module = module(**kwargs)
    except (ValueError, RuntimeError, TypeError) as e:  # torch's own argument checks
        raise NetdslError(f"PyTorch rejects this '{what}': {e}", span, "check the layer's arguments") from e
    if "freeze" in attrs:
        for p in module.parameters():
            p.requires_grad_(False)
    return module


def make_layer(layer: Layer) -> nn.Module:
    """The torch module of one layer, from the op's own description of it."""
    cls, kwargs = layer.op.torch(layer.args, layer.in_at)
    return _construct(cls, kwargs, layer.op.name, layer.span, layer.attrs)


def _statement_module(st: Statement) -> nn.Module | None:
    if st.merge is not None:
        made = st.merge.merge.module(st.merge.args, st.merge.in_at)
        if made is not None:  # an op with weights over several inputs (detect): no layers follow it
            return _construct(*made, st.merge.merge.name, st.merge.span, st.attrs)
    mods: list[tuple[str, nn.Module]] = []
    for it in st.items:
        if isinstance(it, Block):
            mods.append((it.name, BlockModule(it)))
        else:
            mods.append((it.name, make_layer(it)))
    if len(mods) == 1 and mods[0][0] == "0":
        return mods[0][1]
    if not mods:
        return None
    empty = nn.Sequential()
    for (name, _), it in zip(mods, st.items):
        _check_name(empty, name, it.span, "layer label")
    return nn.Sequential(OrderedDict(mods))


class _GraphModule(nn.Module):
    """Statements as children, walked by a precomputed plan (look up inputs, merge, call)."""

    def _add_statements(self, statements: list[Statement]) -> None:
        plan = []
        for st in statements:
            _check_name(self, st.name, st.span, "tensor name")
            mod = _statement_module(st)
            if mod is not None:
                self.add_module(st.name, mod)
            calls = st.merge is not None and st.merge.merge.final
            plan.append((st.name, "call" if calls else st.source, st.inputs, mod is not None))
        self._netdsl_plan = tuple(plan)

    def _run(self, env: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for name, merge, inputs, has_module in self._netdsl_plan:
            if merge == "call":  # the module takes every input itself
                env[name] = self._modules[name](*[env[i] for i in inputs])
                continue
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
        return env


class BlockModule(_GraphModule):
    """One call of a graph block; prints under the block's name."""

    def __init__(self, block: Block) -> None:
        super().__init__()
        self._netdsl_name = block.block
        self._netdsl_inputs = block.input
        self._add_statements(block.statements)

    def _get_name(self) -> str:
        return self._netdsl_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run({self._netdsl_inputs: x})["output"]


class CompiledNet(_GraphModule):
    """A network compiled from a netdsl spec.

    Attributes: `spec_name`, `params` (every parameter and input size in use), `in_channels`,
    `input_shape`/`output_shape` (per sample, of the first input and output), `inputs`/`outputs`
    (name -> per-sample shape, in declared order), `concrete` (the concrete graph), `ir` (the Graph).
    """

    def __init__(self, cg: ConcreteGraph) -> None:
        super().__init__()
        self.concrete = cg
        self.ir = cg.graph
        self.spec_name = cg.name
        self.params = dict(cg.env.values)
        self.inputs = {t.name: t.at for t in cg.inputs}
        self.outputs = {t.name: t.at for t in cg.outputs}
        self.input_shape = cg.inputs[0].at
        self.output_shape = cg.outputs[0].at
        self.in_channels = self.input_shape[0]
        self._netdsl_inputs = tuple(self.inputs)
        self._netdsl_outputs = tuple(self.outputs)
        self._add_statements(cg.statements)
        # `--freeze-bn eval`: frozen BatchNorm layers stay in eval mode whatever train() is asked.
        frozen_bn = cg.graph is not None and cg.graph.freeze_bn == "eval"
        modules = dict(self.named_modules())
        self._netdsl_frozen_bn = tuple(modules[l.path] for l in cg.layers
                                       if frozen_bn and "freeze" in l.attrs and l.op.name == "batchnorm")
        self.train(self.training)

    def train(self, mode: bool = True) -> CompiledNet:
        super().train(mode)
        for m in getattr(self, "_netdsl_frozen_bn", ()):  # not yet set while nn.Module.__init__ runs
            m.eval()
        return self

    def _get_name(self) -> str:
        return self.spec_name

    def forward(self, x: torch.Tensor) -> Any:
        env = self._run({self._netdsl_inputs[0]: x})
        if len(self._netdsl_outputs) == 1:
            return env[self._netdsl_outputs[0]]
        return tuple(env[o] for o in self._netdsl_outputs)


class MultiInputNet(CompiledNet):
    """A compiled network with several inputs: `forward` takes them in declared order."""

    def forward(self, *xs: torch.Tensor) -> Any:  # type: ignore[override]
        if len(xs) != len(self._netdsl_inputs):
            raise TypeError(f"{self.spec_name} takes {len(self._netdsl_inputs)} inputs "
                            f"({', '.join(self._netdsl_inputs)}), got {len(xs)}")
        env = self._run(dict(zip(self._netdsl_inputs, xs)))
        if len(self._netdsl_outputs) == 1:
            return env[self._netdsl_outputs[0]]
        return tuple(env[o] for o in self._netdsl_outputs)


def to_module(cg: ConcreteGraph) -> CompiledNet:
    """Compile a concrete graph (see `netdsl.api.compile_spec`) into a CompiledNet."""
    return (MultiInputNet if len(cg.inputs) > 1 else CompiledNet)(cg)


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
