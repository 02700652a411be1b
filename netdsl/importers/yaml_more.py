"""YOLOv5's ghost modules and YOLOv7's pools for the YAML importer (`yaml_blocks.Modules` has these
handlers), as their definitions build them:

- GhostConv(c, k=1, s=1, g=1, act=True): cv1 = Conv to c//2 (k, s, g, act), cv2 = a 5x5 depthwise
  Conv of cv1 (act), output the two joined;
- GhostBottleneck(c, k=3, s=1): conv = GhostConv to c//2, then (stride 2 only) a k x k depthwise Conv
  with stride 2 and no activation, then GhostConv to c without activation; plus shortcut = the
  input (stride 1: it must have c channels) or, for stride 2, a depthwise k x k stride-2 Conv and a
  1x1 Conv, both without activation;
- C3Ghost(c, shortcut, g, e): C3 whose n bottlenecks are GhostBottleneck(h, h) (shortcut and g unused,
  as in ultralytics);
- MP(k=2): max-pool k, stride k; SP(k=3, s=1): max-pool k, stride s, padding k//2;
- SPPCSPC(c, shortcut, g, e=0.5, k=(5, 9, 13)) (YOLOv7): h = int(2*c*e); cv1, cv2 1x1 Convs to h,
  cv3 (3x3) and cv4 (1x1) after cv1, stride-1 max-pools of cv4 (5, 9, 13), cv5 1x1 of cv4 and
  the pools joined, cv6 3x3, cv7 1x1 to c of cv6 and cv2 joined;
- RepConv(c, k=3, s=1) (YOLOv7, its training form): rbr_identity, BatchNorm of the input (when it
  has c channels and s is 1), rbr_dense, a k x k Conv and BatchNorm, rbr_1x1, a 1x1 Conv and
  BatchNorm (same stride), summed, then the default activation.

Statements take ultralytics' child names (cv1, cv2; conv, shortcut), so their state_dicts load.
"""
from __future__ import annotations

from typing import Any

from netdsl.importers.spec_writer import Shape, Source
from netdsl.importers.yaml_call import Emitted, RowCall
from netdsl.importers.yaml_nodes import Values, Y

MORE_SIGNATURES = {"GhostConv": "GhostConv(c, k=1, s=1, g=1, act=True)", "GhostBottleneck": "GhostBottleneck(c, k=3, "
                   "s=1)", "C3Ghost": "C3Ghost(c, shortcut=True, g=1, e=0.5)", "MP": "MP(k=2)", "SP": "SP(k=3, s=1)",
                   "SPPCSPC": "SPPCSPC(c, shortcut=False, g=1, e=0.5, k=(5, 9, 13))",
                   "RepConv": "RepConv(c, k=3, s=1, p=None, g=1, act=True)"}
MORE_ARITY = {"GhostConv": 5, "GhostBottleneck": 3, "C3Ghost": 4, "MP": 1, "SP": 2, "SPPCSPC": 5, "RepConv": 6}
MORE_SIZED = ("GhostConv", "GhostBottleneck", "C3Ghost", "SPPCSPC", "RepConv")
BN = "batchnorm(eps=0.001, momentum=0.03)"


