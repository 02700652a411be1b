"""Inputs a hostile (or unlucky) user gives get a NetdslError with a clear message and a
hint, never a traceback, a wrong answer or advice to do something unsafe."""
from __future__ import annotations

import doctest
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

import netdsl.values
from netdsl.cli import main
from netdsl.commands import common
from netdsl.commands import train as train_command
from netdsl.commands.build import max_memory_bytes
from netdsl.errors import NetdslError
from netdsl.parsing import parse_text, read_spec_file
from netdsl.tasks.colourize import palette
from netdsl.values import check_overrides

ROOT = Path(__file__).resolve().parents[2]
UNET = str(ROOT / "specs" / "unet.net")


# --- 1. build --max-memory ---------------------------------------------------------------------
@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-inf", "-1", "0"])
def test_max_memory_must_be_finite_and_positive(value: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["build", UNET, f"--max-memory={value}"]) == 2
    err = capsys.readouterr().err
    assert "error: --max-memory" in err and "finite, positive number of GiB" in err and "hint:" in err
    assert "Traceback" not in err


def test_max_memory_huge_but_finite_means_no_limit() -> None:
    assert max_memory_bytes(1e300) == 2**63  # capped, not an OverflowError
    assert max_memory_bytes(1.0) == 2**30 and max_memory_bytes(1e-30) == 1


# --- 2. byte-order mark, NUL and control characters ----------------------------------------------
def test_leading_bom_is_dropped_and_columns_stay_right(tmp_path: Path) -> None:
    spec = tmp_path / "bom.net"
    spec.write_bytes(b"\xef\xbb\xbf" + Path(UNET).read_bytes())
    assert read_spec_file(spec) == Path(UNET).read_text(encoding="utf-8")
    spec.write_bytes(b"\xef\xbb\xbfnet A(x = 1) $\n")
    with pytest.raises(NetdslError) as info:
        parse_text(read_spec_file(spec), str(spec))
    assert info.value.message == "unexpected character '$'"
    assert (info.value.span.line, info.value.span.column) == (1, 14)


def test_nul_byte_says_binary_and_is_not_echoed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "nul.net"
    spec.write_bytes(b"net A()\x00\x00\n")
    assert main(["build", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "nul.net:1:8: error: unexpected NUL byte '\\x00': the file looks binary" in err
    assert "\x00" not in err
    assert "   1 | net A()\u2400\u2400\n       |        ^\n" in err  # a stand-in per character: carets line up


def test_control_character_is_escaped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "esc.net"
    spec.write_bytes(b"net A(x = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> conv(\x1b[2J 2)\n")
    assert main(["build", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "esc.net:3:20: error: unexpected unprintable character '\\x1b' (U+001B)" in err
    assert "\x1b" not in err and "hint:" in err


# --- 3. --out / --resume naming a file -----------------------------------------------------------
def test_resume_names_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "afile").write_text("mine")
    assert main(["train", "--resume", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert "error: --resume names a file, not a run directory" in err and "hint:" in err


def test_ensure_fresh_names_files(tmp_path: Path) -> None:
    from netdsl.tasks.rundir import ensure_fresh

    (tmp_path / "afile").write_text("mine")
    with pytest.raises(NetdslError, match="the output path is a file, not a directory"):
        ensure_fresh(tmp_path / "afile")
    with pytest.raises(NetdslError, match="afile is a file, so the output directory cannot be made inside it"):
        ensure_fresh(tmp_path / "afile" / "run")
    ensure_fresh(tmp_path / "new" / "run")  # a path still to be made is fine


# --- 4. checkpoints that are not netdsl's --------------------------------------------------------
class Foreign:
    pass


@pytest.mark.parametrize("kind", ["random", "pickle", "numpy", "empty", "truncated"])
def test_foreign_checkpoint_never_suggests_unsafe_load(kind: str, tmp_path: Path) -> None:
    import torch

    from netdsl.tasks.checkpoint import load_checkpoint

    path = tmp_path / "last.pt"
    if kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"format": "x", "obj": Foreign()}))
    elif kind == "numpy":
        torch.save({"format": "x", "n": np.int64(3)}, path)
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"format": "x"}, path)
        path.write_bytes(path.read_bytes()[:100])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's pickle-protocol warning must not leak either
        with pytest.raises(NetdslError) as info:
            load_checkpoint(path, "colourize")
    text = info.value.render()
    assert "corrupt or unreadable checkpoint, or not a netdsl checkpoint" in text and "hint:" in text
    assert "weights_only" not in text and "trust" not in text.lower() and "False" not in text


# --- 5. palettes -------------------------------------------------------------------------------
def test_palette_must_be_real(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "c.npy", rng.random((24, 3)) + 0j)
    with pytest.raises(NetdslError, match="must be real numbers, not complex128"):
        palette.load_palette(tmp_path / "c.npy")
    np.save(tmp_path / "b.npy", rng.random((24, 3)) > 0.5)
    with pytest.raises(NetdslError, match="must be real numbers, not bool"):
        palette.load_palette(tmp_path / "b.npy")


