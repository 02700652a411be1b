"""The runnable examples in the public API's docstrings run and give what they show."""
from __future__ import annotations

import doctest

import pytest

import netdsl.api
import netdsl.freeze
import netdsl.symbolic
import netdsl.values


@pytest.mark.parametrize(("module", "least"), [(netdsl.api, 6), (netdsl.freeze, 1), (netdsl.symbolic, 2),
                                               (netdsl.values, 1)], ids=lambda m: getattr(m, "__name__", m))
def test_docstring_examples(module: object, least: int) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= least
    assert result.failed == 0
