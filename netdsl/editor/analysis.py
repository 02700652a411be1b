"""A spec as an editor sees it: every error the passes can find, not only the first.

The command line stops at the first error; an editor should show every independent one. Two
recoveries make that possible, both outside the passes (which stay as `count` runs them):
- syntax: the statement holding a syntax error (its lines, as the grammar joins them, and a graph
  block's body with its header) is blanked out and the text parsed again, columns unchanged;
- the passes: the top-level statement an error belongs to (for an error inside a block, the first
  statement that calls the block) is taken out of the spec and the passes run again.
What a removed statement defined is *poisoned*: a later error in a statement that reads a poisoned
name is a consequence, not news, so that statement goes too without a diagnostic of its own. A bad
layer therefore does not hide a later unknown name, and one broken tensor does not report every
statement downstream of it. Errors the spec cannot go on past (the header, the inputs) end the search.
"""
from __future__ import annotations

import re
import time

from netdsl import ir
from netdsl.concrete import ConcreteGraph
from netdsl.editor.document import Diagnostic, DocumentAnalysis
from netdsl.editor.names_index import index_names
from netdsl.errors import NetdslError, Span, source_lines
from netdsl.parsing import MAX_SPEC_BYTES, parse_text

MAX_ERRORS = 30          # diagnostics of one kind past which the rest would only be noise
TIME_BUDGET_S = 3.0      # re-running the passes stops here: a slow spec still answers
_CONTINUES = ("->", "|>", ",", "(", "[", "=")
_NOTE_LINE = re.compile(r"^line (\d+): (.*)$", re.S)


def _code(line: str) -> str:
    """A line without its comment (a `#` inside a "string" is not one)."""
    quoted = False
    for i, c in enumerate(line):
        if c == '"':
            quoted = not quoted
        elif c == "#" and not quoted:
            return line[:i]
    return line


def statement_groups(lines: list[str]) -> list[tuple[int, int]]:
    """The lines (first, last; 1-based) of each statement as the grammar joins them: inside brackets,
    after `->`/`|>`/`,`/`=`, before a line that starts with `->`/`|>`. A graph block's `{` line and
    its `}` line are groups of their own; its statements are groups too."""
    groups: list[tuple[int, int]] = []
    start, depth = None, 0
    codes = [_code(x).strip() for x in lines]
    for i, code in enumerate(codes):
        if not code:
            continue
        if start is None:
            start = i
        depth = max(0, depth + code.count("(") + code.count("[") - code.count(")") - code.count("]"))
        nxt = next((c for c in codes[i + 1:] if c), "")
        if depth == 0 and not code.endswith(_CONTINUES) and not nxt.startswith(("->", "|>")):
            groups.append((start + 1, i + 1))
            start = None
    if start is not None:
        groups.append((start + 1, len(lines)))
    return groups


def _block_end(codes: list[str], first: int) -> int:
    """The line (1-based) of the `}` closing the block opened on line `first`, or the last line."""
    depth = 0
    for i in range(first - 1, len(codes)):
        depth += codes[i].count("{") - codes[i].count("}")
        if depth <= 0 and i >= first - 1 and "}" in codes[i]:
            return i + 1
    return len(codes)


def _diag(e: NetdslError, severity: str = "error") -> Diagnostic:
    span = e.span or Span(1, 1, 1, 2)
    return Diagnostic(span, e.message, severity, e.hint, tuple(e.notes))  # type: ignore[arg-type]


