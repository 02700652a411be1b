"""`saved_bytes`: the bytes autograd keeps for backward in one training-mode forward of a batch.

The pass follows the concrete graph in forward order as the compiled module runs it and tracks
storages: the network's inputs, each layer's output (a view or an alias maps to its base, as
flatten and channel slices are), the tensors a layer makes and keeps (indices, noise, statistics),
and the parameters (learned tensors), which are never charged. Each op says what it keeps
(`OpDef.saved`, see `netdsl.ops.saves`); a storage kept by several layers is charged once, to the
first. A layer none of whose inputs requires grad and whose parameters are frozen has no autograd
node and keeps nothing. Formulas are in the concrete graph's internal symbols and the batch symbol.

>>> import netdsl
>>> from netdsl.passes.memory_model import batch_symbol
>>> cg = netdsl.shapes("net T()\\ninput x: [3, H = 8, W = 8]\\noutput y = x |> conv(4, 3, padding=1) -> relu\\n")
>>> N = batch_symbol(cg.env)
>>> saved_bytes(cg, N)  # the conv keeps the input, relu its result
[12*H*N*W, 16*H*N*W]
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from netdsl.concrete import Block, ConcreteGraph, Layer, Merge, Statement
from netdsl.errors import NetdslError
from netdsl.ops.base import Args, Counts, Shape, Unmodelled
from netdsl.ops.learned import PARAM
from netdsl.ops.saves import PARAM_WIDTH, Need, Saves
from netdsl.passes.memory_model import DTYPES, MemoryOptions

DEFAULT = MemoryOptions()  # float32, Adam

PARAMETER = -1  # the storage of a learned tensor: a parameter, never charged
FLOAT32 = 4  # the network's inputs, whatever the autocast dtype


@dataclass(frozen=True)
class _Tensor:
    """A tensor as the pass follows it: its storage, shape, whether it requires grad, layout."""

    storage: int
    shape: Shape
    at: tuple[int, ...]
    grad: bool
    layout: str = "nchw"
    width: int = 4


@dataclass
class _Tracker:
    batch: sp.Symbol
    options: MemoryOptions
    eval_bn: bool  # `--freeze-bn eval`: frozen BatchNorm layers run in eval mode
    source: tuple[str | None, str | None] = (None, None)  # the spec's path and text, for errors
    sizes: list[sp.Expr] = field(default_factory=list)
    charged: set[int] = field(default_factory=set)
    items: list[sp.Expr] = field(default_factory=list)

    def new(self, shape: Shape, width: int) -> int:
        self.sizes.append(sp.expand(self.batch * sp.Mul(*shape) * width))
        return len(self.sizes) - 1

    def charge(self, storage: int) -> sp.Expr:
        if storage == PARAMETER or storage in self.charged:
            return sp.Integer(0)
        self.charged.add(storage)
        return self.sizes[storage]

    # --- statements ----------------------------------------------------------------------------

    def statements(self, stmts: list[Statement], env: dict[str, _Tensor]) -> None:
        for st in stmts:
            if st.source == PARAM:
                self.items.append(sp.Integer(0))
                env[st.name] = _Tensor(PARAMETER, st.shape, st.at, "freeze" not in st.attrs, width=PARAM_WIDTH)
                continue
            if st.merge is not None:
                t = self.apply(st.merge, st.merge.args, [env[i] for i in st.inputs], st.merge.out_shape,
                               st.merge.out_at, self.trainable(st.merge.counts, st.attrs), False)
            else:
                t = env[st.inputs[0]]
            for it in st.items:
                t = self.block(it, t) if isinstance(it, Block) else self.layer(it, t)
            env[st.name] = t

    def block(self, b: Block, x: _Tensor) -> _Tensor:
        inner = {b.input: x}
        self.statements(b.statements, inner)
        return inner["output"]

    def layer(self, layer: Layer, x: _Tensor) -> _Tensor:
        frozen = "freeze" in layer.attrs
        eval_mode = self.eval_bn and frozen and layer.op.running_stats
        return self.apply(layer, layer.sym, [x], layer.out_shape, layer.out_at,
                          self.trainable(layer.counts, layer.attrs), eval_mode)

    @staticmethod
    def trainable(counts: Counts, attrs: frozenset[str]) -> bool:
        """It has parameters and they are not frozen: they require grad."""
        return "freeze" not in attrs and sp.expand(counts.weights + counts.biases + counts.norm_params) != 0

    # --- one layer or merge --------------------------------------------------------------------

    def apply(self, item: Layer | Merge, a: Args, ins: list[_Tensor], out: Shape, out_at: tuple[int, ...],
              params: bool, eval_mode: bool) -> _Tensor:
        grads = tuple(t.grad for t in ins)
        widths = tuple(t.width for t in ins)
        autocast = DTYPES[self.options.dtype] if self.options.dtype != "fp32" else None
        need = Need(grads=grads, params=params, batch=self.batch, width=max(widths), autocast=autocast,
                    widths=widths, layouts=tuple(t.layout for t in ins), eval_mode=eval_mode,
                    at=tuple(t.at for t in ins))
        s = self.rule(item, a, ins, out, need)
        width = s.width or need.width
        node = any(grads) or params
        if node:
            kept = sum((self.charge(ins[i].storage) for i in s.inputs), sp.Integer(0)) + s.extra
        else:
            kept = sp.Integer(0)
        layout = ins[0].layout if s.layout == "same" else s.layout
        if s.alias is not None:
            result = _Tensor(ins[s.alias].storage, out, out_at, node, layout, width)
        else:
            result = _Tensor(self.new(out, width), out, out_at, node, layout, width)
        if node and s.output:
            kept += self.charge(result.storage)
        self.items.append(sp.expand(kept))
        return result

    def rule(self, item: Layer | Merge, a: Args, ins: list[_Tensor], out: Shape, need: Need) -> Saves:
        try:
            return item.op.saved(a, [t.shape for t in ins], out, need)
        except Unmodelled as e:
            raise MemoryGap(f"{e.message}: the memory a training step keeps is not computed for this network",
                            item.span, e.hint).with_source(*self.source) from None
        except NotImplementedError as e:
            raise NetdslError(f"{e}: the memory a training step keeps cannot be computed for this network",
                              item.span, "every op must state what autograd saves (OpDef.saved)"
                              ).with_source(*self.source) from None


class MemoryGap(NetdslError):
    """An op in a case the memory rules do not model (`netdsl.ops.base.Unmodelled`): the metrics
    that need it are left out of a report, with this message, rather than the report failing."""


def saved_bytes(cg: ConcreteGraph, batch: sp.Symbol, options: MemoryOptions = DEFAULT) -> list[sp.Expr]:
    """Per walk item (`list(cg.walk())`), the bytes autograd keeps for backward that the item is the
    first to keep, in a training-mode forward of a batch of `batch`; their sum is the total."""
    eval_bn = cg.graph is not None and cg.graph.freeze_bn == "eval"
    tracker = _Tracker(batch, options, eval_bn, cg.source)
    env: dict[str, _Tensor] = {}
    for t in cg.inputs:
        env[t.name] = _Tensor(tracker.new(t.shape, FLOAT32), t.shape, t.at, False)
    tracker.statements(cg.statements, env)
    return tracker.items


def saved_total(cg: ConcreteGraph, batch: sp.Symbol, options: MemoryOptions = DEFAULT) -> sp.Expr:
    """The bytes autograd keeps for backward in one training-mode forward: `saved_bytes` summed."""
    return sp.expand(sp.Add(*saved_bytes(cg, batch, options)))
