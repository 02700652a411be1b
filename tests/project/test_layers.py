"""netdsl's modules import one way: each layer only from itself and the layers below, no cycles,
and the symbolic front (parse, count, solve, --help) never imports torch.

The layers, lowest first (a module belongs to the longest prefix that names it):
    1 lang      errors, symbolic, values, limits, intexpr, parsing, parse_tree, parse_tables, ir, files
    2 ops       ops.*
    3 compiler  passes.*, concrete, freeze
    4 editor    editor.* (the language server's analysis, the formatter, the lexer: no torch)
    5 backends  backends.*, weights, weights_match, importers.*
    6 tasks     tasks.*
    7 top       netdsl (the package), api, commands.*, cli
Every import counts: top level, inside a function, and under TYPE_CHECKING (a type-only import
of a higher layer is still a dependency on it, and a cycle hidden there is still a cycle).
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from import_graph import ROOT, Import, all_imports, cycles, graph, groups, modules, shortest_cycle

LAYERS: dict[str, tuple[str, ...]] = {
    "lang": ("netdsl.errors", "netdsl.symbolic", "netdsl.values", "netdsl.limits", "netdsl.intexpr",
             "netdsl.parsing", "netdsl.parse_tree", "netdsl.parse_tables", "netdsl.ir", "netdsl.ir_expr",
             "netdsl.files"),
    "ops": ("netdsl.ops",),
    "compiler": ("netdsl.passes", "netdsl.concrete", "netdsl.freeze"),
    "editor": ("netdsl.editor",),
    "backends": ("netdsl.backends", "netdsl.weights", "netdsl.weights_match", "netdsl.importers"),
    "tasks": ("netdsl.tasks",),
    "top": ("netdsl", "netdsl.api", "netdsl.commands", "netdsl.cli"),
}
RANK = {layer: i for i, layer in enumerate(LAYERS)}
# Layers that may import torch at module level; the top layer only inside functions (lazily).
TORCH_LAYERS = ("backends", "tasks")


def layer_of(module: str) -> str | None:
    """The layer of the longest prefix naming `module`; `netdsl` itself names only the package."""
    best: tuple[int, str] | None = None
    for layer, prefixes in LAYERS.items():
        for p in prefixes:
            covers = module == p or (p != "netdsl" and module.startswith(p + "."))
            if covers and (best is None or len(p) > best[0]):
                best = (len(p), layer)
    return best[1] if best else None


def _where(imp: Import) -> str:
    kind = "in a function" if imp.in_function else "type-only" if imp.type_only else "top level"
    return f"{imp.source}:{imp.line} ({kind})"


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in modules() if layer_of(m) is None)
    assert not missing, "modules in no layer (add them to LAYERS, or move them):\n  " + "\n  ".join(missing)


def test_imports_go_down_the_layers() -> None:
    bad = []
    for imp in all_imports():
        if not imp.own:
            continue
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if src is not None and dst is not None and RANK[dst] > RANK[src]:
            bad.append(f"{_where(imp)} [{src}] imports {imp.target} [{dst}]")
    assert not bad, f"{len(bad)} imports go up the layers:\n  " + "\n  ".join(sorted(bad))


def test_no_import_cycles() -> None:
    edges = graph(all_imports(), modules())
    found = groups(edges)
    shown = [f"{', '.join(g)}\n    e.g. " + " -> ".join([*c, c[0]]) for g in found for c in [shortest_cycle(g, edges)]]
    assert not found, f"{len(found)} groups of modules import each other in a cycle:\n  " + "\n  ".join(shown)


def test_torch_only_where_the_layers_allow() -> None:
    """A module in no layer is reported by `test_every_module_has_a_layer`, not here."""
    bad = []
    for imp in all_imports():
        if imp.top != "torch" or imp.type_only:
            continue
        layer = layer_of(imp.source)
        if layer is None or layer in TORCH_LAYERS or (layer == "top" and imp.in_function):
            continue
        bad.append(f"{_where(imp)} [{layer}] imports {imp.target}")
    assert not bad, "torch imported outside backends/io and tasks (the top layer: only inside a function):\n  " + \
        "\n  ".join(sorted(bad))


def test_layer_map_reads_packages_and_relative_imports() -> None:
    assert layer_of("netdsl") == "top" and layer_of("netdsl.api") == "top"
    assert layer_of("netdsl.ops.conv") == "ops" and layer_of("netdsl.passes") == "compiler"
    assert layer_of("netdsl.weights_match") == "backends" and layer_of("netdsl.weightsx") is None
    assert layer_of("netdsl.irx") is None and layer_of("netdsl.tasks.detect.loss") == "tasks"
    edges = graph(all_imports(), modules())
    assert "netdsl.ops.base" in edges["netdsl.ops"]  # `from netdsl.ops.base import ...` in a package
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# What must run with torch unimportable: the symbolic API, and every command's --help and the
# symbolic commands (`netdsl --help` lists every command, so it imports every command module).
BLOCK_TORCH = "import sys\nsys.modules['torch'] = None  # any import of torch now raises ImportError\n"
NO_TORCH_API = BLOCK_TORCH + (
    "import netdsl\n"
    "netdsl.parse('specs/unet.net'); netdsl.parse(open('specs/unet.net').read())\n"
    "netdsl.shapes('specs/unet.net'); netdsl.count('specs/unet.net')\n"
    "netdsl.solve('specs/conv_transpose_open.net', k=5)\n"
)
NO_TORCH_COMMANDS = [
    ["--help"], ["build", "--help"], ["count", "--help"], ["solve", "--help"], ["train", "--help"],
    ["detect", "--help"], ["export", "--help"], ["import", "--help"],
    ["count", "specs/unet.net"], ["count", "specs/unet.net", "--json"],
    ["solve", "specs/conv_transpose_open.net", "--set", "k=5"],
    ["fmt", "--help"], ["lsp", "--help"],
]


def test_api_never_imports_torch() -> None:
    r = subprocess.run([sys.executable, "-c", NO_TORCH_API], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("argv", NO_TORCH_COMMANDS, ids=" ".join)
def test_command_never_imports_torch(argv: list[str]) -> None:
    code = BLOCK_TORCH + "from netdsl.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    r = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_count_loads_no_other_command() -> None:
    """Every command line builds the whole parser, so a command's flags module must stay light:
    `netdsl count` loads no training task, no image or YAML reader and no numpy."""
    code = ("import sys\nfrom netdsl.cli import main\nstatus = main(['count', 'specs/unet.net'])\n"
            "heavy = sorted(m for m in sys.modules if m.startswith(('netdsl.tasks', 'netdsl.backends', 'netdsl.files'))"
            " or m in ('numpy', 'yaml', 'PIL'))\nprint('HEAVY', heavy)\nsys.exit(status)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout, r.stdout.splitlines()[-1]
