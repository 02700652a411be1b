"""Ultralytics' transformer modules for the YAML importer (`yaml_blocks.Modules` has these handlers),
as its definitions (ultralytics/nn/modules/transformer.py, block.py; YOLOv5's models/common.py) build them:

- TransformerLayer(c, num_heads): q, k, v, bias-free Linear(c, c) of the input, into
  nn.MultiheadAttention(c, num_heads) (ma), plus the input; then fc2(fc1(.)), both bias-free, plus
  that. Ultralytics runs it sequence-first ([T, N, C]); netdsl's sequences are batch-first, which
  computes the same values;
- TransformerBlock(c1, c2, num_heads, num_layers): a Conv to c2 when c1 != c2; the map flattened to
  tokens ([h*w, c2]); plus a learned position term `linear`, a Linear(c2, c2) with bias, of the
  tokens; the layers (tr); back to the map [c2, h, w];
- C3TR(c, shortcut=True, g=1, e=0.5): C3 (cv1, cv2, cv3) whose m is TransformerBlock(c_, c_, 4, n),
  c_ = int(c * e), n the row's copies (parse_model passes them in, as for C3); shortcut and g unused.

A `TransformerBlock` row is built as parse_model builds any module it does not list: its arguments
as written (no width_multiple), its output recorded as its input's channels; so c1 must be the
input's channels (its module would fail otherwise) and c2 equal to c1 (a different c2 makes the
next rows' modules the wrong size), which also means no row ever has the Conv. A `TransformerLayer`
row is refused (`ultralytics_yaml.UNSUPPORTED`): it would receive an image map, not tokens.

The map's height and width go into the blocks as arguments, expressions of H and W exact under the
spec's `where H % S == 0` (`size_expr`), since the way back from tokens (`image(rows, cols)`) needs them.
Statements take ultralytics' child names (cv1, cv2, m, cv3; linear, tr; q, k, v, ma, fc1, fc2), so
their state_dicts load by name (`netdsl.weights_match`).
"""
from __future__ import annotations

from typing import Any

from netdsl.importers.spec_writer import Shape, Size, Source
from netdsl.importers.yaml_call import Emitted, RowCall
from netdsl.importers.yaml_nodes import Values, Y
from netdsl.limits import MAX_INT32

TR_SIGNATURES = {"C3TR": "C3TR(c, shortcut=True, g=1, e=0.5)",
                 "TransformerBlock": "TransformerBlock(c1, c2, num_heads, num_layers)"}
TR_ARITY = {"C3TR": 4, "TransformerBlock": 4}
TR_SIZED = ("C3TR",)
C3TR_HEADS = 4  # C3TR's TransformerBlock(c_, c_, 4, n)
MAX_LAYERS = 1000


def size_expr(size: Size, sym: str) -> str:
    """`a*H + b` as an integer expression of H: `H // 32`, `H * 3 // 4 + 1` (exact where H % S == 0)."""
    a, b = size.a, size.b
    p, q = a.numerator, a.denominator
    head = "" if p == 0 else sym if a == 1 else f"{sym} * {p}" if q == 1 else f"{sym} // {q}" if p == 1 \
        else f"{sym} * {p} // {q}"
    if not head:
        return str(b)
    return head if b == 0 else f"{head} {'+' if b > 0 else '-'} {abs(b)}"


