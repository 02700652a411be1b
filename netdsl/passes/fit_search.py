"""The integer side of `netdsl fit`: memory budgets as written, and the largest value that fits.

A budget is a number of bytes: `24GiB`, `24 GiB`, `512MiB` (powers of 2), `16GB`, `1.5e9`, `300000`.
The search looks for the largest k on a grid (the values the spec admits, `H % 32 == 0`) where a
predicate holds, assuming it holds up to a point and not beyond; the caller checks the boundary.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction

from netdsl.errors import NetdslError
from netdsl.limits import MAX_VALUE

UNITS: dict[str, int] = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
                         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
MAX_BUDGET = 2**60  # an exbibyte: far beyond any machine, small enough to print and compute with
_BUDGET = re.compile(r"\s*((?:\d[\d_]*)?(?:\.\d+)?(?:[eE][+-]?\d{1,3})?)\s*([A-Za-z]*)\s*")
_HINT = "write the memory as bytes or with a unit, e.g. --memory 24GiB, 512MiB, 16GB or 1.5e9"

# What a probe answers: True fits, False does not, None the value is not admissible (the spec refuses it).
Probe = Callable[[int], bool | None]


def parse_budget(text: object) -> int:
    """A memory budget in bytes: an int, or text with an optional unit (KiB, MiB, GiB, TiB are
    powers of 2; KB, MB, GB, TB powers of 10; any case). A fraction of a byte is dropped.

    >>> parse_budget("24GiB"), parse_budget("16 GB"), parse_budget("1.5e9"), parse_budget(512)
    (25769803776, 16000000000, 1500000000, 512)
    >>> parse_budget("24 gigs")
    Traceback (most recent call last):
      ...
    netdsl.errors.NetdslError: netdsl: error: the memory budget '24 gigs' has an unknown unit 'gigs'
      hint: units: B, KB, MB, GB, TB (powers of 10), KiB, MiB, GiB, TiB (powers of 2)
    """
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise NetdslError(f"the memory budget must be an int (bytes) or text such as '24GiB', not {type(text).__name__}",
                          hint=_HINT)
    if isinstance(text, int):
        return _checked(str(text), Fraction(text))
    m = _BUDGET.fullmatch(text) if len(text) <= 64 else None
    if m is None or not any(c.isdigit() for c in m.group(1)):
        raise NetdslError(f"the memory budget {text!r} is not a number of bytes", hint=_HINT)
    unit = m.group(2).lower()
    if unit not in UNITS:
        raise NetdslError(f"the memory budget {text!r} has an unknown unit {m.group(2)!r}",
                          hint="units: B, KB, MB, GB, TB (powers of 10), KiB, MiB, GiB, TiB (powers of 2)")
    return _checked(text, Fraction(m.group(1).replace("_", "")) * UNITS[unit])


def _checked(text: str, value: Fraction) -> int:
    n = value.numerator // value.denominator
    if n < 1:
        raise NetdslError(f"the memory budget {text!r} is less than one byte", hint=_HINT)
    if n > MAX_BUDGET:
        raise NetdslError(f"the memory budget {text!r} is larger than 2**60 bytes (an exbibyte)", hint=_HINT)
    return n


def largest(probe: Probe, start: int, low: int, high: int = MAX_VALUE) -> int | None:
    """The largest k in [low, high] where `probe(k)` is True, searching from `start`: doubling
    steps up (or down) from it, then bisection; None when even the smallest admissible k fails.

    Assumes that what fits is a prefix of the admissible values (memory grows with the batch and
    the input size), and that what is not admissible lies below or above them all.

    >>> largest(lambda k: 3 * k + 5 <= 100, start=1, low=0)
    31
    >>> largest(lambda k: None if k < 4 else k <= 9, start=20, low=0), largest(lambda k: k <= 2, 7, 3)
    (9, None)
    """
    seen: dict[int, bool | None] = {}

    def p(k: int) -> bool | None:
        if k not in seen:
            seen[k] = probe(k)
        return seen[k]

    start = min(max(start, low), high)
    if p(start):
        return _up(p, start, high)
    return _down(p, start, low)


def _up(p: Probe, lo: int, high: int) -> int:
    """From lo (fits): double the step until something does not fit, then bisect."""
    step = 1
    while lo < high:
        hi = min(lo + step, high)
        if not p(hi):
            return _bisect(p, lo, hi)
        lo, step = hi, step * 2
    return lo


def _down(p: Probe, hi: int, low: int) -> int | None:
    """From hi (does not fit): double the step down until something fits (then bisect); where
    the values stop being admissible first, find the smallest admissible one and start there."""
    step = 1
    while hi > low:
        lo = max(hi - step, low)
        r = p(lo)
        if r:
            return _bisect(p, lo, hi)
        if r is None:
            first = _first_admissible(p, lo, hi)
            return _bisect(p, first, hi) if p(first) else None
        hi, step = lo, step * 2
    return None


def _first_admissible(p: Probe, lo: int, hi: int) -> int:
    """The smallest admissible k in (lo, hi], with lo not admissible and hi admissible."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if p(mid) is None:
            lo = mid
        else:
            hi = mid
    return hi


def _bisect(p: Probe, lo: int, hi: int) -> int:
    """The last k in [lo, hi) that fits, with p(lo) True and p(hi) not True."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if p(mid):
            lo = mid
        else:
            hi = mid
    return lo
