"""What commands write, what they read.

Outputs go through one writer (`netdsl.files.atomic_write`), which never overwrites a file
the command reads, never replaces a FIFO or device with a plain file and turns OS failures into
NetdslErrors; inputs are size-checked before they are read; a `.pt` file is checked whole before
a single tensor of the model changes; an ONNX opset the exporter would not write is refused.
"""
from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
import torch

import netdsl
from netdsl.backends import picture
from netdsl.cli import main
from netdsl.errors import NetdslError
from netdsl.files import atomic_write, atomic_write_text
from netdsl.weights import load_weights
from spec_fixtures import SDET

ROOT = Path(__file__).resolve().parents[2]
UNET = ROOT / "specs" / "unet.net"
SMALL_CFG = """[net]
width=32
height=32
channels=3

[convolutional]
filters=4
size=3
stride=1
pad=1
activation=leaky
"""


@pytest.fixture
def sdet(tmp_path: Path) -> Path:
    path = tmp_path / "sdet.net"
    path.write_text(SDET, encoding="utf-8")
    return path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of the command."""
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def read_fifo(path: Path) -> tuple[threading.Thread, list[bytes]]:
    """A reader on the FIFO (as a shell pipeline would have), so that writing it does not block."""
    got: list[bytes] = []

    def reader() -> None:
        with open(path, "rb") as fh:
            got.append(fh.read())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    return t, got


# -- item 6: -o never overwrites an input, never replaces a FIFO or device ------------------------

@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_export_refuses_to_overwrite_its_own_spec(tmp_path: Path, link: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "unet.net"
    spec.write_bytes(UNET.read_bytes())
    out = spec if link == "same" else tmp_path / "alias.net"
    if link == "symlink":
        out.symlink_to(spec.name)
    elif link == "hardlink":
        os.link(spec, out)
    for fmt in ("python", "dot"):
        rc, _, err = run_cli(["export", str(spec), "--to", fmt, "-o", str(out)], capsys)
        assert rc == 2 and "refusing to overwrite the file being read" in err and "Traceback" not in err
        assert spec.read_bytes() == UNET.read_bytes()
    assert out.is_symlink() == (link == "symlink")


def test_export_refuses_to_overwrite_its_weights(sdet: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "w.pt"
    torch.save(netdsl.build(sdet).state_dict(), weights)
    before = weights.read_bytes()
    rc, _, err = run_cli(["export", str(sdet), "--to", "onnx", "--weights", str(weights), "-o", str(weights)], capsys)
    assert rc == 2 and "refusing to overwrite the file being read" in err
    assert weights.read_bytes() == before


def test_import_refuses_a_hard_link_to_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "small.cfg"
    src.write_text(SMALL_CFG, encoding="utf-8")
    alias = tmp_path / "small.net"
    os.link(src, alias)
    rc, _, err = run_cli(["import", str(src), "-o", str(alias)], capsys)
    assert rc == 2 and f"refusing to overwrite the file being read (as {src})" in err
    assert src.read_text(encoding="utf-8") == SMALL_CFG


@pytest.mark.parametrize("command", ["export", "import"])
def test_a_fifo_given_to_o_is_written_and_stays_a_fifo(tmp_path: Path, command: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    if command == "export":
        argv = ["export", str(UNET), "--to", "python", "-o", str(fifo)]
    else:
        src = tmp_path / "small.cfg"
        src.write_text(SMALL_CFG, encoding="utf-8")
        argv = ["import", str(src), "-o", str(fifo)]
    reader, got = read_fifo(fifo)
    rc, _, _ = run_cli(argv, capsys)
    reader.join(timeout=60)
    assert rc == 0 and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got and got[0].startswith(b'"""UNet' if command == "export" else b"# Imported from small.cfg")


def test_a_character_device_given_to_o_stays_a_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A node of the null device made in tmp_path: the real /dev/null is never touched.
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot make a device node here: {e}")
    for argv in (["export", str(UNET), "--to", "python", "-o", str(node)],
                 ["export", str(UNET), "--to", "dot", "-o", str(node)]):
        rc, _, _ = run_cli(argv, capsys)
        assert rc == 0 and stat.S_ISCHR(os.lstat(node).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]  # no temp file left beside it