class TransformerModules:
    """The handlers; `Modules` supplies the shared state and helpers declared here."""

    values: Values
    src: Source
    used: dict[str, Any]
    act: str

    def conv_block(self, act: str) -> str:
        raise NotImplementedError

    def _hidden(self, y: Y | None, c: int) -> int:
        raise NotImplementedError

    def transformer_handlers(self) -> dict[str, Any]:
        return {"C3TR": self._c3tr, "TransformerBlock": self._transformer_block}

    def _transformer_units(self) -> None:
        """The blocks a TransformerBlock uses, in the order they are defined."""
        self.used.setdefault("trlayer", None)
        self.used.setdefault("trblock", None)

    @staticmethod
    def _map(shape: Shape) -> str:
        return f"{size_expr(shape.h, 'H')}, {size_expr(shape.w, 'W')}"

    def _c3tr(self, call: RowCall) -> Emitted:
        arg, c2, s = call.arg, call.c2, call.shape
        self.values.flag(arg(1), True, "shortcut")
        if arg(2) is not None:
            self.values.whole(call.a[2], 1, 1 << 20, "g")
        e = arg(3)
        m = self._hidden(e, c2)
        if m % C3TR_HEADS:
            raise self.src.error((e or call.a[0]).loc, f"C3TR's TransformerBlock gets int(c * e) = int({c2} * "
                                 f"{self.values.value(e) if e else 0.5}) = {m} channels, which its "
                                 f"{C3TR_HEADS} attention heads must divide",
                                 "nn.MultiheadAttention splits the channels among the heads: choose c (after "
                                 "width_multiple) and e so that int(c * e) divides by 4")
        self.conv_block(self.act)
        self._transformer_units()
        self.used.setdefault("c3tr", None)
        hidden = f", h={m}" if m != c2 // 2 else ""
        return call.chain([f"c3tr({c2}, {call.number}, {self._map(s)}{hidden})"], Shape(c2, s.h, s.w))

    def _transformer_block(self, call: RowCall) -> Emitted:
        v, a, c = self.values, call.a, call.shape.c
        if len(a) < 4:
            raise self.src.error(call.args.loc, f"TransformerBlock needs [c1, c2, num_heads, num_layers]; args "
                                 f"is {call.args.show()}", f"write e.g. [{c}, {c}, 4, 1]")
        c1 = v.whole(a[0], 1, MAX_INT32, "c1")
        if c1 != c:
            raise self.src.error(a[0].loc, f"TransformerBlock's c1 = {c1}, but its input has {c} channels: "
                                 "parse_model passes TransformerBlock's arguments as written (no width_multiple)",
                                 f"write the input's channel count, {c}")
        c2 = v.whole(a[1], 1, MAX_INT32, "c2")
        if c2 != c1:
            raise self.src.error(a[1].loc, f"TransformerBlock's c2 = {c2} differs from c1 = {c1}: parse_model "
                                 f"records this row's output as its input's {c1} channels, so the rows after it "
                                 "would be built for the wrong count", f"write c2 = {c1}, or use C3TR")
        heads = v.whole(a[2], 1, MAX_INT32, "num_heads")
        if c2 % heads:
            raise self.src.error(a[2].loc, f"{heads} attention heads do not divide TransformerBlock's {c2} channels",
                                 "nn.MultiheadAttention splits the channels among the heads: choose a divisor")
        layers = v.whole(a[3], 1, MAX_LAYERS, "num_layers")
        self._transformer_units()
        return call.chain([f"trblock({c2}, {heads}, {layers}, {self._map(call.shape)}){call.rep}"], call.shape)

    @staticmethod
    def transformer_texts() -> dict[str, str]:
        """The definitions of the blocks these modules use."""
        return {
            "trlayer": "# TransformerLayer(c, heads): q, k, v (bias-free Linears) into multi-head attention (ma), plus "
                       "the input;\n# fc1, fc2 (bias-free), plus that. Ultralytics' names: a state_dict of its layer "
                       "loads by name.\nblock trlayer(c, heads) {\n  input x\n  q = x |> linear(c, bias=false)\n"
                       "  k = x |> linear(c, bias=false)\n  v = x |> linear(c, bias=false)\n"
                       "  ma = attention_qkv(q, k, v, heads=heads)\n  y = add(ma, x)\n"
                       "  fc1 = y |> linear(c, bias=false)\n  fc2 = fc1 |> linear(c, bias=false)\n"
                       "  output = add(fc2, y)\n}",
            "trblock": "# TransformerBlock(c, heads, n) on a rows x cols map: the map as tokens, plus a learned position "
                       "term\n# (linear: a Linear with bias, of the tokens), n TransformerLayers (tr), back to the map.\n"
                       "block trblock(c, heads, n, rows, cols) {\n  input x\n  p = x |> tokens\n"
                       "  linear = p |> linear(c)\n  tr = add(p, linear) |> trlayer(c, heads) * n\n"
                       "  output = tr |> image(rows, cols)\n}",
            "c3tr": "# C3TR: C3 (1x1 convolutions cv1, cv2 to h channels; cv3, 1x1 to c, from m and cv2 joined) whose "
                    "m is\n# TransformerBlock(h, h, 4, n) on the rows x cols map. Ultralytics' names: a state_dict of "
                    "its C3TR loads by name.\nblock c3tr(c, n, rows, cols, h = c // 2) {\n  input x\n"
                    "  cv1 = x |> cba(h)\n  cv2 = x |> cba(h)\n  m = cv1 |> trblock(h, 4, n, rows, cols)\n"
                    "  cv3 = cat(m, cv2) |> cba(c)\n  output = cv3\n}",
        }
