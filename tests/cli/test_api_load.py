"""`netdsl.api.load`: a spec given as a path or as its text, decided by a stated rule, never guessed.

A Path is a path; a str is a path when it names a file, or is one line ending in `.net` or
without a space. A path that names no file is "no such file" naming it (exit 2 at the CLI),
never spec text with a syntax error.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from conftest import ROOT, run_cli
from netdsl.api import load
from netdsl.errors import NetdslError

TINY = "net T(C = 4)\ninput x: [1, H = 8, W = 8]\noutput = x |> conv(C, 3, padding=1)\n"


def test_text_and_existing_paths() -> None:
    assert load(TINY) == (TINY, None)
    text, path = load(str(ROOT / "specs" / "unet.net"))
    assert path == str(ROOT / "specs" / "unet.net") and text.startswith(("net ", "#"))
    assert load(ROOT / "specs" / "unet.net")[1] == path


@pytest.mark.parametrize("missing", ["specs/unt.net", "specs/unt", "specs/unet.nt", "my specs/unet2.net"])
def test_a_mistyped_path_is_no_such_file(missing: str) -> None:
    with pytest.raises(NetdslError, match="no such file") as info:
        load(missing)
    assert info.value.path == str(Path(missing))
    with pytest.raises(NetdslError, match="no such file"):
        netdsl.parse(missing)
    with pytest.raises(NetdslError, match="no such file"):
        load(Path(missing))


@pytest.mark.parametrize("text", ["", "   ", "net T(C = 4) input x", "net T\n"])
def test_one_line_text_with_a_space_is_still_text(text: str) -> None:
    assert load(text) == (text, None)
    with pytest.raises(NetdslError) as info:
        netdsl.parse(text)
    assert "no such file" not in info.value.message


def test_not_a_path_nor_text() -> None:
    with pytest.raises(NetdslError, match="must be a path or the spec's text"):
        load(3)  # type: ignore[arg-type]  # the wrong type is the point


def test_cli_names_the_missing_file() -> None:
    r = run_cli("count", "specs/unt")
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == "specs/unt: error: no such file: specs/unt"
    assert "Traceback" not in r.stderr