def test_palette_colours_must_be_distinct(tmp_path: Path) -> None:
    np.save(tmp_path / "same.npy", np.full((24, 3), 0.5))
    with pytest.raises(NetdslError, match=r"23 repeated colours \(colour 1 equals colour 0; colour 2 equals"):
        palette.load_palette(tmp_path / "same.npy")
    pal = np.linspace(0, 0.99, 30).reshape(10, 3)
    pal[7] = pal[2]
    np.save(tmp_path / "one.npy", pal)
    with pytest.raises(NetdslError, match=r"1 repeated colour \(colour 7 equals colour 2\)"):
        palette.load_palette(tmp_path / "one.npy")


def test_kmeans_refills_empty_clusters_with_distinct_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every pixel assigned to cluster 0 empties all the others at once; they used to take copies of
    # the same far colour (50 pixels of white here) and come out as equal palette entries.
    rng = np.random.default_rng(0)
    px = np.concatenate([rng.integers(100, 140, (500, 3)), np.full((50, 3), 255)]).astype(np.uint8)
    monkeypatch.setattr(palette, "_nearest", lambda x, c: np.zeros(len(x), dtype=np.int64))
    pal = palette.kmeans_palette(px, 8)
    assert len(np.unique(pal, axis=0)) == 8


# --- 6. one --set parser -----------------------------------------------------------------------
def test_one_set_parser() -> None:
    assert train_command.parse_sets is common.parse_sets
    assert common.parse_sets(None) == {}
    assert common.parse_sets(["k=5", " NF = 64 ", "b=-3"]) == {"k": 5, "NF": 64, "b": -3}
    cases = {"k": "no '='", "=3": "'' is not a name", "1k=3": "'1k' is not a name",
             "k=five": "'five' is not an integer", "k=5.0": "'5.0' is not an integer", "k=": "'' is not an integer",
             "k=1_000": "is not an integer"}
    for item, words in cases.items():
        with pytest.raises(NetdslError, match="is not NAME=INTEGER") as info:
            train_command.parse_sets([item])
        assert words in info.value.message and info.value.hint
    with pytest.raises(NetdslError, match="19 digits; it is too large") as info:
        train_command.parse_sets(["k=" + "9" * 19])  # train used to take any size
    assert info.value.hint == "values are limited to 18 digits"
    assert train_command.parse_sets(["k=" + "9" * 18]) == {"k": 10**18 - 1}


# --- 7. Python keyword overrides ---------------------------------------------------------------
def test_check_overrides_accepts_integers() -> None:
    out = check_overrides({"k": 5, "NF": np.int64(64), "b": -(10**18), "c": np.uint8(3)})
    assert out == {"k": 5, "NF": 64, "b": -(10**18), "c": 3}
    assert all(type(v) is int for v in out.values())
    assert check_overrides({}) == {}


@pytest.mark.parametrize(("value", "words", "hint"), [
    ("5", "must be an integer, not str '5'", "pass k=5"),
    (5.5, "must be an integer, not float 5.5", "parameters are whole numbers, e.g. k=5"),
    (5.0, "must be an integer, not float 5.0", "pass k=5"),
    (True, "must be an integer, not a boolean (True)", "pass a number, e.g. k=1"),
    (np.bool_(False), "must be an integer, not a boolean (False)", "pass a number, e.g. k=0"),
    (None, "must be an integer, not None", "parameters are whole numbers, e.g. k=5"),
    (b"5", "must be an integer, not bytes b'5'", "parameters are whole numbers, e.g. k=5"),
    (10**30, "is too large (31 digits)", "values are limited to 10**18 in magnitude"),
    (-(10**18) - 1, "is too large (19 digits)", "values are limited to 10**18 in magnitude"),
    (10**6000, "is too large (about 6000 digits)", "values are limited to 10**18 in magnitude"),
], ids=["str", "float", "integral-float", "bool", "numpy-bool", "None", "bytes", "1e30", "-1e18-1", "1e6000"])
def test_check_overrides_refuses(value: object, words: str, hint: str) -> None:
    with pytest.raises(NetdslError) as info:
        check_overrides({"k": value})
    assert info.value.message == f"parameter 'k' {words}"
    assert info.value.hint == hint


def test_check_overrides_names_and_what() -> None:
    with pytest.raises(NetdslError, match="size 'H' must be an integer"):
        check_overrides({"H": 3.0}, what="size")
    with pytest.raises(NetdslError, match="parameter name int 1 is not a name"):
        check_overrides({1: 2})  # type: ignore[dict-item]
    with pytest.raises(NetdslError, match="must be a mapping"):
        check_overrides([("k", 1)])  # type: ignore[arg-type]
    with pytest.raises(NetdslError) as info:
        check_overrides({"k": "x" * 10_000})  # a huge value is not echoed whole
    assert info.value.message == "parameter 'k' must be an integer, not str '" + "x" * 36 + "..."


def test_check_overrides_docstring_examples() -> None:
    result = doctest.testmod(netdsl.values, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0
