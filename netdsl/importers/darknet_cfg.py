"""darknet `.cfg` -> netdsl spec, with darknet's semantics (pjreddie/darknet's parser and layers).

- `[net]`: width, height and channels are the input (`input x: [channels, H = height, W = width]`).
- `[convolutional]`: `filters`, `size`, `stride`, `pad=1` meaning padding `size//2` (else
  `padding`), `groups`, `batch_normalize` (then the convolution has no bias: BatchNorm's beta is
  darknet's bias), `activation` linear, leaky (0.1), logistic, swish, mish, relu, tanh (darknet's
  default is logistic).
- `[shortcut]` `from`: the sum of the previous layer and that one; `[route]` `layers`: one layer
  (the next layer reads it) or the channel concatenation of several. Indices below zero count
  back from the layer itself, others are absolute; both must name an earlier layer.
- `[maxpool]`: `stride` (1), `size` (stride), `padding` (size - 1) split left/top `padding//2`
  and right/bottom the rest, filled with -inf: a `pad(..., value=-inf)` before the pool, or the
  pool's own padding where the split is even, or nothing where the extra row never reaches a window
  for any admissible input size.
- `[upsample]` nearest by `stride`; `[avgpool]` global average; `[softmax]` over a 1x1 map.
- `[yolo]`: the level's anchors (`anchors` picked by `mask`), `classes`; the `[convolutional]`
  before it (1x1, linear, with bias, `len(mask)*(classes + 5)` filters) is the level's convolution
  of netdsl's `detect`, whose levels are ordered by stride, smallest first. Where a `[route]` put
  other statements between a level's feature map and its `[yolo]`, detect reads the map through a
  statement written at the `[yolo]`'s place: darknet `.weights` then load in darknet's order.
- BatchNorm: darknet's eps, 1e-5 (it divides by `sqrt(variance + .00001)`).

Residual units (convolutions followed by a `[shortcut]` back to their input) become one graph
block, and consecutive equal units one repetition. Every statement's comment gives the section's
line in the cfg and darknet's layer index.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from netdsl.importers.darknet_head import read_yolo, write_detect
from netdsl.importers.darknet_read import (
    ACTIVATIONS,
    Conv,
    Section,
    T,
    must_be,
    opt_int,
    opt_ints,
    opt_str,
    read_cfg,
    require_float,
)
from netdsl.importers.darknet_residual import shortcut_hint, unit_end, write_residual
from netdsl.importers.spec_writer import Note, Shape, Size, Sizes, Source, Stmt, Writer, check_text, net_name

# Blocks for conv + batchnorm + activation, by darknet's activation name.
BN_BLOCKS = {"leaky": "cbl", "linear": "cb", "logistic": "cb_sigmoid", "swish": "cb_silu", "mish": "cb_mish", "relu": "cb_relu",
             "tanh": "cb_tanh"}
# darknet normalises by sqrt(variance + .00001): its eps, or its .weights give other outputs. Momentum
# only steers training, which netdsl does with the course's (ultralytics') recipe: its 0.03.
BN = "batchnorm(eps=1e-5, momentum=0.03)"


class CfgImporter:
    def __init__(self, src: Source) -> None:
        self.src = src
        check_text(src)
        secs = read_cfg(src)
        self.net, self.layers = secs[0], secs[1:]
        if not self.layers:
            raise src.error(self.net.loc, "no layers after [net]", "add [convolutional] and other sections")
        n = self.net
        self.sizes = Sizes(opt_int(src, n, "height", None, 1, 10**6), opt_int(src, n, "width", None, 1, 10**6))
        self.channels = opt_int(src, n, "channels", None, 1, 10**6)
        self.w = Writer(src, net_name(Path(src.path).stem), [
            f"# Imported from {Path(src.path).name} (darknet .cfg) by `netdsl import`. Each statement's comment",
            "# gives its section's line in the cfg and darknet's layer index."])
        self.out: dict[int, T] = {}
        self.x = T("x", Shape(self.channels, Size(Fraction(1), 0), Size(Fraction(1), 0)))
        self.levels: list[tuple[T, Section, list[int], int, Section]] = []  # (feature, yolo, anchors, classes, conv)
        self.head = {i - 1 for i, s in enumerate(self.layers) if s.kind == "yolo"}
        self.refs = self._references()
        self.res_blocks: dict[tuple, str] = {}
        self.convs = {i: self._conv(s) for i, s in enumerate(self.layers) if s.kind == "conv"}
        self.plain_end = self._plain_ends()
        self._check_size()

    # -- reading the layers ----------------------------------------------------------------------

    def _check_size(self) -> None:
        """Refuse at once a cfg that netdsl's layer limit refuses anyway, rather than after writing it all."""
        from netdsl.passes.lower import MAX_LAYERS

        made = 0  # netdsl layers at least: a convolution, its batchnorm and activation; one for a pool
        for i, s in enumerate(self.layers):
            c = self.convs.get(i)
            if c is not None and i not in self.head:
                made += 1 + c.bn + len(ACTIVATIONS[c.act])
            made += s.kind in ("maxpool", "upsample", "avgpool", "softmax")
            if made > MAX_LAYERS:
                raise self.src.error(s.loc, f"the network has more than {MAX_LAYERS:,} layers by this section, "
                                     f"netdsl's limit", "import a smaller network")

    def _index(self, sec: Section, key: str, v: int) -> int:
        i = sec.index
        j = v if v >= 0 else i + v
        opt = sec.opts[key]
        if not 0 <= j < i:
            raise self.src.error(opt.loc, f"{key}={opt.value}: {v} names layer {j}, but layer {i} can only read "
                                 f"layers 0 to {i - 1}" if i else f"{key}={opt.value}: layer 0 has no earlier layer",
                                 "below zero counts back from this layer (-1 is the previous one); from zero up, "
                                 "layers are numbered from the first section after [net]")
        if j in self.head or self.layers[j].kind == "yolo":
            raise self.src.error(opt.loc, f"{key}={opt.value} reads layer {j}, "
                                 f"{'a [yolo]' if j not in self.head else 'the convolution before a [yolo]'} "
                                 f"(line {self.layers[j].line}); netdsl's detect head keeps it inside",
                                 "read the feature map before that convolution instead")
        return j

    def _references(self) -> dict[int, set[int]]:
        refs: dict[int, set[int]] = {}
        for s in self.layers:
            if s.kind == "yolo" and (s.index == 0 or self.layers[s.index - 1].kind != "conv"):
                raise self.src.error(s.loc, "a [yolo] must follow the [convolutional] that makes its predictions",
                                     "put the 1x1 linear [convolutional] right before it")
            if s.kind == "route":
                vals, _ = opt_ints(self.src, s, "layers")
                s.targets = [self._index(s, "layers", v) for v in vals]  # type: ignore[attr-defined]
            elif s.kind == "shortcut":
                vals, opt = opt_ints(self.src, s, "from")
                if len(vals) != 1:
                    raise self.src.error(opt.loc, "[shortcut] from= takes one layer", "write e.g. from=-3")
                s.targets = [self._index(s, "from", vals[0])]  # type: ignore[attr-defined]
                require_float(self.src, s, "alpha", 1.0)
                require_float(self.src, s, "beta", 1.0)
            for j in getattr(s, "targets", []):
                refs.setdefault(j, set()).add(s.index)
        return refs

    def _plain_ends(self) -> list[int]:
        """Per layer i (and one past the last), the first layer from i on that is not a convolution
        outside the detect head read by nothing but the next layer: where a residual unit starting at i
        can end. One pass from the back, so that finding every unit stays linear in the layers."""
        ends = list(range(len(self.layers) + 1))
        for i in range(len(self.layers) - 1, -1, -1):
            if self.layers[i].kind == "conv" and i not in self.head and i not in self.refs:
                ends[i] = ends[i + 1]
        return ends

    def activation(self, s: Section, default: str) -> str:
        act, loc = opt_str(self.src, s, "activation", default)
        if act not in ACTIVATIONS:
            raise self.src.error(loc, f"activation={act} is not supported",
                                 f"netdsl imports {', '.join(sorted(ACTIVATIONS))}")
        return act

    def _conv(self, s: Section) -> Conv:
        src = self.src
        size = opt_int(src, s, "size", 1, 1)
        pad = opt_int(src, s, "pad", 0, -2**31)
        padding = size // 2 if pad else opt_int(src, s, "padding", 0)
        must_be(src, s, "binary", 0, "binary convolutions have no netdsl op")
        must_be(src, s, "xnor", 0, "XNOR convolutions have no netdsl op")
        bn = opt_int(src, s, "batch_normalize", 0, 0, 1) == 1
        return Conv(opt_int(src, s, "filters", 1, 1), size, opt_int(src, s, "stride", 1, 1), padding,
                    opt_int(src, s, "groups", 1, 1), bn, self.activation(s, "logistic"))

    # -- writing ---------------------------------------------------------------------------------

    def call(self, c: Conv, filters: str) -> str:
        """The chain text of one convolution (`filters` as an expression)."""
        if c.bn:
            name = BN_BLOCKS[c.act]
            self._bn_block(name, c.act)
            args = [filters] + ([str(c.size)] if c.size != 1 or c.stride != 1 else []) + \
                   ([str(c.stride)] if c.stride != 1 else [])
            args += [f"p={c.padding}"] if c.padding != c.size // 2 else []
            args += [f"g={c.groups}"] if c.groups != 1 else []
            return f"{name}({', '.join(args)})"
        kw = [f"stride={c.stride}"] * (c.stride != 1) + [f"padding={c.padding}"] * (c.padding != 0) + \
             [f"groups={c.groups}"] * (c.groups != 1)
        return " -> ".join([f"conv({', '.join([filters, str(c.size), *kw])})", *ACTIVATIONS[c.act]])

    def _bn_block(self, name: str, act: str) -> None:
        if name in self.w.blocks:  # its parameters look at every convolution: once, not once per call
            return
        tail = "".join(f" -> {a}" for a in ACTIVATIONS[act])
        convs = [c for c in self.convs.values() if c.bn and c.act == act]
        p = any(c.padding != c.size // 2 for c in convs)
        g = any(c.groups != 1 for c in convs)
        params = "c, k = 1, s = 1" + ", p = k // 2" * p + ", g = 1" * g
        conv = "conv(c, k, stride=s, padding=" + ("p" if p else "k // 2") + ", groups=g" * g + ", bias=false)"
        self.w.block(name, f"# [convolutional] with batch_normalize=1, activation={act}: no bias (BatchNorm's beta "
                     f"is darknet's bias);\n# BatchNorm's eps is darknet's 1e-5, its momentum that of specs/yolov3.net.\n"
                     f"block {name}({params}) = {conv} -> {BN}{tail}", None)

    def conv_shape(self, c: Conv, s: Shape, sec: Section) -> Shape:
        if s.c % c.groups or c.filters % c.groups:
            opt = sec.opts.get("groups")
            raise self.src.error(opt.loc if opt else sec.loc, f"groups={c.groups} must divide the input's {s.c} "
                                 f"channels and the {c.filters} filters", "choose groups that divide both")
        out = Shape(c.filters, s.h.window(c.size, c.stride, 2 * c.padding), s.w.window(c.size, c.stride, 2 * c.padding))
        return self.sizes.check(out, sec.loc, f"layer {sec.index}'s output")

    def input_of(self, i: int) -> T:
        if i == 0:
            return self.x
        prev = self.layers[i - 1]
        if prev.kind == "yolo":
            raise self.src.error(self.layers[i].loc, f"layer {i} would read the [yolo] at line {prev.line}",
                                 "only a [route] may follow a [yolo]: route back to the feature map to go on from")
        return self.out[i - 1]

    def comment(self, first: int, last: int | None = None) -> str:
        if last is None or last == first:
            return f"cfg line {self.layers[first].line}, layer {first}"
        return f"cfg lines {self.layers[first].line}-{self.layers[last].line}, layers {first}-{last}"

    def name_of(self, i: int, name: str) -> str:
        return "output" if i == len(self.layers) - 1 else name

    def _layer(self, i: int) -> int:
        """Emit layer i (or the residual run starting there); the index of the last layer emitted."""
        s, src = self.layers[i], self.src
        if s.kind == "conv" and i not in self.head and unit_end(self, i) is not None:
            return write_residual(self, i)
        if s.kind == "conv" and i in self.head:
            return i  # part of the detect head: see darknet_head
        if s.kind == "yolo":
            read_yolo(self, i)
            return i
        if s.kind == "route":
            ts = [self.out[j] for j in s.targets]  # type: ignore[attr-defined]
            if any(not t.shape.same_size(ts[0].shape) for t in ts):
                raise src.error(s.opts["layers"].loc, "[route] joins maps of different sizes: " + ", ".join(
                    f"layer {j} {t.shape.show()}" for j, t in zip(s.targets, ts)),  # type: ignore[attr-defined]
                    "route joins channels: the heights and widths must match")
            if len(ts) == 1:
                self.w.note(Note([f"# cfg line {s.line}, layer {i}: [route] layers={s.opts['layers'].value}: "
                                  "the next layer reads ", ""], [ts[0].name]))
                self.out[i] = ts[0]
                if i == len(self.layers) - 1:
                    self.w.add(Stmt("output", [ts[0].name], [], self.comment(i), s.loc))
                return i
            shape = Shape(sum(t.shape.c for t in ts), ts[0].shape.h, ts[0].shape.w)
            self.out[i] = T(self.name_of(i, f"route{i}"), shape)
            self.w.add(Stmt(self.out[i].name, [t.name for t in ts], [], self.comment(i), s.loc, merge="cat"))
            return i
        inp = self.input_of(i)
        name, chain, shape, last_conv = f"l{i}", [], inp.shape, None
        if s.kind == "conv":
            c = self.convs[i]
            name, chain, shape, last_conv = f"conv{i}", [self.call(c, str(c.filters))], \
                self.conv_shape(c, inp.shape, s), i
        elif s.kind == "shortcut":
            other = self.out[s.targets[0]]  # type: ignore[attr-defined]
            if other.shape != inp.shape:
                raise src.error(s.opts["from"].loc, f"[shortcut] adds layer {i - 1} {inp.shape.show()} and layer "
                                f"{s.targets[0]} {other.shape.show()}: their shapes differ",  # type: ignore
                                shortcut_hint(inp.shape, other.shape))
            stmt = Stmt(self.name_of(i, f"add{i}"), [inp.name, other.name], ACTIVATIONS[self.activation(s, "linear")],
                        self.comment(i), s.loc, merge="add")
            self.out[i] = T(stmt.name, inp.shape)
            self.w.add(stmt)
            return i
        elif s.kind == "upsample":
            k = opt_int(src, s, "stride", 2, 1, 64)
            require_float(src, s, "scale", 1.0)
            name, chain = f"up{i}", [f"upsample({k})"]
            shape = Shape(inp.shape.c, inp.shape.h.scaled(k), inp.shape.w.scaled(k))
        elif s.kind == "maxpool":
            name, chain, shape = f"pool{i}", *self._maxpool(s, inp.shape)
        elif s.kind == "avgpool":
            name, chain, shape = f"avg{i}", ["adaptive_avgpool"], Shape(inp.shape.c, Size(Fraction(0), 1),
                                                                        Size(Fraction(0), 1))
        elif s.kind == "softmax":
            must_be(src, s, "groups", 1, "netdsl's softmax is over all channels")
            require_float(src, s, "temperature", 1.0)
            if (inp.shape.h, inp.shape.w) != (Size(Fraction(0), 1),) * 2:
                raise src.error(s.loc, f"[softmax] of a {inp.shape.show()} map: darknet's softmax is over every "
                                "unit, netdsl's over the channels", "netdsl imports [softmax] after [avgpool] only")
            name, chain = f"soft{i}", ["softmax"]
        shape = self.sizes.check(shape, s.loc, f"layer {i}'s output")
        self.out[i] = T(self.name_of(i, name), shape, last_conv)
        self.w.add(Stmt(self.out[i].name, [inp.name], chain, self.comment(i), s.loc))
        return i

    def _maxpool(self, s: Section, shape: Shape) -> tuple[list[str], Shape]:
        src = self.src
        stride = opt_int(src, s, "stride", 1, 1)
        size = opt_int(src, s, "size", stride, 1)
        pad = opt_int(src, s, "padding", size - 1)
        left, right = pad // 2, pad - pad // 2
        out = Shape(shape.c, shape.h.window(size, stride, pad), shape.w.window(size, stride, pad))
        pool = f"maxpool({size}" + (f", stride={stride}" if stride != size else "")
        # darknet's one extra row and column (right, bottom) never reach a window when the window count
        # is the same without them, for every admissible size (a*H/stride is whole: see spec_writer).
        unused = left == 0 and right == 1 and all((sz.b + 1 - size) % stride != 0 for sz in (shape.h, shape.w))
        if pad == 0 or unused:
            return [pool + ")"], out
        if left == right and left <= size // 2:
            return [pool + f", padding={left})"], out
        return [f"pad({left}, {right}, {left}, {right}, value=-inf)", pool + ")"], out

    def run(self) -> str:
        i = 0
        while i < len(self.layers):
            i = self._layer(i) + 1
        if self.levels:
            last = self.layers[-1]
            if last.kind != "yolo":
                raise self.src.error(last.loc, "layers after the last [yolo]: netdsl's detect head is the network's "
                                     "output", "end the cfg with its last [yolo]")
            write_detect(self)
        h = opt_int(self.src, self.net, "height", None, 1)
        w = opt_int(self.src, self.net, "width", None, 1)
        s = self.sizes.multiple
        for key, v in (("height", h), ("width", w)):
            if v % s:
                raise self.src.error(self.net.opts[key].loc, f"{key}={v} is not a multiple of {s}, the network's "
                                     "total stride", f"use a multiple of {s}, e.g. {key}={max(s, v // s * s)}")
        self.sizes.validate(self.src)
        self.w.input = (self.channels, self.sizes)
        return self.w.finish()


def import_cfg(text: str, path: str) -> str:
    """The netdsl spec for darknet cfg text (a NetdslError at the cfg's line for anything unsupported)."""
    return CfgImporter(Source(path, text)).run()
