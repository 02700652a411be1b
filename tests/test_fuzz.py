"""Fuzzing the front end: mutated shipped specs and generated valid specs.

Every case must end in success or in a NetdslError that carries a position; any other exception
is a bug. `bench/fuzz.py` runs the same mutators for many more cases.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl.errors import NetdslError
from torch_oracle import check_against_torch

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "specs").glob("*.net"))]
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:\.[0-9]*)?|\|>|->|//|\*\*|==|<=|>=|!=|\s+|.", re.S)
_NOISE = ["(", ")", "[", "]", ",", "->", "|>", "=", ":", "?", "*", "**", "//", "%", "-", "\n", "#", '"', "cat(",
          "add(", "block", "input", "net", "claim", "where", "0", "-1", "10" * 20, "2**2**2**100", "1.5e999",
          "\x00", "\ufeff", "é", "\t", "H", "W", "NF", "output", "x", "**64", "(NF+H+W+1)**64", "9" * 25]


def mutate(text: str, rng: random.Random, rounds: int = 3) -> str:
    """Token-level damage: delete, duplicate, swap, replace, insert noise, nest, stretch."""
    toks = _TOKEN.findall(text)
    for _ in range(rounds):
        if not toks:
            toks = [rng.choice(_NOISE)]
        i = rng.randrange(len(toks))
        kind = rng.randrange(8)
        if kind == 0:
            del toks[i]
        elif kind == 1:
            toks.insert(i, toks[i])
        elif kind == 2:
            j = rng.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == 3:
            toks[i] = rng.choice(_NOISE)
        elif kind == 4:
            toks.insert(i, rng.choice(_NOISE))
        elif kind == 5 and toks[i].isdigit():
            toks[i] = rng.choice(["0", "1", str(10 ** rng.randrange(1, 60)), "99999"])
        elif kind == 6:
            depth = rng.choice([5, 50, 500])
            toks.insert(i, "(" * depth + "1" + ")" * depth)
        else:
            toks.insert(i, "x" * rng.choice([100, 10_000]))
    return "".join(toks)


def check_one(text: str) -> str:
    """'ok' or 'error'; raises AssertionError for anything that is not our own located error."""
    # A trailing newline makes the API read the string as spec text, never as a file name.
    text += "\n"
    try:
        r = netdsl.shapes(text)
    except NetdslError as e:
        assert e.span is not None, f"error without a position: {e.message!r}"
        assert e.span.line >= 1 and e.span.column >= 1
        e.render()
        return "error"
    # Only compile what is small enough to allocate; the rest is the limits' business.
    weights = sum(int(r.env.at(ls.in_shape[0])) * int(r.env.at(ls.out_shape[0])) for ls in r.layers)
    if weights < 10**6 and all(v < 10**4 for v in r.env.values.values()):
        try:
            m = netdsl.build(text)
        except NetdslError as e:
            assert e.span is not None
            return "error"
        units = sum(a * b * c for a, b, c in (r.at(ls.out_shape) for ls in r.layers))
        if units < 10**7:
            m.eval()
            with torch.no_grad():
                out = m(torch.zeros(1, *r.at(r.input_shape)))
            assert list(out.shape[1:]) == r.at(r.output_shape)
    return "ok"


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SHIPPED), st.integers(0, 2**32), st.integers(1, 4))
def test_mutated_specs_fail_cleanly(text: str, seed: int, rounds: int) -> None:
    check_one(mutate(text, random.Random(seed), rounds))


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    check_one(data.decode("utf-8", errors="replace"))


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment", "net", "net N(", "net N()\n",
                                  "net N()\ninput x: [1, H = 4, W = 4]\n", "\ufeffnet N()",
                                  "net N()\ninput x: [1, H = 4, W = 4]\noutput = x |> " + "relu -> " * 5000 + "relu",
                                  "net N(a = " + "9" * 5000 + ")\ninput x: [1, H = 4, W = 4]\noutput = x",
                                  "net N()\ninput x: [1, H = 4, W = 4]\noutput = x |> conv(1, 1) * 99999"])
def test_edge_cases(text: str) -> None:
    check_one(text)


# --- generated valid specs -------------------------------------------------------------------

def _layer(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["conv", "convT", "maxpool", "avgpool", "upsample", "batchnorm", "relu",
                                 "leaky_relu", "sigmoid", "tanh", "dropout"]))
    if kind == "conv":
        k = draw(st.integers(1, 5))
        return (f"conv({draw(st.integers(1, 8))}, {k}, stride={draw(st.integers(1, 2))}, padding={k // 2}, "
                f"bias={draw(st.sampled_from(['true', 'false']))})")
    if kind == "convT":
        s = draw(st.integers(1, 2))
        k = draw(st.integers(s, 4))
        return f"convT({draw(st.integers(1, 8))}, {k}, stride={s}, padding={(k - 1) // 2}, output_padding={s - 1})"
    if kind in ("maxpool", "avgpool"):
        return f"{kind}({draw(st.integers(1, 2))})"
    if kind == "upsample":
        return f'upsample(2, mode="{draw(st.sampled_from(["nearest", "bilinear"]))}")'
    return kind


@st.composite
def valid_specs(draw: st.DrawFn) -> str:
    lines = [f"net G(C = {draw(st.integers(1, 4))})", f"input x: [C, H = {draw(st.integers(8, 24))}, W = 16]"]
    names = ["x"]
    for i in range(draw(st.integers(1, 4))):
        chain = " -> ".join(_layer(draw) for _ in range(draw(st.integers(1, 4))))
        src = draw(st.sampled_from(names))
        lines.append(f"t{i} = {src} |> {chain}")
        names.append(f"t{i}")
    lines.append(f"output = {names[-1]} |> conv({draw(st.integers(1, 6))}, 1)")
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_generated_specs_build_with_predicted_shapes(text: str) -> None:
    # Shrinking pools can legitimately reach size zero: that must be our error, at a position.
    check_one(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_generated_specs_count_what_torch_has(text: str) -> None:
    # What build compiles, count counts, and the two agree layer by layer (tests/test_count.py's oracle).
    try:
        netdsl.shapes(text)
    except NetdslError:
        assume(False)  # a pool shrank a size to zero: an error case, covered above
    check_against_torch(text)
