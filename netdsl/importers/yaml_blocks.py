"""The modules of an Ultralytics model YAML as netdsl statements and graph blocks (see ultralytics_yaml)."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from netdsl.importers.spec_writer import Shape, Stmt, Writer, stride_of
from netdsl.importers.yaml_acts import activation, looks_like_module
from netdsl.importers.yaml_call import Emitted, RowCall
from netdsl.importers.yaml_more import MORE_ARITY, MORE_SIGNATURES, MORE_SIZED, MoreModules
from netdsl.importers.yaml_nodes import Values, Y
from netdsl.importers.yaml_transformer import TR_ARITY, TR_SIGNATURES, TR_SIZED, TransformerModules
from netdsl.importers.yaml_v8 import V8_ARITY, V8_SIGNATURES, V8_SIZED, V8Modules
from netdsl.limits import MAX_INT32

BN = "batchnorm(eps=0.001, momentum=0.03)"
SIGNATURES = {"Conv": "Conv(c, k=1, s=1, p=None, g=1, act=True)", "Bottleneck": "Bottleneck(c, shortcut=True, g=1, "
              "e=0.5)", "C3": "C3(c, shortcut=True, g=1, e=0.5)", "SPP": "SPP(c, k=(5, 9, 13))",
              "SPPF": "SPPF(c, k=5)", "Concat": "Concat(dimension=1)", "nn.Upsample": "nn.Upsample(None, scale, mode)",
              "nn.MaxPool2d": "nn.MaxPool2d(k, s=k, p=0)", "nn.ZeroPad2d": "nn.ZeroPad2d(p)",
              "Detect": "Detect(nc, anchors)", **MORE_SIGNATURES, **TR_SIGNATURES,
              **V8_SIGNATURES}
MODULES = tuple(SIGNATURES)
ARITY = {"Conv": 6, "Bottleneck": 4, "C3": 4, "SPP": 2, "SPPF": 2, "Concat": 1, "nn.Upsample": 3,
         "nn.MaxPool2d": 3, "nn.ZeroPad2d": 1, "Detect": 2, **MORE_ARITY, **TR_ARITY, **V8_ARITY}
# Modules whose first argument is their output channels (scaled by width_multiple).
SIZED = ("Conv", "Bottleneck", "C3", "SPP", "SPPF", *MORE_SIZED, *TR_SIZED, *V8_SIZED)
# Modules that take the row's copies inside them (parse_model inserts n into their arguments).
REPEATS = ("C3", "C3Ghost", "C3TR", "C2f", "C3k2", "C2PSA")


def _scalar(t: tuple[int, ...]) -> str:
    return str(t[0]) if len(set(t)) == 1 else f"({', '.join(map(str, t))})"


class Modules(MoreModules, TransformerModules, V8Modules):
    """Writes each row's module call, and at the end the graph blocks the calls used (`define`).
    `no` is Detect's output channels (a width equal to it is not scaled), `gw` width_multiple, `act`
    the layer of a Conv's default activation (the YAML's `activation`, else silu). An ultralytics
    8.x YAML (`scales:`) gives `maxc` (its max_channels), `scale` and an anchor-free Detect (`v8`)."""

    def __init__(self, values: Values, w: Writer, nc: int, no: int, gw: float, act: str = "silu",
                 maxc: float = float("inf"), scale: str = "", v8: bool = False, reg_max: int = 16) -> None:
        self.values, self.src, self.w = values, values.src, w
        self.nc, self.no, self.gw, self.act = nc, no, gw, act
        self.maxc, self.scale, self.v8, self.reg_max, self.legacy = maxc, scale, v8, reg_max, True
        self.used: dict[str, Any] = {}   # block name -> its extra (SPP's k list), in first-use order
        self.acts: dict[str, str] = {}   # Conv block name (cba_...) -> its activation layer
        self.grouped = self.padded = False
        self.handlers: dict[str, Callable[[RowCall], Emitted]] = {
            "Conv": self._conv, "Bottleneck": self._bottleneck, "C3": self._bottleneck, "SPP": self._spp,
            "SPPF": self._spp, "Concat": self._concat, "nn.Upsample": self._upsample, "nn.MaxPool2d": self._maxpool,
            "nn.ZeroPad2d": self._zeropad, "Detect": self._detect, **self.more_handlers(),
            **self.transformer_handlers(), **self.v8_handlers()}

    def emit(self, call: RowCall) -> Emitted:
        """The row's statement (named by the caller) and its output shape."""
        mod, a = call.mod, call.a
        if len(a) > ARITY[mod]:
            raise self.src.error(a[ARITY[mod]].loc, f"{mod} takes at most {ARITY[mod]} arguments here: "
                                 f"{SIGNATURES[mod]}", "remove the extra arguments or convert the network by hand")
        if mod in SIZED:
            if not a:
                raise self.src.error(call.args.loc, f"{mod} needs its output channels", f"write {SIGNATURES[mod]}")
            call.c2 = self.width(a[0])
            if mod not in REPEATS:  # their copies are inside them
                self._same(call)
        return self.handlers[mod](call)

    # -- values ----------------------------------------------------------------------------------

    def width(self, y: Y) -> int:
        c = self.values.whole(y, 1, MAX_INT32, "the output channels")
        if self.v8:  # ultralytics 8.x: make_divisible(min(c, max_channels) * width, 8)
            return math.ceil(min(c, self.maxc) * self.gw / 8) * 8
        return c if c == self.no else math.ceil(c * self.gw / 8) * 8

    def _act(self, y: Y | None) -> str:
        """Conv's act as its layer ("" for none): True is the default activation, False none, and an
        activation module (`nn.LeakyReLU(0.1)`) is read as data (yaml_acts)."""
        if y is not None and looks_like_module(self.values.value(y)):
            return activation(self.src, y)
        return self.act if self.values.flag(y, True, "act") else ""

    def conv_block(self, act: str) -> str:
        """The Conv block for an activation layer: cba (the default), cb (none), cba_<layer> (another)."""
        if act in ("", self.act):
            name = "cba" if act else "cb"
        else:
            name = next((n for n, a in self.acts.items() if a == act), "")
            base = "cba_" + "".join(ch if ch.isalnum() else "_" for ch in act.split("(")[0])
            name = name or next(b for b in (base if i == 0 else f"{base}{i + 1}" for i in range(len(self.acts) + 1))
                                if b not in self.acts)
            self.acts[name] = act
        self.used.setdefault(name, None)
        return name

    def _hidden(self, y: Y | None, c: int) -> int:
        """int(c * e), as ultralytics sizes a bottleneck's hidden channels."""
        if y is None:
            return c // 2
        e = self.values.value(y)
        if type(e) not in (int, float) or not 0 < e <= 64:
            raise self.src.error(y.loc, f"e is {y.show()}; expected a positive number", "e is the expansion, e.g. 0.5")
        m = int(c * e)
        if m < 1:
            raise self.src.error(y.loc, f"e = {e} leaves int({c} * {e}) = {m} hidden channels", "a larger e")
        return m

    def _groups(self, y: Y | None, *channels: int) -> int:
        if y is None:
            return 1
        g = self.values.whole(y, 1, 1 << 20, "g")
        if any(c % g for c in channels):
            raise self.src.error(y.loc, f"g = {g} must divide the channels {', '.join(map(str, channels))}",
                                 "choose groups that divide them")
        self.grouped |= g != 1
        return g

    def _same(self, call: RowCall) -> None:
        c1, c2 = call.shape.c, call.c2
        if call.number > 1 and c1 != c2:
            raise self.src.error(call.n.loc, f"{call.number} copies of {call.mod} built for {c1} input channels, each "
                                 f"making {c2}: ultralytics repeats the module as built, so the second one cannot "
                                 "read the first", "use number 1, or an output channel count equal to the input's")

    def _pools(self, y: Y | None, ks: tuple[int, ...], mod: str) -> None:
        for k in ks:
            if k % 2 == 0:
                raise self.src.error(y.loc if y else None, f"{mod} with an even window {k}: its stride-1 pool with "
                                     f"padding {k // 2} grows the map by one and the concatenation fails",
                                     "use odd windows")

    # -- modules ---------------------------------------------------------------------------------

    def _conv(self, call: RowCall) -> Emitted:
        v, a, arg = self.values, call.a, call.arg
        c1, c2 = call.shape.c, call.c2
        k = v.ints(a[1], 2, 1, "k") if arg(1) else (1, 1)
        st = v.ints(a[2], 2, 1, "s") if arg(2) else (1, 1)
        p = (k[0] // 2, k[1] // 2) if arg(3) is None or v.value(a[3]) is None else v.ints(a[3], 2, 0, "p")
        g = self._groups(arg(4), c1, c2)
        act = self._act(arg(5))
        shape = call.shape
        for _ in range(call.number):  # each copy strides and pads again
            shape = shape.window(c2, k, st, (2 * p[0], 2 * p[1]))
        if all(len(set(t)) == 1 for t in (k, st, p)):
            name = self.conv_block(act)
            self.padded |= p[0] != k[0] // 2
            args = [str(c2)] + ([str(k[0])] if k[0] != 1 or st[0] != 1 else []) + ([str(st[0])] if st[0] != 1 else [])
            args += [f"p={p[0]}"] * (p[0] != k[0] // 2) + [f"g={g}"] * (g != 1)
            return call.chain([f"{name}({', '.join(args)}){call.rep}"], shape)
        kw = ", ".join([str(c2), _scalar(k), f"stride={_scalar(st)}", f"padding={_scalar(p)}"] +
                       [f"groups={g}"] * (g != 1) + ["bias=false"])
        if call.number > 1:
            raise self.src.error(call.n.loc, "a repeated Conv with a non-square kernel, stride or padding",
                                 "write one row per convolution")
        return call.chain([f"conv({kw})", BN] + ([act] if act else []), shape)

    def _bottleneck(self, call: RowCall) -> Emitted:
        """Bottleneck and C3."""
        arg, c1, c2, s = call.arg, call.shape.c, call.c2, call.shape
        short = self.values.flag(arg(1), True, "shortcut")
        m = self._hidden(arg(3), c2)
        g = self._groups(arg(2), m, c2)
        extra = (f", h={m}" if m != c2 // 2 else "") + (f", g={g}" if g != 1 else "")
        if call.mod == "Bottleneck":
            name = "res" if short and c1 == c2 else "pair"
            self.used.setdefault("cba", None)
            self.used.setdefault(name, None)
            return call.chain([f"{name}({c2}{extra}){call.rep}"], Shape(c2, s.h, s.w))
        name = "c3" if short else "c3_plain"
        self.used.update({"cba": None, "res" if short else "pair": None})
        self.used.setdefault(name, None)
        return call.chain([f"{name}({c2}, {call.number}{extra})"], Shape(c2, s.h, s.w))

    def _spp(self, call: RowCall) -> Emitted:
        """SPP and SPPF."""
        mod, arg, a, c1, c2, s = call.mod, call.arg, call.a, call.shape.c, call.c2, call.shape
        ks = self.values.ints(a[1], 1 if mod == "SPPF" else None, 1, "k") if arg(1) else \
            (5,) if mod == "SPPF" else (5, 9, 13)
        self._pools(arg(1), ks, mod)
        if c1 // 2 < 1:
            raise self.src.error(call.args.loc, f"{mod} halves its {c1} input channels to none", "give it more channels")
        self.used.setdefault("cba", None)
        if mod == "SPPF":
            self.used.setdefault("sppf", None)
            text = f"sppf({c2}, {c1 // 2}" + (f", {ks[0]}" if ks[0] != 5 else "") + ")"
        else:
            sets = [v for k, v in self.used.items() if k.startswith("spp") and k != "sppf"]
            name = next((k for k, v in self.used.items() if v == ks and k.startswith("spp")), None)
            name = name or ("spp" if not sets else f"spp{len(sets) + 1}")
            self.used.setdefault(name, ks)
            text = f"{name}({c2}, {c1 // 2})"
        return call.chain([text + call.rep], Shape(c2, s.h, s.w))

    def _concat(self, call: RowCall) -> Emitted:
        a, s, ins = call.a, call.shape, call.ins
        if call.arg(0) is not None and self.values.value(a[0]) not in (1, -3):
            raise self.src.error(a[0].loc, f"Concat along dimension {a[0].show()}", "netdsl joins channels: Concat [1]")
        for t in ins[1:]:
            if not t.shape.same_size(s):
                raise self.src.error(call.args.loc, f"Concat of maps of different sizes: {ins[0].name} {s.show()}, "
                                     f"{t.name} {t.shape.show()}", "Concat joins channels: heights and widths must match")
        return Stmt("", [t.name for t in ins], [], "", None, merge="cat"), Shape(sum(t.shape.c for t in ins), s.h, s.w)

    def _upsample(self, call: RowCall) -> Emitted:
        v, a, arg = self.values, call.a, call.arg
        if arg(0) is not None and v.value(a[0]) is not None:
            raise self.src.error(a[0].loc, "nn.Upsample with an output size", "give a scale: [None, 2, 'nearest']")
        scale: Any = v.value(a[1]) if arg(1) is not None else None
        if type(scale) not in (int, float) or not 1 <= scale <= 64 or scale != int(scale):
            raise self.src.error((arg(1) or call.args).loc, "nn.Upsample needs a whole scale factor from 1 to 64",
                                 "write e.g. [None, 2, 'nearest']")
        scale = int(scale)
        mode = v.value(a[2]) if arg(2) else "nearest"
        if mode not in ("nearest", "bilinear"):
            raise self.src.error(a[2].loc, f"mode {a[2].show()} is not supported", "use 'nearest' or 'bilinear'")
        up = f"upsample({scale}" + (', mode="bilinear"' if mode == "bilinear" else "") + ")"
        return call.chain([up + call.rep], call.shape.scaled(scale ** call.number))

    def _maxpool(self, call: RowCall) -> Emitted:
        v, a, arg = self.values, call.a, call.arg
        k = v.whole(a[0], 1, 1 << 20, "k") if arg(0) else None
        if k is None:
            raise self.src.error(call.args.loc, "nn.MaxPool2d needs its window", "write e.g. [2, 2, 0]")
        st = k if arg(1) is None or v.value(a[1]) is None else v.whole(a[1], 1, 1 << 20, "s")
        p = v.whole(a[2], 0, k // 2, "p (at most half the window)") if arg(2) else 0
        pool = f"maxpool({k}" + (f", stride={st}" if st != k else "") + (f", padding={p}" if p else "") + ")"
        shape = call.shape
        for _ in range(call.number):
            shape = shape.window(shape.c, (k, k), (st, st), (2 * p, 2 * p))
        return call.chain([pool + call.rep], shape)

    def _zeropad(self, call: RowCall) -> Emitted:
        if call.arg(0) is None:
            raise self.src.error(call.args.loc, "nn.ZeroPad2d needs its padding", "write e.g. [[0, 1, 0, 1]]")
        left, right, top, bottom = self.values.ints(call.a[0], 4, 0, "padding")
        s, n = call.shape, call.number
        shape = Shape(s.c, s.h.padded((top + bottom) * n), s.w.padded((left + right) * n))
        return call.chain([f"pad({left}, {right}, {top}, {bottom}){call.rep}"], shape)

    def _detect(self, call: RowCall) -> Emitted:
        if self.v8:
            return self.detect_v8(call)
        a, ins = call.a, call.ins
        if len(a) < 2:
            raise self.src.error(call.args.loc, "Detect needs [nc, anchors]", "write [nc, anchors]")
        nc = a[0].value == "nc"
        classes = self.nc if nc else self.values.whole(a[0], 1, 100_000, "Detect's classes")
        anchors = self.values.value(a[1])
        if not isinstance(anchors, Y) or anchors.kind != "seq":
            raise self.src.error(a[1].loc, f"Detect's anchors are {a[1].show()}: ultralytics would compute them "
                                 "while training (autoanchor)", "write the anchors out, one list of (width, height) "
                                 "pairs per level")
        levels = [self.values.ints(lv, None, 1, "an anchor") for lv in anchors.value]
        if len(levels) != len(ins) or len({len(lv) for lv in levels}) != 1 or len(levels[0]) % 2:
            raise self.src.error(anchors.loc, f"{len(levels)} anchor lists of lengths {[len(lv) for lv in levels]} "
                                 f"for {len(ins)} levels", "one list per level, each the same even number of values")
        strides = self._strides(call)
        self._check_anchor_order(levels, strides, anchors)
        if nc:
            self.w.params.append(("NCLS", self.nc))
        text = ", ".join("[" + ", ".join(map(str, lv)) + "]" for lv in levels)
        extra = (f", classes={'NCLS' if nc else classes}, strides=[{', '.join(map(str, strides))}],\n"
                 f"                anchors=[{text}]")
        shape = Shape(len(levels[0]) // 2 * (classes + 5), ins[0].shape.h, ins[0].shape.w)
        return Stmt("", [t.name for t in ins], [], "", None, merge="detect", extra=extra), shape

    def _strides(self, call: RowCall) -> list[int]:
        """Each level's stride: its map must be H/s x W/s."""
        strides = []
        for t in call.ins:
            st = stride_of(t.shape)
            if st is None:
                raise self.src.error(call.args.loc, f"Detect reads {t.name} {t.shape.show()}, not the input size "
                                     "divided by a whole stride", "each level's map must be H/s x W/s")
            strides.append(st)
        return strides

    def _check_anchor_order(self, levels: list[tuple[int, ...]], strides: list[int], anchors: Y) -> None:
        """ultralytics' check_anchor_order: the first anchor's area against the last one's, in pixels or
        in grid cells (versions differ), against the strides; it reverses the levels' anchors where they
        disagree, which would silently change the network: refused instead."""
        first, last = levels[0][0] * levels[0][1], levels[-1][-2] * levels[-1][-1]
        ds = strides[-1] - strides[0]
        for da in (last - first, last / strides[-1] ** 2 - first / strides[0] ** 2):
            if len(levels) > 1 and (da > 0) - (da < 0) != (ds > 0) - (ds < 0):
                raise self.src.error(anchors.loc, "the anchors' sizes do not grow with the levels' strides "
                                     f"({', '.join(map(str, strides))}): ultralytics reverses such anchors when it "
                                     "builds the model", "list the anchors in the order of Detect's inputs, smallest "
                                     "stride first")

    # -- blocks ----------------------------------------------------------------------------------

    def define(self) -> None:
        """Write the blocks the rows used, each after those it calls."""
        g = ", g = 1" if self.grouped else ""
        gc = ", g=g" if self.grouped else ""
        p = ", p = k // 2" if self.padded else ""
        conv = f"conv(c, k, stride=s, padding={'p' if self.padded else 'k // 2'}{', groups=g' if g else ''}, bias=false)"
        texts = {
            "cba": "# Conv: a convolution without bias, BatchNorm (eps and momentum as ultralytics sets them), "
                   f"{'SiLU' if self.act == 'silu' else self.act + ' (the YAML activation)'}.\n"
                   f"block cba(c, k = 1, s = 1{p}{g}) = {conv} -> {BN}{' -> ' * bool(self.act)}{self.act}",
            "cb": f"# Conv with act=False: no activation.\nblock cb(c, k = 1, s = 1{p}{g}) = {conv} -> {BN}",
            "res": "# Bottleneck(c): 1x1 to h channels, 3x3 back to c, plus the input.\n"
                   f"block res(c, h = c // 2{g}) {{\n  input x\n  y = x |> cba(h) -> cba(c, 3{gc})\n"
                   "  output = add(x, y)\n}",
            "pair": "# Bottleneck without the sum (shortcut=False, or another channel count than its input's).\n"
                    f"block pair(c, h = c // 2{g}) = cba(h) -> cba(c, 3{gc})",
        }
        # C3's statements take the names of ultralytics' C3 children: its __init__ registers cv1, cv2, cv3, m
        # (cv3 before the m it reads), an order a graph block cannot state, so a .pt of it loads by those names.
        for name, unit in (("c3", "res"), ("c3_plain", "pair")):
            texts[name] = (f"# C3{'' if unit == 'res' else ' with shortcut=False'}: 1x1 convolutions cv1, cv2 to h "
                           f"channels; n bottlenecks ({unit}) m after cv1;\n# cv3, 1x1 to c from m and cv2 joined. "
                           "Ultralytics' names: a state_dict of its C3 loads by name.\n"
                           f"block {name}(c, n = 1, h = c // 2{g}) {{\n  input x\n  cv1 = x |> cba(h)\n"
                           f"  cv2 = x |> cba(h)\n  m = cv1 |> {unit}(h, h{gc}) * n\n"
                           "  cv3 = cat(m, cv2) |> cba(c)\n  output = cv3\n}")
        texts["sppf"] = ("# SPPF(c, k): 1x1 to h channels, three chained max-pools (stride 1, same size), all joined, 1x1 "
                         "to c.\nblock sppf(c, h, k = 5) {\n  input x\n  y0 = x |> cba(h)\n" +
                         "".join(f"  y{i} = y{i - 1} |> maxpool(k, stride=1, padding=k // 2)\n" for i in (1, 2, 3)) +
                         "  output = cat(y0, y1, y2, y3) |> cba(c)\n}")
        texts.update({n: f"# Conv with act {a}.\nblock {n}(c, k = 1, s = 1{p}{g}) = {conv} -> {BN} -> {a}"
                      for n, a in self.acts.items()})
        texts.update(self.more_texts())
        texts.update(self.transformer_texts())
        texts.update(self.v8_texts())
        order = ["cba", "cb", *self.acts, "res", "pair", "c3", "c3_plain", "sppf", "res33", "pair33", "step",
                 "step_plain", "step_c3k", "step_c3k_plain"]
        for name in order + [k for k in self.used if k not in order]:
            if name not in self.used:
                continue
            if name in texts:
                self.w.block(name, texts[name], None)
                continue
            ks = self.used[name]
            pools = "".join(f"  y{i} = y0 |> maxpool({k}, stride=1, padding={k // 2})\n" for i, k in enumerate(ks, 1))
            self.w.block(name, f"# SPP(c, k={list(ks)}): 1x1 to h channels, max-pools of those windows (stride 1, same "
                        f"size), all joined, 1x1 to c.\nblock {name}(c, h) {{\n  input x\n  y0 = x |> cba(h)\n{pools}"
                        f"  output = cat({', '.join(f'y{i}' for i in range(len(ks) + 1))}) |> cba(c)\n}}", None)
