"""The CLI's commands load or fail loudly: a command module that cannot be imported is a bug to
see (a message, a traceback with --debug), never a command silently missing from `netdsl --help`."""
from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from netdsl import cli

REAL_IMPORT = importlib.import_module


def _break(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(name: str, package: str | None = None) -> ModuleType:
        if name == module:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return REAL_IMPORT(name, package)

    monkeypatch.setattr(cli.importlib, "import_module", fake)


def test_every_command_loads() -> None:
    parser = cli.make_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands is not None
    assert sorted(commands) == ["build", "count", "detect", "diff", "export", "fit", "fmt", "import", "lsp", "solve", "train"]


def test_a_broken_command_module_is_an_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _break("netdsl.commands.export", monkeypatch)
    assert cli.main(["count", "specs/unet.net"]) == 1  # any command line: the install is broken
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("error: the `export` command cannot be loaded: importing netdsl.commands.export failed: "
                      "ModuleNotFoundError: No module named 'netdsl.commands.export'")
    assert err[1] == "  hint: this is a bug in netdsl; run with --debug for the traceback"


def test_debug_shows_the_import_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    _break("netdsl.commands.count", monkeypatch)
    with pytest.raises(cli.BrokenCommand) as info:
        cli.main(["--debug", "count", "specs/unet.net"])
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
