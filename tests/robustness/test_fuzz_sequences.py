"""Fuzzing the sequence constructs: the corpus specs for sequences (`test_fuzz.V4`) are valid and
run, and their mutations (inputs [T, D], `@batch_axis`, tokens/image/token, cat on an axis,
attention planted anywhere) end in success or a located NetdslError, never anything else."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_fuzz import V4, check_one, guarded, mutate


@pytest.mark.parametrize("text", V4, ids=["tiny-vit", "seq-mix"])
def test_the_sequence_corpus_is_valid(text: str) -> None:
    assert check_one(text) == "ok"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(V4), st.integers(0, 2**32), st.integers(1, 4))
def test_mutated_sequence_specs_fail_cleanly(text: str, seed: int, rounds: int) -> None:
    assert guarded(check_one, mutate(text, random.Random(seed), rounds)) in ("ok", "error", "known")
