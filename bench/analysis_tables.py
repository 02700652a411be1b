"""The figures of the results page "Memory and receptive fields", computed, as Markdown tables.

1. The CS231n notes' VGG-16 table ("Case studies", "VGGNet in detail",
   https://cs231n.github.io/convolutional-networks/#case) beside `netdsl count
   specs/zoo/vgg16.net --json`: per row, the output volume and the kernel weights.
2. VGG-16's memory at 224x224 for one and two images: the CS231n and torchinfo estimates beside
   netdsl's exact `saved_bytes`, `peak_bytes`, `param_bytes` and `train_bytes` (fp32, and bf16
   autocast), what torch measures (autograd's saved tensors through `saved_tensors_hooks`; the
   live set of an eval forward through a `TorchDispatchMode` that follows storages by weak
   reference; bf16 with `--autocast`), and the saved bytes per op.
3. The receptive field of the last feature map and of every output, for the zoo and both YOLO
   specs (size, jump, start), and the pass's notes.
4. `fit`: the largest batch of ResNet-50 at 224 that trains with Adam in 24 GiB, and the largest
   square input of YOLOv3 that trains at batch 16 in 24 GiB.

The only numbers typed in are the published ones, labelled where they are printed: the CS231n
table's rows and totals as the notes write them. Everything else is computed here.

    python bench/analysis_tables.py [--only vgg,memory,rf,fit] [--no-torch] [--autocast]
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sympy as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl.concrete import ConcreteGraph  # noqa: E402
from netdsl.passes.memory_model import MemoryOptions, batch_symbol  # noqa: E402

VGG = "specs/zoo/vgg16.net"

# Cited: the CS231n table as the notes write it. (row, memory as written, its product, weights as
# written, its product). The products are exact; "3.2M", "800K" are the notes' rounding.
CS231N_ROWS: list[tuple[str, str, int, str, int]] = [
    ("INPUT [224x224x3]", "224*224*3=150K", 224 * 224 * 3, "0", 0),
    ("CONV3-64 [224x224x64]", "224*224*64=3.2M", 224 * 224 * 64, "(3*3*3)*64 = 1,728", 1728),
    ("CONV3-64 [224x224x64]", "224*224*64=3.2M", 224 * 224 * 64, "(3*3*64)*64 = 36,864", 36864),
    ("POOL2 [112x112x64]", "112*112*64=800K", 112 * 112 * 64, "0", 0),
    ("CONV3-128 [112x112x128]", "112*112*128=1.6M", 112 * 112 * 128, "(3*3*64)*128 = 73,728", 73728),
    ("CONV3-128 [112x112x128]", "112*112*128=1.6M", 112 * 112 * 128, "(3*3*128)*128 = 147,456", 147456),
    ("POOL2 [56x56x128]", "56*56*128=400K", 56 * 56 * 128, "0", 0),
    ("CONV3-256 [56x56x256]", "56*56*256=800K", 56 * 56 * 256, "(3*3*128)*256 = 294,912", 294912),
    ("CONV3-256 [56x56x256]", "56*56*256=800K", 56 * 56 * 256, "(3*3*256)*256 = 589,824", 589824),
    ("CONV3-256 [56x56x256]", "56*56*256=800K", 56 * 56 * 256, "(3*3*256)*256 = 589,824", 589824),
    ("POOL2 [28x28x256]", "28*28*256=200K", 28 * 28 * 256, "0", 0),
    ("CONV3-512 [28x28x512]", "28*28*512=400K", 28 * 28 * 512, "(3*3*256)*512 = 1,179,648", 1179648),
    ("CONV3-512 [28x28x512]", "28*28*512=400K", 28 * 28 * 512, "(3*3*512)*512 = 2,359,296", 2359296),
    ("CONV3-512 [28x28x512]", "28*28*512=400K", 28 * 28 * 512, "(3*3*512)*512 = 2,359,296", 2359296),
    ("POOL2 [14x14x512]", "14*14*512=100K", 14 * 14 * 512, "0", 0),
    ("CONV3-512 [14x14x512]", "14*14*512=100K", 14 * 14 * 512, "(3*3*512)*512 = 2,359,296", 2359296),
    ("CONV3-512 [14x14x512]", "14*14*512=100K", 14 * 14 * 512, "(3*3*512)*512 = 2,359,296", 2359296),
    ("CONV3-512 [14x14x512]", "14*14*512=100K", 14 * 14 * 512, "(3*3*512)*512 = 2,359,296", 2359296),
    ("POOL2 [7x7x512]", "7*7*512=25K", 7 * 7 * 512, "0", 0),
    ("FC [1x1x4096]", "4096", 4096, "7*7*512*4096 = 102,760,448", 102760448),
    ("FC [1x1x4096]", "4096", 4096, "4096*4096 = 16,777,216", 16777216),
    ("FC [1x1x1000]", "1000", 1000, "4096*1000 = 4,096,000", 4096000),
]
CS231N_TOTAL = "TOTAL memory: 24M * 4 bytes ~= 93MB / image (only forward! ~*2 for bwd)"
CS231N_FORWARD_MB, CS231N_VALUES_M = 93, 24  # as written
CS231N_PARAMS = "TOTAL params: 138M parameters"
TABLE_OPS = ("conv", "maxpool", "linear")  # the ops the table has rows for


def _vgg_counts() -> tuple[int, list[tuple[str, str, int, int, int]], dict[str, int]]:
    """VGG-16's numbers as `netdsl count specs/zoo/vgg16.net --json` gives them: the input's units,
    per layer (path, op, outputs, weights, parameters) at the values in use, and the totals."""
    c = netdsl.count(ROOT / VGG)

    def at(x: sp.Expr) -> int:
        return int(c.value(x))

    rows = [(row.name, row.op, at(c.layer_metric(row, "outputs")), at(c.layer_metric(row, "weights")),
             at(c.layer_metric(row, "parameters"))) for row in c.layers]
    totals = {m: at(c.total(m)) for m in ("weights", "parameters")}
    return math.prod(c.shapes.inputs[0].at), rows, totals


def _bytes(n: int) -> str:
    return f"{n:,} ({n / 1e6:.1f} MB, {n / 2 ** 20:.1f} MiB)"


def vgg_rows() -> list[str]:
    """The CS231n table beside netdsl's per-layer outputs and weights (weights without biases)."""
    x_units, layers, totals = _vgg_counts()
    lines = ["| CS231n row (cited) | memory (cited) | weights (cited) | netdsl layer | outputs | weights | |",
             "|---|---|---|---|---:|---:|---|"]
    netdsl_rows = [("input x", x_units, 0)] + [(f"`{n}` {op}", out, w) for n, op, out, w, _ in layers if op in TABLE_OPS]
    if len(netdsl_rows) != len(CS231N_ROWS):
        raise SystemExit(f"VGG-16 has {len(netdsl_rows)} table rows, the notes {len(CS231N_ROWS)}")
    for (label, mem_text, mem, w_text, w), (name, outputs, weights) in zip(CS231N_ROWS, netdsl_rows, strict=True):
        same = "=" if (outputs, weights) == (mem, w) else "differs"
        lines.append(f"| {label} | {mem_text} | {w_text} | {name} | {outputs:,} | {weights:,} | {same} |")
    rows_sum = sum(r[2] for r in CS231N_ROWS)
    lines += ["", "At 224x224 (the spec's defaults).",
              f"Sum of the table's memory column (its products): {rows_sum:,} values = {_bytes(4 * rows_sum)} "
              f"in fp32; the notes' total reads \"{CS231N_TOTAL}\" (cited).",
              f"netdsl: weights {totals['weights']:,} (the table's convention), parameters with biases "
              f"{totals['parameters']:,}; the notes: \"{CS231N_PARAMS}\" (cited).",
              "Rounded figures that differ from their product: " + _rounding(CS231N_ROWS) + "."]
    return lines


