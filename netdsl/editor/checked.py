"""The analysis as the server runs it: never raises, whatever the text. A text over the command
line's size limit gets one diagnostic and no analysis; a bug in the analysis gets one diagnostic
"internal error in netdsl: ..." and its traceback for the server's log."""
from __future__ import annotations

import traceback
from dataclasses import dataclass

from netdsl.editor.analysis import analyse_document
from netdsl.editor.document import Diagnostic, DocumentAnalysis
from netdsl.errors import Span
from netdsl.parsing import MAX_SPEC_BYTES

FIRST_LINE = Span(1, 1, 1, 2)


@dataclass
class Checked:
    analysis: DocumentAnalysis
    crash: str | None = None   # the traceback of a bug in the analysis, for window/logMessage


def check(text: str, path: str | None) -> Checked:
    """The document's analysis; never raises (except KeyboardInterrupt and the like).

    >>> check("x" * 1_000_001, None).analysis.diagnostics[0].message
    'the spec is 1000001 characters; the limit is 1000000'
    """
    if len(text) > MAX_SPEC_BYTES:
        return Checked(DocumentAnalysis(text, path, [Diagnostic(
            FIRST_LINE, f"the spec is {len(text)} characters; the limit is {MAX_SPEC_BYTES}", "error",
            "split the spec, or check it with `netdsl count`")]))
    try:
        return Checked(analyse_document(text, path))
    except RecursionError:
        return Checked(DocumentAnalysis(text, path, [Diagnostic(FIRST_LINE, "the spec nests too deeply", "error",
                                                                "flatten the deepest expression or chain")]))
    except Exception as e:  # a bug in netdsl, not in the spec: said as such, and the server stays up
        message = f"internal error in netdsl: {type(e).__name__}: {e}"
        return Checked(DocumentAnalysis(text, path, [Diagnostic(FIRST_LINE, message, "error",
                                                                "this is a bug in netdsl; please report it")]),
                       traceback.format_exc())
