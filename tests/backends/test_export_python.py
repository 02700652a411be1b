"""`netdsl export SPEC --to python`: one standalone, readable file per spec.

For every shipped spec (and a few made-up ones for what they do not show: several inputs and
outputs, sizes as constructor arguments, Python keywords as names, `@freeze`, nested blocks,
`--freeze-bn eval`), the file is generated here and then, in a fresh process (one per group of
four cases, see `Exports`) that cannot import netdsl (`python -I -S`, torch's site-packages put
on the path by hand, `netdsl` blocked), each class is built, the compiled module's state_dict
loads into it with `strict=True`, its outputs equal the compiled module's in train and eval
mode, and `torch.fx.symbolic_trace` traces it (the traced module gives the same outputs). Changing constructor arguments gives the
module netdsl compiles with `--set` of the same values.

To keep this fast, both sides are built on the meta device and given the same made-up weights
(`_recipe`: a fixed formula per state_dict entry, sent as keys and shapes, not as tensors).
"""
from __future__ import annotations

import ast
import doctest
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sympy as sp
import torch

import netdsl.backends.python_source as python_source
import netdsl.backends.python_source.expr as python_source_expr
from netdsl.api import analyse_text, compile_spec, load
from netdsl.backends.python_source import to_python_source
from netdsl.backends.python_source.analyse import Analysis
from netdsl.backends.python_source.expr import Unprintable, python_expr
from netdsl.backends.torch_module import to_module
from netdsl.cli import main
from netdsl.errors import NetdslError
from netdsl.freeze import Freeze, as_freeze

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*ROOT.glob("specs/*.net"), *ROOT.glob("specs/zoo/*.net")])
OPEN = "conv_transpose_open"  # its paddings are left open (`?`): solve fills them, export refuses

EXTRA = {
    # Two inputs (an image and features), two outputs, a frozen statement, a linear layer whose
    # input size depends on H and W (so they are constructor arguments).
    "multi": """net Multi(C = 4, F = 6)
input x: [2, H = 12, W = 10] where H % 2 == 0
input v: [F]
a = x |> conv(C, 3, stride=2) -> relu
@freeze b = a |> conv(C, 1) -> batchnorm
s = add(a, b)
output img = s |> flatten -> fc: linear(5)
output vec = v |> linear(3) -> relu -> dropout(0.3)
""",
    # Python keywords and the file's own names as parameters, the file's names as tensors.
    "keywords": """net Kw(lambda = 4, nn = 2, frozen = 5)
input self: [1, H = 8, W = 8]
torch = self |> conv(lambda, 3, padding=1) -> relu
super = torch |> conv(nn, 1) -> dropout(0.2)
output = cat(super, torch) |> conv(frozen, 1)
""",
    # Graph blocks inside graph blocks, a net parameter read in a block, a structural block
    # argument, a frozen block call, labels, ceil-mode pooling and a size-dependent linear layer.
    "nested": """net Nest(C = 8, k: odd = 3)
input x: [3, H = 16, W = 16]
block unit(c) {
  input t
  y = t |> conv(c, k, padding=k//2) -> relu
  output = add(t, y)
}
block stage(c, n) {
  input t
  a = t |> conv(c, 1)
  output = a |> unit(c) * n
}
s1 = x |> stage(C, 2) @freeze
s2 = s1 |> stage(2*C, 1)
output = s2 |> g: stage(C, 1) -> avgpool(3, stride=2, ceil_mode=true) -> flatten -> linear(10)
""",
    # Every op and argument kind the shipped specs leave out: pairs, pads, -0.5 and min/max,
    # bilinear, no-affine and 1-d BatchNorm, softmax; a ceil-mode pooling whose size is a
    # piecewise formula of H (so H, W are constructor arguments and their change is checked).
    "ops": """net Ops(NF = 6, k = 3, P = 1)
input x: [3, H = 20, W = 18]
a = x |> conv(NF, (k, 1), padding=(k//2, 0)) -> batchnorm(affine=false) -> gelu(approximate="tanh")
b = a |> pad(1, 2, P, 0) -> maxpool(3, stride=2, ceil_mode=true) -> conv(max(NF, 8), 1, bias=false) -> identity
c = b |> avgpool(2, padding=1, count_include_pad=false) -> upsample(2, mode="bilinear", align_corners=true)
d = c |> pad(1, value=-0.5) -> adaptive_maxpool(2, 3) -> flatten -> linear(NF*2, bias=false) -> batchnorm
output out = d |> softmax(dim=1) -> log_softmax -> dropout(0.25) -> linear(4)
output side = x |> maxpool(2, stride=3, padding=1, ceil_mode=true) -> flatten -> linear(3)
""",
    # `--freeze stem --freeze-bn eval`: the frozen BatchNorm stays in eval mode in training.
    "frozen_bn": """net FrozenBN(C = 4)
input x: [3, H = 8, W = 8]
stem = x |> conv(C, 3, padding=1, bias=false) -> batchnorm -> relu
output = stem |> conv(2, 1) -> batchnorm
""",
}
FREEZE = {"frozen_bn": as_freeze("stem", "eval")}
CASES = [p.stem for p in SHIPPED if p.stem != OPEN] + list(EXTRA)
SEED = {"pool_upsample", "conv_transpose", "unet"}