def test_a_symlinked_output_is_written_through_and_stays_a_link(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    real = tmp_path / "models" / "unet.py"
    real.parent.mkdir()
    real.write_text("old", encoding="utf-8")
    real.chmod(0o600)
    link = tmp_path / "unet.py"
    link.symlink_to(real)
    rc, _, _ = run_cli(["export", str(UNET), "--to", "python", "-o", str(link)], capsys)
    assert rc == 0 and link.is_symlink()
    assert real.read_text(encoding="utf-8").startswith('"""UNet')
    assert stat.S_IMODE(real.stat().st_mode) == 0o600  # a replaced file keeps its permissions


def test_the_writer_writes_nothing_into_a_fifo_when_the_content_fails(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def failing(fh: BinaryIO) -> None:
        fh.write(b"half")
        raise ValueError("the content could not be made")

    reader, got = read_fifo(fifo)
    with pytest.raises(ValueError):
        atomic_write(fifo, failing)
    with open(fifo, "wb"):  # release the reader: it must have seen nothing before this
        pass
    reader.join(timeout=60)
    assert got == [b""]


def test_the_writer_with_replace_false_keeps_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "a.dot"
    path.write_text("mine", encoding="utf-8")
    with pytest.raises(NetdslError, match="exists already"):
        atomic_write_text(path, "theirs", replace=False)
    assert path.read_text(encoding="utf-8") == "mine" and [p.name for p in tmp_path.iterdir()] == ["a.dot"]
    atomic_write_text(tmp_path / "b.dot", "new", replace=False)
    assert (tmp_path / "b.dot").read_text(encoding="utf-8") == "new"


# -- item 8: a .pt file is checked whole before the model changes ----------------------------------

def _broken(model: torch.nn.Module, how: str) -> dict:
    state = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    keys = list(state)
    last = keys[-2]  # late in the file: a loader copying as it goes would have overwritten the rest
    if how == "meta":
        state[last] = torch.empty(state[last].shape, device="meta")
    elif how == "sparse":
        state[last] = state[last].to_sparse()
    elif how == "int keys":
        state = {i: v for i, v in enumerate(state.values())}
    elif how == "nan":
        state[last].view(-1)[0] = float("nan")
    elif how == "complex":
        state[last] = state[last].to(torch.complex64)
    return state


@pytest.mark.parametrize("how, message", [("meta", "is on the meta device"),
                                          ("sparse", "torch.sparse_coo tensor, not a dense one"),
                                          ("int keys", "has a key 0 of type int"),
                                          ("nan", "holds NaN or infinite values"),
                                          ("complex", "is of type torch.complex64, not of real numbers")])
def test_a_bad_pt_file_leaves_the_model_as_it_was(sdet: Path, tmp_path: Path, how: str, message: str) -> None:
    model = netdsl.build(sdet)
    path = tmp_path / "bad.pt"
    torch.save(_broken(model, how), path)
    before = snapshot(model)
    with pytest.raises(NetdslError, match=message) as e:
        load_weights(model, path)
    assert e.value.path == str(path) and e.value.hint
    assert unchanged(model, before)


@pytest.mark.parametrize("how", ["meta", "sparse", "int keys"])
def test_a_bad_pt_file_is_a_clean_error_in_build_and_export(sdet: Path, tmp_path: Path, how: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.pt"
    torch.save(_broken(netdsl.build(sdet), how), path)
    for argv in (["build", str(sdet), "--weights", str(path)],
                 ["export", str(sdet), "--to", "onnx", "--weights", str(path), "-o", str(tmp_path / "s.onnx")]):
        rc, _, err = run_cli(argv, capsys)
        assert rc == 2 and err.startswith(f"{path}: error: ") and "Traceback" not in err
    assert not (tmp_path / "s.onnx").exists()


def test_a_good_pt_file_still_loads(sdet: Path, tmp_path: Path) -> None:
    model = netdsl.build(sdet)
    state = {k: v + 1 for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "good.pt")
    load_weights(model, tmp_path / "good.pt")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


# -- item 13: read-only outputs, and inputs too large to read -------------------------------------

@pytest.fixture
def read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder nothing can be written in. Root writes anywhere, so as root the OS's answer is
    imitated: os.access says no and creating a temp file there fails with EACCES."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
    else:
        real_access, real_mkstemp, real_mkdtemp = os.access, tempfile.mkstemp, tempfile.mkdtemp

        def inside(p: object) -> bool:
            return p is not None and Path(os.path.realpath(str(p))) == folder.resolve()

        def denied(original: Callable, *args: object, **kw: object) -> object:
            if inside(kw.get("dir")):
                raise PermissionError(13, "Permission denied")
            return original(*args, **kw)

        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if inside(p) else real_access(p, mode, **kw))
        monkeypatch.setattr(tempfile, "mkstemp", lambda *a, **kw: denied(real_mkstemp, *a, **kw))
        monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **kw: denied(real_mkdtemp, *a, **kw))
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("fmt", ["python", "onnx", "dot", "svg", "png"])
def test_export_into_a_read_only_folder_is_a_clean_error(read_only_folder: Path, fmt: str,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(picture, "find_dot", lambda: None)  # svg/png then write the dot text: same folder
    rc, _, err = run_cli(["export", str(UNET), "--to", fmt, "-o", str(read_only_folder / f"unet.{fmt}")], capsys)
    assert rc == 2 and "read-only" in err and "Traceback" not in err
    assert list(read_only_folder.iterdir()) == []


def test_import_into_a_read_only_folder_is_a_clean_error(read_only_folder: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "small.cfg"
    src.write_text(SMALL_CFG, encoding="utf-8")
    rc, _, err = run_cli(["import", str(src), "-o", str(read_only_folder / "small.net")], capsys)
    assert rc == 2 and "read-only" in err and list(read_only_folder.iterdir()) == []


def test_an_os_failure_while_writing_is_a_netdsl_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kw: object) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(NetdslError, match="No space left on device") as e:
        atomic_write_text(tmp_path / "x.net", "text")
    assert e.value.path == str(tmp_path / "x.net")


BIG = 5 * 2**30


def test_huge_inputs_are_refused_before_they_are_read(sdet: Path, tmp_path: Path) -> None:
    """5 GB files (sparse: no disk is used) and links to /dev/zero, each command under a 3 GiB
    address-space limit, as the issue ran them: a clean error, not a MemoryError."""
    for name in ("big.net", "big.cfg", "big.weights", "big.pt"):
        with open(tmp_path / name, "wb") as fh:
            fh.truncate(BIG)
    for name in ("zero.net", "zero.cfg", "zero.weights", "zero.pt"):
        (tmp_path / name).symlink_to("/dev/zero")
    cases = [(["build", "big.net"], "big.net is 5,368,709,120 bytes; a spec is limited to"),
             (["count", "big.net"], "big.net is 5,368,709,120 bytes"),
             (["build", "zero.net"], "zero.net is a character device, not a spec"),
             (["import", "big.cfg"], "big.cfg is 5,368,709,120 bytes"),
             (["import", "zero.cfg"], "zero.cfg is a character device"),
             (["build", str(sdet), "--weights", "big.weights"], "a weights file for this network is limited to"),
             (["build", str(sdet), "--weights", "zero.weights"], "zero.weights is a character device"),
             (["build", str(sdet), "--weights", "big.pt"], "a weights file for this network is limited to"),
             (["build", str(sdet), "--weights", "zero.pt"], "zero.pt is a character device")]
    script = ("import sys, json\nfrom netdsl.cli import main\n"
              "for argv in json.loads(sys.argv[1]):\n"
              "    try:\n        rc = main(argv)\n    except BaseException as e:\n        rc = type(e).__name__\n"
              "    print('RC', rc, flush=True)\n")
    limit = 3 * 2**30

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run([sys.executable, "-c", script, json.dumps([argv for argv, _ in cases])], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, preexec_fn=cap,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    rcs = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("RC ")]
    assert rcs == ["2"] * len(cases), done.stdout + done.stderr
    for _, message in cases:
        assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_spec_from_a_pipe_is_still_read(tmp_path: Path, sdet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "spec.net"
    os.mkfifo(fifo)

    def writer() -> None:
        with open(fifo, "wb") as fh:
            fh.write(SDET.encode())

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    assert main(["count", str(fifo)]) == 0
    t.join(timeout=60)
    assert "SDet" in capsys.readouterr().out


# -- item 16: --opset, and --to svg without Graphviz ----------------------------------------------

def test_an_opset_the_exporter_would_not_write_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    newest = onnx.defs.onnx_opset_version()
    out = tmp_path / "u.onnx"
    rc, _, err = run_cli(["export", str(UNET), "--to", "onnx", "--opset", "99", "-o", str(out)], capsys)
    assert rc == 2 and f"--opset 99: the installed onnx package knows opsets up to {newest}" in err
    assert not out.exists()


def test_the_opset_written_is_checked(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from netdsl.backends.onnx_export import _check_opset_written

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    _check_opset_written(path, 18)
    with pytest.raises(NetdslError, match="wrote opset 18, not the 21 asked for"):
        _check_opset_written(path, 21)


def test_svg_without_graphviz_keeps_a_users_dot_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(picture, "find_dot", lambda: None)
    mine = tmp_path / "unet.dot"
    mine.write_text("digraph mine {}\n", encoding="utf-8")
    rc, _, err = run_cli(["export", str(UNET), "--to", "svg", "-o", str(tmp_path / "unet.svg")], capsys)
    assert rc == 2 and "no svg was drawn, and the dot text was not written either" in err
    assert "exists already" in err and mine.read_text(encoding="utf-8") == "digraph mine {}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.dot"]
    # the dot text this export would write is already there: nothing to lose, the message says so
    mine.unlink()
    assert run_cli(["export", str(UNET), "--to", "dot", "-o", str(mine)], capsys)[0] == 0
    rc, out, _ = run_cli(["export", str(UNET), "--to", "png", "-o", str(tmp_path / "unet.png")], capsys)
    assert rc == 0 and f"{mine} already holds its dot text" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.dot"]
