"""Reading a darknet `.cfg` as darknet's own parser does, every option with its place.

Darknet (pjreddie/darknet, parser.c and utils.c): each line has all its spaces and tabs removed;
then an empty line or one starting with `#` or `;` is skipped, one starting with `[` opens a
section, any other is `key=value` split at its first `=`. Every section after the first
(`[net]`) is a layer, numbered from 0. Darknet parses numbers with `atoi`/`atof` and warns about
unused keys; here a value must be exactly a number, and a key darknet would read differently or that
changes the network must be one this importer knows: nothing is guessed. Keys darknet reads for
training only are accepted and ignored. A key given twice in a section: darknet's `option_find`
returns the first (options are kept in file order), so the first value is used and the spec
gets a note naming both lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from netdsl.importers.spec_writer import Loc, Source
from netdsl.limits import MAX_INT32

# Section names as darknet spells them (aliases included) -> the kind used here.
KINDS = {"[net]": "net", "[network]": "net", "[convolutional]": "conv", "[conv]": "conv", "[shortcut]": "shortcut",
         "[route]": "route", "[upsample]": "upsample", "[maxpool]": "maxpool", "[max]": "maxpool",
         "[avgpool]": "avgpool", "[avg]": "avgpool", "[softmax]": "softmax", "[soft]": "softmax", "[yolo]": "yolo",
         "[scale_channels]": "scale_channels", "[sam]": "sam", "[reorg]": "reorg", "[cost]": "cost",
         "[dropout]": "dropout"}
# Keys darknet reads for training or inference only: they do not change the network. Per section,
# as AlexeyAB darknet's parser.c reads them (`option_find*` calls), and the keys parse_network_cfg
# reads for every layer (freezing, loading and learning-rate switches).
_NET_TRAINING = {"batch", "subdivisions", "momentum", "decay", "angle", "saturation", "exposure", "hue",
                 "learning_rate", "burn_in", "max_batches", "policy", "steps", "scales", "step", "scale", "power",
                 "gamma", "time_steps", "notruth", "random", "adam", "B1", "B2", "eps", "max_crop", "min_crop",
                 "max_ratio", "min_ratio", "center", "clip", "aspect", "flip", "mosaic", "letter_box", "blur",
                 "mixup", "cutmix", "label_smooth_eps", "learning_rate_min", "sgdr_cycle", "sgdr_mult", "seq_scales",
                 "track", "augment_speed", "sequential_subdivisions", "try_fix_nan", "weights_reject_freq",
                 "equidistant_point", "badlabels_rejection_percentage", "num_sigmas_reject_badlabels", "ema_alpha",
                 "use_cuda_graph", "loss_scale", "dynamic_minibatch", "optimized_memory", "workspace_size_limit_MB",
                 "gaussian_noise", "mosaic_bound", "contrastive", "contrastive_jit_flip", "contrastive_color",
                 "unsupervised", "resize_step", "attention", "adversarial_lr", "max_chart_loss",
                 "show_receptive_field"}
_LAYER_TRAINING = {"clip", "onlyforward", "dont_update", "burnin_update", "stopbackward", "train_only_bn", "dontload",
                   "dontloadscales", "learning_rate"}
_STREAMS = {"stream", "wait_stream"}  # which CUDA stream runs the layer
_YOLO_TRAINING = {"jitter", "ignore_thresh", "truth_thresh", "random", "iou_loss", "iou_normalizer",
                  "cls_normalizer", "iou_thresh", "nms_kind", "beta_nms", "max_delta", "max", "show_details",
                  "counters_per_class", "label_smooth_eps", "objectness_smooth", "obj_normalizer", "delta_normalizer",
                  "iou_thresh_kind", "focal_loss", "resize", "track_history_size", "sim_thresh", "dets_for_track",
                  "dets_for_show", "track_ciou_norm"}
_CONV_TRAINING = {"dot", "grad_centr", "assisted_excitation"} | _STREAMS
_COST_TRAINING = {"type", "scale", "ratio", "noobj", "thresh"}
_DROPOUT_TRAINING = {"probability", "dropblock", "dropblock_size_rel", "dropblock_size_abs"}
_SECTION_KEYS = {
    "net": {"width", "height", "channels"} | _NET_TRAINING,
    "conv": {"batch_normalize", "filters", "size", "stride", "pad", "padding", "activation", "groups", "binary",
             "xnor"} | _CONV_TRAINING,
    "shortcut": {"from", "activation", "alpha", "beta", "weights_type", "weights_normalization"},
    "route": {"layers", "groups", "group_id"} | _STREAMS,
    "upsample": {"stride", "scale"},
    "maxpool": {"size", "stride", "padding"},
    "avgpool": set(),
    "softmax": {"groups", "temperature", "noloss"},
    "yolo": {"mask", "anchors", "classes", "num", "scale_x_y", "new_coords"} | _YOLO_TRAINING,
    "scale_channels": {"from", "scale_wh", "activation"},
    "sam": {"from", "activation"},
    "reorg": {"stride", "reverse"},
    "cost": _COST_TRAINING,
    "dropout": _DROPOUT_TRAINING,
}
_SECTION_IGNORED = {"net": _NET_TRAINING, "yolo": _YOLO_TRAINING, "conv": _CONV_TRAINING, "route": _STREAMS,
                    "softmax": {"noloss"}, "cost": _COST_TRAINING, "dropout": _DROPOUT_TRAINING}
KEYS = {k: v | (_LAYER_TRAINING if k != "net" else set()) for k, v in _SECTION_KEYS.items()}
IGNORED = {k: _SECTION_IGNORED.get(k, set()) | (_LAYER_TRAINING if k != "net" else set()) for k in KEYS}

ACTIVATIONS = {"linear": [], "leaky": ["leaky_relu(0.1)"], "logistic": ["sigmoid"], "swish": ["silu"],
               "mish": ["mish"], "relu": ["relu"], "tanh": ["tanh"]}
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_WS = " \t\r\n\f\v"


@dataclass
class Option:
    key: str
    value: str
    loc: Loc        # the value's place
    key_loc: Loc


@dataclass
class Section:
    kind: str
    title: str      # as written, e.g. "[convolutional]"
    loc: Loc
    index: int      # layer index (-1 for [net])
    opts: dict[str, Option] = field(default_factory=dict)
    targets: list[int] = field(default_factory=list)  # the layers a [route] or [shortcut] reads
    notes: list[str] = field(default_factory=list)  # for the spec's comments (a key given twice)

    @property
    def line(self) -> int:
        return self.loc.line


def _strip_span(raw: str, start: int, end: int) -> tuple[str, int, int]:
    """Darknet's value (whitespace removed) and its 1-based columns in the raw line."""
    part = raw[start:end]
    text = "".join(ch for ch in part if ch not in _WS)
    lead = len(part) - len(part.lstrip(_WS))
    trail = len(part.rstrip(_WS))
    return text, start + lead + 1, start + max(trail, lead) + 1