# --- run in the fresh process too (sent as source): torch only -----------------------------------

def _recipe(entries: list) -> dict:
    """Made-up weights, the same in every process: a fixed pattern per state_dict entry (cheap
    to make even for VGG's 100M-weight layer: a short sequence, shifted per entry, repeated)."""
    period = 65521  # prime: the repetition does not line up with channel strides
    base = (torch.frac(torch.arange(period, dtype=torch.float64) * 0.6180339887498949) - 0.5).float()
    out = {}
    for i, (key, shape, dtype) in enumerate(entries):
        n = 1
        for s in shape:
            n *= s
        dt = getattr(torch, dtype)
        if not dt.is_floating_point:
            out[key] = torch.full(shape, i % 5, dtype=dt)
            continue
        v = torch.roll(base, i * 7919).repeat(n // period + 1)[:n].to(dt)
        if key.endswith("running_var") or (len(shape) == 1 and key.endswith("weight")):
            v.mul_(0.5).add_(1.0)
        else:
            v.mul_((3.0 / (n // shape[0])) ** 0.5 if len(shape) > 1 else 0.2)
        out[key] = v.reshape(shape)
    return out


def _leaves(x: Any) -> list:
    if isinstance(x, (tuple, list)):
        return [y for item in x for y in _leaves(item)]
    return [x]


def _same(a: Any, b: Any) -> bool:
    la, lb = _leaves(a), _leaves(b)
    return len(la) == len(lb) and all(torch.equal(x, y) for x, y in zip(la, lb))


def _check(m: Any, data: dict) -> dict:
    """Load the compiled module's state_dict into `m` (strict), then outputs in train and eval
    mode, and the same through torch.fx; what `m` has frozen and which modules train."""
    res: dict = {"requires_grad": {k: p.requires_grad for k, p in m.named_parameters()}}
    m.load_state_dict(_recipe(data["entries"]), strict=True, assign=True)
    buffers = {k: v.clone() for k, v in m.named_buffers()}  # training-mode BatchNorm updates its statistics
    res["keys"] = list(m.state_dict())
    for mode in ("train", "eval"):
        m.train(mode == "train")
        res[f"training_{mode}"] = {k: x.training for k, x in m.named_modules() if k}
        m.load_state_dict(buffers, strict=False)
        torch.manual_seed(1)
        with torch.no_grad():
            res[mode] = _same(m(*data["inputs"]), data[mode])
        traced = torch.fx.symbolic_trace(m)
        m.load_state_dict(buffers, strict=False)
        torch.manual_seed(1)
        with torch.no_grad():
            res[f"fx_{mode}"] = _same(traced(*data["inputs"]), data[mode])
    return res


def _run_cases(folder: str, names: list) -> None:
    import importlib
    import traceback

    torch.set_num_threads(1)
    # netdsl may sit in the same site-packages as torch (an installed wheel, as in CI), so it is
    # blocked: with sys.modules["netdsl"] = None every import of it or its submodules fails.
    sys.modules["netdsl"] = None
    try:
        importlib.import_module("netdsl.backends")
        blocked = False
    except ImportError:
        blocked = True
    sys.path.insert(0, folder)
    results = {"netdsl_absent": blocked}
    for name in names:
        res: dict = {}
        try:
            mod = importlib.import_module(name)
            data = torch.load(f"{folder}/{name}.pt", weights_only=True)
            cls = getattr(mod, data["class"])
            with torch.device("meta"):
                m = cls()
            res.update(_check(m, data))
            res["variants"] = []
            for v in data["variants"]:
                with torch.device("meta"):
                    mv = cls(**v["kwargs"])
                out = {"shapes": {k: list(t.shape) for k, t in mv.state_dict().items()}}
                if "inputs" in v:
                    out.update(_check(mv, v))
                res["variants"].append(out)
        except Exception:
            res["error"] = traceback.format_exc()
        res["netdsl_modules"] = sorted(k for k, v in sys.modules.items() if k.startswith("netdsl") and v is not None)
        results[name] = res
    with open(f"{folder}/results.json", "w") as fh:
        json.dump(results, fh)


# --- this process --------------------------------------------------------------------------------

def _source(case: str) -> tuple[str, str | None]:
    if case in EXTRA:
        return EXTRA[case], None
    return load(next(p for p in SHIPPED if p.stem == case))


def _small(text: str, path: str | None, freeze: Freeze) -> tuple[dict[str, int], Any]:
    """The smallest of 32x32, 64x64 and the spec's own size that the spec takes, and its graph."""
    for sets in ({"H": 32, "W": 32}, {"H": 64, "W": 64}, {}):
        try:
            return sets, analyse_text(text, path, sets, freeze)
        except NetdslError:
            if not sets:
                raise
    raise AssertionError("unreachable")


def _compiled(text: str, path: str | None, sets: dict[str, int], freeze: Freeze,
              weights: bool = True, cg: Any = None) -> tuple[Any, Any, dict]:
    """The concrete graph and the compiled module (meta device, then `_recipe`'s weights loaded)."""
    if cg is None:
        cg = analyse_text(text, path, sets, freeze)
    with torch.device("meta"):
        model = to_module(cg)
    grads = {k: p.requires_grad for k, p in model.named_parameters()}
    entries = [(k, list(t.shape), str(t.dtype).split(".")[-1]) for k, t in model.state_dict().items()]
    if weights:
        model.load_state_dict(_recipe(entries), strict=True, assign=True)
    return cg, model, {"entries": entries, "requires_grad": grads}


def _expected(cg: Any, model: Any, record: dict) -> dict:
    """Inputs, and the compiled module's outputs and training flags in train and eval mode."""
    gen = torch.Generator().manual_seed(0)
    record["inputs"] = [torch.randn(2, *t.at, generator=gen) for t in cg.inputs]
    buffers = {k: v.clone() for k, v in model.named_buffers()}  # training-mode BatchNorm updates its statistics
    for mode in ("train", "eval"):
        model.train(mode == "train")
        model.load_state_dict(buffers, strict=False)
        record[f"training_{mode}"] = {k: x.training for k, x in model.named_modules() if k}
        torch.manual_seed(1)
        with torch.no_grad():
            out = model(*record["inputs"])
        assert all(torch.isfinite(t).all() for t in _leaves(out)), "made-up weights overflow"
        record[mode] = out
    return record


def _net_args(src: str, name: str) -> list[tuple[str, int]]:
    """The net class's constructor arguments and defaults, read from the generated file."""
    cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == name)
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = init.args.args[1:]
    return [(a.arg, ast.literal_eval(d)) for a, d in zip(args, init.args.defaults)]


def _variants(case: str, text: str, path: str | None, sets: dict[str, int], freeze: Freeze,
              src: str, cg: Any, full: bool) -> list[dict]:
    """Other constructor arguments, each checked against netdsl with `--set` of those values:
    every argument changed at once (to values the spec takes), and for the seed `NF = 8`."""
    values = cg.env.values
    args = _net_args(src, cg.name)
    spec_name = {a: (a if a in values else a.rstrip("_")) for a, _ in args}

    def valid(change: dict[str, int]) -> Any:
        try:
            return analyse_text(text, path, {**sets, **change}, freeze)
        except NetdslError:
            return None

    changes = {spec_name[a]: d + 2 for a, d in args}  # usually valid at once (k odd stays odd)
    if valid(changes) is None:
        changes = {}
        for arg, default in args:
            cand = next((c for c in (default + 2, 2 * default, default + 1, 5, 2, 1)
                         if c != default and valid({**changes, spec_name[arg]: c}) is not None), None)
            if cand is not None:
                changes[spec_name[arg]] = cand
    out = []
    for change in [changes] + ([{"NF": 8}] if case in SEED else []):
        cg2 = valid(change) if change else None
        if cg2 is None:
            continue
        cg2, model2, record = _compiled(text, path, {**sets, **change}, freeze, weights=full, cg=cg2)
        record["kwargs"] = {a: change[n] for a, n in spec_name.items() if n in change}
        record["shapes"] = {k: list(t.shape) for k, t in model2.state_dict().items()}
        if full:
            _expected(cg2, model2, record)
        out.append(record)
    return out


def _build(folder: Path, names: list[str]) -> dict[str, dict]:
    """The cases `names` generated and checked here, then run in one fresh process without netdsl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cases: dict[str, dict] = {}
    try:
        for case in names:
            text, path = _source(case)
            freeze = FREEZE.get(case, Freeze())
            sets, cg = _small(text, path, freeze) if case not in EXTRA else ({}, None)
            cg, model, record = _compiled(text, path, sets, freeze, cg=cg)
            src = to_python_source(cg)
            module = f"net_{case.replace('-', '_')}"
            (folder / f"{module}.py").write_text(src, encoding="utf-8")
            record["class"] = cg.name
            _expected(cg, model, record)
            full = sum(p.numel() for p in model.parameters()) < 2_000_000
            record["variants"] = _variants(case, text, path, sets, freeze, src, cg, full)
            torch.save(record, folder / f"{module}.pt")
            cases[case] = {"src": src, "name": cg.name, "module": module, "record": record}
    finally:
        torch.set_num_threads(threads)
    # -I: no environment, no user site, no script folder; -S: no site-packages (so no .pth puts
    # netdsl's checkout on the path): torch's own site-packages folder is added by hand.
    site = str(Path(torch.__file__).resolve().parent.parent)
    runner = "\n\n".join(["from __future__ import annotations", f"import sys\nsys.path.append({site!r})",
                          "import json\nimport torch",
                          *(inspect.getsource(f) for f in (_recipe, _leaves, _same, _check, _run_cases)),
                          "_run_cases(sys.argv[1], sys.argv[2:])"])
    (folder / "runner.py").write_text(runner + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-I", "-S", str(folder / "runner.py"), str(folder),
                           *(c["module"] for c in cases.values())], cwd=folder, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((folder / "results.json").read_text())
    assert results["netdsl_absent"], "the fresh process could import netdsl"
    for c in cases.values():
        c["result"] = results[c["module"]]
    return cases


# Cases are built in groups, each on first use and once for all of xdist's workers: a worker runs
# only a share of this file's tests, and building every case (the net's modules in this process,
# then a fresh process per group) took each worker two minutes. Four cases a group: the fresh
# process's start (importing torch) stays small beside the cases it runs.
GROUPS = [CASES[i:i + 4] for i in range(0, len(CASES), 4)]


class Exports:
    """`exported[case]`: the case's source, record and fresh-process result, its group built by the
    first worker that needs it (claimed by creating a folder, which only one process can do, and
    published by renaming a finished file); the others wait for the file, building unclaimed groups
    meanwhile."""

    def __init__(self, shared: Path, factory: pytest.TempPathFactory) -> None:
        self.shared, self.factory = shared, factory
        self.cases: dict[str, dict] = {}

    def __getitem__(self, case: str) -> dict:
        if case not in self.cases:
            k = next(k for k, group in enumerate(GROUPS) if case in group)
            self.cases.update(self._group(k))
        return self.cases[case]

    def _group(self, k: int) -> dict[str, dict]:
        if not self._claim(k):
            return self._wait(self.shared / f"group{k}.pt")
        return self._group_claimed(k)

    def _group_claimed(self, k: int) -> dict[str, dict]:
        try:
            cases: dict[str, Any] = _build(self.factory.mktemp(f"export_python{k}"), GROUPS[k])
        except BaseException as e:  # the waiting workers fail with it too, rather than time out
            cases = {"error": f"building {GROUPS[k]} failed: {e!r}"}
            raise
        finally:
            torch.save(cases, self.shared / f"group{k}.tmp")
            os.replace(self.shared / f"group{k}.tmp", self.shared / f"group{k}.pt")
        return cases

    def _claim(self, k: int) -> bool:
        try:
            (self.shared / f"group{k}.claim").mkdir()
        except FileExistsError:
            return False
        return True

    def _wait(self, done: Path) -> dict[str, dict]:
        deadline = time.monotonic() + 900
        while not done.exists():
            # rather than wait idle, build a group no worker has claimed yet (this one may need it
            # later, or the other worker will find it ready)
            k = next((k for k in range(len(GROUPS)) if not (self.shared / f"group{k}.claim").exists()), None)
            if k is not None and self._claim(k):
                self.cases.update(self._group_claimed(k))
                continue
            assert time.monotonic() < deadline, f"{done} was never written"
            time.sleep(0.5)
        cases = torch.load(done, weights_only=False)  # written by this test run
        assert "error" not in cases, cases.get("error")
        return cases


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    """Every case, built when a test first reads it (see `Exports`)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' temporary folders share this run's parent
        shared = tmp_path_factory.getbasetemp().parent / "export_python_shared"
        shared.mkdir(exist_ok=True)
    else:
        shared = tmp_path_factory.mktemp("export_python_shared")
    return Exports(shared, tmp_path_factory)


@pytest.mark.parametrize("case", CASES)
def test_the_file_is_plain_python_that_imports_only_torch(case: str, exported: Exports) -> None:
    c = exported[case]
    src = c["src"]
    compile(src, f"{c['module']}.py", "exec")  # the test compiles it; the package never does
    tree = ast.parse(src)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [ast.unparse(n) for n in imports] == ["import torch", "from torch import nn"]
    assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree) if n not in imports)
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert classes.count(c["name"]) == 1 and classes[-1] == c["name"]
    assert all(isinstance(n, (ast.Expr, ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef)) for n in tree.body)
    lines = src.splitlines()
    assert max(len(ln) for ln in lines) <= 120
    assert not any(ln != ln.rstrip() or "\t" in ln for ln in lines)
    assert src.endswith("\n") and not src.endswith("\n\n")
    assert "# line " in src


@pytest.mark.parametrize("case", CASES)
def test_imports_without_netdsl_and_the_state_dict_loads_strictly(case: str, exported: Exports) -> None:
    c = exported[case]
    res = c["result"]
    assert "error" not in res, res["error"]
    assert res["netdsl_modules"] == []
    assert res["keys"] == [k for k, _, _ in c["record"]["entries"]]  # the same keys in the same order


@pytest.mark.parametrize("case", CASES)
def test_outputs_are_identical_in_train_and_eval_mode(case: str, exported: Exports) -> None:
    res = exported[case]["result"]
    assert "error" not in res, res["error"]
    assert res["train"] and res["eval"]


@pytest.mark.parametrize("case", CASES)
def test_torch_fx_traces_it(case: str, exported: Exports) -> None:
    res = exported[case]["result"]
    assert "error" not in res, res["error"]
    assert res["fx_train"] and res["fx_eval"]


@pytest.mark.parametrize("case", CASES)
def test_frozen_parameters_and_training_modes_are_the_compiled_modules(case: str, exported: Exports) -> None:
    c = exported[case]
    res, rec = c["result"], c["record"]
    assert "error" not in res, res["error"]
    assert res["requires_grad"] == rec["requires_grad"]
    assert res["training_train"] == rec["training_train"] and res["training_eval"] == rec["training_eval"]


@pytest.mark.parametrize("case", CASES)
def test_constructor_arguments_give_the_module_of_set(case: str, exported: Exports) -> None:
    c = exported[case]
    res = c["result"]
    assert "error" not in res, res["error"]
    variants = c["record"]["variants"]
    assert len(res["variants"]) == len(variants)
    for got, want in zip(res["variants"], variants):
        assert got["shapes"] == want["shapes"], want["kwargs"]
        if "inputs" in want:
            assert got["keys"] == list(want["shapes"])
            assert got["train"] and got["eval"] and got["fx_train"] and got["fx_eval"], want["kwargs"]


def test_every_shipped_spec_but_the_open_one_is_a_case() -> None:
    assert {p.stem for p in SHIPPED} == {*CASES, OPEN} - set(EXTRA)
    assert {"unet", "residual", "yolov3", "yolov3-tiny", "resnet18"} <= set(CASES)


def test_the_seed_unet_reads_like_the_seed(exported: Exports) -> None:
    src = exported["unet"]["src"]
    assert "def __init__(self, NIC: int = 1, NF: int = 32, NC: int = 24, k: int = 3) -> None:" in src
    assert "nn.Conv2d(NIC, NF, k, stride=2, padding=k // 2)," in src
    assert "nn.ConvTranspose2d(2 * NF, NC, k, stride=2, padding=k // 2, output_padding=1)," in src
    assert "sequence4 = self.sequence4(torch.cat((sequence3, sequence1), dim=1))" in src
    assert "# line 10: sequence1 = x |> down(NF)" in src
    variants = exported["unet"]["record"]["variants"]
    assert {"NF": 8} in [v["kwargs"] for v in variants]  # UNet(NF=8) is --set NF=8 (checked above)


def test_structure_is_written_at_its_values_and_said_so(exported: Exports) -> None:
    src = exported["yolov3-tiny"]["src"]
    assert "def __init__(self, NCLS: int = 80) -> None:" in src  # LEAKY, DARKNET_POOL decide the structure
    assert "Written at their values, since they decide the structure: LEAKY = 1, DARKNET_POOL = 1." in src
    assert "class Detect(nn.Module):" in src and "Detect(\n" in src


def test_graph_blocks_become_classes(exported: Exports) -> None:
    resnet = ast.parse(exported["resnet18"]["src"])
    assert [n.name for n in resnet.body if isinstance(n, ast.ClassDef)] == ["basic_down0", "basic_down1", "ResNet18"]
    yolo = exported["yolov3"]["src"]
    assert yolo.count("class res(") == 1 and "res(1024, c=1024)" in yolo
    dense = exported["densenet121"]["src"]
    assert "dense(2 * G + 64, G=G)," in dense  # the net's growth rate, passed on: symbolic
    multi = exported["multi"]["src"]
    assert "def __init__(self, C: int = 4, F: int = 6, H: int = 12, W: int = 10) -> None:" in multi
    assert "frozen(nn.Conv2d(C, C, 1))" in multi


def test_names_are_renamed_where_python_needs_it(exported: Exports) -> None:
    src = exported["keywords"]["src"]
    assert "def __init__(self, lambda_: int = 4, nn_: int = 2, frozen_: int = 5) -> None:" in src
    assert "self.torch = nn.Sequential(" in src and "torch_ = self.torch(self_)" in src


def test_a_python_keyword_as_a_tensor_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Registered by name and called through getattr (torch.fx cannot trace such a module: it
    # writes `self.for`; netdsl's compiled module has the same limit).
    text = "net Kw(C = 3)\ninput x: [1, H = 8, W = 8]\nfor = x |> conv(C, 3, padding=1)\noutput = for |> relu\n"
    src = to_python_source(analyse_text(text, None))
    assert 'self.add_module("for", nn.Conv2d(1, C, 3, padding=1))' in src and 'for_ = getattr(self, "for")(x)' in src
    (tmp_path / "kw_net.py").write_text(src, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import kw_net  # type: ignore[import-not-found]

    torch.manual_seed(0)
    ref = compile_spec(text, None, {})[1]
    ours = kw_net.Kw()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(ours(x), ref(x))


# --- the command ---------------------------------------------------------------------------------

def test_cli_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "u.py"
    assert main(["export", str(ROOT / "specs/unet.net"), "--to", "python", "-o", str(out), "--set", "NF=8"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    text, path = load(ROOT / "specs/unet.net")
    assert out.read_text(encoding="utf-8") == to_python_source(analyse_text(text, path, {"NF": 8}))
    assert "NF: int = 8" in out.read_text(encoding="utf-8")


def test_cli_default_output_is_named_after_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(ROOT / "specs/residual.net"), "--to", "python"]) == 0
    assert "class ResidualNet(nn.Module):" in (tmp_path / "residual.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("spec", [
    "net Bad(C = 4)\ninput x: [1, H = 8, W = 8]\noutput = x |> conv(C, 3, padding=\n",      # a syntax error
    "net Bad(C = 4)\ninput x: [1, H = 8, W = 8]\nforward = x |> relu\noutput = forward\n",  # torch's own name
    "net Bad(C = 3)\ninput x: [4, H = 8, W = 8]\noutput = x |> conv(C, 3, groups=2)\n",     # PyTorch refuses
    OPEN,                                                                                    # open arguments
], ids=["syntax", "name", "groups", "open"])
def test_cli_refuses_a_bad_spec_and_writes_nothing(spec: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / f"specs/{OPEN}.net" if spec == OPEN else tmp_path / "bad.net"
    if spec != OPEN:
        path.write_text(spec, encoding="utf-8")
    out = tmp_path / "bad.py"
    assert main(["export", str(path), "--to", "python", "-o", str(out)]) == 2
    assert "error" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.glob("*.py")) == []


# --- the pieces ----------------------------------------------------------------------------------

@pytest.mark.parametrize("module", [python_source, python_source_expr], ids=lambda m: m.__name__)
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 1 and result.failed == 0


def test_formulas_print_as_exact_integer_arithmetic() -> None:
    a, b = sp.Symbol("a", integer=True), sp.Symbol("b", integer=True)
    exprs = [sp.floor(a / 2), sp.floor((a - 3) / b) + 1, a / 2 - sp.Rational(1, 2), sp.ceiling((a + 1) / 3),
             sp.Mod(a, b), 2 * sp.Mod(a, 3) - sp.floor(a / 4), sp.Min(a, 2 * b) + sp.Max(a, -b), -a * b ** 2,
             3 * sp.floor(sp.floor(a / 2) / b), sp.floor(a / 2 - sp.Rational(3, 2)) * (sp.floor(b / 3) + 1),
             sp.Piecewise((a, a > b), (b - 1, True)) * 2, (a - b) * (a + 1) - 7, sp.floor(-a / 3),
             sp.factor(a / 2 - sp.Rational(1, 2)), sp.Rational(1, 3) * (a + 2) * b, (a ** 2 - a) / (2 * b)]
    for e in exprs:
        text = python_expr(e, {})
        code = compile(text, "<formula>", "eval")  # this test runs the printer's output; netdsl never does
        for va in range(-7, 8):
            for vb in [v for v in range(-5, 6) if v]:
                want = e.subs({a: va, b: vb})
                if not want.is_Integer:  # a/2 - 1/2: an integer only where the spec holds (a odd)
                    continue
                got = eval(code, {"__builtins__": {}, "min": min, "max": max}, {"a": va, "b": vb})
                assert got == int(want), (e, text, va, vb)
    assert python_expr(sp.floor(a / 2), {"a": "lambda_"}) == "lambda_ // 2"
    with pytest.raises(Unprintable):
        python_expr(sp.sqrt(a), {})


def test_formulas_under_the_specs_conditions_when_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Where the spec cannot be analysed without its `where` conditions (sizes nesting too deeply),
    # the formulas are those that hold under them: here (k - 1) // 2 for k // 2, k being odd.
    real = Analysis.analyse

    def no_plain(self: Any, kind: str, spec: Any, values: dict[str, int]) -> Any:
        if kind == "net" and not any(p.annotation for p in spec.params):
            raise NetdslError("the sizes nest too deeply")
        return real(self, kind, spec, values)

    monkeypatch.setattr(Analysis, "analyse", no_plain)
    text, path = load(ROOT / "specs/unet.net")
    src = to_python_source(analyse_text(text, path))
    assert "padding=(k - 1) // 2" in src
    (tmp_path / "unet_conditions.py").write_text(src, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import unet_conditions  # type: ignore[import-not-found]

    for sets in ({}, {"k": 5, "NF": 8}):
        torch.manual_seed(0)
        ref = compile_spec(text, path, sets)[1].eval()
        ours = unet_conditions.UNet(**sets).eval()
        ours.load_state_dict(ref.state_dict(), strict=True)
        x = torch.randn(2, 1, 32, 32)
        assert torch.equal(ours(x), ref(x))
