"""The typed IR: frozen pydantic models, every node with its source span.

Two layers live here. The *spec* models mirror what the user wrote (blocks, block calls,
repetition, conditionals); `passes.lower` turns a `Spec` into a `Graph` of builtin ops and graph
block instances, with every repetition and conditional resolved at the values in use. The shape
pass turns a Graph into the concrete graph (`passes.concrete`) that backends read. Nothing here
knows about Lark, SymPy or torch.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from netdsl.errors import Span


class Node(BaseModel):
    # inf is a legal argument value (`pad(..., value=-inf)`); JSON writes it as -Infinity.
    # defer_build: a node type's validator is built when first used, not at import; a spec uses
    # a few of the types, and building all of them cost every `netdsl count` ~0.06 s.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants", defer_build=True)
    span: Span


# --- integer expressions -------------------------------------------------------------------

class Int(Node):
    kind: Literal["int"] = "int"
    value: int


class Name(Node):
    kind: Literal["name"] = "name"
    id: str


class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: Literal["+", "-", "*", "//", "%", "/", "**"]
    left: Expr
    right: Expr


class Neg(Node):
    kind: Literal["neg"] = "neg"
    operand: Expr


class Call(Node):
    kind: Literal["call"] = "call"
    func: Literal["min", "max"]
    args: list[Expr]


Compare = Literal["==", "!=", "<", "<=", ">", ">="]


class Condition(Node):
    op: Compare
    left: Expr
    right: Expr


class IfExpr(Node):
    """`a if test else b`: resolved while lowering, at the values in use."""

    kind: Literal["if"] = "if"
    test: Condition
    then: Expr
    orelse: Expr


class Float(Node):
    """A number with a fraction; in an expression where a number is taken: `0.2 * i / 16`."""

    kind: Literal["float"] = "float"
    value: float


Expr = Annotated[Int | Name | Float | BinOp | Neg | Call | IfExpr, Field(discriminator="kind")]


# --- other argument values -------------------------------------------------------------------


class Str(Node):
    kind: Literal["str"] = "str"
    value: str


class Bool(Node):
    kind: Literal["bool"] = "bool"
    value: bool


class Hole(Node):
    """`?`: an integer left open for `netdsl solve` to find."""

    kind: Literal["hole"] = "hole"


class Pair(Node):
    """`(a, b)`: a per-axis value (height, width) such as `kernel=(3, 1)`."""

    kind: Literal["pair"] = "pair"
    items: tuple[Expr, Expr]


class ListValue(Node):
    """`[a, b, ...]`: a list argument such as anchors; items may be lists."""

    kind: Literal["list"] = "list"
    items: list[Value]


Value = Annotated[Int | Name | Float | BinOp | Neg | Call | IfExpr | Str | Bool | Hole | Pair | ListValue,
                  Field(discriminator="kind")]
EXPR_KINDS = frozenset({"int", "name", "binop", "neg", "call", "if"})
EXPR_TYPES = (Int, Name, BinOp, Neg, Call, IfExpr)  # the classes of those kinds, for isinstance


# --- the spec as written -------------------------------------------------------------------

class Ident(Node):
    name: str


class Param(Node):
    name: str
    annotation: str | None = None
    default: Expr


class Dim(Node):
    name: str
    default: Expr | None = None


class InputAxis(Node):
    """One axis of an input: a size it declares or reuses (`dim`: `H = 32`, `T`), or a fixed size
    (`size`: `3`, `2*D`, a net parameter). Exactly one of the two is set."""

    dim: Dim | None = None
    size: Expr | None = None


class InputDecl(Node):
    """`input x: [C, H = 32, W = 32]`, `input t: [T = 197, D]`, `input v: [F]`: one entry per axis."""

    name: str
    axes: list[InputAxis]
    conditions: list[Condition] = []

    @property
    def rank(self) -> int:
        return len(self.axes)

    @property
    def dims(self) -> list[Dim]:
        """The sizes it declares or reuses, in order."""
        return [a.dim for a in self.axes if a.dim is not None]


class Arg(Node):
    name: str | None = None
    value: Value


class Attr(Node):
    """`@freeze`: an attribute on a layer, a labelled block call or a statement."""

    name: str
    args: list[Arg] = []


class LayerCall(Node):
    """One `label: op(args) * n as i @attr` in a chain; `op` may name a builtin or a block."""

    label: Ident | None = None
    op: Ident
    args: list[Arg] = []
    repeat: Expr | None = None
    index: Ident | None = None
    attrs: list[Attr] = []


class Learned(Node):
    """`param NAME: [dims] = INIT`: a learned tensor of exactly those dims; INIT "constant" (each
    element `value`, a number expression) or "normal" (drawn from N(0, value**2): `normal(std)`)."""

    name: str
    dims: list[Expr]
    init: Literal["constant", "normal"]
    value: Expr
    attrs: list[Attr] = []


class BlockParam(Node):
    name: str
    default: Expr | None = None


class MergeCall(Node):
    """A merge written as another merge's operand: `cat(a, b)` in `add(x, cat(a, b))`; lowering
    makes it a statement of its own."""

    op: Ident
    inputs: list[Ident | MergeCall]
    args: list[Arg] = []


class Assign(Node):
    name: str
    annotation: list[Expr] | None = None
    merge: str            # "ref", or the name of a merge op (checked while lowering)
    inputs: list[Ident | MergeCall]
    source_span: Span
    args: list[Arg] = []   # keyword arguments of the source op, e.g. `detect(a, b, anchors=[...])`
    chain: list[LayerCall] = []
    output: bool = False   # `output NAME = ...`: one of the network's outputs
    attrs: list[Attr] = []
    targets: list[Ident] = []  # `a, b = ... -> split(2)`: every name, in order (`name` is the first)


class BlockDef(Node):
    """A linear block (`= chain`) or a graph block (`{ input x ... output = ... }`)."""

    name: str
    params: list[BlockParam]
    body: list[LayerCall] = []
    input: Ident | None = None      # graph blocks: the name of the tensor the block receives
    assigns: list[Assign] = []      # graph blocks: statements; the one named `output` is the result
    learned: list[Learned] = []     # graph blocks: `param` declarations (the call's module holds them)

    @property
    def is_graph(self) -> bool:
        return self.input is not None


class Claim(Node):
    metric: Ident
    options: list[Arg] = []
    op: Compare
    expr: Expr


class Spec(Node):
    name: str
    params: list[Param]
    conditions: list[Condition] = []
    inputs: list[InputDecl]
    blocks: list[BlockDef] = []
    assigns: list[Assign]
    claims: list[Claim] = []
    learned: list[Learned] = []  # `param` declarations (the network's module holds them)

    @property
    def dims(self) -> list[Dim]:
        return declared_dims(self.inputs)


# --- the lowered graph that passes and backends read ---------------------------------------

class Op(Node):
    """A builtin layer with every argument filled in (defaults included), block params substituted.

    `name` is the module name inside its tensor's Sequential; `via` holds the spans of the block
    calls this op was expanded from, outermost first, so errors can say where it came from.
    """

    kind: Literal["op"] = "op"
    op: str
    name: str
    args: dict[str, Value]
    via: list[Span] = []
    attrs: list[str] = []

    @property
    def origin(self) -> Span:
        """The statement-level place this op comes from: the outermost block call, or itself."""
        return self.via[0] if self.via else self.span


class TensorNode(Node):
    name: str
    merge: str            # "ref", or the name of an op that starts a statement (netdsl.ops.merges()): cat, add, detect
    inputs: list[Ident]
    source_span: Span
    # a merge's keyword arguments; a learned tensor's (merge "param"): "dims", "init", "value"
    args: dict[str, Value] = {}
    layers: list[Op | BlockInstance]
    attrs: list[str] = []  # the statement's own (and inherited) attributes; its layers carry them too
    annotation: list[Expr] | None = None

    def module_path(self, layer: Op | BlockInstance) -> str:
        """Where a layer lives in its module: a lone unlabelled layer takes the tensor's name."""
        if len(self.layers) == 1 and layer.name == "0":
            return self.name
        return f"{self.name}.{layer.name}"


