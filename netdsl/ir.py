"""The typed IR: frozen pydantic models, every node with its source span.

Two layers live here. The *spec* models mirror what the user wrote (blocks, block calls,
repetition); `passes.lower` turns a `Spec` into a `Graph` of plain ops that the shape,
count and backend passes read. Nothing here knows about Lark, SymPy or torch.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from netdsl.errors import Span


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
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
    left: "Expr"
    right: "Expr"


class Neg(Node):
    kind: Literal["neg"] = "neg"
    operand: "Expr"


class Call(Node):
    kind: Literal["call"] = "call"
    func: Literal["min", "max"]
    args: list["Expr"]


Expr = Annotated[Union[Int, Name, BinOp, Neg, Call], Field(discriminator="kind")]


# --- other argument values -------------------------------------------------------------------

class Float(Node):
    kind: Literal["float"] = "float"
    value: float


class Str(Node):
    kind: Literal["str"] = "str"
    value: str


class Bool(Node):
    kind: Literal["bool"] = "bool"
    value: bool


class Hole(Node):
    """`?`: an integer left open for `netdsl solve` to find."""

    kind: Literal["hole"] = "hole"


Value = Annotated[Union[Int, Name, BinOp, Neg, Call, Float, Str, Bool, Hole], Field(discriminator="kind")]
EXPR_KINDS = frozenset({"int", "name", "binop", "neg", "call"})


# --- the spec as written -------------------------------------------------------------------

class Ident(Node):
    name: str


class Param(Node):
    name: str
    annotation: str | None = None
    default: Expr


class Condition(Node):
    op: Literal["==", "!=", "<", "<=", ">", ">="]
    left: Expr
    right: Expr


class Dim(Node):
    name: str
    default: Expr | None = None


class InputDecl(Node):
    name: str
    channels: Expr
    dims: tuple[Dim, Dim]
    conditions: list[Condition] = []


class Arg(Node):
    name: str | None = None
    value: Value


class LayerCall(Node):
    """One `label: op(args) * n` in a chain; `op` may name a builtin or a block."""

    label: Ident | None = None
    op: Ident
    args: list[Arg] = []
    repeat: Expr | None = None


class BlockDef(Node):
    name: str
    params: list[Ident]
    body: list[LayerCall]


class Assign(Node):
    name: str
    annotation: tuple[Expr, Expr, Expr] | None = None
    merge: Literal["ref", "cat", "add"]
    inputs: list[Ident]
    chain: list[LayerCall] = []


class Claim(Node):
    metric: Ident
    options: list[Arg] = []
    op: Literal["==", "!=", "<", "<=", ">", ">="]
    expr: Expr


class Spec(Node):
    name: str
    params: list[Param]
    conditions: list[Condition] = []
    input: InputDecl
    blocks: list[BlockDef] = []
    assigns: list[Assign]
    claims: list[Claim] = []


# --- the lowered graph that passes and backends read ---------------------------------------

class Op(Node):
    """A builtin layer with every argument filled in (defaults included), block params substituted.

    `name` is the module name inside its tensor's Sequential; `via` holds the spans of the block
    calls this op was expanded from, outermost first, so errors can say where it came from.
    """

    op: str
    name: str
    args: dict[str, Value]
    via: list[Span] = []

    @property
    def origin(self) -> Span:
        """The statement-level place this op comes from: the outermost block call, or itself."""
        return self.via[0] if self.via else self.span


class TensorNode(Node):
    name: str
    merge: Literal["ref", "cat", "add"]
    inputs: list[Ident]
    layers: list[Op]
    annotation: tuple[Expr, Expr, Expr] | None = None

    def module_path(self, op: Op) -> str:
        """Where `op` lives in the compiled module: a lone unlabelled layer takes the tensor's name."""
        if len(self.layers) == 1 and op.name == "0":
            return self.name
        return f"{self.name}.{op.name}"


class Graph(Node):
    name: str
    params: list[Param]
    conditions: list[Condition] = []
    input: InputDecl
    nodes: list[TensorNode]
    output: str
    claims: list[Claim] = []


for _model in (BinOp, Neg, Call):
    _model.model_rebuild()
