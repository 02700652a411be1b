"""Checks on values handed to netdsl from Python rather than from spec text or flags.

`check_overrides` is the Python API's counterpart of `--set`: keyword overrides such as
``netdsl.build(spec, k=5)`` must be integers (Python or numpy), never booleans, floats, strings or
None, and no larger than 10**18 in magnitude (the same bound as the 18-digit `--set` values, give
or take 10**18 itself).
"""
from __future__ import annotations

import numbers
import re
from collections.abc import Mapping

from netdsl.errors import NetdslError

MAX_MAGNITUDE = 10**18


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
            hint = f"pass {name}={int(value)}"
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
