"""The class models (`model`) as Python text, written the way the seed's classes read.

Per class: a docstring (what it is, what was written at its values), `__init__` with a
`# line N: <statement>` comment per child, and `forward` with the spec's tensor names; a
statement's inputs are joined as the op that starts it says (`OpDef.source`: `torch.cat(...)`,
`a + b`). Layers take their leading arguments by position and leave torch's defaults out
(`SIGNATURES`); a call too long for a line gets one argument per line. Classes torch.nn lacks
(the YOLO head) are copied from `netdsl.backends.torch_layers` with the functions they call.
"""
from __future__ import annotations

import inspect
import keyword
from typing import Any

from netdsl import ir_expr
from netdsl.backends.python_source.expr import python_expr, python_name
from netdsl.backends.python_source.model import Call, ClassModel, IntVal, LearnedInit, Stmt, value_key
from netdsl.backends.torch_layers import STANDALONE
from netdsl.concrete import ConcreteGraph
from netdsl.errors import NetdslError

# class name -> (positional arguments in order, defaults that need not be written)
SIGNATURES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "Conv2d": (("in_channels", "out_channels", "kernel_size"),
               {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True}),
    "ConvTranspose2d": (("in_channels", "out_channels", "kernel_size"),
                        {"stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "bias": True, "dilation": 1}),
    "MaxPool2d": (("kernel_size",), {"padding": 0, "dilation": 1, "ceil_mode": False}),
    "AvgPool2d": (("kernel_size",), {"padding": 0, "ceil_mode": False, "count_include_pad": True}),
    "AdaptiveAvgPool2d": (("output_size",), {}),
    "AdaptiveMaxPool2d": (("output_size",), {}),
    "BatchNorm2d": (("num_features",), {"eps": 1e-5, "momentum": 0.1, "affine": True}),
    "BatchNorm1d": (("num_features",), {"eps": 1e-5, "momentum": 0.1, "affine": True}),
    "Linear": (("in_features", "out_features"), {"bias": True}),
    "ZeroPad2d": (("padding",), {}),
    "ConstantPad2d": (("padding", "value"), {}),
    "Upsample": ((), {"mode": "nearest", "align_corners": None}),
    "LeakyReLU": (("negative_slope",), {"negative_slope": 0.01}),
    "Dropout": (("p",), {"p": 0.5}),
    "Softmax": ((), {}),
    "LogSoftmax": ((), {}),
    "GELU": ((), {"approximate": "none"}),
}
# Classes without parameters: `@freeze` changes nothing there, so it is not written.
PARAMETERLESS = frozenset({"ReLU", "ReLU6", "Sigmoid", "Tanh", "SiLU", "Hardswish", "Identity", "LeakyReLU", "GELU",
                           "Dropout", "Softmax", "LogSoftmax", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
                           "AdaptiveMaxPool2d", "Flatten", "ZeroPad2d", "ConstantPad2d", "Upsample", "Hardsigmoid",
                           "ChannelSlice", "ChannelChunk", "ChannelShuffle", "StochasticDepth"})
# Pooling: a stride equal to the kernel size is torch's default.
STRIDE_DEFAULTS_TO_KERNEL = frozenset({"MaxPool2d", "AvgPool2d"})

FROZEN = '''\
def frozen(module: nn.Module) -> nn.Module:
    """`@freeze` in the spec: the module's parameters are not trained."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module
'''

WIDTH = 110  # the longest line written, where it can be broken
IND = " " * 8


def write(classes: list[ClassModel], cg: ConcreteGraph) -> str:
    return _Writer(classes, cg).text()


class _Writer:
    def __init__(self, classes: list[ClassModel], cg: ConcreteGraph) -> None:
        self.top, self.blocks = classes[0], classes[1:]
        self.cg = cg
        self.source = (cg.source[1] or "").splitlines()
        self.spec_blocks = cg.spec.blocks if cg.spec is not None else []
        self.helpers: set[str] = set()
        self.frozen_used = False
        self.name_classes()

    def name_classes(self) -> None:
        """Class names: the net's and the blocks' own, a suffix where a block needs several classes
        (the values that differ between them); then each class's constructor arguments."""
        taken = {"torch", "nn", "frozen", *(f.__name__ for fs in STANDALONE.values() for f in fs)}
        self.top.pyname = python_name(self.top.name, taken)
        taken.add(self.top.pyname)
        groups: dict[str, list[ClassModel]] = {}
        for c in self.blocks:
            groups.setdefault(c.name, []).append(c)
        for name, group in groups.items():
            for i, c in enumerate(group):
                want = name
                if len(group) > 1:
                    differ = [n for n in c.baked if len({g.baked.get(n) for g in group}) > 1]
                    c.variant = ", ".join(f"{n} = {c.baked[n]}" for n in differ)
                    suffix = "_".join(f"{n}{c.baked[n]}".replace("-", "m") for n in differ)
                    if not differ and c.frozen and len({g.frozen for g in group}) > 1:
                        suffix, c.variant = "frozen", "frozen layers (@freeze)"
                    want = f"{name}_{suffix}" if suffix else name
                    if want in taken:
                        want = f"{name}_{i + 1}"
                c.pyname = python_name(want, taken)
                taken.add(c.pyname)
        for c in [self.top, *self.blocks]:
            c.names = {}
            for n, _ in c.params:
                c.names[n] = python_name(n, taken | set(c.names.values()))
        # Blocks in the order the spec defines them (a block calls only earlier ones), the net last.
        order = {b.name: i for i, b in enumerate(self.spec_blocks)}
        self.blocks.sort(key=lambda c: order.get(c.name, len(order)))

    def text(self) -> str:
        classes = [self.cls(c) for c in [*self.blocks, self.top]]  # before the helpers: they note what is used
        path = self.cg.source[0]
        values = self.cg.env.values
        params = [p.name for p in self.cg.spec.params] if self.cg.spec is not None else []
        at = "Exported at " + ", ".join(f"{n} = {values[n]}" for n in params) if params else "Exported"
        sizes = [n for n in values if n not in params]
        at += f" for inputs of {', '.join(f'{n} = {values[n]}' for n in sizes)}" if sizes else ""
        head = [f'"""{self.top.name}{f" ({_safe(path)})" if path else ""}, written by `netdsl export --to python`.', "",
                *_wrap_text(_safe(f"{at}; the constructor's arguments default to these values. Standalone: it "
                                  "needs torch only. `# line N` comments point into the spec."), WIDTH - 10),
                '"""', "import torch", "from torch import nn"]
        parts = ["\n".join(head), *_standalone(sorted(self.helpers)), *([FROZEN] if self.frozen_used else []),
                 *classes]
        return "\n\n\n".join(p.strip("\n") for p in parts) + "\n"

    # --- one class -----------------------------------------------------------------------------
    def cls(self, c: ClassModel) -> str:
        out = [f"class {c.pyname}(nn.Module):", *self.docstring(c), ""]
        sig = "".join(f", {c.names[n]}: int" + (f" = {d}" if d is not None else "") for n, d in c.params)
        out += _wrap_def(f"    def __init__(self{sig}) -> None:")
        out.append(f"{IND}super().__init__()")
        for st in c.statements:
            out += self.init_statement(st, c)
        if c.frozen_bn:
            paths = "".join(f"{_str(p)}, " for p in c.frozen_bn)
            out += [f"{IND}# frozen BatchNorm layers stay in eval mode, whatever train() asks (--freeze-bn eval)",
                    f"{IND}self._netdsl_frozen_bn = [self.get_submodule(path) for path in ({paths.rstrip()})]",
                    f"{IND}self.train(self.training)"]
        out += ["", *self.forward(c)]
        if c.frozen_bn:
            out += ["", f'    def train(self, mode: bool = True) -> "{c.pyname}":',
                    f"{IND}super().train(mode)",
                    f'{IND}for m in getattr(self, "_netdsl_frozen_bn", ()):',
                    f"{IND}    m.eval()",
                    f"{IND}return self"]
        return "\n".join(out)

    def docstring(self, c: ClassModel) -> list[str]:
        which = f"; the calls with {c.variant}." if c.variant else "."
        paras = [f"{c.kind} {c.name}, line {c.line} of the spec{which}"]
        if c.kind == "block":
            args = [n for n, _ in c.params[1:] if n not in c.fresh]
            sizes = any(n in c.fresh[1:] for n, _ in c.params)
            first = "features" if c.fresh[0].startswith("in_features") else "channels"
            takes = f"its input's {first}{' and sizes' if sizes else ''}"
            takes += f", then {', '.join(args)}" if args else ""
            if c.reads:
                takes += f" ({', '.join(c.reads)} from the net)"
            paras.append(f"Takes {takes}.")
        else:
            shapes = "; ".join(f"{t.name}: [N, {', '.join(str(x) for x in self.cg.show(t.shape))}]"
                               for t in self.cg.inputs)
            paras.append(f"forward takes {shapes}.")
            conds = _conditions(self.cg)
            if conds:
                paras.append(f"The spec asks: {', '.join(conds)}.")
            dims = [n for n, _ in c.params if any(d.name == n for d in self.cg.spec.dims)] if self.cg.spec else []
            if dims:
                paras.append(f"{', '.join(dims)} (input sizes) are constructor arguments: layer sizes depend on them.")
        if c.baked:
            paras.append("Written at their values, since they decide the structure: "
                         + ", ".join(f"{n} = {v}" for n, v in c.baked.items()) + ".")
        paras += list(dict.fromkeys(c.notes))
        lines: list[str] = []
        for p in paras:
            lines += ([""] if lines else []) + _wrap_text(_safe(p), WIDTH - 8)
        if len(lines) == 1:
            return [f'    """{lines[0]}"""']
        return [f'    """{lines[0]}', *(f"    {ln}" if ln else "" for ln in lines[1:]), '    """']

    def statement_text(self, st: Stmt) -> str:
        first, last = st.lines
        text = " ".join(" ".join(ln.split("#")[0].split()) for ln in self.source[first - 1:last])
        return _clip(f"line {first}: {text}" if text.strip() else f"line {first}", WIDTH - 10)

    def block_of(self, line: int) -> str:
        for b in self.spec_blocks:
            if b.span.line <= line <= b.span.end_line:
                return f"block {b.name}, line {line}"
        return f"line {line}"

    def init_statement(self, st: Stmt, c: ClassModel) -> list[str]:
        if st.learned is not None:
            return [f"{IND}# {_safe(self.statement_text(st))}", *self.learned(st.name, st.learned, c)]
        if st.module is None:
            return []
        out = [f"{IND}# {_safe(self.statement_text(st))}"]
        if _is_attr(st.name):
            ref, head, tail = f"self.{st.name}", f"self.{st.name} = ", ""
        else:  # a Python keyword: registered by name
            ref, head, tail = f"getattr(self, {_str(st.name)})", f"self.add_module({_str(st.name)}, ", ")"
        if isinstance(st.module, Call):
            return out + self.call_lines(st.module, c, IND, head, tail)
        mods = st.module
        said: set[int] = set()  # a layer's line is said once per run of layers from the same line
        lead = 0
        while lead < len(mods) and mods[lead][0] == str(lead):
            lead += 1
        if lead == 0:
            out.append(f"{IND}{head}nn.Sequential(){tail}")
        else:
            out.append(f"{IND}{head}nn.Sequential(")
            for _, call in mods[:lead]:
                out += self.call_lines(call, c, IND + "    ", "", ",", said)
            out.append(f"{IND}){tail}")
        for name, call in mods[lead:]:  # labelled layers keep their names
            out += self.call_lines(call, c, IND, f"{ref}.add_module({_str(name)}, ", ")", said)
        return out

    def learned(self, name: str, p: LearnedInit, c: ClassModel) -> list[str]:
        """A learned tensor as the class's parameter of that name."""
        dims = self.val((1, *p.dims) if p.batch_axis else tuple(p.dims), c)
        data = f"torch.full({dims}, {self.val(p.value, c)})" if p.init == "constant" else \
            f"nn.init.normal_(torch.empty({dims}), std={self.val(p.value, c)})"
        param = f"nn.Parameter({data}" + (", requires_grad=False)" if p.frozen else ")")
        if _is_attr(name):
            return [f"{IND}self.{name} = {param}"]
        return [f"{IND}self.register_parameter({_str(name)}, {param})"]

    def call_lines(self, call: Call, c: ClassModel, ind: str, head: str, tail: str,
                   said: set[int] | None = None) -> list[str]:
        """One module construction, `{head}<call>{tail}`, broken over lines where it is long."""
        cls, args = self.call_parts(call, c)
        frozen = call.frozen and not (isinstance(call.cls, str) and call.cls in PARAMETERLESS)
        opening, closing = ("frozen(", ")") if frozen else ("", "")
        self.frozen_used |= frozen
        comment = ""
        if call.line is not None and (said is None or call.line not in said):
            comment = f"  # {_safe(self.block_of(call.line))}"
        if said is not None:
            said.clear()
            said.update([call.line] if call.line is not None else [])
        one = f"{ind}{head}{opening}{cls}({', '.join(args)}){closing}{tail}"
        if len(one) + len(comment) <= WIDTH or not args:
            return [one + comment]
        lines = [f"{ind}{head}{opening}{cls}({comment}"]
        for a in args:  # inside the call's parentheses a long formula may go on over lines
            first, *rest = _split(a, WIDTH - len(ind) - 8)
            lines += [f"{ind}    {first}", *(f"{ind}        {r}" for r in rest)]
            lines[-1] += ","
        return lines + [f"{ind}){closing}{tail}"]

    def call_parts(self, call: Call, c: ClassModel) -> tuple[str, list[str]]:
        """The class to call and its arguments, as text."""
        if isinstance(call.cls, ClassModel):
            return call.cls.pyname, [(f"{call.cls.names[k]}=" if k else "") + self.val(v, c) for k, v in call.args]
        if call.cls in STANDALONE:
            self.helpers.add(call.cls)
            return call.cls, [f"{k}={self.val(v, c)}" for k, v in call.args]
        positional, defaults = SIGNATURES.get(call.cls, ((), {}))
        given = dict(call.args)
        kept = [(k, v) for k, v in call.args
                if not (k in defaults and _is_default(v, defaults[k]))
                and not (k == "stride" and call.cls in STRIDE_DEFAULTS_TO_KERNEL
                         and value_key(v) == value_key(given.get("kernel_size")))]
        out = []
        for i, (k, v) in enumerate(kept):
            by_position = all(j < len(positional) and kept[j][0] == positional[j] for j in range(i + 1))
            out.append(self.val(v, c) if by_position else f"{k}={self.val(v, c)}")
        return f"nn.{call.cls}", out

    def val(self, v: Any, c: ClassModel) -> str:
        if isinstance(v, IntVal):
            return str(v.value) if v.baked else python_expr(v.expr, c.names)
        if isinstance(v, bool) or v is None:
            return repr(v)
        if isinstance(v, float):
            return repr(v) if v == v and abs(v) != float("inf") else f'float("{v}")'
        if isinstance(v, int):
            return str(int(v))
        if isinstance(v, str):
            return _str(v)
        if isinstance(v, tuple):
            items = [self.val(x, c) for x in v]
            return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
        if isinstance(v, list):
            return f"[{', '.join(self.val(x, c) for x in v)}]"
        raise NetdslError(f"export to Python cannot write the value {v!r}",
                          hint="this is a bug in netdsl's Python export; please report it with the spec")

    # --- forward -------------------------------------------------------------------------------
    def forward(self, c: ClassModel) -> list[str]:
        local: dict[str, str] = {}
        for n in [*c.inputs, *(st.name for st in c.statements)]:
            if n not in local:
                local[n] = python_name(n, set(local.values()))
        ins = "".join(f", {local[n]}: torch.Tensor" for n in c.inputs)
        returns = "tuple" if c.final or len(c.outputs) > 1 else "torch.Tensor"
        out = _wrap_def(f"    def forward(self{ins}) -> {returns}:")
        for st in c.statements:
            if st.learned is not None:  # the same tensor for every sample: a view with the batch axis
                ref = f"self.{st.name}" if _is_attr(st.name) else f"getattr(self, {_str(st.name)})"
                keep = ", -1" * len(st.learned.dims)  # written out: torch.fx cannot unpack a traced shape
                out.append(f"{IND}{local[st.name]} = {ref}.expand({local[c.inputs[0]]}.shape[0]{keep})")
                continue
            args = [local[i] for i in st.inputs]
            src = st.op.source(args) if st.op is not None else ", ".join(args)
            if st.module is not None:
                ref = f"self.{st.name}" if _is_attr(st.name) else f"getattr(self, {_str(st.name)})"
                src = f"{ref}({src})"
            out.append(f"{IND}{local[st.name]} = {src}")
        out.append(f"{IND}return {', '.join(local[o] for o in c.outputs)}")
        return out


def _standalone(classes: list[str]) -> list[str]:
    """The source of these classes of `torch_layers` and of the functions they call, each once."""
    defs = {f.__name__: f for cls in classes for f in STANDALONE[cls]}
    return [inspect.getsource(f) for f in defs.values()]


def _is_attr(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _is_default(v: Any, default: Any) -> bool:
    """Whether torch's default is what the argument is, for every value of the parameters."""
    if isinstance(v, IntVal):
        return not v.baked and not v.expr.free_symbols and type(default) is int and v.value == default
    if isinstance(v, tuple) and v and all(isinstance(x, IntVal) for x in v):
        return all(_is_default(x, default) for x in v)
    return type(v) is type(default) and v == default


def _str(s: str) -> str:
    return f'"{s}"' if s.isprintable() and '"' not in s and "\\" not in s else repr(s)


def _safe(s: str) -> str:
    """Text for a comment or a docstring: printable, nothing that ends the docstring or escapes."""
    return "".join(ch if ch.isprintable() else "?" for ch in s).replace('"', "'").replace("\\", "/")


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n - 3] + "..."


def _wrap_text(s: str, width: int) -> list[str]:
    out, cur = [], ""
    for w in s.split():
        if cur and len(cur) + 1 + len(w) > width:
            out.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    return out + [cur]


def _split(text: str, width: int) -> list[str]:
    """A formula broken before its outermost `+`, `-`, `*` and `//` into lines of about `width`."""
    if len(text) <= width:
        return [text]
    cuts, depth = [0], 0
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if depth == 0 and ch == " " and (text[i:i + 3] in (" + ", " - ", " * ") or text[i:i + 4] == " // "):
            cuts.append(i + 1)
    pieces = [text[a:b].rstrip() for a, b in zip(cuts, cuts[1:] + [len(text)])]
    lines = [pieces[0]]
    for p in pieces[1:]:
        if len(lines[-1]) + 1 + len(p) <= width:
            lines[-1] += " " + p
        else:
            lines.append(p)
    return lines


def _wrap_def(line: str) -> list[str]:
    """A `def` line, its arguments one per line when it is too long."""
    if len(line) <= WIDTH:
        return [line]
    head, rest = line.split("(", 1)
    args, ret = rest.rsplit(")", 1)
    return [f"{head}(", *(f"{IND}{a.strip()}," for a in args.split(", ")), f"    ){ret}"]


def _conditions(cg: ConcreteGraph) -> list[str]:
    spec = cg.spec
    if spec is None:
        return []
    out = [f"{p.name} {p.annotation}" for p in spec.params if p.annotation]
    return out + [ir_expr.condition_text(c) for c in [*spec.conditions, *(c for i in spec.inputs for c in i.conditions)]]
