"""Receptive fields: which pixels of the network's input each unit of each layer reads.

Distill's recurrences (Araujo et al., "Computing Receptive Fields of Convolutional Neural
Networks", 2019) as formulas in the concrete graph's internal symbols: per layer and per axis the
`size` r of a unit's region, the `jump` j between neighbouring units' regions and the `start` of
unit 0's region (negative where padding is read), for graphs with several paths and with
upsampling. Each op gives its `windows` (`netdsl.ops.window`); this pass composes them along every
path, graph blocks opened, in the order of `ConcreteGraph.walk()`.

Exactly: along one axis a tensor's unit `i = q*t + phi` reads the input pixels
`starts[phi] + t*p` .. `ends[phi] + t*p`, padding included (cut to the input when compared with
it). Without upsampling `q` is 1 and that is `start + i*jump` .. `start + i*jump + size - 1`.
After upsampling (`upsample`, `convT`) the jump is a fraction `p/q`, units of different phases
read regions of different sizes, and `size` is the largest of them (`RF.region` gives each unit's).
A merge (`cat`, `add`, `mul`, `darknet_shortcut`, `detect`) reads the union of its inputs'
regions; where its inputs' jumps differ (a squeeze-excitation gate read everywhere, a shortcut of
another stride) the union is not one sliding region, and the largest input region is taken, as
Distill's algorithm does, with a note. A learned tensor (`param`) has no region.
Sequences (`tokens`, attention, `token(i)`, `image(h, w)`) are laid on their image's grid
(`netdsl.passes.receptive_seq`): a sequence layer's field is that of the grid it lies on, and
`RF.token` gives each token's region.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from netdsl.concrete import Block, ConcreteGraph, Layer, Statement
from netdsl.errors import NetdslError, Span
from netdsl.ops import Args, OpDef
from netdsl.ops.window import Window, Windows
from netdsl.passes import receptive_seq
from netdsl.passes.receptive_axis import IMAGE, Axis, Field, compose, union
from netdsl.passes.receptive_seq import Seq

Shape = tuple[sp.Expr, ...]
Pair = tuple[sp.Expr, sp.Expr]
Region = Field | Seq | None  # what a tensor's units read: an image's or features' field, a sequence's
__all__ = ["IMAGE", "RF", "Axis", "Field", "RFResult", "Seq", "compose", "receptive_fields", "union"]


@dataclass(frozen=True)
class RF:
    """A receptive field per axis (height, width): Distill's r (`size`), j (`jump`) and the start of
    unit 0's region, in internal symbols; `axes` holds every phase (see the module's docstring).

    >>> import netdsl
    >>> from netdsl.passes.receptive import receptive_fields
    >>> cg = netdsl.shapes("net T()\\ninput x: [3, H = 32, W = 32]\\noutput = x |> conv(4, 3, stride=2, padding=1) -> conv(4, 3)")
    >>> [(rf.size, rf.jump, rf.start) for rf in receptive_fields(cg).layers]
    [((3, 3), (2, 2), (-1, -1)), ((7, 7), (2, 2), (-1, -1))]
    """

    size: Pair
    jump: Pair
    start: Pair
    axes: Field
    tokens: Seq | None = None  # a sequence's tokens, laid on the grid of `axes` (or not: see `token`)

    def region(self, unit: tuple[int, int], at: Callable[[sp.Expr], int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """The input pixels unit (row, column) reads, ends included, padding not cut off."""
        h, w = ((at(a.unit(sp.Integer(i), at, False)), at(a.unit(sp.Integer(i), at, True)))
                for a, i in zip(self.axes, unit))
        return h, w

    def token(self, t: int, at: Callable[[sp.Expr], int]) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """The input pixels token t of a sequence reads (rows, columns), None where it reads none
        (a class token before attention)."""
        assert self.tokens is not None, "not a sequence"
        f = self.tokens.token(t, at)
        return None if f is None else _rf(f).region((0, 0), at)


def _rf(f: Field) -> RF:
    h, w = f
    return RF(size=(h.size, w.size), jump=(h.jump, w.jump), start=(h.starts[0], w.starts[0]), axes=f)


def _report(r: Region, at: Callable[[sp.Expr], int]) -> RF | None:
    if not isinstance(r, Seq):
        return None if r is None else _rf(r)
    main = r.main(at)
    return None if main is None else RF(**{**_rf(main).__dict__, "tokens": r})


@dataclass
class RFResult:
    """Receptive fields per walk item (None where an item reads no image input), per network
    output (a `detect` head: one per level, `name[k]`), and what they mean where it is not plain."""

    layers: list[RF | None]
    outputs: dict[str, RF]
    notes: list[str] = field(default_factory=list)


class _Walk:
    """Composes the windows along the graph, statement by statement, blocks opened."""

    def __init__(self, cg: ConcreteGraph) -> None:
        self.cg = cg
        self.layers: list[RF | None] = []
        self.outputs: dict[str, RF] = {}
        self.notes: list[str] = []
        self.misaligned: list[str] = []  # merges whose inputs' jumps differ
        self.offcentre: list[str] = []   # merges whose inputs' regions are not centred alike
        self.pinned: list[str] = []  # layers whose regions hold at the values in use
        self.bounded: list[str] = []  # sequence layers whose tokens do not line up: a bound
        self.here = ""

    def at(self, x: sp.Expr) -> int:
        return int(self.cg.env.at(x))

    def phase_of(self, x: sp.Expr) -> int:
        self.pinned.append(self.here)
        return self.at(x)

    def numeric(self, ws: list[Windows]) -> list[Windows]:
        """An op with phases (upsampling, convT, adaptive pooling to several units) whose windows
        depend on symbols (a kernel k, the input size H) is taken at the values in use: its phases'
        regions are periodic in those symbols, and formulas for them would say little."""
        def num(w: Window) -> Window:
            if w.n == 1 or all(x.is_Integer for x in (w.d, *w.lo, *w.hi)):
                return w
            self.pinned.append(self.here)
            return Window(w.n, sp.Integer(self.at(w.d)), tuple(sp.Integer(self.at(x)) for x in w.lo),
                          tuple(sp.Integer(self.at(x)) for x in w.hi))
        return [(num(h), num(w)) for h, w in ws]

    def apply(self, op: OpDef, args: tuple[Args, Args], ins: list[Shape], out: Shape,
              fields: list[Region], where: tuple[str, Span]) -> Region:
        path, span = where
        self.here = path
        ws = self.numeric(self.windows(op, args, ins, out, span))
        if len(out) == 2 or any(len(s) == 2 for s in ins):
            got, exact = receptive_seq.apply(ins, out, ws, fields, self.at, self.phase_of)
            if not exact:
                self.bounded.append(path)
            return got
        made = [(compose(f[0], w[0], self.phase_of), compose(f[1], w[1], self.phase_of))
                for f, w in zip(fields, ws) if f is not None and not isinstance(f, Seq)]
        if not made:
            return None
        (h, why_h), (w, why_w) = (union([m[k] for m in made], self.at) for k in (0, 1))
        whys = set(why_h.split("; ") + why_w.split("; ")) - {""}
        if any(x.startswith("jumps") for x in whys):
            self.misaligned.append(path)
        elif whys:
            self.offcentre.append(path)
        return h, w

    def windows(self, op: OpDef, args: tuple[Args, Args], ins: list[Shape], out: Shape, span: Span) -> list[Windows]:
        sym, plain = args
        try:
            try:
                return op.windows(sym, ins, out)
            except TypeError:  # a stride or factor that is a symbol: its phases need a number
                self.pinned.append(self.here)
                at_values: list[Shape] = [tuple(sp.Integer(self.at(x)) for x in s) for s in ins]
                return op.windows(plain, at_values, out)
        except NotImplementedError as e:
            raise NetdslError(f"receptive fields: {e}", span,
                              "every op must say which units it reads (OpDef.windows)") from None

    def statements(self, stmts: list[Statement], fields: dict[str, Region], shapes: dict[str, Shape]) -> None:
        for st in stmts:
            cur: Region = None
            shape = st.shape
            if st.merge is not None:
                m = st.merge
                ins = [shapes[i] for i in st.inputs]
                got = [fields[i] for i in st.inputs]
                if m.op.final:
                    cur = self.levels(st, ins, got)
                else:
                    cur = self.apply(m.op, (m.args, m.args), ins, m.out_shape, got, (m.path, m.span))
                self.layers.append(_report(cur, self.at))
                shape = m.out_shape
            else:
                cur, shape = fields[st.inputs[0]], shapes[st.inputs[0]]
            for it in st.items:
                if isinstance(it, Block):
                    sub_f, sub_s = {it.input: cur}, {it.input: shape}
                    self.statements(it.statements, sub_f, sub_s)
                    cur, shape = sub_f["output"], sub_s["output"]
                else:
                    cur = self.layer(it, cur, shape)
                    shape = it.out_shape
            fields[st.name], shapes[st.name] = cur, shape

    def layer(self, it: Layer, cur: Region, shape: Shape) -> Region:
        made = self.apply(it.op, (it.sym, it.args), [shape], it.out_shape, [cur], (it.path, it.span))
        self.layers.append(_report(made, self.at))
        return made

    def levels(self, st: Statement, ins: list[Shape], got: list[Region]) -> Region:
        """A final head over several maps (detect): one receptive field per level."""
        m = st.merge
        assert m is not None
        self.here = m.path
        ws = self.numeric(self.windows(m.op, (m.args, m.args), ins, m.out_shape, m.span))
        made: list[Field] = []
        for k, (f, w) in enumerate(zip(got, ws)):
            if f is not None and not isinstance(f, Seq):
                made.append((compose(f[0], w[0], self.phase_of), compose(f[1], w[1], self.phase_of)))
                self.outputs[f"{st.name}[{k}]"] = _rf(made[-1])
        if not made:
            return None
        self.notes.append(f"{st.name}: one receptive field per level ({st.name}[0] .. {st.name}[{len(ins) - 1}]); "
                          "the layer's is the largest")
        return max(made, key=lambda f: self.at(f[0].size) * self.at(f[1].size))


def _some(paths: list[str]) -> str:
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def receptive_fields(cg: ConcreteGraph) -> RFResult:
    """Receptive fields of every walk item and every output, on the network's first image input."""
    walk = _Walk(cg)
    image = next((t for t in cg.inputs if len(t.shape) == 3), None)
    if image is None:
        return RFResult([None] * sum(1 for _ in cg.walk()), {}, ["no image input: no receptive fields"])
    fields: dict[str, Region] = {t.name: None for t in cg.inputs}
    fields[image.name] = (IMAGE, IMAGE)
    walk.statements(cg.statements, fields, {t.name: t.shape for t in cg.inputs})
    for t in cg.outputs:
        f = fields.get(t.name)
        rf = _report(f, walk.at)
        if rf is not None and t.name not in {k.split("[")[0] for k in walk.outputs}:
            walk.outputs[t.name] = rf
    notes = walk.notes
    if len(cg.inputs) > 1:
        notes.insert(0, f"regions are of the input {image.name}")
    if any(a.q > 1 for r in walk.layers if r is not None for a in r.axes):
        notes.append("after upsampling (or adaptive pooling to several units) the jump is a fraction and units "
                     "of different phases read regions of different sizes: size is the largest")
    if walk.misaligned:
        notes.append(f"paths not aligned at {_some(walk.misaligned)} (their jumps differ: a gate read by every "
                     "unit, a shortcut of another stride): the largest input region is taken, as Distill's "
                     "algorithm does, not the union")
    if walk.offcentre:
        notes.append(f"at {_some(walk.offcentre)} the inputs' regions are not centred alike: the union is "
                     "exact, but not centred on the unit")
    if any(r is not None and r.tokens is not None for r in walk.layers):
        notes.append("a sequence's tokens lie on the grid of the image they came from (token t: row t // w, "
                     "column t % w): a sequence layer's field is that grid's; a learned token reads nothing "
                     "until attention, after which every token reads what all of them read")
    if walk.bounded:
        notes.append(f"at {_some(walk.bounded)} the tokens do not lie on one grid: what they all read bounds "
                     "what each reads")
    if walk.pinned:
        at = ", ".join(f"{k}={v}" for k, v in cg.env.values.items())
        shown = ", ".join(dict.fromkeys(walk.pinned))
        notes.append(f"the phases of {shown} depend on the values in use: the regions from there hold at {at}")
    return RFResult(walk.layers, walk.outputs, notes)
