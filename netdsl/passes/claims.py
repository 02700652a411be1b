"""Claims: hand-written count formulas, proved or refuted symbolically.

`claim METRIC(options) == expr` states a formula for a total. Options pick the convention
(`biases`, `batchnorm`, `activations`, `merges`), the resolution (`H=32`, `W=32`, any parameter
or size set to an integer expression) and `doubled=true` (the input at 2H x 2W, applied before
the size options, so `(H=32, doubled=true)` means a 64 x 64 input). A claim holds when the
difference to the count is zero for every admissible parameter value (after the spec's
assumptions: `k: odd`, `H % 4 == 0`, ...); otherwise netdsl shows the difference and a small
valid assignment where the two sides differ.

Claim expressions are built node by node from the IR (never parsed from text), must be
polynomials in the spec's parameters and sizes, and must be integers wherever those are.
"""
from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field

import sympy as sp

from netdsl import ir
from netdsl.errors import NetdslError, Span, source_text
from netdsl.passes.counts import METRICS, SWITCHES, Convention, CountResult
from netdsl.passes.intpoly import internal_to_user, non_integer_point

SWITCH_NAMES = ("biases", "batchnorm", "activations", "merges")
MAX_SEARCH_POINTS = 2000


@dataclass(frozen=True)
class ClaimSource:
    """A claim with the file it was written in (for error rendering and reports)."""

    claim: ir.Claim
    path: str | None
    text: str

    def snippet(self) -> str:
        """The claim as written, on one line."""
        return source_text(self.text, self.claim.span) or f"claim {self.claim.metric.name}"


@dataclass
class ClaimResult:
    source: ClaimSource
    metric: str
    convention: Convention
    doubled: bool
    at: dict[str, sp.Expr]              # size/parameter options, in user symbols
    claimed: sp.Expr                    # the claim's right side after the options, user symbols
    counted: sp.Expr                    # netdsl's total after the options, user symbols
    status: str                         # "holds", "fails" or "unknown"
    difference: sp.Expr | None = None   # claimed - counted, factored (None when it holds)
    counterexample: dict[str, int] = field(default_factory=dict)
    claimed_value: int | None = None    # both sides at the counterexample
    counted_value: int | None = None
    values_in_use: tuple[int, int] | None = None  # (claimed, counted) at the values in use

    @property
    def holds(self) -> bool:
        return self.status == "holds"

    @property
    def line(self) -> int:
        return self.source.claim.span.line


# --- checking claims --------------------------------------------------------------------------