def _rounding(rows: list[tuple[str, str, int, str, int]]) -> str:
    """Each memory figure the notes abbreviate (150K, 3.2M) against its product to as many digits."""
    out = []
    for _, text, exact, _, _ in rows:
        if "=" not in text:
            continue
        shown = text.split("=")[1]
        scale = {"K": 10 ** 3, "M": 10 ** 6}[shown[-1]]
        digits = shown[:-1]
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        rounded = round(exact / scale, decimals)
        if f"{rounded:.{decimals}f}" != digits:
            out.append(f"{text} is {exact:,} (about {rounded:.{decimals}f}{shown[-1]})")
    return "; ".join(dict.fromkeys(out)) or "none"  # a figure the table repeats, once


def _expr(v: sp.Expr | int) -> sp.Expr:
    """A pass's figure as a SymPy expression (a constant may come as a plain int)."""
    return sp.Integer(v) if isinstance(v, int) else v


def _at(cg: ConcreteGraph, expr: sp.Expr, batch: int) -> int:
    """A memory formula (internal symbols and the batch symbol) at the values in use and `batch`."""
    value = cg.env.at(_expr(expr)).xreplace({batch_symbol(cg.env): batch})
    return int(value)


def _torchinfo(batch: int) -> dict[str, int]:
    """torchinfo's summary by its own rule (torchinfo/model_statistics.py): input bytes, plus twice
    the output bytes of every leaf layer that has parameters ("x2 for gradients"), plus the
    parameters' bytes; fp32."""
    x_units, layers, totals = _vgg_counts()
    outputs = sum(out for _, _, out, _, params in layers if params > 0)
    sizes = {"Input size": 4 * batch * x_units, "Forward/backward pass size": 2 * 4 * batch * outputs,
             "Params size": 4 * totals["parameters"]}
    sizes["Estimated Total Size"] = sum(sizes.values())
    return sizes