class _Syntax:
    """Parse, blanking each statement with a syntax error until the rest parses."""

    def __init__(self, text: str, path: str | None) -> None:
        self.path = path
        self.lines = source_lines(text)
        self.codes = [_code(x) for x in self.lines]
        self.groups = statement_groups(self.lines)
        self.diagnostics: list[Diagnostic] = []
        self.blanked: list[str] = []  # the text of each blanked statement, to read what it defined
        self.blank: set[int] = set()

    def group_of(self, line: int) -> tuple[int, int]:
        for g in self.groups:
            if g[0] <= line <= g[1]:
                return g
        return (line, line)

    def with_body(self, first: int, last: int) -> int:
        """A broken graph block's header takes its body along: its lines mean nothing without it."""
        code = self.codes[first - 1].strip() if first <= len(self.codes) else ""
        if "{" in code:
            return _block_end(self.codes, first)
        if code.startswith("block") and "=" not in code.rpartition(")")[2]:  # its `{` went missing
            close = next((i + 1 for i in range(first, len(self.codes)) if self.codes[i].strip() == "}"), None)
            opened = next((i + 1 for i in range(first, len(self.codes)) if "{" in self.codes[i]), None)
            if close is not None and (opened is None or opened > close):
                return close
        return last

    def run(self) -> ir.Spec | None:
        header = next((g for g in self.groups), (1, 1))
        for _ in range(MAX_ERRORS):
            text = "\n".join(" " * len(x) if i + 1 in self.blank else x for i, x in enumerate(self.lines)) + "\n"
            try:
                return parse_text(text, self.path)
            except NetdslError as e:
                line = e.span.line if e.span else 1
                first, last = self.group_of(line)
                last = self.with_body(first, last)
                if self.blank.issuperset(range(first, last + 1)):
                    return None  # nothing left to take out: stop rather than loop
                self.diagnostics.append(_diag(e))
                self.blank.update(range(first, last + 1))
                self.blanked.append("\n".join(self.lines[first - 1: last]))
                if first <= header[1] and header[0] <= last:
                    return None  # the header is gone: nothing below it can be read
        return None

    def poisoned(self) -> set[str]:
        """What the blanked statements may have defined: every name before a statement's `=` (a
        broken line is read generously: a name wrongly taken only hides an unknown-name error)."""
        out: set[str] = set()
        for code in (_code(line) for chunk in self.blanked for line in chunk.splitlines()):
            head = re.split(r"(?<![=!<>])=(?!=)", code, maxsplit=1)
            if len(head) == 2 or re.match(r"\s*(block|param)\b", code):
                out.update(re.findall(r"[A-Za-z_]\w*", head[0].split("(")[0]))
        return out - {"net", "input", "claim", "block", "param"}

    def words(self) -> set[str]:
        """Every name the blanked statements mention: a tensor they read is not unread."""
        return {w for chunk in self.blanked for w in re.findall(r"[A-Za-z_]\w*", _code(chunk))}


def _sources(inputs: list[ir.Ident | ir.MergeCall]) -> set[str]:
    out: set[str] = set()
    for x in inputs:
        out |= _sources(x.inputs) if isinstance(x, ir.MergeCall) else {x.name}
    return out


def _called(chain: list[ir.LayerCall], blocks: dict[str, ir.BlockDef], seen: set[str]) -> set[str]:
    """The blocks a chain calls, directly or through other blocks."""
    for call in chain:
        b = blocks.get(call.op.name)
        if b is not None and b.name not in seen:
            seen.add(b.name)
            _called(b.body, blocks, seen)
            for a in b.assigns:
                _called(a.chain, blocks, seen)
    return seen


def _inside(span: Span, pos: Span) -> bool:
    return (span.line, span.column) <= (pos.line, pos.column) < (span.end_line, span.end_column)