def read_cfg(src: Source) -> list[Section]:
    sections: list[Section] = []
    for n, raw in enumerate(src.lines, start=1):
        line = "".join(ch for ch in raw if ch not in _WS)
        if not line or line[0] in "#;":
            continue
        first = len(raw) - len(raw.lstrip(_WS)) + 1
        if line[0] == "[":
            loc = Loc(n, first, len(raw.rstrip(_WS)) + 1)
            kind = KINDS.get(line)
            if kind is None:
                if not line.endswith("]"):
                    raise src.error(loc, f"'{line}' is not a section header", "write a section as [name]")
                known = ", ".join(sorted({k for k in KINDS if k not in ("[conv]", "[max]", "[avg]", "[soft]")}))
                raise src.error(loc, f"section {line} is not supported", f"netdsl imports {known}")
            if not sections and kind != "net":
                raise src.error(loc, f"the first section is {line}; darknet's first section is [net]",
                                "start the file with [net] and its width, height and channels")
            if sections and kind == "net":
                raise src.error(loc, "a second [net] section", "a cfg has one [net] section, at the top")
            sections.append(Section(kind, line, loc, len(sections) - 1))
            continue
        eq = raw.find("=")
        if eq < 0:
            raise src.error(Loc(n, first), f"'{line}' is neither a [section] nor key=value", "write key=value")
        key, kcol, kend = _strip_span(raw, 0, eq)
        value, vcol, vend = _strip_span(raw, eq + 1, len(raw))
        if not sections:
            raise src.error(Loc(n, first), "an option before the first section", "put it under [net] or a layer")
        sec = sections[-1]
        if not key:
            raise src.error(Loc(n, first, eq + 2), "an option without a key", "write key=value")
        if key not in KEYS[sec.kind]:
            known = ", ".join(sorted(KEYS[sec.kind] - IGNORED.get(sec.kind, set()))) or "no keys"
            raise src.error(Loc(n, kcol, kend), f"key '{key}' of {sec.title} is not supported",
                            f"{sec.title} takes {known}" + (" (and darknet's training keys)" if sec.kind in IGNORED
                                                             else "") + "; remove it or convert the network by hand")
        opt = Option(key, value, Loc(n, vcol, vend), Loc(n, kcol, kend))
        old = sec.opts.get(key)
        if old is None:
            sec.opts[key] = opt
        else:
            sec.notes.append(f"cfg line {n}: {key}={value} is not used: {key} is given twice in the {sec.title} "
                             f"at line {sec.line}, and darknet reads the first, {key}={old.value} at line {old.loc.line}")
    if not sections:
        raise src.error(None, "no sections: this is not a darknet .cfg", "a cfg starts with [net]")
    return sections


