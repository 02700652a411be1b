"""Ultralytics 8.x's modules (YOLOv8, YOLO11) for the YAML importer (`yaml_blocks.Modules` has these
handlers), as ultralytics 8.4's nn/modules (block.py, head.py) build them, written anew:

- C2f(c, shortcut=False, g=1, e=0.5): h = int(c*e); cv1, a 1x1 Conv to 2h, taken as two halves; n
  Bottlenecks (3x3 to h, 3x3 to h, plus their input when shortcut) in a chain from the second
  half (m); cv2, a 1x1 Conv to c of the halves and every bottleneck's output joined;
- C3k2(c, c3k=False, e=0.5, attn=False, g=1, shortcut=True): C2f whose bottlenecks have h//2 hidden
  channels, or with c3k (forced at scales m, l and x, as parse_model forces it) C3k units: C3 (cv1,
  cv2 1x1 to h//2, m two 3x3/3x3 bottlenecks, cv3 1x1 to h of m and cv2 joined);
- C2PSA(c, e=0.5): cv1 1x1 to 2h, halves a and b; m: n PSABlocks on b, each attention plus its
  input, then a feed-forward pair of 1x1 Convs (2h, then h without activation) plus that; cv2 1x1
  to c of a and m joined. The attention: qkv (1x1, no activation) to h + 2*heads*key_dim channels
  (heads = max(h // 64, 1), key_dim = int(h / heads / 2)), `psa_attention` over the positions,
  plus pe, a depthwise 3x3 Conv of the values (`psa_values`); proj, a 1x1 Conv (no activation);
- Detect(nc) (anchor-free): per level i, cv2_i (Conv 3x3, Conv 3x3 to c2 = max(16, ch0 // 4,
  4*reg_max), a 1x1 conv with bias to 4*reg_max) and cv3_i (YOLOv8: Conv 3x3, Conv 3x3 to c3 =
  max(ch0, min(nc, 100)), a 1x1 conv with bias to nc; a YAML with C3k2 (YOLO11; parse_model's
  `legacy` False): a depthwise 3x3 Conv, a 1x1 Conv to c3, a depthwise 3x3, a 1x1, the conv to nc),
  then `detect_v8` of each level's cat(cv2_i, cv3_i).

The step of C2f and C3k2 is a graph block that reads every map made so far, takes the last h
channels, and appends its result: repeated `* n as i`, its copies are `m.0`, `m.1`, ... holding
cv1 and cv2 as ultralytics' `m` does, so an ultralytics state_dict loads by name
(`netdsl.weights_match`); the head's branches are top-level statements cv2_i, cv3_i in
ultralytics' order.
"""
from __future__ import annotations

from typing import Any

from netdsl.importers.spec_writer import Shape, Source, Stmt, Writer
from netdsl.importers.yaml_call import Emitted, RowCall
from netdsl.importers.yaml_nodes import Values, Y

V8_SIGNATURES = {"C2f": "C2f(c, shortcut=False, g=1, e=0.5)",
                 "C3k2": "C3k2(c, c3k=False, e=0.5, attn=False, g=1, shortcut=True)",
                 "C2PSA": "C2PSA(c, e=0.5)"}
V8_ARITY = {"C2f": 4, "C3k2": 6, "C2PSA": 2}
V8_SIZED = ("C2f", "C3k2", "C2PSA")
STEP = "_, last = x |> split([(i + 1) * h, h])"


