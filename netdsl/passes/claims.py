"""Claims: hand-written count formulas, proved or refuted symbolically.

`claim METRIC(options) == expr` states a formula for a total. Options pick the convention
(`biases`, `batchnorm`, `activations`, `merges`), the resolution (`H=32`, `W=32`, any parameter
or size set to an integer expression) and `doubled=true` (the input at 2H x 2W, applied before
the size options, so `(H=32, doubled=true)` means a 64 x 64 input).

What an option substitutes into: only the count. `weights(k=k+2)` is netdsl's total of the
network whose kernel is k+2, written in the spec's symbols; the claimed side is the user's
formula and is read as written, in the same symbols (`claim weights(k=k+2) == C*(k+2)**2`),
never substituted into. A symbol that an option fixes (`H=32`) keeps its meaning on the claimed
side too: write the number there.

An option must give a valid network wherever the spec's symbols are admissible: its value must be
an integer and meet every assumption the symbolic passes rely on (`k: odd`, `H % 4 == 0`,
`k == 3`, and a parameter that decides the structure stays at its value in use) for every
admissible value of the symbols it uses, which is decided exactly; an option that breaks one for
some or for every value is an error at the option, naming the assumption. Inequalities and
positive sizes are checked at the values in use, as for the spec itself.

A claim holds when the difference to the count is zero for every admissible parameter value
(after the spec's assumptions); otherwise netdsl shows the difference and a small assignment
where the two sides differ. That assignment meets every assumption of the spec, and so does the
network the options pick there (both are checked, inequalities included).

The memory metrics (`saved_bytes`, `peak_bytes`, `param_bytes`, `buffer_bytes`, `train_bytes`,
fp32, Adam) are in bytes for a batch of `N` (`batch` when the spec has its own `N`): `N` may be
an option (`saved_bytes(N=1)`, at least 1) and a symbol of the claimed side, for them only.

Claim expressions are built node by node from the IR (never parsed from text), must be
polynomials in the spec's parameters and sizes, and must be integers wherever those are.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial

import sympy as sp

from netdsl import ir, ir_expr
from netdsl.errors import NetdslError, Span, source_text
from netdsl.passes.claim_types import Assumption, ClaimResult, ClaimSource, small_first
from netdsl.passes.count_memory import MEMORY_METRICS, with_batch
from netdsl.passes.counts import ALL_METRICS, SWITCHES, Convention, CountResult
from netdsl.passes.intpoly import internal_to_user, non_integer_point
from netdsl.passes.names import did_you_mean
from netdsl.passes.shapes import analyse
from netdsl.passes.symbols import conditions_of, fixed_value, make_env, mod_assumption

__all__ = ["Assumption", "ClaimChecker", "ClaimResult", "ClaimSource", "check_claims"]

SWITCH_NAMES = ("biases", "batchnorm", "activations", "merges")
MAX_SEARCH_POINTS = 2000
MAX_RESIDUE_POINTS = 4096  # points enumerated to decide that an option never meets an assumption


def _other_than(v: sp.Expr, residue: int) -> bool:
    return bool(v != residue)


def _other_residue(v: sp.Expr, modulus: int, residue: int) -> bool:
    return bool(v % modulus != residue)


# --- checking claims --------------------------------------------------------------------------

class ClaimChecker:
    def __init__(self, counts: CountResult) -> None:
        self.counts = counts
        self.batch = counts.batch  # a symbol of the memory metrics' claims only
        self.env = with_batch(counts.env, counts.batch, counts.batch_value)
        self._memory = False  # whether the claim being checked is about a memory metric
        spec = counts.shapes.spec
        assert spec is not None, "claims are checked on the counts of a spec"
        self.spec: ir.Spec = spec
        self.names = list(self.env.symbols)
        self.assumptions = self._assumptions()
        self._valid_cache: dict[tuple, str | None] = {}
        self._admissible_cache: dict[tuple, bool] = {}

    def _assumptions(self) -> list[Assumption]:
        """The spec's annotations and `where` conditions that become substitutions, and the
        parameters held at their values because they decide the structure."""
        out = [Assumption(p.name, f"{p.name}: {p.annotation}", 2, 1 if p.annotation == "odd" else 0)
               for p in self.spec.params if p.annotation in ("odd", "even")]
        for c in conditions_of(self.spec):
            mod, fixed = mod_assumption(c), fixed_value(c)
            if mod is not None:
                out.append(Assumption(mod[0], ir_expr.condition_text(c), mod[1], mod[2]))
            if fixed is not None:
                out.append(Assumption(fixed[0], ir_expr.condition_text(c), 0, fixed[1]))
        graph = self.counts.shapes.graph
        for name in (graph.structural if graph is not None else []):
            out.append(Assumption(name, f"{name} == {self.env.values[name]}", 0, self.env.values[name],
                                  structural=True))
        return out

    # Validation ---------------------------------------------------------------------------
    def _check_names(self, e: ir.Expr, what: str) -> None:
        for n in ir_expr.names_in(e):
            if n.id == self.batch.name and not self._memory:
                raise NetdslError(f"'{n.id}' is the batch size: only the memory metrics have one", n.span,
                                  f"the memory metrics: {', '.join(MEMORY_METRICS)}")
            if n.id not in self.env.symbols:
                hint = did_you_mean(n.id, self.names) + f"the spec's symbols: {', '.join(self.names)}"
                raise NetdslError(f"unknown symbol '{n.id}' in {what}", n.span, hint)

    def _check_polynomial(self, e: ir.Expr) -> None:
        """Claims are polynomials: no //, %, min, max or division by a symbol."""
        for n in ir_expr.walk(e):
            if isinstance(n, (ir.Call, ir.IfExpr)):
                what = f"{n.func}()" if isinstance(n, ir.Call) else "a conditional"
                raise NetdslError(f"{what} makes the claim non-polynomial", n.span,
                                  "claims are polynomials in the spec's parameters and sizes")
            if isinstance(n, ir.BinOp):
                if n.op in ("//", "%"):
                    raise NetdslError(f"'{n.op}' makes the claim non-polynomial", n.span,
                                      "claims are polynomials; write exact division with '/' by a constant")
                if n.op == "/" and list(ir_expr.names_in(n.right)):
                    raise NetdslError("division by a symbol makes the claim non-polynomial", n.span,
                                      "divide by constants only, e.g. H*W/4")

    def _options(self, src: ClaimSource,
                 metric: str) -> tuple[Convention, bool, dict[sp.Symbol, sp.Expr], list[ir.Arg]]:
        switches: dict[str, bool] = {}
        doubled = False
        at: dict[sp.Symbol, sp.Expr] = {}
        at_args: list[ir.Arg] = []
        seen: set[str] = set()
        allowed = SWITCHES.get(metric, ())
        for a in src.claim.options:
            if a.name is None:
                raise NetdslError("claim options are named", a.span,
                                  "write e.g. weights(biases=true) or outputs(H=32, W=32)")
            if a.name in seen:
                raise NetdslError(f"option '{a.name}' given twice", a.span, "give each option once")
            seen.add(a.name)
            if a.name in SWITCH_NAMES or a.name == "doubled":
                if not isinstance(a.value, ir.Bool):
                    raise NetdslError(f"option '{a.name}' is true or false", a.value.span, f"write {a.name}=true")
                if a.name == "doubled":
                    doubled = a.value.value
                elif a.name not in allowed:
                    raise NetdslError(f"option '{a.name}' does not apply to '{metric}'", a.span,
                                      f"'{metric}' takes: " + ", ".join([*allowed, "doubled", "sizes and parameters"]))
                else:
                    switches[a.name] = a.value.value
            elif a.name == self.batch.name and not self._memory:
                raise NetdslError(f"option '{a.name}' is the batch size: only the memory metrics have one", a.span,
                                  f"the memory metrics: {', '.join(MEMORY_METRICS)}")
            elif a.name in self.env.symbols:
                if not isinstance(a.value, ir.EXPR_TYPES):
                    raise NetdslError(f"option '{a.name}' takes an integer expression", a.value.span,
                                      f"write e.g. {a.name}=32")
                self._check_names(a.value, "a claim option")
                self._check_polynomial(a.value)
                at[self.env.symbols[a.name]] = self.env.sym(a.value, raw=True)
                at_args.append(a)
            else:
                options = [*allowed, "doubled", *[n for n in self.names if n != self.batch.name or self._memory]]
                raise NetdslError(f"unknown claim option '{a.name}'", a.span,
                                  did_you_mean(a.name, options) + f"options for '{metric}': {', '.join(options)}")
        return Convention().with_options(**switches), doubled, at, at_args

    def _validate_at(self, src: ClaimSource, at: dict[sp.Symbol, sp.Expr], args: list[ir.Arg],
                     doubled: bool) -> None:
        """Each size/parameter option must give a valid network wherever the spec's symbols are
        admissible: an integer meeting the spec's assumptions (decided exactly), and a valid network
        at the values in use (inequalities, positive sizes: as for the spec itself)."""
        for a in args:
            assert a.name is not None, "_options took only named options"
            self._check_option(src, a, at[self.env.symbols[a.name]])
        if not at:
            return
        user = {self.env.symbols[n]: sp.Integer(v) for n, v in self.env.values.items()}
        here = {s.name: int(v.xreplace(user)) for s, v in at.items()}
        msg = self._invalid({**self.env.values, **here}, doubled)
        if msg is not None:
            msg = msg.replace(" (from --set)", "")  # every value is passed as an override here
            span = Span(args[0].span.line, args[0].span.column, args[-1].span.end_line, args[-1].span.end_column)
            shown = ", ".join(source_text(src.text, a.span) for a in args)
            moved = [f"{s.name}={here[s.name]}" for s, v in at.items() if not v.is_Integer]
            where = f" (at the values in use: {', '.join(moved)})" if moved else ""
            raise NetdslError(f"the claim's options {shown} do not give a valid network{where}: {msg}", span,
                              "choose sizes and parameters that meet the spec's conditions")

    def _check_option(self, src: ClaimSource, a: ir.Arg, value: sp.Expr) -> None:
        """`name=value` meets every substitution assumption on `name` for every admissible value."""
        assert a.name is not None
        shown = source_text(src.text, a.span) or f"{a.name}=..."
        e = sp.expand(value.xreplace(self.env.fwd))  # internal symbols: the spec's assumptions applied
        if a.name == self.batch.name and e.is_Integer and e < 1:
            raise NetdslError(f"the claim's option {shown} is not a batch size: it must be at least 1", a.span,
                              f"write e.g. {a.name}=1")
        listed = ", ".join(x.text for x in self.assumptions if not x.structural)
        hint = ("an option must give a valid network for every admissible value of the symbols it uses"
                + (f" (the spec assumes {listed})" if listed else ""))
        if non_integer_point(e) is not None:
            if e.is_number:
                raise NetdslError(f"the claim's option {shown} is not an integer: it is {e}", a.span,
                                  "sizes and parameters are integers")
            at, v = self._witness(value, lambda v: not v.is_Integer)
            raise NetdslError(f"the claim's option {shown} is not an integer for every admissible value: "
                              f"at {at} it is {v}", a.span, "sizes and parameters are integers; check the divisions")
        for x in self.assumptions:
            if x.name != a.name:
                continue
            if x.modulus == 0:
                if sp.expand(e - x.residue) == 0:
                    continue
                if x.structural:
                    to = f"--set {a.name}={e}" if e.is_Integer else f"--set {a.name}=VALUE"
                    raise NetdslError(f"the claim's option {shown} changes {a.name}, which decides the network's "
                                      f"structure: its counts are known only at {x.text}", a.span,
                                      f"count that network with {to} instead")
                if e.is_Integer:
                    raise NetdslError(f"the claim's option {shown} does not give a valid network: it breaks the "
                                      f"spec's assumption {x.text}", a.span, hint)
                at, v = self._witness(value, partial(_other_than, residue=x.residue))
                raise NetdslError(f"the claim's option {shown} does not always give a valid network: it breaks "
                                  f"the spec's assumption {x.text} at {at}, where it gives {a.name}={v}", a.span, hint)
            f = (e - x.residue) / x.modulus  # an integer exactly where the option meets the assumption
            if non_integer_point(sp.expand(f)) is None:
                continue
            if e.is_Integer:
                raise NetdslError(f"the claim's option {shown} does not give a valid network: it breaks the "
                                  f"spec's assumption {x.text}", a.span, hint)
            at, v = self._witness(value, partial(_other_residue, modulus=x.modulus, residue=x.residue))
            if self._never_integer(sp.expand(f)):
                raise NetdslError(f"the claim's option {shown} never gives a valid network: it meets the spec's "
                                  f"assumption {x.text} for no admissible value (at {at} it gives {a.name}={v})",
                                  a.span, hint)
            raise NetdslError(f"the claim's option {shown} does not always give a valid network: it breaks the "
                              f"spec's assumption {x.text} at {at}, where it gives {a.name}={v}", a.span, hint)

    def _witness(self, value: sp.Expr, breaks: Callable[[sp.Expr], bool]) -> tuple[str, sp.Expr]:
        """A small admissible point (user symbols, as text) where the option's `value` breaks an
        assumption, and the value there. Only called once the break is known to exist."""
        order = lambda s: self.names.index(s.name)  # noqa: E731 - declaration order
        syms = sorted(value.free_symbols, key=order)
        cands = [self._candidates(s) for s in syms]
        for idx in itertools.islice(small_first([len(c) for c in cands]), MAX_SEARCH_POINTS):
            point = {s: sp.Integer(c[i]) for s, c, i in zip(syms, cands, idx)}
            v = value.xreplace(point)
            if breaks(v):
                return ", ".join(f"{s.name}={point[s]}" for s in syms), v
        return "some admissible value", value  # pragma: no cover - the exact tests found one

    @staticmethod
    def _never_integer(f: sp.Expr) -> bool:
        """Whether the polynomial `f` is an integer at no integer point. Its fractional part is
        periodic with period N (the common denominator) in each variable, so one period decides;
        False when that grid is too large to enumerate."""
        syms = sorted(f.free_symbols, key=lambda s: s.name)
        n = int(sp.ilcm(*[sp.Rational(c).q for c in sp.Poly(f, *syms).coeffs()], 1))
        if n ** len(syms) > MAX_RESIDUE_POINTS:
            return False
        return all(not f.xreplace({s: sp.Integer(v) for s, v in zip(syms, point)}).is_Integer
                   for point in itertools.product(range(n), repeat=len(syms)))

    def _invalid(self, overrides: dict[str, int], doubled: bool = False) -> str | None:
        """Why the network (at 2H x 2W when `doubled`) is invalid at these values (None when valid)."""
        overrides = {k: v for k, v in overrides.items() if k != self.batch.name}  # not a parameter of the spec
        key = (tuple(sorted(overrides.items())), doubled)
        if key not in self._valid_cache:
            try:
                analyse(self.spec, overrides, dim_scale=2 if doubled else 1)
                self._valid_cache[key] = None
            except NetdslError as e:
                self._valid_cache[key] = e.message
        return self._valid_cache[key]

    def _admissible(self, values: dict[str, int]) -> bool:
        """Whether these values meet the spec's annotations and `where` conditions."""
        key = tuple(sorted((k, v) for k, v in values.items() if k != self.batch.name))
        if key not in self._admissible_cache:
            try:
                make_env(self.spec, dict(key))
                self._admissible_cache[key] = True
            except NetdslError:
                self._admissible_cache[key] = False
        return self._admissible_cache[key]

    # Checking -----------------------------------------------------------------------------
    def check(self, src: ClaimSource) -> ClaimResult:
        c = src.claim
        metric = c.metric.name
        if metric not in ALL_METRICS:
            raise NetdslError(f"unknown metric '{metric}'", c.metric.span,
                              did_you_mean(metric, ALL_METRICS) + f"metrics: {', '.join(ALL_METRICS)}")
        self._memory = metric in MEMORY_METRICS
        if c.op != "==":
            raise NetdslError(f"claims state equalities; '{c.op}' is not supported", c.span,
                              f"write `claim {metric} == ...`")
        convention, doubled, at, at_args = self._options(src, metric)
        self._validate_at(src, at, at_args, doubled)
        self._check_names(c.expr, "a claim")
        self._check_polynomial(c.expr)
        raw = self.env.sym(c.expr, raw=True)
        bad = non_integer_point(sp.expand(raw.xreplace(self.env.fwd)))
        if bad is not None:
            user = internal_to_user(self.env, bad)
            shown = ", ".join(f"{k}={v}" for k, v in user.items())
            val = raw.xreplace({self.env.symbols[k]: sp.Integer(v) for k, v in user.items()})
            raise NetdslError(f"the claim is not an integer for every admissible value: at {shown} it is {val}",
                              c.expr.span, "counts are integers; check the divisions")
        try:
            counted = self.counts.total(metric, convention, doubled)
        except NetdslError as e:  # about the spec (doubling breaks an assumption), not the claim
            raise e.with_source(*self.counts.shapes.source) from None
        claimed = raw  # the user's formula: options pick where the count is taken, not what was claimed
        counted = sp.expand(counted.xreplace(at)) if at else counted
        diff = sp.expand((claimed - counted).xreplace(self.env.fwd))  # internal: assumptions applied
        res = ClaimResult(source=src, metric=metric, convention=convention, doubled=doubled,
                          at={s.name: v for s, v in at.items()}, claimed=claimed, counted=counted, status="holds")
        res.values_in_use = (int(self.counts.value(claimed)), int(self.counts.value(counted)))
        if diff == 0:
            return res
        res.difference = sp.factor(self.env.show(diff))
        others = claimed.free_symbols | counted.free_symbols
        point = self._counterexample(res.difference, at, others, doubled)
        if point is None:
            res.status = "unknown"
            return res
        res.status = "fails"
        res.counterexample = point
        vals = {self.env.symbols[k]: sp.Integer(v) for k, v in point.items()}
        res.claimed_value, res.counted_value = int(claimed.xreplace(vals)), int(counted.xreplace(vals))
        return res

    def _candidates(self, s: sp.Symbol) -> list[int]:
        """Small admissible values of a user symbol (its residue class, positive)."""
        e = self.env.fwd.get(s, s)
        if e.is_Integer:
            return [int(e)]
        if e == s:
            return list(range(1, 7))
        q = next(iter(e.free_symbols))
        vals = [int(e.xreplace({q: sp.Integer(j)})) for j in range(0, 8)]
        return [v for v in vals if v > 0][:6]

    def _counterexample(self, diff: sp.Expr, at: dict[sp.Symbol, sp.Expr],
                        others: set[sp.Symbol], doubled: bool) -> dict[str, int] | None:
        """A small assignment where `diff` (user symbols) is not zero, at which the spec's
        assumptions hold and the network the options pick is valid.

        The symbols of `diff` are searched first; `others` (the rest of both sides' symbols) take
        their smallest admissible value that gives a valid network, so both sides can be evaluated
        at the assignment. Symbols in neither side stay at their values in use.
        """
        order = lambda s: self.names.index(s.name)  # noqa: E731 - declaration order
        syms = sorted(diff.free_symbols, key=order)
        rest = sorted(others - set(syms), key=order)
        per = 6 if len(syms) <= 4 else 3  # keep the grid small: the first points usually differ
        cands = [self._candidates(s)[:per] for s in syms] + [self._candidates(s)[:3] for s in rest]
        index_points = itertools.islice(small_first([len(c) for c in cands]), MAX_SEARCH_POINTS)
        tried_invalid = 0
        for idx in index_points:
            point = {s: sp.Integer(c[i]) for s, c, i in zip([*syms, *rest], cands, idx)}
            if diff.xreplace(point) == 0:
                continue
            if self._valid_at(point, at, doubled):
                return {s.name: int(v) for s, v in sorted(point.items(), key=lambda kv: order(kv[0]))}
            tried_invalid += 1
            if tried_invalid > 50:
                break
        # The values in use are admissible, and the options were checked there; use them if the
        # sides differ there.
        here = {s: sp.Integer(self.env.values[s.name]) for s in [*syms, *rest]}
        if diff.xreplace(here) != 0 and self._valid_at(here, at, doubled):
            return {s.name: int(v) for s, v in sorted(here.items(), key=lambda kv: order(kv[0]))}
        return None

    def _valid_at(self, point: dict[sp.Symbol, sp.Integer], at: dict[sp.Symbol, sp.Expr], doubled: bool) -> bool:
        """The user's values (the rest at their values in use) meet the spec's assumptions, and the
        network at the options' values there is valid."""
        values = {**self.env.values, **{s.name: int(v) for s, v in point.items()}}
        full = dict(values)
        for s, v in at.items():  # sizes and parameters set by the claim's options
            fixed = v.xreplace({self.env.symbols[n]: sp.Integer(x) for n, x in values.items()})
            if not fixed.is_Integer:
                return False
            full[s.name] = int(fixed)
        if full != values and not self._admissible(values):
            return False
        return self._invalid(full, doubled) is None


def check_claims(counts: CountResult, claims: list[ClaimSource]) -> list[ClaimResult]:
    """Prove or refute each claim; errors carry the claim's file and source."""
    checker = ClaimChecker(counts)
    out = []
    for src in claims:
        try:
            out.append(checker.check(src))
        except NetdslError as e:
            raise e.with_source(src.path, src.text) from None
    return out
