"""Which tensor of a state_dict goes where in a model: in order, and by name where both name alike.

A `.pt` from another program has other keys than the netdsl model it is loaded into (ultralytics'
`model.2.cv1.conv.weight` against `b2.cv1.0.weight`), so tensors pair in order. Order alone fails
where the original registers modules in an order a netdsl graph block cannot follow: ultralytics'
C3 registers `cv1, cv2, cv3, m` although cv3 reads m's result. `netdsl import` therefore names C3's
statements as ultralytics names its children, and the keys are compared as module trees: where a
module of the file and the model's module in its place have children of the same names, those
pair by name; elsewhere children pair in order, a module wrapping one module (ultralytics'
`model`, an nn.Sequential of one, which netdsl registers as its layer) is looked through, and a
subtree whose structure differs pairs its tensors in order. Where the two have different numbers
of children, consecutive runs of them with equal numbers of tensors pair as units (a YOLOv8
import's head is seven statements where ultralytics has one module, `model.23`). Where no names agree this is exactly
the order of the two state_dicts.
"""
from __future__ import annotations

from typing import Any

# A state_dict's keys as a module tree: child name -> subtree, or a tensor's index (a leaf).
Tree = dict[str, Any]
Node = Tree | int
MAX_KEY_DEPTH = 64  # deeper keys (no real network has them) are paired in order, never walked


def key_tree(keys: list[str]) -> Tree | None:
    """The keys as nested modules in registration order; None for a key that is both a tensor and
    a module, or one nested more than MAX_KEY_DEPTH deep."""
    root: Tree = {}
    for i, key in enumerate(keys):
        *parents, leaf = str(key).split(".")
        if len(parents) > MAX_KEY_DEPTH:
            return None
        node = root
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                return None
        if leaf in node:
            return None
        node[leaf] = i
    return root


def _leaves(t: Node) -> list[int]:
    return [t] if isinstance(t, int) else [i for v in t.values() for i in _leaves(v)]


def _run(g: list[Node]) -> Node:
    """A run of children as one subtree; its made-up names match nothing, so its parts pair in order."""
    return g[0] if len(g) == 1 else {f"#{k}": v for k, v in enumerate(g)}


def _runs(a: Tree, b: Tree) -> list[tuple[Node, Node]] | None:
    """Different numbers of children: consecutive runs of them holding equal numbers of tensors on
    both sides, each run paired as one subtree (a YOLOv8 import's head is several statements where
    ultralytics' is one module, `model.23`: the rows before it still pair one to one, by their
    children's names). None where the runs do not line up."""
    xs, ys = list(a.values()), list(b.values())
    out: list[tuple[Node, Node]] = []
    i = j = 0
    while i < len(xs) and j < len(ys):
        gx, gy = [xs[i]], [ys[j]]
        nx, ny = len(_leaves(xs[i])), len(_leaves(ys[j]))
        i, j = i + 1, j + 1
        while nx != ny:
            if nx < ny and i < len(xs):
                gx.append(xs[i])
                nx, i = nx + len(_leaves(xs[i])), i + 1
            elif ny < nx and j < len(ys):
                gy.append(ys[j])
                ny, j = ny + len(_leaves(ys[j])), j + 1
            else:
                return None
        out.append((_run(gx), _run(gy)))
    # one run of everything says nothing new (and would recurse for ever): the caller pairs in order
    return out if len(out) > 1 and i == len(xs) and j == len(ys) else None


def _children(a: Tree, b: Tree) -> list[tuple[int, int]] | None:
    if a.keys() == b.keys():  # the same names, in whatever order each registered them
        pairs = [(a[k], b[k]) for k in b]
    elif len(a) == len(b):
        pairs = list(zip(a.values(), b.values()))
    else:  # one side wraps a single module: look inside it
        inner = [next(iter(t.values())) if len(t) == 1 else t for t in (a, b)]
        if (inner[0] is a and inner[1] is b) or not all(isinstance(x, dict) for x in inner):
            runs = _runs(a, b)
            if runs is None:
                return None
            pairs = runs
        else:
            return pair(inner[0], inner[1])
    out: list[tuple[int, int]] = []
    for x, y in pairs:
        got = pair(x, y)
        if got is None:
            return None
        out += got
    return out


def pair(a: Node, b: Node) -> list[tuple[int, int]] | None:
    """(index in a, index in b) for every tensor of the subtrees (see the module doc); None where
    their numbers of tensors differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        got = _children(a, b)
        if got is not None:
            return got
    la, lb = _leaves(a), _leaves(b)
    return list(zip(la, lb)) if len(la) == len(lb) else None


def pair_keys(source: list[str], target: list[str]) -> list[tuple[int, int]] | None:
    """(source index, target index) pairs for two lists of state_dict keys, or None where they
    cannot all pair (different numbers of tensors)."""
    a, b = key_tree(source), key_tree(target)
    return pair(a, b) if a is not None and b is not None else None
