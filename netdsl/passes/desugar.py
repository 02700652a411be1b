"""Statements that write several tensors at once, rewritten as plain statements before lowering.

- A nested merge, `y = add(x, cat(a, b))`: each inner merge becomes a statement of its own,
  named `y_cat` (`y_cat_2`, ... where that name is taken), placed just before `y`. A merge holds
  no weights, so no state_dict key changes.
- A split, `a, b = x |> conv(64, 1) -> split(2)`: the chain before `split` (or a merge source)
  becomes one statement named after the parts, `a_b` (`a_split` for a single named part, a suffix
  where taken), then one statement per named part: `a = a_b |> channel_chunk(0, 2)` for equal
  parts, `channel_slice(start, stop, total=...)` for `split([sizes])`. `_` names no statement.

Generated names never equal a name written anywhere in the scope (tensor, input, parameter), so a
user name cannot clash with one, nor read one by accident.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from netdsl import ir
from netdsl.errors import NetdslError, Span
from netdsl.ops import merges
from netdsl.passes.names import RESERVED, did_you_mean

SPLIT = "split"
DISCARD = "_"
SPLIT_FORMS = "`a, b = x |> split(2)` (equal parts) or `a, b = x |> split([16, 48])` (sizes)"


def names_in_scope(assigns: list[ir.Assign]) -> set[str]:
    """Every tensor name the statements write or read."""
    out: set[str] = set()
    for a in assigns:
        out.add(a.name)
        out.update(t.name for t in a.targets)
        out.update(_operand_names(a.inputs))
    return out


def _operand_names(inputs: Iterable[ir.Ident | ir.MergeCall]) -> Iterable[str]:
    for i in inputs:
        if isinstance(i, ir.MergeCall):
            yield from _operand_names(i.inputs)
        else:
            yield i.name


def needs_desugar(assigns: list[ir.Assign]) -> bool:
    """Whether any statement names several parts, nests a merge or calls split (the common case,
    none, costs one look at each statement: graph blocks are lowered once per call)."""
    return any(a.targets or any(isinstance(i, ir.MergeCall) for i in a.inputs)
               or any(c.op.name == SPLIT for c in a.chain) for a in assigns)


def _span(first: Span, last: Span) -> Span:
    return Span(first.line, first.column, last.end_line, last.end_column)


class Desugar:
    """Rewrites one scope's statements. `parts(e)` is the value of a split's count at the values in
    use (None while a block's definition is checked: nothing is evaluated then)."""

    def __init__(self, assigns: list[ir.Assign], taken: set[str], parts: Callable[[ir.Expr], int | None]) -> None:
        self.taken = taken | names_in_scope(assigns) | RESERVED
        self.parts = parts
        self.assigns = assigns

    def fresh(self, base: str, first_suffix: str = "") -> str:
        name = base + first_suffix if first_suffix else base
        k = 2
        while name in self.taken:
            name = f"{base}{first_suffix}_{k}"
            k += 1
        self.taken.add(name)
        return name

    def run(self) -> list[ir.Assign]:
        out: list[ir.Assign] = []
        for a in self.assigns:
            self.check_split_place(a)
            base = "_".join(t.name for t in a.targets if t.name != DISCARD) if a.targets else a.name
            if any(isinstance(i, ir.MergeCall) for i in a.inputs):
                a = a.model_copy(update={"inputs": [self.flatten(i, base or "split", a, out) for i in a.inputs]})
            out += self.split(a) if a.targets else [a]
        return out

    def flatten(self, i: ir.Ident | ir.MergeCall, base: str, a: ir.Assign, out: list[ir.Assign]) -> ir.Ident:
        """An operand as a tensor name: an inner merge becomes a statement (its own operands first)."""
        if isinstance(i, ir.Ident):
            return i
        m = merges().get(i.op.name)
        if m is not None and m.final:
            raise NetdslError(f"{m.name}() makes one of the network's outputs; it cannot be another merge's operand",
                              i.span, f"write `output = {m.name}(...)` on its own")
        inputs: list[ir.Ident | ir.MergeCall] = [self.flatten(x, base, a, out) for x in i.inputs]
        name = self.fresh(f"{base}_{i.op.name}")
        out.append(ir.Assign(span=i.span, name=name, merge=i.op.name, inputs=inputs, source_span=i.span,
                             args=i.args, attrs=a.attrs))
        return ir.Ident(span=i.span, name=name)

    def check_split_place(self, a: ir.Assign) -> None:
        """`split` only ends the chain of a statement with several names."""
        for k, call in enumerate(a.chain):
            if call.op.name != SPLIT:
                continue
            if not a.targets:
                raise NetdslError("split makes several tensors: name each of them", call.span,
                                  f"write {SPLIT_FORMS}")
            if k != len(a.chain) - 1:
                raise NetdslError("split must be the last layer of the statement", a.chain[k + 1].span,
                                  "apply the layers after it to each part, in statements of their own")
            if call.label is not None or call.repeat is not None or call.attrs:
                raise NetdslError("split takes no label, repetition or attribute", call.span, f"write {SPLIT_FORMS}")
        if a.targets and (not a.chain or a.chain[-1].op.name != SPLIT):
            where = a.chain[-1].span if a.chain else a.source_span
            raise NetdslError(f"{len(a.targets)} names take the parts of a split, but this statement does not end "
                              "with split", where, f"end it with `-> split(...)`: {SPLIT_FORMS}")

    def split(self, a: ir.Assign) -> list[ir.Assign]:
        call = a.chain[-1]
        names = _span(a.targets[0].span, a.targets[-1].span)
        for t in a.targets:
            if t.name == "output":
                raise NetdslError("a part of a split cannot be the network's output", t.span,
                                  "name the part, then write `output = NAME` (or `output = cat(a, b)`)")
        named = [t for t in a.targets if t.name != DISCARD]
        if not named:
            raise NetdslError("every part of this split is discarded ('_')", names, "name at least one part")
        if len(call.args) != 1 or call.args[0].name is not None:
            raise NetdslError("split takes one argument: the number of equal parts, or a list of sizes", call.span,
                              f"write {SPLIT_FORMS}")
        arg = call.args[0].value
        layers = self.part_layers(arg, len(a.targets), names, call.span)
        source, parent = a.inputs[0], a.chain[:-1]
        out: list[ir.Assign] = []
        if a.merge != "ref" or parent:
            joined = "_".join(t.name for t in named)
            hidden = self.fresh(joined, "_split" if len(named) == 1 else "")
            out.append(a.model_copy(update={"name": hidden, "chain": parent, "targets": []}))
            source = ir.Ident(span=a.source_span, name=hidden)
        for t, layer in zip(a.targets, layers):
            if t.name != DISCARD:
                out.append(ir.Assign(span=t.span, name=t.name, merge="ref", inputs=[source], source_span=call.span,
                                     chain=[layer], attrs=a.attrs))
        return out

    def part_layers(self, arg: ir.Value, count: int, names: Span, span: Span) -> list[ir.LayerCall]:
        """One layer per part: channel_chunk(i, n) for equal parts, channel_slice for sizes."""
        def layer(op: str, *args: tuple[str | None, ir.Value]) -> ir.LayerCall:
            return ir.LayerCall(span=span, op=ir.Ident(span=span, name=op),
                                args=[ir.Arg(span=v.span, name=k, value=v) for k, v in args])

        if isinstance(arg, ir.ListValue):
            sizes = arg.items
            if len(sizes) != count:
                raise NetdslError(f"{count} names for a split into {len(sizes)} parts", names,
                                  f"give one name per size ({len(sizes)}); `_` discards a part")
            if len(sizes) < 2:
                raise NetdslError("a split needs at least two sizes", arg.span, f"write {SPLIT_FORMS}")
            for s in sizes:
                if not isinstance(s, ir.EXPR_TYPES):
                    raise NetdslError("a split's sizes are integer expressions", s.span, f"write {SPLIT_FORMS}")
            exprs: list[ir.Expr] = [s for s in sizes if isinstance(s, ir.EXPR_TYPES)]
            total = _sum(exprs, arg.span)
            out: list[ir.LayerCall] = []
            start: ir.Expr = ir.Int(span=arg.span, value=0)
            for e in exprs:
                stop = ir.BinOp(span=arg.span, op="+", left=start, right=e) if out else e
                out.append(layer("channel_slice", (None, start), (None, stop), ("total", total)))
                start = stop
            return out
        if not isinstance(arg, ir.EXPR_TYPES):
            raise NetdslError(f"split takes a number of parts or a list of sizes, not {arg.kind} values", arg.span,
                              f"write {SPLIT_FORMS}")
        n = self.parts(arg)
        if n is not None and n != count:
            raise NetdslError(f"{count} names for a split into {n} parts", names,
                              f"give one name per part ({n}); `_` discards a part")
        return [layer("channel_chunk", (None, ir.Int(span=span, value=i)), (None, arg)) for i in range(count)]


def check_reads(refs: list[ir.Ident], defined: dict[str, Span], finals: set[str], assigns: list[ir.Assign]) -> None:
    """A statement reads tensors defined before it (not a detection result, not a discarded part)."""
    for ref in refs:
        if ref.name in finals:
            raise NetdslError(f"'{ref.name}' is a detection result, not a tensor", ref.span,
                              "a detect() statement is one of the network's outputs; nothing can read it")
        if ref.name not in defined:
            later = next((x for x in assigns if x.name == ref.name), None)
            hint = (f"'{ref.name}' is defined later, at line {later.span.line}; move that statement up"
                    if later is not None else "'_' discards a part of a split; name the part to use it"
                    if ref.name == DISCARD else did_you_mean(ref.name, defined)
                    + f"tensors defined so far: {', '.join(defined)}")
            raise NetdslError(f"'{ref.name}' is used before it is defined" if later else f"unknown tensor '{ref.name}'",
                              ref.span, hint)


def _sum(exprs: list[ir.Expr], span: Span) -> ir.Expr:
    total = exprs[0]
    for e in exprs[1:]:
        total = ir.BinOp(span=span, op="+", left=total, right=e)
    return total
