"""The modules of an Ultralytics model YAML as netdsl statements and graph blocks (see ultralytics_yaml)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from netdsl.importers.spec_writer import Shape, Stmt, stride_of
from netdsl.importers.yaml_nodes import Y

if TYPE_CHECKING:
    from netdsl.importers.ultralytics_yaml import T, YamlImporter

BN = "batchnorm(eps=0.001, momentum=0.03)"
SIGNATURES = {"Conv": "Conv(c, k=1, s=1, p=None, g=1, act=True)", "Bottleneck": "Bottleneck(c, shortcut=True, g=1, "
              "e=0.5)", "C3": "C3(c, shortcut=True, g=1, e=0.5)", "SPP": "SPP(c, k=(5, 9, 13))",
              "SPPF": "SPPF(c, k=5)", "Concat": "Concat(dimension=1)", "nn.Upsample": "nn.Upsample(None, scale, mode)",
              "nn.MaxPool2d": "nn.MaxPool2d(k, s=k, p=0)", "nn.ZeroPad2d": "nn.ZeroPad2d(p)",
              "Detect": "Detect(nc, anchors)"}
ARITY = {"Conv": 6, "Bottleneck": 4, "C3": 4, "SPP": 2, "SPPF": 2, "Concat": 1, "nn.Upsample": 3,
         "nn.MaxPool2d": 3, "nn.ZeroPad2d": 1, "Detect": 2}


def _scalar(t: tuple[int, ...]) -> str:
    return str(t[0]) if len(set(t)) == 1 else f"({', '.join(map(str, t))})"


def _flag(imp: YamlImporter, y: Y | None, default: bool, what: str) -> bool:
    if y is None:
        return default
    v = imp.value(y)
    if v is True or v is False or (type(v) is int and v in (0, 1)):
        return bool(v)
    raise imp.src.error(y.loc, f"{what} is {y.show()}; expected true or false", f"write {what} as True or False")


# Activation modules a Conv's act may name that are what True and False give (ultralytics evaluates the text).
_ACT_MODULES = {"nn.SiLU()": True, "nn.Identity()": False}


def _act(imp: YamlImporter, y: Y | None) -> bool:
    """Conv's act: True (SiLU) or False (none). Another activation module is refused by name: taken
    for True it would silently become SiLU."""
    v = imp.value(y) if y is not None else True
    if isinstance(v, str) and v.replace(" ", "") in _ACT_MODULES:
        return _ACT_MODULES[v.replace(" ", "")]
    if y is not None and isinstance(v, str) and v.startswith("nn."):
        raise imp.src.error(y.loc, f"the activation {v} is not supported (yet): netdsl imports a Conv's act as True "
                            "(SiLU) or False (none)", "to keep it, import a copy without the act argument (SiLU) "
                            "and replace silu in the spec's Conv block (cba) by it, e.g. leaky_relu(0.1)")
    return _flag(imp, y, True, "act")


def _hidden(imp: YamlImporter, y: Y | None, c: int) -> int:
    """int(c * e), as ultralytics sizes a bottleneck's hidden channels."""
    if y is None:
        return c // 2
    e = imp.value(y)
    if type(e) not in (int, float) or not 0 < e <= 64:
        raise imp.src.error(y.loc, f"e is {y.show()}; expected a positive number", "e is the expansion, e.g. 0.5")
    m = int(c * e)
    if m < 1:
        raise imp.src.error(y.loc, f"e = {e} leaves int({c} * {e}) = {m} hidden channels", "a larger e")
    return m


def _groups(imp: YamlImporter, y: Y | None, *channels: int) -> int:
    if y is None:
        return 1
    g = imp.int(y, 1, 1 << 20, "g")
    if any(c % g for c in channels):
        raise imp.src.error(y.loc, f"g = {g} must divide the channels {', '.join(map(str, channels))}",
                            "choose groups that divide them")
    imp.grouped |= g != 1
    return g


def _same(imp: YamlImporter, c1: int, c2: int, number: int, n: Y, mod: str) -> None:
    if number > 1 and c1 != c2:
        raise imp.src.error(n.loc, f"{number} copies of {mod} built for {c1} input channels, each making {c2}: "
                            "ultralytics repeats the module as built, so the second one cannot read the first",
                            "use number 1, or an output channel count equal to the input's")


