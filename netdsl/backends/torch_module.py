"""Concrete graph -> torch.nn.Module. One child module per tensor statement, in spec order.

A graph-block call becomes a child module of its own (its statements inside); a statement with
one unlabelled layer registers that layer directly, others an nn.Sequential of their layers.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, cast

import torch
from torch import nn

from netdsl.backends import torch_layers
from netdsl.backends.torch_head_init import init_heads
from netdsl.concrete import Block, ConcreteGraph, Layer, Statement
from netdsl.errors import NetdslError, Span
from netdsl.ops import OpDef
from netdsl.ops.learned import BATCH_AXIS, PARAM
from netdsl.passes.peak import last_uses

# Attributes the compiled classes set themselves; user names must not take them.
_OWN = frozenset({"_netdsl_plan", "_netdsl_learned",
                  "_netdsl_inputs", "_netdsl_outputs", "_netdsl_name", "_netdsl_frozen_bn", "ir", "concrete",
                  "spec_name", "params", "input_shape", "output_shape", "in_channels", "inputs", "outputs"})


def _check_name(owner: nn.Module, name: str, span: Span, what: str) -> None:
    # An instance, not the class: nn.Module sets `training`, `_modules`, ... in __init__.
    if name in _OWN or hasattr(owner, name) or name.startswith("__"):
        cls = type(owner).__name__
        raise NetdslError(f"the {what} '{name}' clashes with an attribute of {cls}, the torch.nn.Module "
                          "it compiles to", span, f"rename the {what}")


def _construct(cls: str, kwargs: dict[str, Any], what: str, span: Span, attrs: frozenset[str]) -> nn.Module:
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
    made = layer.module_spec()
    if made is None:
        raise NetdslError(f"'{layer.op.name}' has no module to compute it", layer.span,
                          "a layer's op must name its module (OpDef.module)")
    return _construct(*made, layer.op.name, layer.span, layer.attrs)


def learned_parameter(st: Statement) -> nn.Parameter:
    """A learned tensor's parameter: exactly its dims (after a batch axis of 1 with `@batch_axis`),
    filled with its value or drawn from N(0, std**2)."""
    assert st.merge is not None
    a = st.merge.args
    dims = (1, *st.at) if BATCH_AXIS in st.attrs else st.at
    data = torch.full(dims, float(a["value"])) if a["init"] == "constant" else \
        torch.nn.init.normal_(torch.empty(dims), std=float(a["value"]))
    return nn.Parameter(data, requires_grad="freeze" not in st.attrs)


def _statement_module(st: Statement) -> nn.Module | None:
    if st.merge is not None:
        made = st.merge.module_spec()
        if made is not None:  # an op with weights over several inputs (detect): no layers follow it
            return _construct(*made, st.merge.op.name, st.merge.span, st.attrs)
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


# One statement of the plan: its name, how its inputs are taken ("ref": the one input as it is;
# "call": the statement's module takes every input; an op: its `combine`), the inputs, whether a
# module then runs on the result, and the tensors no later statement reads (dropped once taken).
_Step = tuple[str, "str | OpDef", tuple[str, ...], bool, tuple[str, ...]]


class _GraphModule(nn.Module):
    """Statements as children, walked by a precomputed plan (look up inputs, combine, call)."""

    def _add_statements(self, statements: list[Statement], keep: tuple[str, ...]) -> None:
        plan: list[tuple[str, str | OpDef, tuple[str, ...], bool]] = []
        self._netdsl_learned: dict[str, int] = {}  # a learned tensor's rank, known here: fx cannot read a traced one
        for st in statements:
            _check_name(self, st.name, st.span, "tensor name")
            if st.source == PARAM:
                self.register_parameter(st.name, learned_parameter(st))
                self._netdsl_learned[st.name] = len(st.at)
                plan.append((st.name, PARAM, (), False))
                continue
            mod = _statement_module(st)
            if mod is not None:
                self.add_module(st.name, mod)
            how: str | OpDef = "ref"
            if st.merge is not None:
                how = "call" if st.merge.module_spec() is not None else st.merge.op
            plan.append((st.name, how, st.inputs, mod is not None))
        drops = last_uses([(name, inputs) for name, _, inputs, _ in plan], keep)
        self._netdsl_plan: tuple[_Step, ...] = tuple((*step, drop) for step, drop in zip(plan, drops))

    def _child(self, name: str) -> nn.Module:
        # `_modules` is typed as holding None too; the plan names only modules it added
        return cast(nn.Module, self._modules[name])

    def _run(self, env: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the plan over `env` (the inputs by name); returns the tensors kept (outputs).

        Each tensor leaves `env` once no later statement reads it, before the statement's module
        runs: a combined result's inputs are freed while its layers run (a module's own input
        stays referenced by the call itself until it returns)."""
        batch = next(iter(env.values())).shape[0]
        for name, how, inputs, has_module, drop in self._netdsl_plan:
            if how == PARAM:  # the same tensor for every sample: a view with the batch axis (or of it)
                env[name] = getattr(self, name).expand(batch, *[-1] * self._netdsl_learned[name])
                continue
            xs = [env[i] for i in inputs]
            for i in drop:
                del env[i]
            if how == "call":
                env[name] = self._child(name)(*xs)
            else:
                t = how.combine(xs, torch) if isinstance(how, OpDef) else xs[0]
                xs.clear()
                env[name] = self._child(name)(t) if has_module else t
                del t  # no local may outlive its step: a dropped tensor would stay alive
            del xs
        return env


class BlockModule(_GraphModule):
    """One call of a graph block; prints under the block's name."""

    def __init__(self, block: Block) -> None:
        super().__init__()
        self._netdsl_name = block.block
        self._netdsl_inputs = block.input
        self._add_statements(block.statements, ("output",))

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
        self._add_statements(cg.statements, self._netdsl_outputs)
        init_heads(self, cg.statements)  # a fresh anchor-free head's branch biases, as ultralytics sets them
        # `--freeze-bn eval`: frozen BatchNorm layers stay in eval mode whatever train() is asked.
        frozen_bn = cg.graph is not None and cg.graph.freeze_bn == "eval"
        modules = dict(self.named_modules())
        self._netdsl_frozen_bn = tuple(modules[layer.path] for layer in cg.layers
                                       if frozen_bn and "freeze" in layer.attrs and layer.op.running_stats)
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

    def forward(self, *xs: torch.Tensor) -> Any:
        if len(xs) != len(self._netdsl_inputs):
            raise TypeError(f"{self.spec_name} takes {len(self._netdsl_inputs)} inputs "
                            f"({', '.join(self._netdsl_inputs)}), got {len(xs)}")
        env = self._run(dict(zip(self._netdsl_inputs, xs)))
        if len(self._netdsl_outputs) == 1:
            return env[self._netdsl_outputs[0]]
        return tuple(env[o] for o in self._netdsl_outputs)


def to_module(cg: ConcreteGraph) -> CompiledNet:
    """Compile a concrete graph (see `netdsl.backends.torch_build.compile_spec`) into a CompiledNet."""
    return (MultiInputNet if len(cg.inputs) > 1 else CompiledNet)(cg)
