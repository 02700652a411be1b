"""Resource limits: refused with a located error before anything is allocated."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import netdsl
from netdsl.passes.memory import check_memory

ROOT = Path(__file__).resolve().parents[2]
UNET = ROOT / "specs" / "unet.net"


def test_huge_network_is_refused_before_torch_is_imported() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"  # importing torch would now fail
        "import netdsl\n"
        "try:\n"
        f"    netdsl.build(r'{UNET}', NF=10**9)\n"
        "except netdsl.NetdslError as e:\n"
        "    print(e.render())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith(f"{UNET}:12:26: error: the network needs about ")
    assert "the limit is 8.00 GiB" in first and "--max-memory" in r.stdout


def test_estimate_matches_the_module() -> None:
    r = netdsl.shapes(UNET)
    est = check_memory(r, None)
    m = netdsl.build(UNET)
    numel = sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers())
    assert est.parameter_bytes == 4 * numel
    units = sum(a * b * c for a, b, c in (r.at(ls.out_shape) for ls in r.layers))
    assert est.activation_bytes == 4 * units


def test_limit_can_be_raised(tmp_path: Path) -> None:
    with pytest.raises(netdsl.NetdslError, match="the limit is"):
        netdsl.build(UNET, NF=600, max_bytes=2**20)
    assert sum(p.numel() for p in netdsl.build(UNET, NF=600, max_bytes=None).parameters()) > 2**20 // 4
    r = subprocess.run([sys.executable, "-m", "netdsl.cli", "build", str(UNET), "--set", "NF=600",
                        "--max-memory", "0.001"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "the limit is 1.0 MiB" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "netdsl.cli", "build", str(UNET), "--set", "NF=600",
                        "--max-memory", "1", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _balanced_product(n: int) -> str:
    return "999999999" if n == 1 else f"({_balanced_product(n // 2)})*({_balanced_product(n - n // 2)})"


BIG = _balanced_product(600)  # a 5,400-digit constant, shallow enough to pass the depth cap
BLOWUPS = {
    "power of a power": ("output = x |> conv(((a+1)**64)**64 - ((a+1)**64)**64 + 1, 1)", "expands to more than"),
    "wide power": ("output = x |> conv((((a+H+W+1)**8)**8)*0 + 1, 1)", "expands to more than"),
    "huge condition": ("output = x |> relu", "more than 77 digits"),
    "huge annotation": (f"y: [{BIG}, H, W] = x |> relu\noutput = y", "more than 77 digits"),
    "huge default": ("output = x |> relu", "more than 77 digits"),
    "huge argument": (f"output = x |> conv({BIG} // 7, 1)", "more than 77 digits"),
    "huge value": ("output = x |> conv(10**19, 1)", "larger than 2,147,483,647"),
}


@pytest.mark.parametrize("case", sorted(BLOWUPS))
@pytest.mark.parametrize("fn", ["shapes", "count", "build", "solve"])
def test_expression_blowups_are_errors(case: str, fn: str) -> None:
    body, words = BLOWUPS[case]
    header = f"net N(a = {BIG if case == 'huge default' else 1})\n"
    where = f" where a < {BIG}" if case == "huge condition" else ""
    text = header + f"input x: [1, H = 8, W = 8]{where}\n" + body + "\n"
    with pytest.raises(netdsl.NetdslError) as info:
        getattr(netdsl, fn)(text)
    assert info.value.span is not None
    if fn != "solve":  # solve evaluates at the parameter values first and may meet the other limit
        assert words in info.value.message, info.value.message
    info.value.render()
