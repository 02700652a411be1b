"""The numeric limits every part of netdsl applies alike, in one place.

They bound what a spec or an imported file may ask for, so that no evaluation runs away (a power
with a huge exponent, a 10**30-sized layer) and every size stays one PyTorch's kernels take.
"""
from __future__ import annotations

MAX_EXPONENT = 64  # `a ** b`: b from 0 (or -MAX_EXPONENT for float arguments) to this
MAX_POWER_BASE = 2**16  # the largest |a| of `a ** b` evaluated to a number, so a power stays small
MAX_INT32 = 2**31 - 1  # PyTorch's convolution and pooling kernels take 32-bit sizes and arguments
MAX_VALUE = 10**18  # beyond this no value is a real network, and float estimates would overflow

BYTES_PER_VALUE = 4  # float32
DEFAULT_MAX_BYTES = 8 * 2**30  # the memory a compiled network may need unless told otherwise