class V8Modules:
    """The handlers; `Modules` supplies the shared state and helpers declared here."""

    values: Values
    src: Source
    w: Writer
    used: dict[str, Any]
    grouped: bool
    nc: int
    scale: str       # the scale read (n, s, ...), "" for none: C3k2's c3k is forced at m, l, x
    legacy: bool     # parse_model's flag: False once a C3k2 row is read (YOLO11's class branch)
    reg_max: int

    def _hidden(self, y: Y | None, c: int) -> int:
        raise NotImplementedError

    def _strides(self, call: RowCall) -> list[int]:
        raise NotImplementedError

    def v8_handlers(self) -> dict[str, Any]:
        return {"C2f": self._c2f, "C3k2": self._c2f, "C2PSA": self._c2psa}

    def _unit_g(self, y: Y | None) -> None:
        if y is not None and self.values.whole(y, 1, 1 << 20, "g") != 1:
            raise self.src.error(y.loc, f"g = {y.show()}: netdsl imports these blocks with g = 1",
                                 "leave g out, or convert the network by hand")

    def _c2f(self, call: RowCall) -> Emitted:
        """C2f and C3k2: which step they repeat, its hidden channels, and the wrapper block."""
        arg, c2, s = call.arg, call.c2, call.shape
        if call.mod == "C2f":
            short = self.values.flag(arg(1), False, "shortcut")
            self._unit_g(arg(2))
            e, c3k = arg(3), False
        else:
            self.legacy = False
            # parse_model: c3k as written, except at scales m, l and x where it is True
            c3k = True if self.scale in ("m", "l", "x") else self.values.flag(arg(1), False, "c3k")
            e = arg(2)
            if self.values.flag(arg(3), False, "attn"):
                raise self.src.error(call.a[3].loc, "C3k2 with attn=True (its PSABlock steps) is not imported",
                                     "use attn False, or convert the network by hand")
            self._unit_g(arg(4))
            short = self.values.flag(arg(5), True, "shortcut")
        h = self._hidden(e, c2)
        if call.mod == "C3k2" and h // 2 < 1:
            raise self.src.error(call.args.loc, f"C3k2's {h} hidden channels leave none for its bottlenecks",
                                 "a larger c or e")
        unit = ("step_c3k" if c3k else "step") + ("" if short else "_plain")
        inner = "res33" if short else "pair33"
        if c3k:
            self.used.setdefault(inner, None)
        self.used.setdefault(unit, None)
        name = ("c3k2" if call.mod == "C3k2" else "c2f") + ("_c3k" if c3k else "") + ("" if short else "_plain")
        self.used.setdefault(name, unit)
        extra = f", h={h}" if h != c2 // 2 else ""
        return call.chain([f"{name}({c2}, {call.number}{extra})"], Shape(c2, s.h, s.w))

    def _c2psa(self, call: RowCall) -> Emitted:
        arg, c1, c2, s = call.arg, call.shape.c, call.c2, call.shape
        if c1 != c2:
            raise self.src.error(call.a[0].loc, f"C2PSA to {c2} channels from {c1}: it keeps its input's channels "
                                 "(ultralytics asserts c1 == c2)", f"write the channels so that they come to {c1}")
        h = self._hidden(arg(1), c2)
        heads = max(h // 64, 1)
        key_dim = int(h // heads * 0.5)
        if h % heads or key_dim < 1:
            raise self.src.error(call.args.loc, f"C2PSA's {h} hidden channels do not split into {heads} attention "
                                 "heads with a key size of at least 1", "choose c and e so that int(c * e) is a "
                                 "multiple of the heads and at least 2 per head")
        self.grouped = True  # pe is depthwise: the Conv blocks take g
        for name in ("cb", "psa", "psablock", "c2psa"):
            self.used.setdefault(name, None)
        extra = f", h={h}" if h != c2 // 2 else ""
        return call.chain([f"c2psa({c2}, {call.number}, {heads}, {key_dim}{extra})"], Shape(c2, s.h, s.w))

    def detect_v8(self, call: RowCall) -> Emitted:
        """The anchor-free head: the branches as statements cv2_i, cv3_i, then detect_v8 of them joined."""
        a, ins = call.a, call.ins
        if len(a) != 1:
            raise self.src.error(call.args.loc, f"Detect takes [nc] in an anchor-free YAML; args is "
                                 f"{call.args.show()}", "write [nc]")
        nc_name = a[0].value == "nc"
        nc = self.nc if nc_name else self.values.whole(a[0], 1, 100_000, "Detect's classes")
        strides = self._strides(call)
        ch0, box = ins[0].shape.c, 4 * self.reg_max
        c2, c3 = max(16, ch0 // 4, box), max(ch0, min(nc, 100))
        self.grouped |= not self.legacy
        for i, t in enumerate(ins):
            chain = [f"cba({c2}, 3)", f"cba({c2}, 3)", f"conv({box}, 1)"]
            self.w.add(Stmt(f"cv2_{i}", [t.name], chain, f"Detect's box branch {i} (cv2.{i})", call.args.loc))
        for i, t in enumerate(ins):
            x = t.shape.c
            chain = [f"cba({c3}, 3)", f"cba({c3}, 3)"] if self.legacy else \
                [f"cba({x}, 3, g={x})", f"cba({c3})", f"cba({c3}, 3, g={c3})", f"cba({c3})"]
            chain.append(f"conv({'NCLS' if nc_name else nc}, 1)")
            self.w.add(Stmt(f"cv3_{i}", [t.name], chain, f"Detect's class branch {i} (cv3.{i})", call.args.loc))
        if nc_name:
            self.w.params.append(("NCLS", self.nc))
        self.used.setdefault("cba", None)
        levels = ", ".join(f"cat(cv2_{i}, cv3_{i})" for i in range(len(ins)))
        extra = (f", classes={'NCLS' if nc_name else nc}, strides=[{', '.join(map(str, strides))}]" +
                 (f", reg_max={self.reg_max}" if self.reg_max != 16 else ""))
        stmt = Stmt("", [levels], [], "", None, merge="detect_v8", extra=extra)
        return stmt, Shape(4 + nc, ins[0].shape.h, ins[0].shape.w)

    def v8_texts(self) -> dict[str, str]:
        """The definitions of the blocks these modules use."""
        texts: dict[str, str] = {
            "res33": "# Bottleneck(c, k=3x3, e=1.0) (C3k's): cv1, cv2 3x3 Convs to c, plus the input.\n"
                     "block res33(c) {\n  input x\n  cv1 = x |> cba(c, 3)\n  cv2 = cv1 |> cba(c, 3)\n"
                     "  output = add(x, cv2)\n}",
            "pair33": "# Bottleneck(c, k=3x3, e=1.0) without the sum (shortcut=False).\n"
                      "block pair33(c) {\n  input x\n  cv1 = x |> cba(c, 3)\n  cv2 = cv1 |> cba(c, 3)\n"
                      "  output = cv2\n}",
        }
        for short in (True, False):
            sfx = "" if short else "_plain"
            keep = "add(last, cv2)" if short else "cv2"
            texts["step" + sfx] = (
                f"# One C2f/C3k2 step{' (shortcut=False)' if not short else ''}: x holds the maps so far, "
                "(i + 2) * h channels; a Bottleneck (3x3 to b,\n# 3x3 to h" + (", plus its input" if short else "") +
                ") of the last h is appended. Repeated `* n as i`: its copies are ultralytics' m.0, m.1, ...\n"
                f"block step{sfx}(h, i, b = h) {{\n  input x\n  {STEP}\n  cv1 = last |> cba(b, 3)\n"
                f"  cv2 = cv1 |> cba(h, 3)\n  output = cat(x, {keep})\n}}")
            texts["step_c3k" + sfx] = (
                f"# One C3k2 step with c3k{' (shortcut=False)' if not short else ''}: C3k of the last h channels "
                "appended (cv1, cv2 1x1 to h // 2;\n# m, two 3x3/3x3 Bottlenecks; cv3 1x1 to h of m and cv2 joined).\n"
                f"block step_c3k{sfx}(h, i) {{\n  input x\n  {STEP}\n  cv1 = last |> cba(h // 2)\n"
                f"  cv2 = last |> cba(h // 2)\n  m = cv1 |> {'res33' if short else 'pair33'}(h // 2) * 2\n"
                "  cv3 = cat(m, cv2) |> cba(h)\n  output = cat(x, cv3)\n}")
        for name, unit in self.used.items():
            if not name.startswith(("c2f", "c3k2")):
                continue
            hid = ", b = h // 2" if name.startswith("c3k2") and "c3k" not in name[4:] else ""
            arg = ", b" if hid else ""
            what = "C3k2" if name.startswith("c3k2") else "C2f"
            texts[name] = (
                f"# {what}(c) with h hidden channels: cv1, 1x1 to 2h (two halves); n steps ({unit}) m, each "
                "appending its result;\n# cv2, 1x1 to c of everything joined. Ultralytics' names: its state_dict "
                f"loads by name.\nblock {name}(c, n = 1, h = c // 2{hid}) {{\n  input x\n  cv1 = x |> cba(2 * h)\n"
                f"  m = cv1 |> {unit}(h, i{arg}) * n as i\n  cv2 = m |> cba(c)\n  output = cv2\n}}")
        g = ", g=c"
        texts["psa"] = ("# C2PSA's Attention(c, heads): qkv 1x1 (no activation); attention over the positions plus pe, "
                        "a depthwise 3x3\n# Conv of the values; proj 1x1 (no activation).\n"
                        "block psa(c, heads, kd) {\n  input x\n  qkv = x |> cb(c + 2 * heads * kd)\n"
                        "  att = qkv |> psa_attention(heads, kd)\n  v = qkv |> psa_values(heads, kd)\n"
                        f"  pe = v |> cb(c, 3{g})\n  proj = add(att, pe) |> cb(c)\n  output = proj\n}}")
        texts["psablock"] = ("# PSABlock(c): the attention plus its input, then ffn (1x1 to 2c, 1x1 to c without "
                             "activation) plus that.\nblock psablock(c, heads, kd) {\n  input x\n"
                             "  attn = x |> psa(c, heads, kd)\n  y = add(x, attn)\n  ffn = y |> cba(2 * c) -> cb(c)\n"
                             "  output = add(y, ffn)\n}")
        texts["c2psa"] = ("# C2PSA(c) with h hidden channels: cv1 1x1 to 2h, halves a and b; m, n PSABlocks on b; "
                          "cv2 1x1 to c\n# of a and m joined. Ultralytics' names: its state_dict loads by name.\n"
                          "block c2psa(c, n, heads, kd, h = c // 2) {\n  input x\n  cv1 = x |> cba(2 * h)\n"
                          "  a, b = cv1 |> split(2)\n  m = b |> psablock(h, heads, kd) * n\n"
                          "  cv2 = cat(a, m) |> cba(c)\n  output = cv2\n}")
        return texts
