"""darknet's residual units (convolutions, then a [shortcut] back to their input) as graph blocks."""
from __future__ import annotations

from dataclasses import replace

from netdsl.importers.darknet_layers import CfgLayers, ConvWriter
from netdsl.importers.darknet_read import ACTIVATIONS, Conv
from netdsl.importers.spec_writer import Stmt, Tensor, Writer

# A unit's body: per convolution its filters relative to the unit's channels c ("c // 2") and the
# convolution with filters zeroed; then the [shortcut]'s activation. Equal signatures, one block.
Signature = tuple[tuple[tuple[str, Conv], ...], str]


class Residuals:
    """Finds residual units in the cfg's layers and writes each run of equal ones as one statement
    calling a graph block (one block per distinct unit, defined in `w`)."""

    def __init__(self, cfg: CfgLayers, convs: ConvWriter, w: Writer) -> None:
        self.cfg, self.convs, self.w = cfg, convs, w
        self.blocks: dict[Signature, str] = {}  # unit -> its block's name

    def unit_end(self, i: int) -> int | None:
        """The shortcut closing a residual unit that starts at layer i (convolutions, then a [shortcut]
        back to layer i - 1, nothing inside read from elsewhere), or None."""
        layers = self.cfg.layers
        j = self.cfg.plain_end[i]
        if j == i or j >= len(layers) or layers[j].kind != "shortcut":
            return None
        return j if layers[j].targets == [i - 1] else None

    def unit_keeps_shape(self, i: int, inp: Tensor) -> bool:
        """A residual unit starts at layer i and its convolutions give back `inp`'s shape: a [shortcut]
        of maps of other shapes is written as darknet_shortcut, outside any block."""
        j = self.unit_end(i)
        if j is None:
            return False
        shape = inp.shape
        for k in range(i, j):
            shape = self.convs.shape(self.cfg.convs[k], shape, self.cfg.layers[k])
        return shape == inp.shape

    def _signature(self, i: int, j: int, c: int) -> Signature:
        def rel(f: int) -> str:
            return "c" if f == c else f"c // {c // f}" if c % f == 0 else f"c * {f // c}" if f % c == 0 else str(f)
        convs = self.cfg.convs
        body = tuple((rel(convs[k].filters), replace(convs[k], filters=0)) for k in range(i, j))
        return body, self.cfg.activation(self.cfg.layers[j], "linear")

    def write(self, i: int, inp: Tensor) -> tuple[int, Tensor]:
        """Emit the run of equal residual units starting at layer i (reading `inp`); the index of its
        last layer and its output."""
        cfg = self.cfg
        j = self.unit_end(i)
        assert j is not None
        sig = self._signature(i, j, inp.shape.c)
        ends = [j]
        while True:
            nxt = self.unit_end(ends[-1] + 1)
            if nxt is None or cfg.refs.get(ends[-1], set()) != {nxt} or \
                    self._signature(ends[-1] + 1, nxt, inp.shape.c) != sig:
                break
            ends.append(nxt)
        name = self._block(sig)
        last = ends[-1]
        call = f"{name}({inp.shape.c})" + (f" * {len(ends)}" if len(ends) > 1 else "")
        out = Tensor(cfg.name_of(last, f"res{last}"), inp.shape, last - 1)
        self.w.add(Stmt(out.name, [inp.name], [call], cfg.comment(i, last), cfg.layers[i].loc))
        return last, out

    def _block(self, sig: Signature) -> str:
        if sig not in self.blocks:
            body, act = sig
            name = "residual" if not self.blocks else f"residual{len(self.blocks) + 1}"
            self.blocks[sig] = name
            chain = " -> ".join(self.convs.call(conv, f) for f, conv in body)
            post = "".join(f" |> {a}" if n == 0 else f" -> {a}" for n, a in enumerate(ACTIVATIONS[act]))
            self.w.block(name, f"# darknet's residual unit: {len(body)} [convolutional], then [shortcut] back to "
                         f"the unit's input.\nblock {name}(c) {{\n  input x\n  y = x |> {chain}\n"
                         f"  output = add(x, y){post}\n}}", None)
        return self.blocks[sig]
