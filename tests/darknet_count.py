"""An independent count of a darknet cfg: darknet's own per-layer rules, nothing of netdsl's importer.

Walks the sections as darknet's parser does (whitespace removed, `#`/`;` comments, layers numbered
from 0 after [net]) and applies each layer's formulas from AlexeyAB/darknet:
- convolutional: out = (in + 2*pad - size) / stride + 1 with pad = size/2 when `pad=1`;
  nweights = c/groups * filters * size^2; MACs = nweights * out_h * out_w; BFLOPs 2 * MACs;
  parameters nweights + filters (a bias, or BatchNorm's scale and shift: 2 * filters);
- maxpool: out = (in + padding - size) / stride + 1, padding defaults to size - 1;
  BFLOPs size^2 * c * out_h * out_w (darknet counts a pool's comparisons);
- shortcut: the previous layer's shape; BFLOPs out_h * out_w * out_c per added layer;
- route (groups: each routed map's channels / groups), upsample, avgpool (1x1), scale_channels (the
  `from` map's shape), dropout, softmax, yolo, cost: no BFLOPs.
darknet prints the sum of the per-layer BFLOPs as "Total BFLOPS %5.3f": `bflops` here.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Counted:
    params: int = 0      # learned parameters as torch holds them (no BatchNorm running statistics)
    conv_macs: int = 0   # multiply-accumulates of the convolutions
    other_flops: int = 0  # what darknet's BFLOPs add for pools and shortcuts
    layers: int = 0
    # per convolution, in cfg order: (layer index, filters, input channels per group, size, batchnorm),
    # which is what a darknet .weights file stores, in that order
    convs: list[tuple[int, int, int, int, bool]] = field(default_factory=list)

    @property
    def bflops(self) -> float:
        return (2 * self.conv_macs + self.other_flops) / 1e9


def sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """(kind, options) per section; the first value of a key given twice (as darknet's option_find)."""
    out: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            out.append((line.strip("[]"), {}))
        elif "=" in line:
            key, value = line.split("=", 1)
            out[-1][1].setdefault(key, value)
    return out


def _index(i: int, v: str) -> int:
    j = int(v)
    return j if j >= 0 else i + j


def count(text: str, width: int | None = None, height: int | None = None) -> Counted:
    """The counts of a cfg at its [net] size (or at width x height)."""
    secs = sections(text)
    net = secs[0][1]
    w, h, c = width or int(net["width"]), height or int(net["height"]), int(net["channels"])
    shapes: list[tuple[int, int, int]] = []  # (c, h, w) per layer
    total = Counted()
    for i, (kind, o) in enumerate(secs[1:]):
        prev = shapes[i - 1] if i else (c, h, w)
        if kind in ("convolutional", "conv"):
            n, size, stride = int(o["filters"]), int(o.get("size", 1)), int(o.get("stride", 1))
            groups = int(o.get("groups", 1))
            pad = size // 2 if int(o.get("pad", 0)) else int(o.get("padding", 0))
            oh, ow = (prev[1] + 2 * pad - size) // stride + 1, (prev[2] + 2 * pad - size) // stride + 1
            nweights = prev[0] // groups * n * size * size
            bn = bool(int(o.get("batch_normalize", 0)))
            total.params += nweights + (2 * n if bn else n)
            total.convs.append((i, n, prev[0] // groups, size, bn))
            total.conv_macs += nweights * oh * ow
            shape = (n, oh, ow)
        elif kind in ("maxpool", "max"):
            stride = int(o.get("stride", 1))
            size = int(o.get("size", stride))
            padding = int(o.get("padding", size - 1))
            oh, ow = (prev[1] + padding - size) // stride + 1, (prev[2] + padding - size) // stride + 1
            total.other_flops += size * size * prev[0] * oh * ow
            shape = (prev[0], oh, ow)
        elif kind == "route":
            parts = [shapes[_index(i, v)] for v in o["layers"].split(",")]
            groups = int(o.get("groups", 1))
            shape = (sum(p[0] // groups for p in parts), parts[0][1], parts[0][2])
        elif kind == "shortcut":
            shape = prev
            total.other_flops += prev[0] * prev[1] * prev[2] * len(o["from"].split(","))
        elif kind == "upsample":
            s = int(o.get("stride", 2))
            shape = (prev[0], prev[1] * s, prev[2] * s)
        elif kind in ("avgpool", "avg"):
            shape = (prev[0], 1, 1)
        elif kind == "scale_channels":
            shape = shapes[_index(i, o["from"])]
        elif kind in ("dropout", "softmax", "soft", "yolo", "cost"):
            shape = prev
        else:
            raise ValueError(f"layer {i}: [{kind}] is not counted here")
        shapes.append(shape)
    total.layers = len(shapes)
    return total