def _pools(imp: YamlImporter, y: Y | None, ks: tuple[int, ...], mod: str) -> None:
    for k in ks:
        if k % 2 == 0:
            raise imp.src.error(y.loc if y else None, f"{mod} with an even window {k}: its stride-1 pool with "
                                f"padding {k // 2} grows the map by one and the concatenation fails",
                                "use odd windows")


def emit(imp: YamlImporter, mod: str, ins: list[T], a: list[Y], number: int, n: Y, args: Y) -> tuple[Stmt, Shape]:
    src = imp.src
    if len(a) > ARITY[mod]:
        raise src.error(a[ARITY[mod]].loc, f"{mod} takes at most {ARITY[mod]} arguments here: {SIGNATURES[mod]}",
                        "remove the extra arguments or convert the network by hand")
    arg = lambda k: a[k] if k < len(a) else None  # noqa: E731
    s = ins[0].shape
    c1 = s.c
    rep = f" * {number}" if number > 1 else ""
    if mod in ("Conv", "Bottleneck", "C3", "SPP", "SPPF"):
        if not a:
            raise src.error(args.loc, f"{mod} needs its output channels", f"write {SIGNATURES[mod]}")
        c2 = imp.width(a[0])
        if mod != "C3":
            _same(imp, c1, c2, number, n, mod)
    if mod == "Conv":
        k = imp.ints(a[1], 2, 1, "k") if arg(1) else (1, 1)
        st = imp.ints(a[2], 2, 1, "s") if arg(2) else (1, 1)
        p = (k[0] // 2, k[1] // 2) if arg(3) is None or imp.value(a[3]) is None else imp.ints(a[3], 2, 0, "p")
        g = _groups(imp, arg(4), c1, c2)
        act = _act(imp, arg(5))
        shape = s
        for _ in range(number):  # each copy strides and pads again
            shape = Shape(c2, shape.h.window(k[0], st[0], 2 * p[0]), shape.w.window(k[1], st[1], 2 * p[1]))
        if all(len(set(t)) == 1 for t in (k, st, p)):
            name = "cba" if act else "cb"
            imp.used.setdefault(name, None)
            imp.padded |= p[0] != k[0] // 2
            call = [str(c2)] + ([str(k[0])] if k[0] != 1 or st[0] != 1 else []) + ([str(st[0])] if st[0] != 1 else [])
            call += [f"p={p[0]}"] * (p[0] != k[0] // 2) + [f"g={g}"] * (g != 1)
            chain = [f"{name}({', '.join(call)}){rep}"]
        else:
            kw = ", ".join([str(c2), _scalar(k), f"stride={_scalar(st)}", f"padding={_scalar(p)}"] +
                           [f"groups={g}"] * (g != 1) + ["bias=false"])
            if number > 1:
                raise src.error(n.loc, "a repeated Conv with a non-square kernel, stride or padding",
                                "write one row per convolution")
            chain = [f"conv({kw})", BN] + (["silu"] if act else [])
        return Stmt("", [ins[0].name], chain, "", None), shape
    if mod in ("Bottleneck", "C3"):
        short = _flag(imp, arg(1), True, "shortcut")
        m = _hidden(imp, arg(3), c2)
        g = _groups(imp, arg(2), m, c2)
        extra = (f", h={m}" if m != c2 // 2 else "") + (f", g={g}" if g != 1 else "")
        if mod == "Bottleneck":
            name = "res" if short and c1 == c2 else "pair"
            imp.used.setdefault("cba", None)
            imp.used.setdefault(name, None)
            return Stmt("", [ins[0].name], [f"{name}({c2}{extra}){rep}"], "", None), Shape(c2, s.h, s.w)
        name = "c3" if short else "c3_plain"
        imp.used.update({"cba": None, "res" if short else "pair": None})
        imp.used.setdefault(name, None)
        return Stmt("", [ins[0].name], [f"{name}({c2}, {number}{extra})"], "", None), Shape(c2, s.h, s.w)
    if mod in ("SPP", "SPPF"):
        ks = imp.ints(a[1], 1 if mod == "SPPF" else None, 1, "k") if arg(1) else (5,) if mod == "SPPF" else (5, 9, 13)
        _pools(imp, arg(1), ks, mod)
        if c1 // 2 < 1:
            raise src.error(args.loc, f"{mod} halves its {c1} input channels to none", "give it more channels")
        imp.used.setdefault("cba", None)
        if mod == "SPPF":
            imp.used.setdefault("sppf", None)
            call = f"sppf({c2}, {c1 // 2}" + (f", {ks[0]}" if ks[0] != 5 else "") + ")"
        else:
            sets = [v for k, v in imp.used.items() if k.startswith("spp") and k != "sppf"]
            name = next((k for k, v in imp.used.items() if v == ks and k.startswith("spp")), None)
            name = name or ("spp" if not sets else f"spp{len(sets) + 1}")
            imp.used.setdefault(name, ks)
            call = f"{name}({c2}, {c1 // 2})"
        return Stmt("", [ins[0].name], [call + rep], "", None), Shape(c2, s.h, s.w)
    if mod == "Concat":
        if arg(0) is not None and imp.value(a[0]) not in (1, -3):
            raise src.error(a[0].loc, f"Concat along dimension {a[0].show()}", "netdsl joins channels: Concat [1]")
        for t in ins[1:]:
            if not t.shape.same_size(s):
                raise src.error(args.loc, f"Concat of maps of different sizes: {ins[0].name} {s.show()}, "
                                f"{t.name} {t.shape.show()}", "Concat joins channels: heights and widths must match")
        return Stmt("", [t.name for t in ins], [], "", None, merge="cat"), Shape(sum(t.shape.c for t in ins), s.h, s.w)
    if mod == "nn.Upsample":
        if arg(0) is not None and imp.value(a[0]) is not None:
            raise src.error(a[0].loc, "nn.Upsample with an output size", "give a scale: [None, 2, 'nearest']")
        scale = imp.value(a[1]) if arg(1) is not None else None
        if type(scale) not in (int, float) or not 1 <= scale <= 64 or scale != int(scale):
            raise src.error((arg(1) or args).loc, "nn.Upsample needs a whole scale factor from 1 to 64",
                            "write e.g. [None, 2, 'nearest']")
        scale = int(scale)
        mode = imp.value(a[2]) if arg(2) else "nearest"
        if mode not in ("nearest", "bilinear"):
            raise src.error(a[2].loc, f"mode {a[2].show()} is not supported", "use 'nearest' or 'bilinear'")
        up = f"upsample({scale}" + (', mode="bilinear"' if mode == "bilinear" else "") + ")"
        return Stmt("", [ins[0].name], [up + rep], "", None), Shape(c1, s.h.scaled(scale ** number),
                                                                      s.w.scaled(scale ** number))
    if mod == "nn.MaxPool2d":
        k = imp.int(a[0], 1, 1 << 20, "k") if arg(0) else None
        if k is None:
            raise src.error(args.loc, "nn.MaxPool2d needs its window", "write e.g. [2, 2, 0]")
        st = k if arg(1) is None or imp.value(a[1]) is None else imp.int(a[1], 1, 1 << 20, "s")
        p = imp.int(a[2], 0, k // 2, "p (at most half the window)") if arg(2) else 0
        pool = f"maxpool({k}" + (f", stride={st}" if st != k else "") + (f", padding={p}" if p else "") + ")"
        shape = s
        for _ in range(number):
            shape = Shape(c1, shape.h.window(k, st, 2 * p), shape.w.window(k, st, 2 * p))
        return Stmt("", [ins[0].name], [pool + rep], "", None), shape
    if mod == "nn.ZeroPad2d":
        if arg(0) is None:
            raise src.error(args.loc, "nn.ZeroPad2d needs its padding", "write e.g. [[0, 1, 0, 1]]")
        left, right, top, bottom = imp.ints(a[0], 4, 0, "padding")
        shape = Shape(c1, s.h.padded((top + bottom) * number), s.w.padded((left + right) * number))
        return Stmt("", [ins[0].name], [f"pad({left}, {right}, {top}, {bottom}){rep}"], "", None), shape
    return _detect(imp, ins, a, args)


def _detect(imp: YamlImporter, ins: list[T], a: list[Y], args: Y) -> tuple[Stmt, Shape]:
    src = imp.src
    if len(a) < 2:
        raise src.error(args.loc, "Detect needs [nc, anchors]", "write [nc, anchors]")
    nc = a[0].value == "nc"
    classes = imp.nc if nc else imp.int(a[0], 1, 100_000, "Detect's classes")
    anchors = imp.value(a[1])
    if not isinstance(anchors, Y) or anchors.kind != "seq":
        raise src.error(a[1].loc, f"Detect's anchors are {a[1].show()}: ultralytics would compute them while "
                        "training (autoanchor)", "write the anchors out, one list of (width, height) pairs per level")
    levels = [imp.ints(lv, None, 1, "an anchor") for lv in anchors.value]
    if len(levels) != len(ins) or len({len(lv) for lv in levels}) != 1 or len(levels[0]) % 2:
        raise src.error(anchors.loc, f"{len(levels)} anchor lists of lengths {[len(lv) for lv in levels]} for "
                        f"{len(ins)} levels", "one list per level, each the same even number of values")
    strides = [stride_of(t.shape) for t in ins]
    for t, st in zip(ins, strides):
        if st is None:
            raise src.error(args.loc, f"Detect reads {t.name} {t.shape.show()}, not the input size divided by a "
                            "whole stride", "each level's map must be H/s x W/s")
    # ultralytics' check_anchor_order: the first anchor's area against the last one's, in pixels or in
    # grid cells (versions differ), against the strides; it reverses the levels' anchors where they disagree.
    first, last = levels[0][0] * levels[0][1], levels[-1][-2] * levels[-1][-1]
    ds = strides[-1] - strides[0]  # type: ignore[operator]
    for da in (last - first, last / strides[-1] ** 2 - first / strides[0] ** 2):  # type: ignore[operator]
        if len(levels) > 1 and (da > 0) - (da < 0) != (ds > 0) - (ds < 0):
            raise src.error(anchors.loc, "the anchors' sizes do not grow with the levels' strides "
                            f"({', '.join(map(str, strides))}): ultralytics reverses such anchors when it builds "
                            "the model", "list the anchors in the order of Detect's inputs, smallest stride first")
    if nc:
        imp.w.params.append(("NCLS", imp.nc))
    text = ", ".join("[" + ", ".join(map(str, lv)) + "]" for lv in levels)
    extra = (f", classes={'NCLS' if nc else classes}, strides=[{', '.join(map(str, strides))}],\n"
             f"                anchors=[{text}]")
    shape = Shape(len(levels[0]) // 2 * (classes + 5), ins[0].shape.h, ins[0].shape.w)
    return Stmt("", [t.name for t in ins], [], "", None, merge="detect", extra=extra), shape


def define(imp: YamlImporter) -> None:
    """Write the blocks the rows used, each after those it calls."""
    g = ", g = 1" if imp.grouped else ""
    gc = ", g=g" if imp.grouped else ""
    p = ", p = k // 2" if imp.padded else ""
    conv = f"conv(c, k, stride=s, padding={'p' if imp.padded else 'k // 2'}{', groups=g' if g else ''}, bias=false)"
    texts = {
        "cba": "# Conv: a convolution without bias, BatchNorm (eps and momentum as ultralytics sets them), SiLU.\n"
               f"block cba(c, k = 1, s = 1{p}{g}) = {conv} -> {BN} -> silu",
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
    order = ["cba", "cb", "res", "pair", "c3", "c3_plain", "sppf"]
    for name in order + [k for k in imp.used if k not in order]:
        if name not in imp.used:
            continue
        if name in texts:
            imp.w.block(name, texts[name], None)
            continue
        ks = imp.used[name]
        pools = "".join(f"  y{i} = y0 |> maxpool({k}, stride=1, padding={k // 2})\n" for i, k in enumerate(ks, 1))
        imp.w.block(name, f"# SPP(c, k={list(ks)}): 1x1 to h channels, max-pools of those windows (stride 1, same "
                    f"size), all joined, 1x1 to c.\nblock {name}(c, h) {{\n  input x\n  y0 = x |> cba(h)\n{pools}"
                    f"  output = cat({', '.join(f'y{i}' for i in range(len(ks) + 1))}) |> cba(c)\n}}", None)