class _Passes:
    """Run the passes, taking out the statement each error belongs to, until they run through."""

    def __init__(self, spec: ir.Spec, poisoned: set[str]) -> None:
        self.spec = spec
        self.poisoned = set(poisoned)
        self.removed: set[int] = set()          # indices into spec.assigns
        self.removed_learned: set[int] = set()
        self.removed_claims: set[int] = set()
        self.diagnostics: list[Diagnostic] = []
        self.read_by_removed: set[str] = set()
        self.lost_output = any(n == "output" for n in poisoned)
        self.sinks_out = False

    def current(self) -> ir.Spec:
        s = self.spec
        assigns = [a for i, a in enumerate(s.assigns) if i not in self.removed]
        if self.sinks_out:
            read = set().union(*(_sources(a.inputs) for a in assigns))
            assigns = [a if a.output or a.name in read or a.targets else a.model_copy(update={"output": True})
                       for a in assigns]
        return s.model_copy(update={
            "assigns": assigns,
            "learned": [d for i, d in enumerate(s.learned) if i not in self.removed_learned],
            "claims": [c for i, c in enumerate(s.claims) if i not in self.removed_claims]})

    def run(self) -> ConcreteGraph | None:
        from netdsl.passes.shapes import analyse

        seen: set[tuple[Span | None, str]] = set()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < TIME_BUDGET_S and len(self.diagnostics) < MAX_ERRORS:
            try:
                return analyse(self.current())
            except NetdslError as e:
                if e.message == "the spec has no output" and self.lost_output:
                    if self.sinks_out:
                        return None  # nothing is left to show
                    self.sinks_out = True  # what is left still has shapes to show: its ends become outputs
                    continue
                culprit = self.culprit(e)
                consequence = (e.span, e.message) in seen or (culprit is not None and culprit[1] & self.poisoned) \
                    or self.names_poisoned(e.message)
                if not consequence:
                    # an open argument (`?`) is what `netdsl solve` fills in, not a mistake
                    self.diagnostics.append(_diag(e, "warning" if "is left open ('?')" in e.message else "error"))
                seen.add((e.span, e.message))
                if culprit is None:
                    return None
                self.take_out(*culprit)
            except RecursionError:
                self.diagnostics.append(Diagnostic(Span(1, 1, 1, 2), "the spec nests too deeply to analyse", "error",
                                                   "flatten the deepest expressions or blocks"))
                return None
        return None

    def names_poisoned(self, message: str) -> bool:
        """An unknown name that a statement taken out would have defined (a block, a tensor)."""
        return message.startswith("unknown") and any(f"'{n}'" in message for n in self.poisoned)

    def culprit(self, e: NetdslError) -> tuple[tuple[str, int], set[str]] | None:
        """The top-level statement an error belongs to, as (its list and index, the names it reads)."""
        if e.span is None:
            return None
        s = self.spec
        for i, a in enumerate(s.assigns):
            if i not in self.removed and _inside(a.span, e.span):
                return ("assign", i), _sources(a.inputs)
        for i, d in enumerate(s.learned):
            if i not in self.removed_learned and _inside(d.span, e.span):
                return ("learned", i), set()
        for i, c in enumerate(s.claims):
            if i not in self.removed_claims and _inside(c.span, e.span):
                return ("claim", i), set()
        blocks = {b.name: b for b in s.blocks}
        for b in s.blocks:
            if _inside(b.span, e.span):
                for i, a in enumerate(s.assigns):  # the first statement that calls it went wrong
                    if i not in self.removed and b.name in _called(a.chain, blocks, set()):
                        return ("assign", i), _sources(a.inputs)
        return None

    def take_out(self, where: tuple[str, int], reads: set[str]) -> None:
        kind, i = where
        if kind == "assign":
            a = self.spec.assigns[i]
            self.removed.add(i)
            self.poisoned |= {t.name for t in a.targets} | {a.name}
            self.read_by_removed |= reads
            self.lost_output |= a.output
        elif kind == "learned":
            self.removed_learned.add(i)
            self.poisoned.add(self.spec.learned[i].name)
        else:
            self.removed_claims.add(i)


def _notes(doc: DocumentAnalysis, lines: list[str]) -> list[Diagnostic]:
    """The passes' notes as information: at the line a note names, or at the definition of the
    parameter it starts with ("DEPTH decides the network's structure ...")."""
    assert doc.graph is not None
    top = {d.name: d.span for d in doc.definitions if d.scope is None}
    out = []
    for note in doc.graph.notes:
        m = _NOTE_LINE.match(note)
        first = note.split(" ", 1)[0]
        if m is None and first in top:
            out.append(Diagnostic(top[first], note, "information"))
            continue
        line = int(m.group(1)) if m else 1
        text = lines[line - 1] if 1 <= line <= len(lines) else ""
        start = len(text) - len(text.lstrip()) + 1
        out.append(Diagnostic(Span(line, start, line, max(len(text) + 1, start + 1)), m.group(2) if m else note,
                              "information"))
    return out


