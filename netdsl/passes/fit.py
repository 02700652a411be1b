"""`netdsl fit`: the largest batch, or input size, whose exact memory fits a budget. No torch.

Training is measured by `train_bytes` (parameters, buffers, gradients, optimizer state and what
autograd saves); inference by `peak_bytes` (the largest live set of an eval forward) plus the
parameters and buffers, which sit in the same memory. The batch is solved exactly: every memory
formula is linear in the batch, or a `Max` of linear pieces (peak), so each piece's bound is one
floor division. An input size is searched on the values the spec admits (`where H % 32 == 0`):
first on the formula, then checked with a fresh analysis at the answer and the next admissible
value, and searched with fresh analyses throughout where that check fails (a size that decides
the network's structure, a `where` bound). Each answer is checked on both sides of the boundary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypedDict

import sympy as sp

from netdsl.errors import NetdslError
from netdsl.limits import MAX_VALUE
from netdsl.parsing import parse_text
from netdsl.passes.fit_probe import SizeProbe, as_int, batch_formula, grid
from netdsl.passes.fit_search import largest
from netdsl.passes.front import analyse_text
from netdsl.passes.memory_model import MemoryOptions, batch_name, batch_symbol
from netdsl.passes.peak import peak_bytes
from netdsl.passes.symbols import conditions_of
from netdsl.passes.train_memory import buffer_bytes, param_bytes, train_bytes

if TYPE_CHECKING:
    from netdsl.concrete import ConcreteGraph

Mode = Literal["train", "infer"]
MODES: tuple[str, ...] = ("train", "infer")
METRIC = {"train": "train_bytes", "infer": "peak_bytes + param_bytes + buffer_bytes"}


class Setup(TypedDict):
    """What every answer of one fit shares: the spec, the budget, the metric and its formula."""

    net: str
    spec: str | None
    batch: str
    budget: int
    mode: str
    metric: str
    options: MemoryOptions
    formula: str
    fixed: int


@dataclass(frozen=True)
class FitResult:
    """The largest value of `solve_for` that fits `budget` bytes; `answer` is None when none does.

    `at_answer` and `at_next` are the metric in bytes at the answer and at the next admissible
    value (`next`); `at_next` is None when the spec does not admit `next` (the reason is in
    `notes`). `formula` is the metric in the spec's symbols and the batch symbol, `solved` the
    same with every other value in use substituted.
    """

    net: str
    spec: str | None
    batch: str                 # the batch's name: N, or `batch` where the spec has its own N
    solve_for: tuple[str, ...]
    answer: int | None
    next: int
    at_answer: int | None
    at_next: int | None
    budget: int
    mode: str
    metric: str
    formula: str
    solved: str
    fixed: int
    values: dict[str, int]
    options: MemoryOptions
    notes: tuple[str, ...] = field(default=())

    @property
    def fits(self) -> bool:
        return self.answer is not None

    def to_json(self) -> dict[str, object]:
        """One object keyed by the solved names (`{"N": 183, ...}`), as `netdsl fit --json` prints."""
        return {**{n: self.answer for n in self.solve_for}, "net": self.net, "spec": self.spec,
                "solve_for": list(self.solve_for), "batch": self.batch, "mode": self.mode, "metric": self.metric,
                "dtype": self.options.dtype, "optimizer": self.options.optimizer if self.mode == "train" else None,
                "budget": self.budget, "formula": self.formula, "solved": self.solved,
                "at_answer": self.at_answer, "next": {n: self.next for n in self.solve_for}, "at_next": self.at_next,
                "fixed": self.fixed, "values": self.values, "notes": list(self.notes)}


def memory_formula(cg: ConcreteGraph, batch: sp.Symbol, mode: str, options: MemoryOptions) -> tuple[sp.Expr, sp.Expr]:
    """(the metric `fit` solves, the parameters and buffers) in internal symbols and `batch`."""
    weights = param_bytes(cg, options) + buffer_bytes(cg)
    if mode == "train":
        return train_bytes(cg, batch, options), weights
    return peak_bytes(cg, batch, options).total + weights, weights


def fit_text(text: str, path: str | None, overrides: dict[str, int], budget: int, solve_for: str | None = None,
             mode: str = "train", options: MemoryOptions | None = None) -> FitResult:
    """Solve the spec for `budget` bytes. `overrides` may hold the batch (`N`) besides the spec's
    own names; `solve_for` is the batch's name (the default), an input size (`H`: the others keep
    their values in use) or two (`H,W`: the largest square)."""
    options = options or MemoryOptions()
    if mode not in MODES:
        raise NetdslError(f"the mode must be 'train' or 'infer', not {mode!r}", hint="--train or --infer")
    spec = parse_text(text, path)
    names = [p.name for p in spec.params] + [d.name for d in spec.dims]
    bname = batch_name(names, spec.span)
    overrides = dict(overrides)
    batch = overrides.pop(bname, 1)
    if batch < 1:
        raise NetdslError(f"--set {bname}={batch}: the batch must be at least 1", hint=f"e.g. --set {bname}=16")
    targets = _targets(solve_for, bname, names, [d.name for d in spec.dims])
    cg = analyse_text(text, path, overrides)
    bsym = batch_symbol(cg.env)
    expr, weights = memory_formula(cg, bsym, mode, options)
    at = {**cg.env.internal_values, bsym: sp.Integer(batch)}
    fixed = as_int(expr.xreplace({**at, bsym: sp.Integer(0)}))
    mine = {s for t in targets if t != bname
            for s in (cg.env.symbols[t], *cg.env.fwd.get(cg.env.symbols[t], sp.S.Zero).free_symbols)}
    if budget < fixed and not (weights.free_symbols & mine):  # else a smaller input may have fewer parameters
        _below_parameters(budget, fixed, as_int(weights.xreplace(at)), mode)
    base = Setup(net=cg.name, spec=path, batch=bname, budget=budget, mode=mode, metric=METRIC[mode], options=options,
                 formula=str(cg.env.show(expr)), fixed=fixed)
    if targets == (bname,):
        return _fit_batch(expr, bsym, at, batch, base, dict(cg.env.values))
    probe = SizeProbe(text, path, overrides, targets, batch, lambda g, b: memory_formula(g, b, mode, options)[0],
                      grid(conditions_of(spec), targets))
    ans = probe.solve(budget, cg, expr)
    solved = cg.env.show(expr.xreplace({k: v for k, v in at.items() if k not in mine}))
    return FitResult(**base, solve_for=targets, answer=ans.answer, next=ans.next, at_answer=ans.at_answer,
                     at_next=ans.at_next, solved=str(solved), values={**(ans.values or cg.env.values), bname: batch},
                     notes=tuple(ans.notes))


def _below_parameters(budget: int, fixed: int, weights: int, mode: str) -> None:
    what = "parameters, buffers, gradients and optimizer state" if mode == "train" else "parameters and buffers"
    raise NetdslError(f"the budget ({budget:,} bytes) is below what the {what} alone take: {fixed:,} bytes "
                      f"(parameters and buffers {weights:,})",
                      hint="raise --memory, or choose a smaller network (--set)"
                      + (", or --optimizer sgd / --infer" if mode == "train" else ""))


def _targets(solve_for: str | None, bname: str, names: list[str], dims: list[str]) -> tuple[str, ...]:
    if solve_for is None:
        return (bname,)
    parts = tuple(p.strip() for p in solve_for.split(","))
    choices = (f"the batch '{bname}', or input sizes: {', '.join(dims)} (one, or two for the largest square)" if dims
               else f"the batch '{bname}' (the spec's inputs have no named sizes)")
    if parts == (bname,) or (len(parts) in (1, 2) and len(set(parts)) == len(parts) and set(parts) <= set(dims)):
        return parts
    if len(parts) == 1 and parts[0] in names:
        raise NetdslError(f"--for {solve_for}: '{parts[0]}' is a parameter of this spec; fit solves for "
                          f"the batch or an input size", hint=f"solve for {choices}"
                          + (f" (the batch is called '{bname}' here, as the spec uses N)" if bname != "N" else ""))
    raise NetdslError(f"--for {solve_for!r}: fit solves for {choices}",
                      hint=f"e.g. --for {bname}" + (f" or --for {','.join(dims[:2])}" if dims else ""))


def _fit_batch(expr: sp.Expr, bsym: sp.Symbol, at: dict[sp.Symbol, sp.Integer], batch: int,
               base: Setup, values: dict[str, int]) -> FitResult:
    """The largest batch: one floor division per linear piece, checked on both sides."""
    f = expr.xreplace({k: v for k, v in at.items() if k != bsym})
    pieces = batch_formula(f, bsym)
    budget = base["budget"]
    if pieces is not None:
        bounds = [(budget - b) // a for a, b in pieces if a > 0] or [MAX_VALUE]
        answer = min(MAX_VALUE, *bounds) if all(b <= budget for _, b in pieces) else 0
        solved = sp.Max(*(a * bsym + b for a, b in pieces))
    else:  # not linear in the batch (no memory rule gives this today): search, checked below all the same
        answer = largest(lambda n: as_int(f.xreplace({bsym: sp.Integer(n)})) <= budget, batch, 0) or 0
        solved = f

    def value(n: int) -> int:
        return as_int(f.xreplace({bsym: sp.Integer(n)}))

    ok = answer == 0 or value(answer) <= budget
    if not ok or (answer < MAX_VALUE and value(answer + 1) <= budget):
        raise RuntimeError(f"fit: the batch {answer} is not the boundary of {f} <= {budget}; this is a bug in netdsl")
    notes = (f"every batch up to {MAX_VALUE:,} fits",) if answer >= MAX_VALUE else ()
    return FitResult(**base, solve_for=(bsym.name,), answer=answer or None, next=answer + 1,
                     at_answer=value(answer) if answer else None, at_next=value(answer + 1), solved=str(solved),
                     values={**values, bsym.name: answer or 1}, notes=notes)

