"""`netdsl solve`: open arguments found symbolically, checked against torch; the seed's Question 4."""
from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest
import torch

import netdsl
from conftest import run_cli
from netdsl.errors import NetdslError

ROOT = Path(__file__).resolve().parents[2]
OPEN = ROOT / "specs/conv_transpose_open.net"
KEYS = ("sequence1.0.padding", "sequence2.0.padding", "sequence3.0.padding", "sequence3.0.output_padding",
        "sequence4.0.padding", "sequence4.0.output_padding", "output.padding")

# k -> (down padding, up padding, up output_padding, last conv padding); None: no solution.
EXPECTED = {1: (0, 0, 1, 0), 3: (1, 1, 1, 1), 5: (2, 2, 1, 2), 7: (3, 3, 1, 3)}


def filled(down: int, up: int, out_pad: int, last: int) -> str:
    """The open spec with its `?` filled in (each block's `?` is the same in both calls here)."""
    text = OPEN.read_text()
    text = text.replace("stride=2, padding=?) -> batchnorm", f"stride=2, padding={down}) -> batchnorm")
    text = text.replace("padding=?, output_padding=?", f"padding={up}, output_padding={out_pad}")
    return text.replace("conv(NC, k, padding=?)", f"conv(NC, k, padding={last})")


@pytest.mark.parametrize("k", sorted(EXPECTED))
def test_odd_kernels_have_one_solution_and_torch_agrees(k: int) -> None:
    res = netdsl.solve(OPEN, k=k)
    assert [h.key for h in res.holes] == list(KEYS)
    assert res.status == "unique"
    down, up, op, last = EXPECTED[k]
    assert res.solutions == [(down, down, up, op, up, op, last)]
    spec = filled(down, up, op, last)
    for h, w in ((4, 4), (8, 12), (32, 32), (36, 20)):  # any multiple of 4, not only the default
        model = netdsl.build(spec, k=k, H=h, W=w, NF=3, NC=5)
        seen = {}
        hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n, seen=seen: seen.__setitem__(n, o.shape[1:]))
                 for n in ("sequence1", "sequence2", "sequence3", "sequence4", "output")]
        model.eval()(torch.zeros(1, 1, h, w))
        for hk in hooks:
            hk.remove()
        assert seen == {"sequence1": (3, h // 2, w // 2), "sequence2": (6, h // 4, w // 4),
                        "sequence3": (3, h // 2, w // 2), "sequence4": (5, h, w), "output": (5, h, w)}


@pytest.mark.parametrize("k", [2, 4, 6])
def test_even_kernels_cannot_keep_the_last_conv(k: int) -> None:
    res = netdsl.solve(OPEN, k=k)
    assert res.status == "none"
    assert res.failed_at == "output"
    # Everything before the last conv has exactly one answer: padding k/2 - 1, output_padding 0.
    p = k // 2 - 1
    assert res.partial == [dict(zip(KEYS[:6], (p, p, p, 0, p, 0)))]
    # The stride-1 conv gives H + 2p - k + 1: odd kernels only.
    assert res.near_misses and all(list(m[0]) == ["output.padding"] for m in res.near_misses)


def test_seed_question4_answers_break_pytorchs_rule() -> None:
    # The write-up: k=4 -> convT padding 2, output_padding 2; k=5 -> 3, 3 (convs: 1 and 2).
    for k, down, up in ((4, 1, 2), (5, 2, 3)):
        with pytest.raises(NetdslError) as e:
            netdsl.shapes(filled(down, up, up, k // 2), k=k)
        assert "output_padding" in e.value.message and "smaller than stride" in e.value.message
    for k, p in ((4, 2), (5, 3)):  # and PyTorch itself refuses them
        with pytest.raises(RuntimeError, match="output padding must be smaller"):
            torch.nn.ConvTranspose2d(2, 2, k, stride=2, padding=p, output_padding=p)(torch.zeros(1, 2, 8, 8))
    # Their sizes would even be right: (H-1)*2 - 2p + k + op = 2H for p = op = k - 2. PyTorch forbids op >= 2.
    # netdsl's answers for those kernels are different (k=5) or none (k=4, the last conv).
    assert netdsl.solve(OPEN, k=5).solutions == [(2, 2, 2, 1, 2, 1, 2)]


SEVERAL = """net S(C = 3)
input x: [1, H = 16, W = 16] where H % 8 == 0, W % 8 == 0
y: [C, H/4, W/4] = x |> conv(C, 4, stride=4, padding=?)
output = y
"""


def test_several_solutions_are_all_listed_and_all_work() -> None:
    res = netdsl.solve(SEVERAL)
    assert res.status == "several"
    assert res.solutions == [(0,), (1,)]
    for (p,) in res.solutions:
        for h in (8, 16, 24):
            m = netdsl.build(SEVERAL.replace("?", str(p)), H=h, W=h)
            assert tuple(m(torch.zeros(1, 1, h, h)).shape[1:]) == (3, h // 4, h // 4)


def test_pooling_padding_is_bounded_by_pytorch() -> None:
    spec = """net P(C = 2)
input x: [C, H = 16, W = 16] where H % 2 == 0, W % 2 == 0
y: [C, H/2 + 1, W/2 + 1] = x |> maxpool(2, padding=?)
output = y
"""
    res = netdsl.solve(spec)
    assert res.holes[0].high == 1 and "kernel // 2" in res.holes[0].rule
    assert res.solutions == [(1,)]


def test_nothing_open() -> None:
    res = netdsl.solve(ROOT / "specs/conv_transpose.net")
    assert res.status == "nothing to solve" and res.solutions == [()]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("solve", *args)


def test_cli_exit_status_and_json() -> None:
    r = _cli("specs/conv_transpose_open.net", "--set", "k=5", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["status"] == "unique" and rep["values"]["k"] == 5
    assert rep["solutions"] == [dict(zip(KEYS, (2, 2, 2, 1, 2, 1, 2)))]
    assert rep["holes"][0]["line"] == 9 and rep["holes"][0]["statement_line"] == 12
    r = _cli("specs/conv_transpose_open.net", "--set", "k=4")
    assert r.returncode == 1
    assert "no solution" in r.stdout and "output.padding=1 gives [24, H - 1, W - 1]" in r.stdout
    r = _cli("specs/conv_transpose.net", "--set", "k=4")  # that spec fixes k == 3
    assert r.returncode == 2 and "conv_transpose.net:6:" in r.stderr


BAD = [
    # An annotation that is never an integer under the assumptions.
    ("y: [C, H/3, W/2] = x |> conv(C, 3, stride=2, padding=?)", "3:8", "not an integer"),
    # An annotation no open argument can reach: the channels are fixed by conv(C, ...).
    ("y: [2*C, H/2, W/2] = x |> conv(C, 3, stride=2, padding=?)", "3:5", "can never hold"),
    # No open argument at all and a wrong annotation.
    ("y: [C, H, W/2] = x |> conv(C, 3, stride=2, padding=1)", "3:8", "can never hold"),
]


@pytest.mark.parametrize("line, where, message", BAD)
def test_bad_annotations_are_located_errors(line: str, where: str, message: str, tmp_path: Path) -> None:
    spec = tmp_path / "bad.net"
    spec.write_text(f"net B(C = 3)\ninput x: [1, H = 16, W = 16] where H % 4 == 0, W % 4 == 0\n{line}\noutput = y\n")
    r = _cli(str(spec))
    assert r.returncode == 2, r.stdout
    assert r.stderr.startswith(f"{spec}:{where}: error: "), r.stderr
    assert message in r.stderr


def test_max_value_is_checked() -> None:
    r = _cli("specs/conv_transpose_open.net", "--max-value", "5000")
    assert r.returncode == 2 and "--max-value" in r.stderr
    res = netdsl.solve(OPEN, k=7, max_value=2)  # padding 3 is needed: out of the searched range
    assert res.status == "none"


# --- open arguments inside graph blocks --------------------------------------------------------

RES_OPEN = """net ResOpen(C = 8, k: odd = 3)
input x: [3, H = 16, W = 16] where H % 2 == 0, W % 2 == 0

block basic(c, s = 1) {
  input x
  main = x |> conv(c, k, stride=s, padding=?) -> relu -> conv(c, k, padding=?)
  skip = x |> conv(c, 1, stride=s)
  output = add(main, skip) |> relu
}

stem: [C, H, W] = x |> conv(C, k, padding=k//2)
a: [C, H, W] = stem |> basic(C)
b: [2*C, H/2, W/2] = a |> basic(2*C, 2)
output = b |> conv(4, 1)
"""


def _res_filled(k: int, pa: tuple[int, int], pb: tuple[int, int]) -> str:
    """The same network with each call's paddings as block arguments: what torch checks."""
    text = RES_OPEN.replace("block basic(c, s = 1)", "block basic(c, s = 1, p1 = 0, p2 = 0)")
    text = text.replace("stride=s, padding=?)", "stride=s, padding=p1)").replace("conv(c, k, padding=?)",
                                                                                 "conv(c, k, padding=p2)")
    text = text.replace("basic(C)", f"basic(C, 1, {pa[0]}, {pa[1]})").replace("basic(2*C, 2)",
                                                                               f"basic(2*C, 2, {pb[0]}, {pb[1]})")
    return text.replace("k: odd = 3", f"k: odd = {k}")


def _torch_keeps_shapes(text: str) -> bool:
    """Built by netdsl and run by torch at several even sizes: every call's add works and a, b
    have their annotated shapes."""
    try:
        model = netdsl.build(text)
    except NetdslError:
        return False
    seen: dict[str, tuple[int, ...]] = {}
    for name in ("a", "b"):
        model.get_submodule(name).register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, tuple(o.shape)))
    for h, w in ((16, 16), (8, 12), (20, 36)):
        try:
            model(torch.zeros(1, 3, h, w))
        except RuntimeError:  # the add's shapes differ
            return False
        if seen["a"] != (1, 8, h, w) or seen["b"] != (1, 16, h // 2, w // 2):
            return False
    return True


@pytest.mark.parametrize("k", [3, 5])
def test_open_arguments_inside_graph_blocks_match_torch(k: int) -> None:
    res = netdsl.solve(RES_OPEN, k=k, max_value=2 * k)
    # each call of the block opens its own `?`, named by the module its layer becomes
    assert [h.key for h in res.holes] == ["a.main.0.padding", "a.main.2.padding", "b.main.0.padding",
                                          "b.main.2.padding"]
    model = netdsl.build(_res_filled(k, (k // 2, k // 2), (k // 2, k // 2)))
    names = dict(model.named_modules())
    assert all(h.layer in names for h in res.holes)
    found = set(res.solutions)
    assert found and res.status == "several"
    # torch as the oracle over the whole searched box of each call (the two calls are independent
    # given a's annotation, so a's box with b at a solution, and b's box with a at one)
    a0, b0 = res.solutions[0][:2], res.solutions[0][2:]
    box = range(0, 2 * k + 1)
    for p in itertools.product(box, box):
        assert _torch_keeps_shapes(_res_filled(k, p, b0)) == ((*p, *b0) in found), p
        assert _torch_keeps_shapes(_res_filled(k, a0, p)) == ((*a0, *p) in found), p


def test_too_many_combinations_inside_one_block_call_is_an_error() -> None:
    text = RES_OPEN.replace("output = add(main, skip) |> relu",
                            "output = add(main, skip) |> conv(c, 1, padding=?) -> conv(c, 1, padding=?)"
                            " -> conv(c, 1, padding=?) -> conv(c, 1, padding=?)")
    with pytest.raises(NetdslError, match="too many combinations"):
        netdsl.solve(text, max_value=40)