def memory_rows(args: argparse.Namespace) -> list[str]:
    """VGG-16 at 224x224: the estimates beside netdsl's exact bytes and torch's measurement."""
    from netdsl.passes.peak import peak_bytes
    from netdsl.passes.saved import saved_bytes
    from netdsl.passes.train_memory import buffer_bytes, param_bytes, train_bytes

    cg, opts, bf16 = netdsl.shapes(VGG), MemoryOptions(), MemoryOptions(dtype="bf16")
    n = batch_symbol(cg.env)
    exact: dict[str, sp.Expr] = {
        "saved_bytes": sp.Add(*saved_bytes(cg, n, opts)), "peak_bytes": peak_bytes(cg, n, opts).total,
        "param_bytes": param_bytes(cg, opts), "buffer_bytes": buffer_bytes(cg),
        "train_bytes (adam)": train_bytes(cg, n, opts)}
    autocast = {"saved_bytes, bf16 autocast": sp.Add(*saved_bytes(cg, n, bf16)),
                "train_bytes (adam), bf16 autocast": train_bytes(cg, n, bf16)}
    measured: dict[str, Callable[[int], int]] = {}
    if not args.no_torch:
        measured = {"saved_bytes": lambda b: torch_saved(VGG, b), "peak_bytes": lambda b: torch_peak(VGG, b)}
    if args.autocast:  # bf16 kernels are slow on most CPUs: one image only
        measured["saved_bytes, bf16 autocast"] = lambda b: torch_saved(VGG, b, bf16=True) if b == 1 else -1
    lines = ["| figure | formula | N = 1 | N = 2 | torch, N = 1 | torch, N = 2 |", "|---|---|---:|---:|---:|---:|"]
    for name, expr in {**exact, **autocast}.items():
        m = measured.get(name)
        got = [f"{v:,}" if v >= 0 else "" for v in (m(1), m(2))] if m else ["", ""]
        lines.append(f"| netdsl `{name}` | `{cg.env.show(expr)}` | {_at(cg, expr, 1):,} | {_at(cg, expr, 2):,} "
                     f"| {got[0]} | {got[1]} |")
    rows_sum = sum(r[2] for r in CS231N_ROWS)
    lines += ["", "| estimate | bytes, N = 1 | how |", "|---|---:|---|",
              f"| CS231n, forward (cited) | ~{CS231N_FORWARD_MB} MB | \"{CS231N_VALUES_M}M * 4 bytes\" |",
              f"| CS231n, forward and backward (cited) | ~{2 * CS231N_FORWARD_MB} MB | \"~*2 for bwd\" |",
              f"| CS231n's rows summed, x 4 bytes | {4 * rows_sum:,} | the table's memory column, computed |"]
    for name, size in _torchinfo(1).items():
        lines.append(f"| torchinfo {name} | {size:,} ({size / 1e6:.2f} MB) | by torchinfo's rule |")
    return lines + ["", _same_as_count(cg, exact), "", *_saved_by_op(cg, n)]