class BlockInstance(Node):
    """One call of a graph block: a small graph of its own, compiled to one child module."""

    kind: Literal["block"] = "block"
    block: str
    name: str
    input: str
    nodes: list[TensorNode]
    via: list[Span] = []
    attrs: list[str] = []

    @property
    def origin(self) -> Span:
        return self.via[0] if self.via else self.span


class Graph(Node):
    name: str
    params: list[Param]
    conditions: list[Condition] = []
    inputs: list[InputDecl]
    nodes: list[TensorNode]
    outputs: list[str]
    claims: list[Claim] = []
    # Names whose value decided the structure (repetition counts, conditionals): the symbolic
    # passes hold them at their values, since other values would make another network.
    structural: list[str] = []
    freeze_bn: Literal["train", "eval"] = "train"  # frozen BatchNorm in training mode: update statistics or not

    @property
    def dims(self) -> list[Dim]:
        return declared_dims(self.inputs)


def declared_dims(inputs: list[InputDecl]) -> list[Dim]:
    """Every named input size, first declaration of each name."""
    seen: dict[str, Dim] = {}
    for i in inputs:
        for d in i.dims:
            seen.setdefault(d.name, d)
    return list(seen.values())


for _model in (BinOp, Neg, Call, Condition, IfExpr, Pair, ListValue, Arg, InputAxis, Learned, MergeCall, TensorNode,
               BlockInstance):
    _model.model_rebuild()
