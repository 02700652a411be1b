"""netdsl's import graph read from the source (no module is imported): who imports whom, where.

`tests/project/test_layers.py` holds the graph to the layer map and asks for no cycles;
`bench/arch_metrics.py` prints the figures (cycles, imports inside functions) from the same reading.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "netdsl"


@dataclass(frozen=True)
class Import:
    """One import statement's edge: `source` imports `target` at `line`."""

    source: str
    target: str  # a netdsl module when it names one, else the name as written (`torch.nn`)
    line: int
    in_function: bool
    type_only: bool  # under `if TYPE_CHECKING:`: no runtime edge, but still a dependency

    @property
    def own(self) -> bool:
        return self.target == "netdsl" or self.target.startswith("netdsl.")

    @property
    def top(self) -> str:
        """The target's top-level package: `torch` for `torch.nn.functional`."""
        return self.target.split(".")[0]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their own name)."""
    return {module_name(p, package.parent): p for p in sorted(package.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool = False, type_only: bool = False) -> Iterator[tuple[ast.AST, bool, bool]]:
    """Every node under `node`, with whether it sits in a function and under TYPE_CHECKING."""
    for child in ast.iter_child_nodes(node):
        yield child, in_function, type_only
        inner_fn = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, inner_fn, True
                yield from _walk(stmt, inner_fn, True)
            for stmt in child.orelse:
                yield stmt, inner_fn, type_only
                yield from _walk(stmt, inner_fn, type_only)
        else:
            yield from _walk(child, inner_fn, type_only)


def _from_base(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The module a `from X import ...` reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = name.split(".") if is_package else name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str, path: Path, known: Iterable[str]) -> list[Import]:
    """The imports of module `name` (source file `path`); `known` is every netdsl module name."""
    known = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: list[Import] = []
    for node, in_fn, type_only in _walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, name, path.name == "__init__.py")
            # `from pkg import mod` imports the submodule; `from pkg import thing` reads pkg.
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs + ([base] if len(subs) < len(node.names) else [])
        else:
            continue
        out += [Import(name, t, node.lineno, in_fn, type_only) for t in targets]
    return out


def all_imports(package: Path = PACKAGE) -> list[Import]:
    mods = modules(package)
    return [imp for name, path in mods.items() for imp in imports(name, path, mods)]


def graph(imps: Iterable[Import], known: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the netdsl modules it imports (any import: top level, in a function, type-only)."""
    known = set(known)
    out: dict[str, set[str]] = {m: set() for m in known}
    for imp in imps:
        if imp.target in known and imp.target != imp.source:
            out[imp.source].add(imp.target)
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle (a -> ... -> a, listed without the repeat) per strongly connected group."""
    return [shortest_cycle(group, edges) for group in groups(edges)]


def groups(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def shortest_cycle(group: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    inside = set(group)
    start = group[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for v in frontier:
            for w in sorted(edges[v] & inside):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return group  # unreachable for a strongly connected group
