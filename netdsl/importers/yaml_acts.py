"""Activation modules written in a model YAML (`activation: nn.LeakyReLU(0.1)`, a Conv's
`act=nn.ReLU()`), read as data: ultralytics and YOLOv7 `eval` that text, netdsl only recognises
`nn.<Class>(<literal arguments>)` for the classes in `ACTIVATIONS` and writes the netdsl layer that
computes the same. Anything else (another class, an expression, a call inside) is a located error.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from netdsl.importers.spec_writer import Source
from netdsl.importers.yaml_nodes import Y


@dataclass(frozen=True)
class Activation:
    """An allowed class: the netdsl layer it becomes and its constructor's parameters in order
    (`inplace` changes nothing at inference and is accepted everywhere)."""

    layer: str
    params: tuple[str, ...] = ()


ACTIVATIONS = {
    "SiLU": Activation("silu", ("inplace",)), "ReLU": Activation("relu", ("inplace",)),
    "ReLU6": Activation("relu6", ("inplace",)), "LeakyReLU": Activation("leaky_relu", ("negative_slope", "inplace")),
    "Sigmoid": Activation("sigmoid"), "Tanh": Activation("tanh"), "Mish": Activation("mish", ("inplace",)),
    "Hardswish": Activation("hardswish", ("inplace",)), "Hardsigmoid": Activation("hardsigmoid", ("inplace",)),
    "GELU": Activation("gelu", ("approximate",)),
    "Identity": Activation(""),
}
_CALL = re.compile(r"\s*nn\.([A-Za-z0-9_]+)\s*\((.*)\)\s*", re.S)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_STRING = re.compile(r"'([A-Za-z_]*)'|\"([A-Za-z_]*)\"")
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)", re.S)
Literal = float | bool | str


def _literal(text: str) -> Literal | None:
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    if _NUMBER.fullmatch(text):
        return float(text)
    m = _STRING.fullmatch(text)
    return (m.group(1) if m.group(1) is not None else m.group(2)) if m else None


def _hint() -> str:
    names = ", ".join(f"nn.{n}()" for n in ACTIVATIONS)
    return f"netdsl reads {names}, and nn.LeakyReLU(slope), as written there (the text is never run)"


def looks_like_module(v: object) -> bool:
    """A YAML string that names a torch module (so it is an activation, not a misspelt True/False)."""
    return isinstance(v, str) and v.strip().startswith("nn.")


def activation(src: Source, y: Y) -> str:
    """The netdsl layer for an activation module's text (`""` for nn.Identity()), or a located error."""
    text = str(y.value).strip() if y.kind == "scalar" else y.show()
    m = _CALL.fullmatch(text) if y.kind == "scalar" and isinstance(y.value, str) else None
    if m is None or m.group(1) not in ACTIVATIONS:
        what = f"the class nn.{m.group(1)}" if m else "this value"
        raise src.error(y.loc, f"the activation {y.show()} is not supported: {what} is not one netdsl reads",
                        _hint())
    act = ACTIVATIONS[m.group(1)]
    given: dict[str, Literal] = {}
    parts = [p for p in m.group(2).split(",")] if m.group(2).strip() else []
    for i, part in enumerate(parts):
        km = _KEY.fullmatch(part.strip())
        key = km.group(1) if km else act.params[i] if i < len(act.params) else ""
        value = _literal(km.group(2) if km else part)
        if key not in act.params or key in given or value is None:
            why = "an argument it does not take" if key not in act.params else \
                "an argument given twice" if key in given else "an argument that is not a literal number, True, " \
                "False or a quoted word"
            raise src.error(y.loc, f"the activation {y.show()} has {why}: {part.strip()!r}",
                            f"write nn.{m.group(1)}({', '.join(act.params)}) with literal values")
        given[key] = value
    return _layer(src, y, act, given)


def _layer(src: Source, y: Y, act: Activation, given: dict[str, Literal]) -> str:
    if "inplace" in given and not isinstance(given["inplace"], bool):
        raise src.error(y.loc, f"inplace in {y.show()} is not True or False", "write inplace=True or drop it")
    if act.layer == "leaky_relu":
        slope = given.get("negative_slope", 0.01)
        if isinstance(slope, (bool, str)) or not math.isfinite(slope):
            raise src.error(y.loc, f"the slope in {y.show()} is not a finite number", "write e.g. nn.LeakyReLU(0.1)")
        return f"leaky_relu({slope!r})"
    if act.layer == "gelu":
        approx = given.get("approximate", "none")
        if approx not in ("none", "tanh"):
            raise src.error(y.loc, f"approximate in {y.show()} is neither 'none' nor 'tanh'",
                            "write nn.GELU() or nn.GELU(approximate='tanh')")
        return 'gelu(approximate="tanh")' if approx == "tanh" else "gelu"
    return act.layer