class ClaimChecker:
    def __init__(self, counts: CountResult) -> None:
        self.counts = counts
        self.env = counts.env
        self.spec = counts.shapes.spec
        self.names = list(self.env.symbols)
        self._valid_cache: dict[tuple, str | None] = {}

    # Validation ---------------------------------------------------------------------------
    def _check_names(self, e: ir.Expr, what: str) -> None:
        for n in ir.names_in(e):
            if n.id not in self.env.symbols:
                close = [m for m in self.names if m.lower() == n.id.lower()] or \
                    difflib.get_close_matches(n.id, self.names, n=1)
                hint = ((f"did you mean '{close[0]}'? " if close else "")
                        + f"the spec's symbols: {', '.join(self.names)}")
                raise NetdslError(f"unknown symbol '{n.id}' in {what}", n.span, hint)

    def _check_polynomial(self, e: ir.Expr) -> None:
        """Claims are polynomials: no //, %, min, max or division by a symbol."""
        stack: list[ir.Expr] = [e]
        while stack:
            n = stack.pop()
            if isinstance(n, ir.Call):
                raise NetdslError(f"{n.func}() makes the claim non-polynomial", n.span,
                                  "claims are polynomials in the spec's parameters and sizes")
            if isinstance(n, ir.BinOp):
                if n.op in ("//", "%"):
                    raise NetdslError(f"'{n.op}' makes the claim non-polynomial", n.span,
                                      "claims are polynomials; write exact division with '/' by a constant")
                if n.op == "/" and list(ir.names_in(n.right)):
                    raise NetdslError("division by a symbol makes the claim non-polynomial", n.span,
                                      "divide by constants only, e.g. H*W/4")
                stack += [n.left, n.right]
            elif isinstance(n, ir.Neg):
                stack.append(n.operand)

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
            elif a.name in self.env.symbols:
                if a.value.kind not in ir.EXPR_KINDS:
                    raise NetdslError(f"option '{a.name}' takes an integer expression", a.value.span,
                                      f"write e.g. {a.name}=32")
                self._check_names(a.value, "a claim option")  # type: ignore[arg-type]
                self._check_polynomial(a.value)  # type: ignore[arg-type]
                at[self.env.symbols[a.name]] = self.env.sym(a.value, raw=True)  # type: ignore[arg-type]
                at_args.append(a)
            else:
                options = [*allowed, "doubled", *self.names]
                close = difflib.get_close_matches(a.name, options, n=1)
                raise NetdslError(f"unknown claim option '{a.name}'", a.span,
                                  (f"did you mean '{close[0]}'? " if close else "")
                                  + f"options for '{metric}': {', '.join(options)}")
        return Convention().with_options(**switches), doubled, at, at_args

    def _validate_at(self, src: ClaimSource, at: dict[sp.Symbol, sp.Expr], args: list[ir.Arg]) -> None:
        """Constant size/parameter options must give a valid network (conditions, positive sizes)."""
        consts = {s.name: int(v) for s, v in at.items() if v.is_Integer}
        if not consts:
            return
        msg = self._invalid(consts)
        if msg is not None:
            arg = next(a for a in args if a.name in consts)
            span = Span(arg.span.line, arg.span.column, args[-1].span.end_line, args[-1].span.end_column)
            shown = ", ".join(f"{k}={v}" for k, v in consts.items())
            raise NetdslError(f"the claim's options {shown} do not give a valid network: {msg}", span,
                              "choose sizes and parameters that meet the spec's conditions")

    def _invalid(self, overrides: dict[str, int]) -> str | None:
        """Why the network is invalid at these values (None when it is valid)."""
        key = tuple(sorted(overrides.items()))
        if key not in self._valid_cache:
            from netdsl.passes.shapes import analyse

            try:
                analyse(self.spec, overrides)
                self._valid_cache[key] = None
            except NetdslError as e:
                self._valid_cache[key] = e.message
        return self._valid_cache[key]

    # Checking -----------------------------------------------------------------------------
    def check(self, src: ClaimSource) -> ClaimResult:
        c = src.claim
        metric = c.metric.name
        if metric not in METRICS:
            close = difflib.get_close_matches(metric, METRICS, n=1)
            raise NetdslError(f"unknown metric '{metric}'", c.metric.span,
                              (f"did you mean '{close[0]}'? " if close else "") + f"metrics: {', '.join(METRICS)}")
        if c.op != "==":
            raise NetdslError(f"claims state equalities; '{c.op}' is not supported", c.span,
                              f"write `claim {metric} == ...`")
        convention, doubled, at, at_args = self._options(src, metric)
        self._validate_at(src, at, at_args)
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
        claimed = sp.expand(raw.xreplace(at)) if at else raw
        counted = sp.expand(counted.xreplace(at)) if at else counted
        diff = sp.expand((claimed - counted).xreplace(self.env.fwd))  # internal: assumptions applied
        res = ClaimResult(source=src, metric=metric, convention=convention, doubled=doubled,
                          at={s.name: v for s, v in at.items()}, claimed=claimed, counted=counted, status="holds")
        res.values_in_use = (int(self.counts.value(claimed)), int(self.counts.value(counted)))
        if diff == 0:
            return res
        res.difference = sp.factor(self.env.show(diff))
        others = claimed.free_symbols | counted.free_symbols
        point = self._counterexample(res.difference, at, others)
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
                        others: set[sp.Symbol]) -> dict[str, int] | None:
        """A small valid assignment where `diff` (user symbols) is not zero.

        The symbols of `diff` are searched; `others` (the rest of both sides' symbols) take their
        smallest admissible value, so both sides can be evaluated at the assignment.
        """
        order = lambda s: self.names.index(s.name)  # noqa: E731 - declaration order
        syms = sorted(diff.free_symbols, key=order)
        rest = {s: sp.Integer(self._candidates(s)[0]) for s in sorted(others - set(syms), key=order)}
        per = 6 if len(syms) <= 4 else 3  # keep the grid small: the first points usually differ
        cands = [self._candidates(s)[:per] for s in syms]
        index_points = itertools.islice(_small_first([len(c) for c in cands]), MAX_SEARCH_POINTS)
        tried_invalid = 0
        for idx in index_points:
            point = {s: sp.Integer(c[i]) for s, c, i in zip(syms, cands, idx)}
            if diff.xreplace(point) == 0:
                continue
            point.update(rest)
            overrides = {s.name: int(v) for s, v in point.items()}
            full = dict(overrides)
            for s, v in at.items():  # sizes fixed by the claim's options
                fixed = v.xreplace(point)
                if fixed.is_Integer:
                    full[s.name] = int(fixed)
            if self._invalid(full) is None:
                return dict(sorted(overrides.items(), key=lambda kv: self.names.index(kv[0])))
            tried_invalid += 1
            if tried_invalid > 50:
                break
        # The values in use are valid by construction; use them if the sides differ there.
        here = {s: sp.Integer(self.env.values[s.name]) for s in [*syms, *rest]}
        if diff.xreplace(here) != 0:
            return {s.name: int(v) for s, v in sorted(here.items(), key=lambda kv: order(kv[0]))}
        return None


def _small_first(sizes: list[int]):  # noqa: ANN202 - Iterator[tuple[int, ...]]
    """Index tuples (i_1 < sizes[0], ...) in order of increasing sum, generated lazily: with many
    symbols the full grid is far too large to sort, and the first few points usually suffice."""
    room = [sum(n - 1 for n in sizes[k:]) for k in range(len(sizes) + 1)]  # the most the rest can add

    def parts(total: int, k: int):  # noqa: ANN202
        if total > room[k]:
            return
        if k == len(sizes):
            yield ()
            return
        for i in range(min(total, sizes[k] - 1), -1, -1):
            for rest in parts(total - i, k + 1):
                yield (i, *rest)

    for total in range(sum(n - 1 for n in sizes) + 1):
        yield from parts(total, 0)


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