# -- values ---------------------------------------------------------------------------------------

def opt_int(src: Source, sec: Section, key: str, default: int | None, lo: int = 0, hi: int = MAX_INT32) -> int:
    opt = sec.opts.get(key)
    if opt is None:
        if default is None:
            raise src.error(sec.loc, f"{sec.title} needs '{key}'", f"add {key}=... under {sec.title}")
        return default
    if not _INT.fullmatch(opt.value):
        raise src.error(opt.loc, f"{key}={opt.value}: expected a whole number", f"write e.g. {key}={max(lo, 1)}")
    v = int(opt.value) if len(opt.value) < 20 else hi + 1
    if not lo <= v <= hi:
        raise src.error(opt.loc, f"{key}={opt.value} is out of range", f"use a value from {lo} to {hi}")
    return v


def opt_ints(src: Source, sec: Section, key: str, lo: int = -MAX_INT32, hi: int = MAX_INT32) -> tuple[list[int], Option]:
    opt = sec.opts.get(key)
    if opt is None:
        raise src.error(sec.loc, f"{sec.title} needs '{key}'", f"add {key}=... under {sec.title}")
    items = opt.value.split(",")
    if any(not _INT.fullmatch(i) for i in items):
        raise src.error(opt.loc, f"{key}={opt.value}: expected whole numbers separated by commas",
                        f"write e.g. {key}=1,2,3")
    vals = [int(i) if len(i) < 20 else hi + 1 for i in items]
    if any(not lo <= v <= hi for v in vals):
        raise src.error(opt.loc, f"{key}={opt.value}: a value is out of range", f"values run from {lo} to {hi}")
    return vals, opt


def require_float(src: Source, sec: Section, key: str, want: float) -> None:
    """A key netdsl supports at darknet's default only (e.g. alpha=1): any other value is an error."""
    opt = sec.opts.get(key)
    if opt is None:
        return
    if not _FLOAT.fullmatch(opt.value):
        raise src.error(opt.loc, f"{key}={opt.value}: expected a number", f"write {key}={want:g}")
    if float(opt.value) != want:
        raise src.error(opt.loc, f"{key}={opt.value} is not supported; netdsl imports {sec.title} with {key}={want:g}",
                        f"remove {key} (its default is {want:g}) or convert the network by hand")


def opt_str(src: Source, sec: Section, key: str, default: str) -> tuple[str, Loc]:
    opt = sec.opts.get(key)
    return (default, sec.loc) if opt is None else (opt.value, opt.loc)


def must_be(src: Source, sec: Section, key: str, value: int, why: str) -> None:
    opt = sec.opts.get(key)
    if opt is not None and opt_int(src, sec, key, value, -MAX_INT32) != value:
        raise src.error(opt.loc, f"{key}={opt.value} is not supported: {why}",
                        f"remove {key} or set {key}={value}")


# -- what the layers become ---------------------------------------------------------------------

@dataclass(frozen=True)
class Conv:
    filters: int
    size: int
    stride: int
    padding: int
    groups: int
    bn: bool
    act: str