def _same_as_count(cg: ConcreteGraph, exact: dict[str, sp.Expr]) -> str:
    """The totals above are what `netdsl count --json` prints for them (`values.totals`)."""
    for batch in (1, 2):
        out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "count", VGG, "--json", "--set", f"N={batch}"],
                             cwd=ROOT, check=True, capture_output=True, text=True)
        totals = json.loads(out.stdout)["values"]["totals"]
        for name, expr in exact.items():
            key = name.split()[0]
            if totals[key] != _at(cg, expr, batch):
                raise SystemExit(f"count --json --set N={batch} gives {key} {totals[key]:,}, the pass {_at(cg, expr, batch):,}")
    return f"`netdsl count {VGG} --json --set N=1` (and `N=2`) prints the same totals under `values.totals`."


def _saved_by_op(cg: ConcreteGraph, n: sp.Symbol) -> list[str]:
    """Where the saved bytes go: per op, the layers' formulas summed (each storage charged once,
    to the first layer that saves it)."""
    from netdsl.passes.saved import saved_bytes

    by_op: dict[str, sp.Expr] = {}
    for item, expr in zip(cg.walk(), saved_bytes(cg, n, MemoryOptions()), strict=True):
        by_op[item.op.name] = by_op.get(item.op.name, sp.Integer(0)) + expr
    lines = ["| op | saved bytes (formula) | N = 1 |", "|---|---|---:|"]
    for op, expr in by_op.items():
        lines.append(f"| `{op}` | `{cg.env.show(expr)}` | {_at(cg, expr, 1):,} |")
    return lines


def _storage_key(t: Any) -> int:
    return int(t.untyped_storage().data_ptr())


def torch_saved(spec: str, batch: int, bf16: bool = False) -> int:
    """Bytes autograd saves in one training-mode forward: distinct storages, parameters and buffers
    excluded, as `saved_tensors_hooks` sees them; `bf16`: under `torch.autocast("cpu", bfloat16)`."""
    import torch
    from torch.autograd.graph import saved_tensors_hooks

    net = netdsl.build(spec, max_bytes=None).train()
    own = {_storage_key(p) for p in net.parameters()} | {_storage_key(b) for b in net.buffers()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if _storage_key(t) not in own:
            seen[_storage_key(t)] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(batch, *net.input_shape)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), saved_tensors_hooks(pack, lambda t: t):
        net(x)
    return sum(seen.values())


