"""The runnable examples in the public API's docstrings run and give what they show."""
from __future__ import annotations

import doctest

import netdsl.api


def test_api_docstring_examples() -> None:
    result = doctest.testmod(netdsl.api, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 6
    assert result.failed == 0
