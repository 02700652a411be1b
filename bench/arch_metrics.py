"""The architecture's figures, read from the source: modules over 400 lines, functions over 60
lines, import cycles, imports inside functions (all, and netdsl's own), README lines.

    python bench/arch_metrics.py [PACKAGE_DIR]   (default: netdsl; another checkout's for "before")

The before/after table of a restructuring quotes these; the import graph is the one
`tests/project/test_layers.py` checks (`tests/import_graph.py`).
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from import_graph import all_imports, cycles, graph, modules  # noqa: E402

MODULE_LINES = 400
FUNCTION_LINES = 60


def lines(path: Path) -> int:
    return path.read_text(encoding="utf-8").count("\n")


def long_functions(path: Path, root: Path) -> list[tuple[int, str]]:
    """(length, `path:line name`) of each function or method over FUNCTION_LINES, nested ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
            n = node.end_lineno - node.lineno + 1
            if n > FUNCTION_LINES:
                out.append((n, f"{path.relative_to(root)}:{node.lineno} {node.name}"))
    return out


def report(package: Path) -> list[str]:
    """The figures for `package` (a directory); the README is the one beside it."""
    root = package.parent
    mods = modules(package)
    big = sorted(((lines(p), str(p.relative_to(root))) for p in mods.values() if lines(p) > MODULE_LINES), reverse=True)
    longf = sorted((f for p in mods.values() for f in long_functions(p, root)), reverse=True)
    imps = all_imports(package)
    # one statement may import several modules (`from pkg import a, b`): count statements
    inner = {(i.source, i.line): i.own for i in imps if i.in_function}
    found = cycles(graph(imps, mods))
    readme = root / "README.md"
    out = [f"modules over {MODULE_LINES} lines: {len(big)}"]
    out += [f"  {n} {name}" for n, name in big]
    out.append(f"functions over {FUNCTION_LINES} lines: {len(longf)}")
    out += [f"  {n} {name}" for n, name in longf]
    out.append(f"imports inside functions: {len(inner)}, of which netdsl's own: {sum(inner.values())}")
    out.append(f"import cycles (groups of modules): {len(found)}")
    out += ["  " + " -> ".join([*c, c[0]]) for c in found]
    out.append(f"README lines: {lines(readme) if readme.is_file() else 0}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("package", nargs="?", default=str(ROOT / "netdsl"), help="the package directory (default: netdsl)")
    print("\n".join(report(Path(ap.parse_args().package).resolve())))


if __name__ == "__main__":
    main()
