"""Checks on the values a user hands netdsl outside spec text: `--set` flags and Python overrides.

`parse_sets` reads the `--set NAME=VALUE` flags of every command. `check_overrides` is the Python
API's counterpart: keyword overrides such as ``netdsl.build(spec, k=5)`` must be integers (Python
or numpy), never booleans, floats, strings or None, and no larger than 10**18 in magnitude (the
same bound as the 18-digit `--set` values, give or take 10**18 itself).
"""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping

from netdsl.errors import NetdslError
from netdsl.limits import MAX_VALUE

MAX_MAGNITUDE = MAX_VALUE


def check_overrides(params: Mapping[str, object], what: str = "parameter") -> dict[str, int]:
    """Validate keyword overrides; return them as a plain dict of Python ints.

    `what` names the values in messages ("parameter", "size", ...).

    >>> import numpy
    >>> check_overrides({"k": 5, "NF": numpy.int64(64)})
    {'k': 5, 'NF': 64}
    >>> check_overrides({"k": "5"})
    Traceback (most recent call last):
      ...
    netdsl.errors.NetdslError: netdsl: error: parameter 'k' must be an integer, not str '5'
      hint: pass k=5
    >>> check_overrides({"k": True})
    Traceback (most recent call last):
      ...
    netdsl.errors.NetdslError: netdsl: error: parameter 'k' must be an integer, not a boolean (True)
      hint: pass a number, e.g. k=1
    """
    if not isinstance(params, Mapping):
        raise NetdslError(f"{what} overrides must be a mapping of names to integers, not {type(params).__name__}")
    out: dict[str, int] = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise NetdslError(f"{what} name {_show(name)} is not a name", hint="names are identifiers, e.g. k or NF")
        out[name] = _check_int(name, value, what)
    return out


def _check_int(name: str, value: object, what: str) -> int:
    # bool is an int subclass and numpy.bool_ converts to one; neither is a size or a count.
    if isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool")):
        raise NetdslError(f"{what} {name!r} must be an integer, not a boolean ({value})",
                          hint=f"pass a number, e.g. {name}={int(bool(value))}")
    if not isinstance(value, numbers.Integral):  # int and numpy's integer types; not float, even 5.0
        hint = f"{what}s are whole numbers, e.g. {name}=5"
        if isinstance(value, numbers.Real) and float(value).is_integer():
            hint = f"pass {name}={math.floor(value)}"
        elif isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,18}\s*", value):
            hint = f"pass {name}={int(value)}"
        raise NetdslError(f"{what} {name!r} must be an integer, not {_show(value)}", hint=hint)
    n = int(value)  # a Python int, whatever integer type came in
    if abs(n) > MAX_MAGNITUDE:
        digits = len(str(n).lstrip("-")) if n.bit_length() < 10_000 else f"about {int(n.bit_length() * 0.30103)}"
        raise NetdslError(f"{what} {name!r} is too large ({digits} digits)",
                          hint="values are limited to 10**18 in magnitude")
    return n


def _show(value: object) -> str:
    """`str '5'`, `float 5.5`, `None`: the type and a short repr, never a huge one."""
    if value is None:
        return "None"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"-?[0-9]+")
MAX_SET_DIGITS = 18


def parse_sets(items: list[str] | None) -> dict[str, int]:
    """`--set NAME=VALUE` flags as a dict; values are integers of at most 18 digits.

    The one parser of `--set` for every command (build, count, solve, train). Spaces around the
    name and the value are allowed; `+5`, `5.0`, `1e3` and `5_000` are not integers here.
    """
    out: dict[str, int] = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq:
            raise NetdslError(f"--set {item!r} is not NAME=INTEGER (no '=')", hint="write e.g. --set k=5")
        if not _NAME.fullmatch(name):
            raise NetdslError(f"--set {item!r} is not NAME=INTEGER: {name!r} is not a name",
                              hint="a name is letters, digits and _, not starting with a digit; e.g. --set k=5")
        if not _INT.fullmatch(value):
            raise NetdslError(f"--set {item!r} is not NAME=INTEGER: {value!r} is not an integer",
                              hint=f"spec parameters are integers, e.g. --set {name}=5")
        if len(value.lstrip("-")) > MAX_SET_DIGITS:
            raise NetdslError(f"--set {name}=...: the value has {len(value.lstrip('-'))} digits; it is too large",
                              hint=f"values are limited to {MAX_SET_DIGITS} digits")
        out[name] = int(value)
    return out
