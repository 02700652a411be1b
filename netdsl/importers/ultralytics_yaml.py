"""Ultralytics model YAML (the YOLOv3 v9.6.0 / YOLOv5 family; ultralytics 8.x's YOLOv8 and YOLO11,
with `scales:`, as `yaml_v8` says) -> netdsl spec.

Read with safe_load's semantics (`yaml_nodes`), never evaluated: where ultralytics `eval`s a
string, netdsl knows the few names those files use (`nc`, `anchors`, `None`, `True`, `False`) and
takes any other string as a plain string. Ultralytics' rules (models/yolo.py `parse_model` and
models/common.py), written anew:

- a row is `[from, number, module, args]`; `from` -1 is the previous row (the input for row 0),
  other negative values count back, others are row numbers; a list for Concat and Detect;
- `number` > 1 becomes `max(round(number * depth_multiple), 1)` copies (C3: its bottlenecks);
- the output channels of Conv, Bottleneck, C3, SPP, SPPF (and the ghost modules) become
  `ceil(c * width_multiple / 8) * 8` unless they equal Detect's `anchors * (nc + 5)`; the others
  keep their input's channels;
- Conv(c, k=1, s=1, p=k//2, g=1, act=True): conv without bias, BatchNorm (eps 0.001, momentum
  0.03, as ultralytics sets them), the default activation: SiLU, or the top-level `activation`
  (YOLOv5's Conv.default_act); none for act False; an activation module (`nn.LeakyReLU(0.1)`, as
  YOLOv7 writes) is read as data (`yaml_acts`), never run; Bottleneck(c, shortcut=True, g=1,
  e=0.5): 1x1 to int(c*e), 3x3 to c, plus the input when shortcut and the input has c channels;
  C3(c, shortcut, g, e), its statements named as ultralytics names C3's children (cv1, cv2, m, cv3), so that its state_dicts load
  (`netdsl.weights_match`); SPP(c, k=(5, 9, 13)) and SPPF(c, k=5) with int(input/2) hidden
  channels; Concat(1); nn.Upsample(None, scale, mode); nn.MaxPool2d(k, s=k, p=0); nn.ZeroPad2d(p);
  Detect(nc, anchors) with each level's stride its input's size ratio; GhostConv, GhostBottleneck,
  C3Ghost (YOLOv5's ghost YAMLs), MP and SP (YOLOv7's) as `yaml_more` says; C3TR and TransformerBlock
  (yolov5s-transformer.yaml) as `yaml_transformer` says.

Ultralytics 8.x's YAMLs (8.4's `parse_model`): `scales:` maps a name to [depth, width,
max_channels], one of them chosen by `--scale`, else by the file name as `guess_model_scale` reads
it (`yolov8n.yaml` -> n), else the first; channels are `ceil(min(c, max_channels) * width / 8) * 8`;
Detect is the anchor-free head (`detect_v8`, its branches as statements before it).

The spec has one top-level statement per row, in order (so `--freeze N` freezes rows 0 to N-1, as
ultralytics' `--freeze N` does), named b<row> in the backbone and n<row> in the head, the last
one `output`; Bottleneck, C3, SPP, SPPF and the transformer modules are graph blocks.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from netdsl.importers.spec_writer import INPUT_SIZE, Shape, Sizes, Source, Tensor, Writer, check_text, net_name
from netdsl.importers.yaml_acts import activation
from netdsl.importers.yaml_blocks import MODULES, Modules
from netdsl.importers.yaml_call import RowCall
from netdsl.importers.yaml_nodes import Values, Y, read_yaml
from netdsl.limits import MAX_INT32

TOP_KEYS = ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head", "activation", "ch", "scales",
            "reg_max")
REQUIRED = TOP_KEYS[:6]
REQUIRED_V8 = ("nc", "backbone", "head")  # an ultralytics 8.x YAML: `scales:` instead of the multiples and anchors
# Why some modules of the YAMLs people use are not imported (yet).
UNSUPPORTED = {"IDetect": ": YOLOv7's training head adds and multiplies learned implicit tensors (ImplicitA, "
               "ImplicitM) around its convolutions; the deploy YAML (cfg/deploy), with Detect, imports",
               "IAuxDetect": ": YOLOv7's training head with auxiliary outputs; the deploy YAML, with Detect, imports",
               "TransformerLayer": ": it works on a sequence of tokens, and a row would give it an image map (ultralytics' "
               "module fails on it); TransformerBlock and C3TR, which make the tokens from the map, import"}


class YamlImporter:
    """One model YAML's import: its top-level keys read, then one statement per row, written in
    order by `modules`; `out` holds each row's output."""

    def __init__(self, src: Source, scale: str | None = None) -> None:
        self.src = src
        check_text(src)
        root = read_yaml(src)
        # ultralytics 8.x's format: `scales:`, or neither anchors nor depth_multiple (anchor-free Detect)
        keys = root.value if root.kind == "map" else {}
        self.v8 = "scales" in keys or ("anchors" not in keys and "depth_multiple" not in keys)
        self.top = self._top(root)
        self.values = v = Values(src)
        nc = v.whole(self.top["nc"], 1, 100_000, "nc")
        one = Y("scalar", 1.0, root.loc)  # ultralytics 8.x: a multiple not given is 1.0
        self.gd = v.number(self.top.get("depth_multiple", one), "depth_multiple")
        gw = v.number(self.top.get("width_multiple", one), "width_multiple")
        self.scale, maxc = self._scale(root, scale)
        if self.scale:
            self.gd, gw, maxc = self._scales()[self.scale]
        self.channels = v.whole(self.top["ch"], 1, 100_000, "ch") if "ch" in self.top else 3
        reg_max = v.whole(self.top["reg_max"], 2, 1024, "reg_max") if "reg_max" in self.top else 16
        v.names.update(nc=nc, anchors=self.top.get("anchors"))
        no = -1 if self.v8 else self._anchor_count() * (nc + 5)  # Detect's output channels
        self.rows = self._rows(root)
        self.sizes = Sizes()
        self.w = Writer(src, net_name(Path(src.path).stem), [
            f"# Imported from {Path(src.path).name} (Ultralytics model YAML) by `netdsl import`: one statement per",
            "# row, in order; each comment gives the row's line in the YAML and its number."] +
            ([f"# Scale {self.scale} of its scales: depth {self.gd}, width {gw}, max_channels {maxc:.0f}."]
             if self.scale else []))
        # YOLOv5's `activation` (its Conv.default_act): every Conv's activation unless a row gives its own
        act = activation(src, self.top["activation"]) if "activation" in self.top else "silu"
        self.modules = Modules(v, self.w, nc, no, gw, act, maxc, self.scale, self.v8, reg_max)
        self.out: list[Tensor] = []

    def _top(self, root: Y) -> dict[str, Y]:
        src = self.src
        if root.kind != "map":
            raise src.error(root.loc, "the top level is not a mapping", "a model YAML has nc, depth_multiple, "
                            "width_multiple, anchors, backbone and head")
        top: dict[str, Y] = {}
        for key, (knode, v) in root.value.items():
            if key not in TOP_KEYS:
                raise src.error(knode.loc, f"key '{key}' is not supported", f"the keys are {', '.join(TOP_KEYS)}")
            top[key] = v
        for key in REQUIRED_V8 if self.v8 else REQUIRED:
            if key not in top:
                raise src.error(root.loc, f"'{key}' is missing", f"add {key}: ... (ultralytics requires it)")
        return top

    def _scales(self) -> dict[str, tuple[float, float, float]]:
        """`scales:`, each name's [depth, width, max_channels] checked at its place."""
        node, v = self.top["scales"], self.values
        if node.kind != "map" or not node.value:
            raise self.src.error(node.loc, "scales must map scale names to [depth, width, max_channels]",
                                 "write e.g. scales:\n  n: [0.33, 0.25, 1024]")
        out = {}
        for name, (_, y) in node.value.items():
            if y.kind != "seq" or len(y.value) != 3:
                raise self.src.error(y.loc, f"scale {name} is {y.show()}; expected [depth, width, max_channels]",
                                     "write e.g. [0.33, 0.25, 1024]")
            d, w, m = y.value
            out[str(name)] = (v.number(d, "depth"), v.number(w, "width"), float(v.whole(m, 1, MAX_INT32, "max_channels")))
        return out

    def _scale(self, root: Y, given: str | None) -> tuple[str, float]:
        """The scale to build (`--scale`, else the file name's as ultralytics' guess_model_scale reads
        it, else the first) and "" where the YAML has no `scales:`; and max_channels without one."""
        path = Path(self.src.path)
        # guess_model_scale's pattern, but any letter: `yolov8q.yaml` names a scale (and is refused),
        # where ultralytics would quietly build the first one
        guess = re.search(r"yolo(e-)?v?\d+([a-z])(?![a-z])", path.stem)
        if "scales" not in self.top:
            if given:
                raise self.src.error(root.loc, f"--scale {given}: this YAML has no scales:",
                                     "leave --scale out; its depth_multiple and width_multiple set the size")
            return "", float("inf")
        names = self._scales()
        where = "--scale" if given else f"the file name {path.name!r}" if guess else ""
        scale = given or (guess.group(2) if guess else next(iter(names)))
        if scale not in names:
            raise self.src.error(self.top["scales"].loc, f"{where} asks for scale {scale!r}, which scales: does not "
                                 "list", f"the scales here are {', '.join(names)}")
        return scale, float("inf")

    def _anchor_count(self) -> int:
        """Anchors per level: `anchors: 3`, or the length of the first level's list over 2."""
        a = self.top["anchors"]
        if a.is_int() and a.value >= 1:
            return int(a.value)
        if a.kind == "seq" and a.value and a.value[0].kind == "seq":
            return len(a.value[0].value) // 2
        raise self.src.error(a.loc, "anchors must be a list of lists of (width, height) values",
                             "write e.g. anchors: [[10,13, 16,30, 33,23], [30,61, 62,45, 59,119]]")

    def _rows(self, root: Y) -> list[tuple[str, Y]]:
        rows = []
        for part in ("backbone", "head"):
            node = self.top[part]
            if node.kind != "seq":
                raise self.src.error(node.loc, f"{part} must be a list of rows", "write rows [from, number, module, args]")
            rows += [(part, r) for r in node.value]
        if not rows:
            raise self.src.error(root.loc, "backbone and head hold no rows", "add rows [from, number, module, args]")
        return rows

    # -- rows ------------------------------------------------------------------------------------

    def source(self, i: int, y: Y) -> Tensor:
        if not y.is_int():
            raise self.src.error(y.loc, f"from is {y.show()}; expected a row number", "-1 is the previous row")
        f = y.value
        j = i - 1 if f == -1 else i + f if f < 0 else f
        if f == -1 and i == 0:
            return Tensor("x", Shape(self.channels, INPUT_SIZE, INPUT_SIZE))
        if not 0 <= j < i:
            raise self.src.error(y.loc, f"from {f} names row {j}, but row {i} can only read rows 0 to {i - 1}"
                                 if i else f"from {f}: row 0 reads the input only (from -1)",
                                 "-1 is the previous row, -2 the one before; from 0 up, rows are numbered from the "
                                 "first backbone row")
        if self.rows[j][1].value[2].value == "Detect":
            raise self.src.error(y.loc, f"from {f} reads the Detect row {j}", "Detect must be the last row")
        return self.out[j]

    def _copies(self, n: Y) -> int:
        """A row's number of copies: `number` > 1 scaled by depth_multiple."""
        number = self.values.whole(n, 1, 10**6, "number")
        number = max(round(number * self.gd), 1) if number > 1 else number
        if number > 1000:
            raise self.src.error(n.loc, f"{number} copies (number x depth_multiple): netdsl repeats at most 1000 "
                                 "times", "a smaller number or depth_multiple")
        return number

    def row(self, i: int, part: str, r: Y) -> None:
        src = self.src
        if r.kind != "seq" or len(r.value) != 4:
            raise src.error(r.loc, f"row {i} is {r.show()}; a row is [from, number, module, args]",
                            "write e.g. [-1, 1, Conv, [64, 3, 2]]")
        f, n, m, args = r.value
        if m.kind != "scalar" or m.value not in MODULES:
            head = UNSUPPORTED.get(m.value, "") if m.kind == "scalar" and isinstance(m.value, str) else ""
            raise src.error(m.loc, f"module {m.show()} is not supported{head}", f"netdsl imports {', '.join(MODULES)}")
        mod = m.value
        if args.kind != "seq":
            raise src.error(args.loc, f"args is {args.show()}; expected a list", "write e.g. [64, 3, 2]")
        number = self._copies(n)
        last = i == len(self.rows) - 1
        name = "output" if last else f"{'b' if part == 'backbone' else 'n'}{i}"
        if mod == "Detect" and not last:
            raise src.error(m.loc, f"Detect in row {i}, not the last row", "put Detect last")
        if mod in ("Concat", "Detect"):
            if f.kind != "seq" or not f.value:
                raise src.error(f.loc, f"{mod} reads a list of rows; from is {f.show()}", "write e.g. [[-1, 6], ...")
            ins = [self.source(i, e) for e in f.value]
            if number != 1:
                raise src.error(n.loc, f"{mod} cannot be repeated (number {number})", "set number to 1")
        else:
            ins = [self.source(i, f)]
        stmt, shape = self.modules.emit(RowCall(mod, ins, list(args.value), number, n, args))
        stmt.name, stmt.comment, stmt.loc = name, f"line {r.loc.line}, row {i}: {mod}", r.loc
        self.w.add(stmt)
        self.out.append(Tensor(name, self.sizes.check(shape, r.loc, f"row {i}'s output")))

    def run(self) -> str:
        for i, (part, r) in enumerate(self.rows):
            self.row(i, part, r)
        self.modules.define()
        s = self.sizes.multiple
        step = s * 32 // math.gcd(s, 32)
        self.sizes.H = self.sizes.W = -(-640 // step) * step
        self.sizes.validate(self.src)
        self.w.input = (self.channels, self.sizes)
        return self.w.finish()


def import_yaml(text: str, path: str, scale: str | None = None) -> str:
    """The netdsl spec for an Ultralytics model YAML (a NetdslError at the YAML's line for anything
    unsupported); `scale` picks one of an ultralytics 8.x YAML's `scales:` (default: the file name's,
    `yolov8n.yaml` -> n, else the first).

    >>> spec = import_yaml("nc: 2\\nscales:\\n  n: [0.33, 0.25, 1024]\\nbackbone:\\n  - [-1, 1, Conv, [64, 3, 2]]\\n"
    ...                    "head:\\n  - [-1, 1, Conv, [64, 3, 2]]\\n", "yolov8n.yaml")
    >>> "cba(16, 3, 2)" in spec
    True
    """
    return YamlImporter(Source(path, text, "yaml"), scale).run()
