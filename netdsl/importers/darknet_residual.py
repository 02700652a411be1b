"""darknet's residual units (convolutions, then a [shortcut] back to their input) as graph blocks."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from netdsl.importers.darknet_read import ACTIVATIONS, T
from netdsl.importers.spec_writer import Shape, Stmt

if TYPE_CHECKING:
    from netdsl.importers.darknet_cfg import CfgImporter


def unit_end(imp: CfgImporter, i: int) -> int | None:
    """The shortcut closing a residual unit that starts at layer i (convolutions, then a [shortcut]
    back to layer i - 1, nothing inside read from elsewhere), or None."""
    j = imp.plain_end[i]
    if j == i or j >= len(imp.layers) or imp.layers[j].kind != "shortcut":
        return None
    return j if imp.layers[j].targets == [i - 1] else None  # type: ignore[attr-defined]


def shortcut_hint(prev: Shape, other: Shape) -> str:
    """What darknet does with a [shortcut] of maps netdsl cannot add (the previous layer's `prev`, `other`
    the one `from` names): netdsl adds maps of equal shapes only, so far."""
    if prev.same_size(other):
        return (f"netdsl does not support this yet: darknet adds the {min(prev.c, other.c)} channels both maps have "
                f"and keeps the previous layer's other {prev.c - min(prev.c, other.c)} as they are")
    return ("netdsl does not support this yet: darknet adds the channels both maps have onto the previous layer's "
            "map, matching positions by the ratio of the two sizes")


def _signature(imp: CfgImporter, i: int, j: int, c: int) -> tuple:
    def rel(f: int) -> str:
        return "c" if f == c else f"c // {c // f}" if c % f == 0 else f"c * {f // c}" if f % c == 0 else str(f)
    body = tuple((rel(imp.convs[k].filters), replace(imp.convs[k], filters=0)) for k in range(i, j))
    return body, imp.activation(imp.layers[j], "linear")


def write_residual(imp: CfgImporter, i: int) -> int:
    """Emit the run of equal residual units starting at layer i; the index of its last layer."""
    inp = imp.input_of(i)
    j = unit_end(imp, i)
    assert j is not None
    sig = _signature(imp, i, j, inp.shape.c)
    ends = [j]
    while True:
        nxt = unit_end(imp, ends[-1] + 1)
        if nxt is None or imp.refs.get(ends[-1], set()) != {nxt} or \
                _signature(imp, ends[-1] + 1, nxt, inp.shape.c) != sig:
            break
        ends.append(nxt)
    shape = inp.shape
    for k in range(i, j):
        shape = imp.conv_shape(imp.convs[k], shape, imp.layers[k])
    if shape != inp.shape:
        raise imp.src.error(imp.layers[j].opts["from"].loc, f"[shortcut] adds layer {j - 1} {shape.show()} to "
                            f"layer {i - 1} {inp.shape.show()}: their shapes differ", shortcut_hint(shape, inp.shape))
    body, act = sig
    name = _res_block(imp, body, act)
    last = ends[-1]
    call = f"{name}({inp.shape.c})" + (f" * {len(ends)}" if len(ends) > 1 else "")
    out = T(imp.name_of(last, f"res{last}"), inp.shape, last - 1)
    imp.w.add(Stmt(out.name, [inp.name], [call], imp.comment(i, last), imp.layers[i].loc))
    imp.out[last] = out
    return last


def _res_block(imp: CfgImporter, body: tuple, act: str) -> str:
    key = (body, act)
    blocks = imp.res_blocks
    if key not in blocks:
        name = "residual" if not blocks else f"residual{len(blocks) + 1}"
        blocks[key] = name
        chain = " -> ".join(imp.call(conv, f) for f, conv in body)
        post = "".join(f" |> {a}" if n == 0 else f" -> {a}" for n, a in enumerate(ACTIVATIONS[act]))
        imp.w.block(name, f"# darknet's residual unit: {len(body)} [convolutional], then [shortcut] back to "
                    f"the unit's input.\nblock {name}(c) {{\n  input x\n  y = x |> {chain}\n"
                    f"  output = add(x, y){post}\n}}", None)
    return blocks[key]
