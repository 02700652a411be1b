"""An op call's arguments against the op's `ArgSpec`s: positions and keywords, types, choices,
float bounds and defaults, with integer expressions resolved in the caller's scope."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from netdsl import ir, ir_expr
from netdsl.errors import NetdslError, Span
from netdsl.ops import ArgSpec, OpDef
from netdsl.passes.names import check_names, did_you_mean


@dataclass(frozen=True)
class ArgumentReader:
    """Reads one call of `spec`. Lowering hands in what only it knows: the names known in the
    call's scope, how to resolve an expression there, how to evaluate a number at the values in
    use, and whether this is a dry run (a block definition checked before any call binds it)."""

    spec: OpDef
    known: set[str] | dict
    resolve: Callable[[ir.Expr], ir.Expr]
    number: Callable[[ir.Expr, str], float]
    dry: bool

    def read(self, given_args: list[ir.Arg], span: Span, default_span: Span) -> dict[str, ir.Value]:
        """Check the arguments (positional, then keyword) and fill in the defaults."""
        spec = self.spec
        given: dict[str, ir.Value] = {}
        for i, a in enumerate(given_args):
            if a.name is None:
                if i >= len(spec.args):
                    raise NetdslError(f"'{spec.name}' takes at most {len(spec.args)} argument(s)", a.span,
                                      f"{spec.name}: {spec.doc}")
                if given and any(prev.name is not None for prev in given_args[:i]):
                    raise NetdslError("a positional argument after a keyword argument", a.span,
                                      "put positional arguments first")
                arg = spec.args[i]
            else:
                found = spec.arg(a.name)
                if found is None:
                    raise NetdslError(f"'{spec.name}' has no argument '{a.name}'", a.span,
                                      did_you_mean(a.name, [x.name for x in spec.args])
                                      + (f"its arguments: {', '.join(x.name for x in spec.args)}" if spec.args
                                         else f"'{spec.name}' takes no arguments"))
                arg = found
            if arg.name in given:
                raise NetdslError(f"argument '{arg.name}' given twice", a.span, "give each argument once")
            given[arg.name] = self.value(a.value, arg)
        args: dict[str, ir.Value] = {}
        for arg in spec.args:
            if arg.name in given:
                args[arg.name] = given[arg.name]
            elif arg.default_from is not None:
                args[arg.name] = args[arg.default_from]
            elif arg.required:
                raise NetdslError(f"'{spec.name}' needs its argument '{arg.name}'", span, f"{spec.name}: {spec.doc}")
            else:
                args[arg.name] = literal(arg.default, default_span)
        return args

    def value(self, v: ir.Value, arg: ArgSpec) -> ir.Value:
        spec = self.spec
        want = {"int": "an integer expression", "float": "a number", "bool": "true or false", "str": "a string",
                "ints": "a list of integers, e.g. [8, 16, 32]",
                "intlists": "a list of lists of integers, e.g. [[10, 13, 16, 30], [30, 61, 62, 45]]",
                "floats": "a number or a list of numbers, e.g. [1.2, 1.1, 1.05]"}[arg.type]
        if arg.type in ("ints", "intlists") and isinstance(v, ir.ListValue):
            return self.int_list(v, arg, nested=arg.type == "intlists")
        if arg.type == "floats":  # one number, or a list of them: each read as a float argument
            items = v.items if isinstance(v, ir.ListValue) else [v]
            if not items:
                raise NetdslError(f"'{spec.name}' argument '{arg.name}' is an empty list", v.span, f"{spec.name}: {spec.doc}")
            one = replace(arg, type="float")
            return ir.ListValue(span=v.span, items=[self.value(x, one) for x in items])
        if arg.type == "int":
            if isinstance(v, ir.Hole):
                return v
            if isinstance(v, ir.Pair):
                if not arg.pair:
                    raise NetdslError(f"'{spec.name}' argument '{arg.name}' takes one integer, not a pair", v.span,
                                      f"{spec.name}: {spec.doc}")
                for x in v.items:
                    check_names(x, self.known, f"argument '{arg.name}'")
                return v.model_copy(update={"items": tuple(self.resolve(x) for x in v.items)})
            if v.kind in ir.EXPR_KINDS:
                check_names(v, self.known, f"argument '{arg.name}'")  # type: ignore[arg-type]
                return self.no_fraction(self.resolve(v), arg)  # type: ignore[arg-type]
        elif arg.type == "float":
            f: ir.Float | None = None
            if isinstance(v, ir.Float):
                f = v
            elif v.kind in ir.EXPR_KINDS:
                # An expression of the parameters, `/` exact, so that a mode can choose a number:
                # `batchnorm(eps=1 / (100000 if LEAKY == 1 else 1000))`.
                check_names(v, self.known, f"argument '{arg.name}'")  # type: ignore[arg-type]
                if self.dry:
                    return v
                value = self.number(self.resolve(v), f"argument '{arg.name}'")  # type: ignore[arg-type]
                f = ir.Float(span=v.span, value=value)
            if f is not None:
                check_float(f, arg, spec)
                return f
        elif arg.type == "bool" and isinstance(v, ir.Bool):
            return v
        elif arg.type == "str" and isinstance(v, ir.Str):
            if arg.choices and v.value not in arg.choices:
                raise NetdslError(f"'{spec.name}' argument '{arg.name}' must be one of "
                                  f"{', '.join(repr(c) for c in arg.choices)}, not {v.value!r}", v.span,
                                  did_you_mean(v.value, arg.choices) or f'write {arg.name}="{arg.choices[0]}"')
            return v
        raise NetdslError(f"'{spec.name}' argument '{arg.name}' wants {want}", v.span, f"{spec.name}: {spec.doc}")

    def no_fraction(self, e: ir.Expr, arg: ArgSpec) -> ir.Expr:
        """`e`, an integer argument (resolved): one with a number with a fraction is refused there."""
        f = next((n for n in ir_expr.walk(e) if isinstance(n, ir.Float)), None)
        if f is not None:
            raise NetdslError(f"an integer is expected here: '{self.spec.name}' argument '{arg.name}' is an integer, "
                              f"and {f.value!r} has a fraction", f.span,
                              "use integers and // in integer arguments")
        return e

    def int_list(self, v: ir.ListValue, arg: ArgSpec, nested: bool) -> ir.ListValue:
        """A list of integer expressions (or of such lists, all of one length), resolved."""
        spec = self.spec
        if not v.items:
            raise NetdslError(f"'{spec.name}' argument '{arg.name}' is an empty list", v.span, f"{spec.name}: {spec.doc}")
        items: list[ir.Value] = []
        for x in v.items:
            if nested:
                if not isinstance(x, ir.ListValue):
                    raise NetdslError(f"'{spec.name}' argument '{arg.name}' is a list of lists; this item is not a list",
                                      x.span, f"{spec.name}: {spec.doc}")
                items.append(self.int_list(x, arg, nested=False))
            else:
                if x.kind not in ir.EXPR_KINDS:
                    raise NetdslError(f"'{spec.name}' argument '{arg.name}' takes integers; this item is not one",
                                      x.span, f"{spec.name}: {spec.doc}")
                check_names(x, self.known, f"argument '{arg.name}'")  # type: ignore[arg-type]
                items.append(self.no_fraction(self.resolve(x), arg))  # type: ignore[arg-type]
        if nested:
            lengths = {len(x.items) for x in items}  # type: ignore[union-attr]
            if len(lengths) > 1:
                short = min(items, key=lambda x: len(x.items))  # type: ignore[union-attr]
                raise NetdslError(f"'{spec.name}' argument '{arg.name}' is ragged: its lists have "
                                  f"{', '.join(str(len(x.items)) for x in items)} items", short.span,  # type: ignore[union-attr]
                                  "give every level the same number of values")
        return v.model_copy(update={"items": items})


def check_float(f: ir.Float, arg: ArgSpec, spec: OpDef) -> None:
    if not math.isfinite(f.value) and not arg.inf_ok:
        raise NetdslError(f"'{spec.name}' argument '{arg.name}' must be finite, not {f.value}", f.span,
                          f"{spec.name}: {spec.doc}")
    if (arg.fmin is not None and f.value < arg.fmin) or (arg.fmax is not None and f.value > arg.fmax):
        bounds = f"from {arg.fmin} to {arg.fmax}" if arg.fmax is not None else f"at least {arg.fmin}"
        raise NetdslError(f"'{spec.name}' argument '{arg.name}' must be {bounds}, not {f.value}", f.span,
                          f"{spec.name}: {spec.doc}")


def literal(v: int | float | bool | str | None, span: Span) -> ir.Value:
    if isinstance(v, bool):
        return ir.Bool(span=span, value=v)
    if isinstance(v, int):
        return ir.Int(span=span, value=v)
    if isinstance(v, float):
        return ir.Float(span=span, value=v)
    return ir.Str(span=span, value=str(v))