def torch_peak(spec: str, batch: int) -> int:
    """The largest total of live activation storages over an eval forward under no_grad, the input
    included, parameters and buffers excluded: every storage an aten op returns is followed by a
    weak reference until it is freed."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    net = netdsl.build(spec, max_bytes=None).eval()
    own = {_storage_key(p) for p in net.parameters()} | {_storage_key(b) for b in net.buffers()}
    x = torch.randn(batch, *net.input_shape)
    own.add(_storage_key(x))  # counted once, below, however many views of it an op returns
    live: dict[int, int] = {}
    peak = [x.untyped_storage().nbytes()]

    class Live(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                               kwargs: dict[str, Any] | None = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and _storage_key(t) not in own:
                    s = t.untyped_storage()
                    if id(s) not in live:
                        live[id(s)] = s.nbytes()
                        weakref.finalize(s, live.pop, id(s), None)
            peak[0] = max(peak[0], x.untyped_storage().nbytes() + sum(live.values()))
            return out

    with torch.no_grad(), Live():
        net(x)
    return peak[0]


def _pair(cg: ConcreteGraph, pair: tuple[sp.Expr, sp.Expr]) -> str:
    """(h, w) at the values in use: one number when both agree; fractions as a/b."""
    h, w = (cg.env.at(_expr(v)) for v in pair)
    return str(h) if h == w else f"{h}, {w}"


def _formula(cg: ConcreteGraph, pair: tuple[sp.Expr, sp.Expr]) -> str:
    """The formula, where it is one (a size that depends on the input): else empty."""
    shown = [cg.env.show(_expr(v)) for v in pair]
    if all(s.is_number for s in shown):
        return ""
    return f" (`{shown[0]}`)" if shown[0] == shown[1] else f" (`{shown[0]}`, `{shown[1]}`)"


def rf_specs() -> list[Path]:
    return sorted((ROOT / "specs" / "zoo").glob("*.net")) + [ROOT / "specs" / "yolov3-tiny.net",
                                                            ROOT / "specs" / "yolov3.net"]


def rf_rows() -> list[str]:
    """Per spec: the field of the last feature map (the last layer with a spatial output larger
    than 1x1: the map before global pooling, Distill's figure) and of each output, at the values
    in use, with the formula where it depends on the input size; then the pass's notes."""
    from netdsl.passes.receptive import receptive_fields

    lines = ["| network | input | last feature map | size | jump | start | outputs: size, jump, start | notes |",
             "|---|---|---|---:|---:|---:|---|---:|"]
    notes: list[str] = []
    for spec in rf_specs():
        cg = netdsl.shapes(spec)
        rf = receptive_fields(cg)
        maps = [(item, r) for item, r in zip(cg.walk(), rf.layers, strict=True)
                if r is not None and len(item.out_at) == 3 and tuple(item.out_at[1:]) != (1, 1)]
        item, deep = maps[-1]
        outs = "; ".join(f"{name}: {_pair(cg, r.size)}{_formula(cg, r.size)}, {_pair(cg, r.jump)}, {_pair(cg, r.start)}"
                         for name, r in rf.outputs.items())
        size = "x".join(str(v) for v in cg.inputs[0].at[1:])
        lines.append(f"| {spec.stem} | {size} | `{item.path}` {item.op.name} | {_pair(cg, deep.size)}"
                     f"{_formula(cg, deep.size)} | {_pair(cg, deep.jump)} | {_pair(cg, deep.start)} | {outs} "
                     f"| {len(rf.notes)} |")
        notes += [f"- {spec.stem}: {note}" for note in rf.notes]
    return lines + ["", "Notes from the pass:", "", *notes]


FIT_EXAMPLES: list[tuple[str, list[str]]] = [
    ("ResNet-50 at 224, Adam, 24 GiB: the largest batch",
     ["fit", "specs/zoo/resnet50.net", "--memory", "24GiB", "--for", "N", "--train", "--optimizer", "adam"]),
    ("YOLOv3 at batch 16, Adam, 24 GiB: the largest square input",
     ["fit", "specs/yolov3.net", "--memory", "24GiB", "--for", "H,W", "--train", "--set", "N=16"]),
]


def fit_rows() -> list[str]:
    """The `fit` examples, as `netdsl fit` prints them, and the boundary from its `--json`."""
    lines = []
    for title, args in FIT_EXAMPLES:
        cmd = [sys.executable, str(ROOT / "cli.py"), *args]
        text = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        lines += [f"**{title}**", "", "```text", f"$ netdsl {' '.join(args)}", (text.stdout or text.stderr).strip(), "```", ""]
        if text.returncode != 0:
            continue
        answer = json.loads(subprocess.run([*cmd, "--json"], cwd=ROOT, capture_output=True, text=True,
                                           check=True).stdout)
        solved = ", ".join(f"{k} = {answer[k]}" for k in answer["solve_for"])
        beyond = ", ".join(f"{k} = {v}" for k, v in answer["next"].items())
        lines += [f"`--json`: {solved}; `{answer['metric']}` = `{answer['solved']}` is {answer['at_answer']:,} bytes "
                  f"there and {answer['at_next']:,} at {beyond}; the budget is {answer['budget']:,}.", ""]
    return lines


SECTIONS: dict[str, tuple[str, Callable[[argparse.Namespace], list[str]]]] = {
    "vgg": ("VGG-16: the CS231n table and `netdsl count`", lambda args: vgg_rows()),
    "memory": ("VGG-16 at 224x224: estimates, exact bytes, torch", memory_rows),
    "rf": ("Receptive fields of the zoo and the YOLO specs", lambda args: rf_rows()),
    "fit": ("`fit`: the largest batch or input that fits", lambda args: fit_rows()),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    ap.add_argument("--no-torch", action="store_true", help="skip torch's measurements (VGG-16 at 224 takes seconds)")
    ap.add_argument("--autocast", action="store_true",
                    help="also measure what autograd saves under bf16 autocast (minutes on a CPU without bf16 units)")
    args = ap.parse_args()
    for key in args.only.split(","):
        if key not in SECTIONS:
            raise SystemExit(f"unknown section {key!r}: choose from {', '.join(SECTIONS)}")
        title, make = SECTIONS[key]
        print(f"## {title}\n")
        print("\n".join(make(args)))
        print()


if __name__ == "__main__":
    main()