class MoreModules:
    """The handlers; `Modules` supplies the shared state and helpers declared here."""

    values: Values
    src: Source
    used: dict[str, Any]
    grouped: bool
    act: str  # the Conv's default activation layer

    def _act(self, y: Y | None) -> str:
        raise NotImplementedError

    def conv_block(self, act: str) -> str:
        raise NotImplementedError

    def _hidden(self, y: Y | None, c: int) -> int:
        raise NotImplementedError

    def more_handlers(self) -> dict[str, Any]:
        return {"GhostConv": self._ghost, "GhostBottleneck": self._ghost_bottleneck, "C3Ghost": self._c3ghost,
                "MP": self._mp, "SP": self._sp, "SPPCSPC": self._sppcspc, "RepConv": self._repconv}

    def ghost_block(self, act: str) -> str:
        """The GhostConv block whose Convs are the block for `act` (its name: ghost, ghost_cb, ghost_...)."""
        conv = self.conv_block(act)
        name = "ghost" + conv[3:] if conv.startswith("cba") else "ghost_" + conv
        self.used.setdefault(name, conv)
        self.grouped = True  # cv2 is depthwise: the Conv blocks take g
        return name

    def _ghost(self, call: RowCall) -> Emitted:
        v, a, arg, c2 = self.values, call.a, call.arg, call.c2
        k = v.whole(a[1], 1, 1 << 20, "k") if arg(1) else 1
        st = v.whole(a[2], 1, 1 << 20, "s") if arg(2) else 1
        g = v.whole(a[3], 1, 1 << 20, "g") if arg(3) else 1
        if c2 < 2 or call.shape.c % g or (c2 // 2) % g:
            raise self.src.error((arg(3) or call.args).loc, f"GhostConv to {c2} channels from {call.shape.c} with "
                                 f"g = {g}: its first Conv makes c // 2 = {c2 // 2} channels, which g must divide "
                                 "(as it must the input's)", "a channel count of at least 2, and groups that divide both")
        name = self.ghost_block(self._act(arg(4)))
        args = [str(c2)] + ([str(k)] if k != 1 or st != 1 else []) + ([str(st)] if st != 1 else []) + \
            ([f"g={g}"] if g != 1 else [])
        shape = call.shape
        for _ in range(call.number):
            shape = shape.window(c2 // 2 * 2, (k, k), (st, st), (k // 2 * 2, k // 2 * 2))
        return call.chain([f"{name}({', '.join(args)}){call.rep}"], shape)

    def _ghost_bottleneck(self, call: RowCall) -> Emitted:
        v, a, arg, c1, c2 = self.values, call.a, call.arg, call.shape.c, call.c2
        k = v.whole(a[1], 1, 1 << 20, "k") if arg(1) else 3
        st = v.whole(a[2], 1, 1 << 20, "s") if arg(2) else 1
        if c2 < 4:
            raise self.src.error(call.args.loc, f"GhostBottleneck to {c2} channels: its GhostConv to c // 2 halves "
                                 "again, to none", "at least 4 channels")
        self._ghost_units()
        if st != 2:  # ultralytics strides only for s == 2; any other s is a plain (stride 1) bottleneck
            if c1 != c2:
                raise self.src.error(call.args.loc, f"GhostBottleneck with stride 1 adds its input ({c1} channels) "
                                     f"to its {c2} output channels", f"give it {c1} output channels, or stride 2")
            self.used.setdefault("gbottle", None)
            return call.chain([f"gbottle({c2}){call.rep}"], call.shape)
        self.used.setdefault("gbottle2", None)
        shape = call.shape
        for _ in range(call.number):
            shape = shape.window(c2, (k, k), (2, 2), (k // 2 * 2, k // 2 * 2))
        return call.chain([f"gbottle2({c2}, {c1}" + (f", {k}" if k != 3 else "") + f"){call.rep}"], shape)

    def _ghost_units(self) -> None:
        """The blocks a GhostBottleneck uses, in the order they are defined."""
        self.ghost_block(self.act)
        self.ghost_block("")

    def _c3ghost(self, call: RowCall) -> Emitted:
        arg, c2, s = call.arg, call.c2, call.shape
        self.values.flag(arg(1), True, "shortcut")
        if arg(2) is not None:
            self.values.whole(call.a[2], 1, 1 << 20, "g")
        m = self._hidden(arg(3), c2)
        if m < 4:
            raise self.src.error((arg(3) or call.args).loc, f"C3Ghost's {m} hidden channels (int(c * e)) are too few "
                                 "for its GhostBottlenecks, which halve them twice", "a larger c or e")
        self.conv_block(self.act)
        self._ghost_units()
        self.used.setdefault("gbottle", None)
        self.used.setdefault("c3ghost", None)
        return call.chain([f"c3ghost({c2}, {call.number}" + (f", h={m}" if m != c2 // 2 else "") + ")"],
                          Shape(c2, s.h, s.w))

    def _mp(self, call: RowCall) -> Emitted:
        k = self.values.whole(call.a[0], 1, 1 << 20, "k") if call.arg(0) else 2
        shape = call.shape
        for _ in range(call.number):
            shape = shape.window(shape.c, (k, k), (k, k), (0, 0))
        return call.chain([f"maxpool({k}){call.rep}"], shape)

    def _sp(self, call: RowCall) -> Emitted:
        v, a, arg = self.values, call.a, call.arg
        k = v.whole(a[0], 1, 1 << 20, "k") if arg(0) else 3
        st = v.whole(a[1], 1, 1 << 20, "s") if arg(1) else 1
        shape = call.shape
        for _ in range(call.number):
            shape = shape.window(shape.c, (k, k), (st, st), (k // 2 * 2, k // 2 * 2))
        text = f"maxpool({k}" + (f", stride={st}" if st != k else "") + (f", padding={k // 2}" if k > 1 else "") + ")"
        return call.chain([text + call.rep], shape)

    def _sppcspc(self, call: RowCall) -> Emitted:
        v, a, arg, c2, s = self.values, call.a, call.arg, call.c2, call.shape
        self.values.flag(arg(1), False, "shortcut")
        if arg(2) is not None:
            v.whole(a[2], 1, 1 << 20, "g")
        h = self._hidden(arg(3), 2 * c2)
        if arg(4) is not None and v.ints(a[4], None, 1, "k") != (5, 9, 13):
            raise self.src.error(a[4].loc, f"SPPCSPC with the windows {a[4].show()}", "netdsl imports its windows "
                                 "(5, 9, 13): leave k out, or convert the network by hand")
        self.conv_block(self.act)
        self.used.setdefault("sppcspc", None)
        return call.chain([f"sppcspc({c2}, {h}){call.rep}"], Shape(c2, s.h, s.w))

    def _repconv(self, call: RowCall) -> Emitted:
        v, a, arg, c1, c2 = self.values, call.a, call.arg, call.shape.c, call.c2
        k = v.whole(a[1], 1, 1 << 20, "k") if arg(1) else 3
        st = v.whole(a[2], 1, 1 << 20, "s") if arg(2) else 1
        others = [(y, what) for y, what in ((arg(3), "p"), (arg(4), "g"), (arg(5), "act")) if y is not None]
        for y, what in others:
            if v.value(y) != {"p": None, "g": 1, "act": True}[what]:
                raise self.src.error(y.loc, f"RepConv with {what} = {y.show()}", "netdsl imports RepConv(c, k, s) "
                                     "with the defaults of p, g and act; convert another RepConv by hand")
        if k % 2 == 0:
            raise self.src.error(a[1].loc, f"RepConv with an even kernel {k}: its 1x1 branch (padding 0) and its "
                                 f"{k}x{k} one (padding {k // 2}) make maps of different sizes", "use an odd kernel")
        name = "rep_id" if c1 == c2 and st == 1 else "rep"
        self.used.setdefault(name, None)
        shape = call.shape
        for _ in range(call.number):
            shape = shape.window(c2, (k, k), (st, st), (k // 2 * 2, k // 2 * 2))
        args = [str(c2)] + ([str(k)] if k != 3 or st != 1 else []) + ([str(st)] if st != 1 else [])
        return call.chain([f"{name}({', '.join(args)}){call.rep}"], shape)

    def more_texts(self) -> dict[str, str]:
        """The definitions of the blocks these modules use."""
        texts: dict[str, str] = {}
        for name, conv in self.used.items():
            if name.startswith("ghost"):
                texts[name] = (f"# GhostConv(c, k, s, g){' (act=False)' if conv == 'cb' else ''}: cv1, a Conv to "
                               "c // 2 channels; cv2, a 5x5 depthwise Conv of it; both joined.\n"
                               f"block {name}(c, k = 1, s = 1, g = 1) {{\n  input x\n"
                               f"  cv1 = x |> {conv}(c // 2, k, s, g=g)\n  cv2 = cv1 |> {conv}(c // 2, 5, g=c // 2)\n"
                               "  output = cat(cv1, cv2)\n}")
        texts["gbottle"] = ("# GhostBottleneck(c) (stride 1): GhostConv to c // 2, GhostConv (act=False) to c, plus the "
                            "input.\nblock gbottle(c) {\n  input x\n  conv = x |> ghost(c // 2) -> ghost_cb(c)\n"
                            "  output = add(conv, x)\n}")
        texts["gbottle2"] = ("# GhostBottleneck(c, k, s=2) of ci input channels: GhostConv to c // 2, a depthwise k x k "
                             "stride-2 Conv,\n# GhostConv to c (both act=False); plus the input through a depthwise k x "
                             "k stride-2 Conv and a 1x1 Conv.\nblock gbottle2(c, ci, k = 3) {\n  input x\n"
                             "  conv = x |> ghost(c // 2) -> cb(c // 2, k, 2, g=c // 2) -> ghost_cb(c)\n"
                             "  shortcut = x |> cb(ci, k, 2, g=ci) -> cb(c)\n  output = add(conv, shortcut)\n}")
        texts["c3ghost"] = ("# C3Ghost: C3 (cv1, cv2 to h channels; m after cv1; cv3 from m and cv2 joined) whose "
                            "bottlenecks are\n# GhostBottleneck(h). Ultralytics' names: a state_dict of its C3Ghost "
                            "loads by name.\nblock c3ghost(c, n = 1, h = c // 2) {\n  input x\n  cv1 = x |> cba(h)\n"
                            "  cv2 = x |> cba(h)\n  m = cv1 |> gbottle(h) * n\n  cv3 = cat(m, cv2) |> cba(c)\n"
                            "  output = cv3\n}")
        pools = "".join(f"  m{k} = cv4 |> maxpool({k}, stride=1, padding={k // 2})\n" for k in (5, 9, 13))
        texts["sppcspc"] = ("# SPPCSPC(c) with h hidden channels (YOLOv7): cv1, cv2 1x1 to h; cv3 3x3, cv4 1x1 after cv1;"
                            "\n# max-pools of cv4; cv5 1x1 and cv6 3x3 after cv4 and the pools joined; cv7 1x1 to c of "
                            "cv6 and cv2 joined.\nblock sppcspc(c, h) {\n  input x\n  cv1 = x |> cba(h)\n"
                            "  cv2 = x |> cba(h)\n  cv3 = cv1 |> cba(h, 3)\n  cv4 = cv3 |> cba(h)\n" + pools +
                            "  cv5 = cat(cv4, m5, m9, m13) |> cba(h)\n  cv6 = cv5 |> cba(h, 3)\n"
                            "  cv7 = cat(cv6, cv2) |> cba(c)\n  output = cv7\n}")
        dense = (f"  rbr_dense = x |> conv(c, k, stride=s, padding=k // 2, bias=false) -> {BN}\n"
                 f"  rbr_1x1 = x |> conv(c, 1, stride=s, bias=false) -> {BN}\n")
        act = f" |> {self.act}" if self.act else ""
        texts["rep"] = ("# RepConv(c, k, s) (YOLOv7, as trained): a k x k and a 1x1 Conv (each with BatchNorm) summed, "
                        f"then the activation.\nblock rep(c, k = 3, s = 1) {{\n  input x\n{dense}"
                        f"  output = add(rbr_dense, rbr_1x1){act}\n}}")
        texts["rep_id"] = ("# RepConv(c, k) of c channels, stride 1: also the input through BatchNorm (rbr_identity) in "
                           f"the sum.\nblock rep_id(c, k = 3, s = 1) {{\n  input x\n  rbr_identity = x |> {BN}\n"
                           f"{dense}  output = add(rbr_dense, rbr_1x1, rbr_identity){act}\n}}")
        return texts