def analyse_document(text: str, path: str | None = None) -> DocumentAnalysis:
    """Every diagnostic of a spec's text, its names and, when the passes get through, its graph.

    >>> doc = analyse_document("net T()\\ninput x: [3, H = 8, W = 8]\\na = x |> conv(4, 3, stide=1)\\n"
    ...                        "b = y |> relu\\nc = x |> relu\\noutput = cat(a, b) |> relu\\n")
    >>> for d in doc.diagnostics:
    ...     print(d.severity, d.span.line, d.message[:30])
    error 3 'conv' has no argument 'stide'
    error 4 unknown tensor 'y'
    warning 5 tensor 'c' (line 5:1) is never
    """
    if len(text) > MAX_SPEC_BYTES:
        return DocumentAnalysis(text, path, [Diagnostic(Span(1, 1, 1, 2), f"the spec is {len(text):,} characters; the "
                                                        f"limit is {MAX_SPEC_BYTES:,}", "error", "split it, or open a spec")])
    syntax = _Syntax(text, path)
    spec = syntax.run()
    doc = DocumentAnalysis(text, path, list(syntax.diagnostics), spec)
    if spec is None:
        return doc
    try:
        doc.definitions, doc.references = index_names(spec, text)
    except RecursionError:
        pass  # a hostile nesting: the names are left out, the passes report it
    if len(doc.diagnostics) >= MAX_ERRORS:
        return doc
    passes = _Passes(spec, syntax.poisoned())
    doc.graph = passes.run()
    doc.diagnostics += passes.diagnostics
    doc.partial = bool(passes.removed or syntax.blanked)
    if doc.graph is not None:
        doc.graph.source = (path, text)
        doc.diagnostics += _notes(doc, source_lines(text))
    if doc.graph is not None and not passes.sinks_out:
        doc.diagnostics += _unused(doc, passes, syntax.words())
    else:
        doc.diagnostics += _unread_names(doc, spec, syntax.words())
    doc.diagnostics.sort(key=lambda d: (d.span.line, d.span.column))
    return doc


def _unused(doc: DocumentAnalysis, passes: _Passes, blanked: set[str]) -> list[Diagnostic]:
    from netdsl.passes.unused import unused

    assert doc.graph is not None
    out = []
    names = {(d.scope, d.name): d.span for d in doc.definitions}
    for u in unused(doc.graph):
        if u.block is None and (u.name in passes.read_by_removed or u.name in blanked):
            continue  # read by a statement taken out for an error: not unused once that is fixed
        out.append(Diagnostic(names.get((u.block, u.name), u.span), u.message, "warning", u.hint))
    return out


def _unread_names(doc: DocumentAnalysis, spec: ir.Spec, blanked: set[str]) -> list[Diagnostic]:
    """Unread tensors when errors stopped the passes: from the names alone (no parameter counts),
    so that an error elsewhere does not hide them."""
    from netdsl.passes.unused import ADVICE

    read = {r.target for r in doc.references}
    outputs = {a.name for a in spec.assigns if a.output} | {t.name for a in spec.assigns if a.output for t in a.targets}
    what = {"input": "input", "learned": "learned tensor", "tensor": "tensor"}
    out = []
    for d in doc.definitions:
        if d.kind not in what or d in read or d.name in blanked or d.name == "output" or \
                (d.scope is None and d.name in outputs):
            continue
        where = f" in block '{d.scope}'" if d.scope else ""
        out.append(Diagnostic(d.span, f"{what[d.kind]} '{d.name}'{where} (line {d.span.line}:{d.span.column}) is never read",
                              "warning", ADVICE))
    return out
