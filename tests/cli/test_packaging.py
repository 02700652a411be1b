"""A non-editable wheel carries the grammar and the console script, and works outside the checkout."""
from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_installs_and_runs(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="the [test] extra installs hatchling to build the wheel offline")
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                        "-w", str(dist), "-q"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = dist.glob("netdsl-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("netdsl/grammar/netdsl.lark").decode() == (ROOT / "grammar" / "netdsl.lark").read_text()
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        assert "netdsl = netdsl.cli:run" in z.read(entry).decode()

    # A fresh venv that has netdsl only from the wheel and borrows this environment's dependencies
    # through a .pth line (appended after its own site-packages, so the wheel's copy wins).
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    import sysconfig

    Path(site, "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import netdsl, json; m = netdsl.build(r'%s'); print(json.dumps([netdsl.__file__, "
            "sum(p.numel() for p in m.parameters())]))" % (ROOT / "specs" / "unet.net"))
    # -I: isolated mode, so neither the checkout nor an editable install can shadow the wheel.
    r = subprocess.run([str(py), "-I", "-c", code], capture_output=True, text=True, cwd=work, timeout=300)
    assert r.returncode == 0, r.stderr
    assert str(site) in r.stdout and "56856" in r.stdout
