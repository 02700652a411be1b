"""darknet `.cfg` -> netdsl spec, with darknet's semantics (pjreddie/darknet's parser and layers).

- `[net]`: width, height and channels are the input (`input x: [channels, H = height, W = width]`).
- `[convolutional]`: `filters`, `size`, `stride`, `pad=1` meaning padding `size//2` (else
  `padding`), `groups`, `batch_normalize` (then the convolution has no bias: BatchNorm's beta is
  darknet's bias), `activation` linear, leaky (0.1), logistic, swish, mish, relu, tanh (darknet's
  default is logistic).
- `[shortcut]` `from`: the sum of the previous layer and that one; of maps of other shapes
  `darknet_shortcut` (AlexeyAB's `shortcut_multilayer_cpu`: the previous layer's shape, `from`'s
  values added over the common part of the flat buffers, so the channels both have where the
  sizes match). `[route]` `layers`: one layer (the next layer reads it) or the channel
  concatenation of several; with `groups=G group_id=I` part I of G equal channel parts of each
  (`channel_chunk`), as `forward_route_layer` copies them. Indices below zero count back from the
  layer itself, others are absolute; all must name an earlier layer.
- `[scale_channels]` `from` (squeeze-excitation: the previous layer is `[C, 1, 1]`, or with
  `scale_wh=1` `[1, H, W]`) and `[sam]` `from` (equal shapes): `mul(from map, previous)` (it
  broadcasts), then the section's activation (darknet's default linear).
- `[reorg]` `stride`: netdsl's `reorg`, darknet's own channel order (not `pixel_unshuffle`).
- `[dropout]` and `[cost]`: the identity at inference; no statement, a note (they keep their
  layer index, which `from` and `layers` count).
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

from collections.abc import Callable
from pathlib import Path

from netdsl.importers.darknet_head import DetectHead
from netdsl.importers.darknet_layers import CfgLayers, ConvWriter
from netdsl.importers.darknet_read import ACTIVATIONS, Section, must_be, opt_int, require_float
from netdsl.importers.darknet_residual import Residuals
from netdsl.importers.spec_writer import INPUT_SIZE, ONE, Note, Shape, Sizes, Source, Stmt, Tensor, Writer, net_name

# A plain layer's statement: its name, chain and output shape, and the last convolution it runs.
Plain = tuple[str, list[str], Shape, int | None]


class DarknetImporter:
    """One cfg's import: the layers read (`cfg`), then one statement per layer (or residual run)
    written in order; `out` maps each darknet layer index to the tensor that holds its output."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.cfg = CfgLayers(src)
        self.sizes = Sizes(self.cfg.height, self.cfg.width)
        self.w = Writer(src, net_name(Path(src.path).stem), [
            f"# Imported from {Path(src.path).name} (darknet .cfg) by `netdsl import`. Each statement's comment",
            "# gives its section's line in the cfg and darknet's layer index."])
        self.out: dict[int, Tensor] = {}
        self.x = Tensor("x", Shape(self.cfg.channels, INPUT_SIZE, INPUT_SIZE))
        self.convs = ConvWriter(self.cfg, self.w, self.sizes)
        self.residuals = Residuals(self.cfg, self.convs, self.w)
        self.head = DetectHead(self.cfg, self.w)
        # Per section kind (after [route] and [shortcut], which join tensors): the plain layer's statement.
        self.plain: dict[str, Callable[[int, Section, Tensor], Plain]] = {
            "conv": self._conv, "upsample": self._upsample, "maxpool": self._maxpool, "avgpool": self._avgpool,
            "softmax": self._softmax, "reorg": self._reorg}
        # Sections that read another layer besides their input, or none of their own.
        self.joins: dict[str, Callable[[int, Section, Tensor], None]] = {
            "shortcut": self._shortcut, "scale_channels": self._scale_channels, "sam": self._sam, "cost": self._cost,
            "dropout": self._dropout}

    def input_of(self, i: int) -> Tensor:
        if i == 0:
            return self.x
        layers = self.cfg.layers
        prev = layers[i - 1]
        if prev.kind == "yolo":
            raise self.src.error(layers[i].loc, f"layer {i} would read the [yolo] at line {prev.line}",
                                 "only a [route] may follow a [yolo]: route back to the feature map to go on from")
        return self.out[i - 1]

    def _layer(self, i: int) -> int:
        """Emit layer i (or the residual run starting there); the index of the last layer emitted."""
        s, cfg = self.cfg.layers[i], self.cfg
        if s.kind == "conv" and i not in cfg.head and self.residuals.unit_keeps_shape(i, self.input_of(i)):
            last, self.out[last] = self.residuals.write(i, self.input_of(i))
            return last
        if s.kind == "conv" and i in cfg.head:
            return i  # part of the detect head: the [yolo] after it reads it
        if s.kind == "yolo":
            self.head.read(i, self.input_of(i - 1))
            return i
        if s.kind == "route":
            self._route(i, s)
            return i
        inp = self.input_of(i)
        if s.kind in self.joins:
            self.joins[s.kind](i, s, inp)
            return i
        name, chain, shape, last_conv = self.plain[s.kind](i, s, inp)
        shape = self.sizes.check(shape, s.loc, f"layer {i}'s output")
        self.out[i] = Tensor(cfg.name_of(i, name), shape, last_conv)
        self.w.add(Stmt(self.out[i].name, [inp.name], chain, cfg.comment(i), s.loc))
        return i

    def _pass_on(self, i: int, s: Section, t: Tensor, what: str) -> None:
        """Layer i makes no statement: the next layer reads `t` (a note says so)."""
        self.w.note(Note([f"# cfg line {s.line}, layer {i}: {what}: the next layer reads ", ""], [t.name]))
        self.out[i] = t
        if i == len(self.cfg.layers) - 1:
            self.w.add(Stmt("output", [t.name], [], self.cfg.comment(i), s.loc))

    def _route(self, i: int, s: Section) -> None:
        ts = [self.out[j] for j in s.targets]
        if any(not t.shape.same_size(ts[0].shape) for t in ts):
            raise self.src.error(s.opts["layers"].loc, "[route] joins maps of different sizes: " + ", ".join(
                f"layer {j} {t.shape.show()}" for j, t in zip(s.targets, ts)),
                "route joins channels: the heights and widths must match")
        groups = opt_int(self.src, s, "groups", 1, 1, 1 << 16)
        if groups == 1:
            must_be(self.src, s, "group_id", 0, "without groups, darknet would copy from past the routed map")
        else:
            ts = self._route_parts(i, s, ts, groups)
        if len(ts) == 1 and groups == 1:
            self._pass_on(i, s, ts[0], f"[route] layers={s.opts['layers'].value}")
            return
        if len(ts) == 1:
            self.out[i] = ts[0]
            return
        shape = Shape(sum(t.shape.c for t in ts), ts[0].shape.h, ts[0].shape.w)
        self.out[i] = Tensor(self.cfg.name_of(i, f"route{i}"), shape)
        self.w.add(Stmt(self.out[i].name, [t.name for t in ts], [], self.cfg.comment(i), s.loc, merge="cat"))

    def _route_parts(self, i: int, s: Section, ts: list[Tensor], groups: int) -> list[Tensor]:
        """darknet's [route] groups=G group_id=I: part I of G equal parts of each routed map's channels
        (`forward_route_layer` copies outputs/G values from offset I*outputs/G), one statement each."""
        gid = opt_int(self.src, s, "group_id", 0, 0, groups - 1)
        parts = []
        for k, (j, t) in enumerate(zip(s.targets, ts)):
            if t.shape.c % groups:
                opt = s.opts["groups"]
                raise self.src.error(opt.loc, f"groups={groups} does not divide layer {j}'s {t.shape.c} channels",
                                     "darknet splits each routed map into equal channel parts: choose groups that "
                                     "divide the channels")
            name = self.cfg.name_of(i, f"route{i}") if len(ts) == 1 else f"route{i}_{k}"
            part = Tensor(name, Shape(t.shape.c // groups, t.shape.h, t.shape.w))
            self.w.add(Stmt(name, [t.name], [f"channel_chunk({gid}, {groups})"], self.cfg.comment(i), s.loc))
            parts.append(part)
        return parts

    def _shortcut(self, i: int, s: Section, inp: Tensor) -> None:
        """The sum of the previous layer and `from`; of maps of other shapes, darknet's rule (the
        previous layer's shape; `from`'s values added over the common part of the two buffers)."""
        other = self.out[s.targets[0]]
        act = ACTIVATIONS[self.cfg.activation(s, "linear")]
        merge = "add" if other.shape == inp.shape else "darknet_shortcut"
        stmt = Stmt(self.cfg.name_of(i, f"add{i}"), [inp.name, other.name], act, self.cfg.comment(i), s.loc,
                    merge=merge)
        self.out[i] = Tensor(stmt.name, inp.shape)
        self.w.add(stmt)

    def _gate(self, i: int, s: Section, inp: Tensor, name: str) -> None:
        """[scale_channels] and [sam]: the `from` map times the previous layer's (broadcast), then
        the section's activation (darknet's default linear; it does not apply swish or mish here)."""
        other = self.out[s.targets[0]]
        act = self.cfg.activation(s, "linear")
        if act in ("swish", "mish"):
            raise self.src.error(s.opts["activation"].loc, f"activation={act}: darknet's {s.title} does not apply "
                                 "it (darknet says so when it reads the cfg)", "use linear, logistic, leaky or relu")
        stmt = Stmt(self.cfg.name_of(i, f"{name}{i}"), [other.name, inp.name], ACTIVATIONS[act], self.cfg.comment(i),
                    s.loc, merge="mul")
        self.out[i] = Tensor(stmt.name, other.shape)
        self.w.add(stmt)

    def _scale_channels(self, i: int, s: Section, inp: Tensor) -> None:
        other, src = self.out[s.targets[0]].shape, self.src
        scale_wh = opt_int(src, s, "scale_wh", 0, 0, 1) == 1
        want = Shape(1, other.h, other.w) if scale_wh else Shape(other.c, ONE, ONE)
        if inp.shape != want:
            what = "one channel of the `from` map's size" if scale_wh else "[C, 1, 1] with the `from` map's channels"
            raise src.error(s.loc, f"[scale_channels] scales layer {s.targets[0]} {other.show()} by layer {i - 1} "
                            f"{inp.shape.show()}: darknet needs the previous layer to be {what}",
                            f"the previous layer should be {want.show()} (e.g. [avgpool] then 1x1 convolutions)")
        self._gate(i, s, inp, "scale")

    def _sam(self, i: int, s: Section, inp: Tensor) -> None:
        other = self.out[s.targets[0]].shape
        if other != inp.shape:
            raise self.src.error(s.opts["from"].loc, f"[sam] multiplies layer {s.targets[0]} {other.show()} by layer "
                                 f"{i - 1} {inp.shape.show()}: darknet's [sam] needs equal shapes",
                                 "point from= at a map of the previous layer's shape")
        self._gate(i, s, inp, "sam")

    def _cost(self, i: int, s: Section, inp: Tensor) -> None:
        self._pass_on(i, s, inp, "[cost] (darknet's training loss; the identity at inference)")

    def _dropout(self, i: int, s: Section, inp: Tensor) -> None:
        self._pass_on(i, s, inp, "[dropout] (darknet drops units in training only; the identity at inference)")

    def _reorg(self, i: int, s: Section, inp: Tensor) -> Plain:
        k = opt_int(self.src, s, "stride", 1, 1, 64)
        must_be(self.src, s, "reverse", 0, "netdsl imports darknet's forward [reorg] only")
        c, h, w = inp.shape.c, inp.shape.h, inp.shape.w
        if c % (k * k) or h.b % k or w.b % k:
            loc = s.opts["stride"].loc if "stride" in s.opts else s.loc
            raise self.src.error(loc, f"[reorg] stride={k} of layer {i - 1} {inp.shape.show()}: darknet's reorg needs "
                                 f"channels divisible by {k * k} and sides divisible by {k}",
                                 "choose a stride that divides the map")
        return f"reorg{i}", [f"reorg({k})"], inp.shape.window(c * k * k, (k, k), (k, k), (0, 0)), None

    def _conv(self, i: int, s: Section, inp: Tensor) -> Plain:
        c = self.cfg.convs[i]
        return f"conv{i}", [self.convs.call(c, str(c.filters))], self.convs.shape(c, inp.shape, s), i

    def _upsample(self, i: int, s: Section, inp: Tensor) -> Plain:
        k = opt_int(self.src, s, "stride", 2, 1, 64)
        require_float(self.src, s, "scale", 1.0)
        return f"up{i}", [f"upsample({k})"], inp.shape.scaled(k), None

    def _avgpool(self, i: int, s: Section, inp: Tensor) -> Plain:
        return f"avg{i}", ["adaptive_avgpool"], Shape(inp.shape.c, ONE, ONE), None

    def _softmax(self, i: int, s: Section, inp: Tensor) -> Plain:
        must_be(self.src, s, "groups", 1, "netdsl's softmax is over all channels")
        require_float(self.src, s, "temperature", 1.0)
        if (inp.shape.h, inp.shape.w) != (ONE, ONE):
            raise self.src.error(s.loc, f"[softmax] of a {inp.shape.show()} map: darknet's softmax is over every "
                                 "unit, netdsl's over the channels", "netdsl imports [softmax] after [avgpool] only")
        return f"soft{i}", ["softmax"], inp.shape, None

    def _maxpool(self, i: int, s: Section, inp: Tensor) -> Plain:
        src, shape = self.src, inp.shape
        stride = opt_int(src, s, "stride", 1, 1)
        size = opt_int(src, s, "size", stride, 1)
        pad = opt_int(src, s, "padding", size - 1)
        left, right = pad // 2, pad - pad // 2
        out = shape.window(shape.c, (size, size), (stride, stride), (pad, pad))
        pool = f"maxpool({size}" + (f", stride={stride}" if stride != size else "")
        # darknet's one extra row and column (right, bottom) never reach a window when the window count
        # is the same without them, for every admissible size (a*H/stride is whole: see spec_writer).
        unused = left == 0 and right == 1 and all((sz.b + 1 - size) % stride != 0 for sz in (shape.h, shape.w))
        if pad == 0 or unused:
            return f"pool{i}", [pool + ")"], out, None
        if left == right and left <= size // 2:
            return f"pool{i}", [pool + f", padding={left})"], out, None
        return f"pool{i}", [f"pad({left}, {right}, {left}, {right}, value=-inf)", pool + ")"], out, None

    def _check_input_size(self) -> None:
        """[net]'s height and width must be multiples of the network's total stride."""
        s = self.sizes.multiple
        for key, v in (("height", self.cfg.height), ("width", self.cfg.width)):
            if v % s:
                raise self.src.error(self.cfg.net.opts[key].loc, f"{key}={v} is not a multiple of {s}, the "
                                     "network's total stride", f"use a multiple of {s}, e.g. {key}={max(s, v // s * s)}")

    def run(self) -> str:
        for s in [self.cfg.net, *self.cfg.layers]:
            for note in s.notes:
                self.w.note(f"# {note}")
        i = 0
        while i < len(self.cfg.layers):
            i = self._layer(i) + 1
        if self.head.levels:
            last = self.cfg.layers[-1]
            if last.kind != "yolo":
                raise self.src.error(last.loc, "layers after the last [yolo]: netdsl's detect head is the network's "
                                     "output", "end the cfg with its last [yolo]")
            self.head.write()
        self._check_input_size()
        self.sizes.validate(self.src)
        self.w.input = (self.cfg.channels, self.sizes)
        return self.w.finish()


def import_cfg(text: str, path: str) -> str:
    """The netdsl spec for darknet cfg text (a NetdslError at the cfg's line for anything unsupported)."""
    return DarknetImporter(Source(path, text)).run()
