"""A darknet `.cfg`'s layers as read and checked before anything is written, and the text of its
convolutions (see darknet_cfg for darknet's semantics)."""
from __future__ import annotations

from netdsl.importers.darknet_read import (
    ACTIVATIONS,
    Conv,
    Section,
    must_be,
    opt_int,
    opt_ints,
    opt_str,
    read_cfg,
    require_float,
)
from netdsl.importers.spec_writer import Shape, Sizes, Source, Writer, check_text
from netdsl.limits import MAX_INT32
from netdsl.passes import lower

# Blocks for conv + batchnorm + activation, by darknet's activation name.
BN_BLOCKS = {"leaky": "cbl", "linear": "cb", "logistic": "cb_sigmoid", "swish": "cb_silu", "mish": "cb_mish", "relu": "cb_relu",
             "tanh": "cb_tanh"}
# darknet normalises by sqrt(variance + .00001): its eps, or its .weights give other outputs. Momentum
# only steers training, which netdsl does with the course's (ultralytics') recipe: its 0.03.
BN = "batchnorm(eps=1e-5, momentum=0.03)"


class CfgLayers:
    """The cfg read: `[net]`'s input size and channels, the layers, their convolutions, what reads
    what (`refs`), the convolutions inside the detect head (`head`), and where a residual unit
    starting at each layer can end (`plain_end`). Every refusal here comes before any writing."""

    def __init__(self, src: Source) -> None:
        self.src = src
        check_text(src)
        secs = read_cfg(src)
        self.net, self.layers = secs[0], secs[1:]
        if not self.layers:
            raise src.error(self.net.loc, "no layers after [net]", "add [convolutional] and other sections")
        n = self.net
        self.height = opt_int(src, n, "height", None, 1, 10**6)
        self.width = opt_int(src, n, "width", None, 1, 10**6)
        self.channels = opt_int(src, n, "channels", None, 1, 10**6)
        self.head = {i - 1 for i, s in enumerate(self.layers) if s.kind == "yolo"}
        self.refs = self._references()
        self.convs = {i: self._conv(s) for i, s in enumerate(self.layers) if s.kind == "conv"}
        self.plain_end = self._plain_ends()
        self._check_size()

    def _check_size(self) -> None:
        """Refuse at once a cfg that netdsl's layer limit refuses anyway, rather than after writing it all."""
        limit = lower.MAX_LAYERS  # read at the call: bench/bench_import_cfg.py lifts it to time the importer alone
        made = 0  # netdsl layers at least: a convolution, its batchnorm and activation; one for a pool
        for i, s in enumerate(self.layers):
            c = self.convs.get(i)
            if c is not None and i not in self.head:
                made += 1 + c.bn + len(ACTIVATIONS[c.act])
            made += s.kind in ("maxpool", "upsample", "avgpool", "softmax", "reorg")
            if made > limit:
                raise self.src.error(s.loc, f"the network has more than {limit:,} layers by this section, "
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
                s.targets = [self._index(s, "layers", v) for v in vals]
            elif s.kind in ("shortcut", "scale_channels", "sam"):
                vals, opt = opt_ints(self.src, s, "from")
                if len(vals) != 1:
                    raise self.src.error(opt.loc, f"{s.title} from= takes one layer here", "write e.g. from=-3")
                s.targets = [self._index(s, "from", vals[0])]
                if s.kind == "shortcut":
                    self._check_shortcut(s)
            for j in s.targets:
                refs.setdefault(j, set()).add(s.index)
        return refs

    def _check_shortcut(self, s: Section) -> None:
        require_float(self.src, s, "alpha", 1.0)
        require_float(self.src, s, "beta", 1.0)
        kind, loc = opt_str(self.src, s, "weights_type", "none")
        if kind != "none":
            raise self.src.error(loc, f"weights_type={kind}: a weighted [shortcut] is not supported (its weights "
                                 "would be a learned per-layer or per-channel sum)",
                                 "remove weights_type (darknet's default is none) or convert the network by hand")

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
        pad = opt_int(src, s, "pad", 0, -MAX_INT32 - 1)
        padding = size // 2 if pad else opt_int(src, s, "padding", 0)
        must_be(src, s, "binary", 0, "binary convolutions have no netdsl op")
        must_be(src, s, "xnor", 0, "XNOR convolutions have no netdsl op")
        bn = opt_int(src, s, "batch_normalize", 0, 0, 1) == 1
        return Conv(opt_int(src, s, "filters", 1, 1), size, opt_int(src, s, "stride", 1, 1), padding,
                    opt_int(src, s, "groups", 1, 1), bn, self.activation(s, "logistic"))

    def comment(self, first: int, last: int | None = None) -> str:
        """A statement's comment: the cfg lines and darknet layer indices it comes from."""
        if last is None or last == first:
            return f"cfg line {self.layers[first].line}, layer {first}"
        return f"cfg lines {self.layers[first].line}-{self.layers[last].line}, layers {first}-{last}"

    def name_of(self, i: int, name: str) -> str:
        """The name of layer i's statement: `output` for the last layer."""
        return "output" if i == len(self.layers) - 1 else name


class ConvWriter:
    """A convolution's text in the spec (a conv + batchnorm + activation block, defined in `w` at its
    first use) and its output shape (recorded in `sizes`)."""

    def __init__(self, cfg: CfgLayers, w: Writer, sizes: Sizes) -> None:
        self.cfg, self.w, self.sizes = cfg, w, sizes

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
        convs = [c for c in self.cfg.convs.values() if c.bn and c.act == act]
        p = any(c.padding != c.size // 2 for c in convs)
        g = any(c.groups != 1 for c in convs)
        params = "c, k = 1, s = 1" + ", p = k // 2" * p + ", g = 1" * g
        conv = "conv(c, k, stride=s, padding=" + ("p" if p else "k // 2") + ", groups=g" * g + ", bias=false)"
        self.w.block(name, f"# [convolutional] with batch_normalize=1, activation={act}: no bias (BatchNorm's beta "
                     f"is darknet's bias);\n# BatchNorm's eps is darknet's 1e-5, its momentum that of specs/yolov3.net.\n"
                     f"block {name}({params}) = {conv} -> {BN}{tail}", None)

    def shape(self, c: Conv, s: Shape, sec: Section) -> Shape:
        """The output shape of convolution `c` (section `sec`) over a map of shape `s`."""
        if s.c % c.groups or c.filters % c.groups:
            opt = sec.opts.get("groups")
            raise self.cfg.src.error(opt.loc if opt else sec.loc, f"groups={c.groups} must divide the input's {s.c} "
                                     f"channels and the {c.filters} filters", "choose groups that divide both")
        pad = 2 * c.padding
        out = s.window(c.filters, (c.size, c.size), (c.stride, c.stride), (pad, pad))
        return self.sizes.check(out, sec.loc, f"layer {sec.index}'s output")
