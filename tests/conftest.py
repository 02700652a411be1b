from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import netdsl.commands.train as train_command
from netdsl.errors import NetdslError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # seed_models, helpers
# Test modules share stand-ins across folders (test_fuzz's time limits, test_train_resume's toy
# model): every test folder is importable whichever file pytest collects first.
for _folder in sorted(Path(__file__).resolve().parent.iterdir()):
    if _folder.is_dir() and any(_folder.glob("test_*.py")):
        sys.path.insert(1, str(_folder))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the golden files under tests/golden/ from the current output")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test: small convolutions run fastest (and reproducibly) so.
    Modules that train small networks take it for every test:
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch  # only when used: the compiler's tests run without importing torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def root() -> Path:
    return ROOT


BLOCK_TORCH = "sys.modules['torch'] = None  # any import of torch now raises ImportError\n"


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 120, block_torch: bool = False,
            forbid_torch: bool = False) -> subprocess.CompletedProcess[str]:
    """`netdsl ARGS` in a fresh Python process, as the console script runs it (`python -m netdsl.cli`).

    `block_torch`: any import of torch fails. `forbid_torch`: the command must end without torch
    imported (an AssertionError, exit status 1, otherwise). Either runs `netdsl.cli.main` from
    `python -c` instead of the console script's `run`, so the check runs after the command.
    """
    if block_torch or forbid_torch:
        code = "import sys\n" + (BLOCK_TORCH if block_torch else "") + "from netdsl.cli import main\nrc = main(sys.argv[1:])\n"
        if forbid_torch:
            code += "assert sys.modules.get('torch') is None, 'torch was imported'\n"
        cmd = [sys.executable, "-c", code + "sys.exit(rc)\n", *args]
    else:
        cmd = [sys.executable, "-m", "netdsl.cli", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def use_stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: Callable[..., Any],
                 cache: Path | None = None) -> None:
    """`netdsl train` on a stand-in model in `tmp_path`: the compiler's two seams replaced (the
    model built from the `--set` values; no concrete graph, so the task is colourization), a
    `toy.net` to name, and the data cache in `cache` (default `tmp_path/cache`)."""
    monkeypatch.setenv("NETDSL_CACHE", str(cache if cache is not None else tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_command, "build_model", lambda spec, params, freeze=None: model(**params))
    monkeypatch.setattr(train_command, "analyse_spec", lambda spec, params: None)
    (tmp_path / "toy.net").write_text("net Toy() # stand-in\n")



def error_at(run: Callable[[str], object], text: str, line: int, col: int, words: str) -> NetdslError:
    """`run(text)` (`netdsl.shapes`, `netdsl.build`, ...) fails with a NetdslError at line:col
    whose message holds `words`; the error, for further checks (its hint)."""
    with pytest.raises(NetdslError) as info:
        run(text)
    err = info.value
    assert err.span is not None and (err.span.line, err.span.column) == (line, col), err.render()
    assert words in err.message, err.render()
    return err


def one_then_torchrun(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`netdsl ARGS` in this process with `--out tmp_path/one` (the single-process reference), then the
    same under `torchrun --standalone --nproc_per_node=2` with `--out tmp_path/two`, which must succeed.
    The caller clears WORLD_SIZE first (monkeypatch), so the reference is one process."""
    from netdsl.cli import main

    assert main([*args, "--out", str(tmp_path / "one"), "--quiet"]) == 0
    env = env or {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "netdsl.cli", *args, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    return ddp
