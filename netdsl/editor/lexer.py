"""A Pygments lexer for netdsl, so documentation and `rich` highlight specs (```netdsl blocks).

Registered as the entry point `pygments.lexers: netdsl`, so `get_lexer_by_name("netdsl")` finds it once
netdsl is installed. Its token classes mirror the TextMate grammar's scopes
(editors/vscode/syntaxes/netdsl.tmLanguage.json):

=====================================  ===============================================
TextMate scope                         Pygments token
=====================================  ===============================================
comment.line.number-sign               Comment.Single
keyword.other.*, keyword.control.*     Keyword
constant.language (true, false, inf)   Keyword.Constant
support.function.op/merge/split/...    Name.Builtin (op names come from the registry)
entity.name.type.net                   Name.Class
entity.name.function.block(.call)      Name.Function (a block at definition and at calls)
entity.name.variable                   Name.Variable (statement targets, inputs, params, `as i`)
entity.name.label                      Name.Label (`fc: linear(...)`)
variable.parameter                     Name.Attribute (keyword arguments, `H = 32` in brackets)
entity.other.attribute-name            Name.Decorator (`@freeze`)
storage.type.annotation                Keyword.Type (`k: odd`)
support.variable.claim                 Name.Builtin.Pseudo (`claim weights`)
variable.language.hole                 Keyword.Pseudo (`?`)
constant.numeric.integer / float       Number.Integer / Number.Float
string.quoted.double                   String.Double
keyword.operator.*                     Operator
invalid.illegal.*                      Error
=====================================  ===============================================

Filenames: only `*.netdsl`. `*.net` is also SPICE netlists, Pajek graphs and KiCad/OrCAD netlists;
claiming it would make Pygments' `get_lexer_for_filename` pick netdsl for those (write ```netdsl).

>>> from pygments.token import Keyword, Name
>>> toks = [t for t in NetdslLexer().get_tokens("y = x |> relu") if t[1].strip()]
>>> toks[0], toks[4]
((Token.Name.Variable, 'y'), (Token.Name.Builtin, 'relu'))
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar

from pygments.lexer import RegexLexer, RegexLexerMeta, bygroups, include
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, String, Whitespace

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# parse_tree.py accepts exactly these two functions in an expression (`max(8, c // 4)`).
_EXPR_FUNCTIONS = ("max", "min")


def _alt(words: Iterable[str]) -> str:
    """An alternation of whole words, longest first so `relu6` is not cut to `relu`."""
    return "(?:" + "|".join(sorted((re.escape(w) for w in words), key=lambda w: (-len(w), w))) + r")\b"


_ARROW = r"(->|\|>)(\s*)"
_EQ = r"(?<![=!<>])(=)(\s*)"
Rules = dict[str, list[Any]]


class _OnFirstUse(RegexLexerMeta):
    """Builds the lexer's rules when the first lexer is made, not at import: Pygments imports every
    plugin lexer whenever it looks one up by a name it does not know, and the op names come from the
    registry (SymPy, over a second), which that lookup should not pay for."""

    def __call__(cls, *args: Any, **kwds: Any) -> Any:
        if not cls.__dict__.get("tokens"):
            cls.tokens = _rules()
        return super().__call__(*args, **kwds)


class NetdslLexer(RegexLexer, metaclass=_OnFirstUse):
    """Tokens of a netdsl spec (or a claims file); an `Error` token marks text no spec can hold."""

    name = "netdsl"
    aliases: ClassVar[list[str]] = ["netdsl"]
    filenames: ClassVar[list[str]] = ["*.netdsl"]
    mimetypes: ClassVar[list[str]] = ["text/x-netdsl"]
    url = "https://github.com/netdsl/netdsl"

    tokens: ClassVar[Rules] = {}  # filled by _OnFirstUse


def _rules() -> Rules:
    from netdsl.ops import layers, merges
    from netdsl.ops.learned import INITS
    from netdsl.passes.desugar import SPLIT
    from netdsl.passes.names import ANNOTATIONS

    _LAYERS = _alt(layers())
    _MERGES = _alt(merges())
    _FUNCS = _alt((*_EXPR_FUNCTIONS, *INITS))
    return {
        # Outside brackets `NAME =` defines a statement's name; inside them it is a keyword argument.
        "root": [
            include("space"),
            (rf"^(\s*)(net)\b(\s*)({_NAME})?", bygroups(Whitespace, Keyword, Whitespace, Name.Class)),
            (rf"\b(block)\b(\s*)({_NAME})?", bygroups(Keyword, Whitespace, Name.Function)),
            (rf"\b(input|param|output)\b(?:(\s+)(?!(?:where|if|else|as)\b)({_NAME}))?",
             bygroups(Keyword, Whitespace, Name.Variable)),
            (rf"\b(claim)\b(\s*)({_NAME})?", bygroups(Keyword, Whitespace, Name.Builtin.Pseudo)),
            include("attribute"),
            (rf"{_ARROW}(?:({_NAME})(\s*)(:)(\s*))?({_LAYERS}|{SPLIT}\b)",
             bygroups(Operator, Whitespace, Name.Label, Whitespace, Punctuation, Whitespace, Name.Builtin)),
            (rf"{_EQ}({_LAYERS})(?=\s*(?:\(|->|\*|@|#|$))", bygroups(Operator, Whitespace, Name.Builtin)),
            (rf"{_EQ}({_MERGES}|{_FUNCS})(?=\s*\()", bygroups(Operator, Whitespace, Name.Builtin)),
            (rf"{_ARROW}(?:({_NAME})(\s*)(:)(\s*))?(?!(?:inf|true|false|if|else)\b)({_NAME})",
             bygroups(Operator, Whitespace, Name.Label, Whitespace, Punctuation, Whitespace, Name.Function)),
            (rf"{_EQ}(?!(?:inf|true|false)\b)({_NAME})(?=\s*\()", bygroups(Operator, Whitespace, Name.Function)),
            (rf"\b(as)\b(\s*)({_NAME})?", bygroups(Keyword, Whitespace, Name.Variable)),
            (r"(?<![A-Za-z0-9_@.])(output)(?=\s*(?::\s*\[|=(?!=)|,))", Keyword),
            (rf"(?<![A-Za-z0-9_@.])({_NAME})(?=\s*(?::\s*\[|=(?!=)|,\s*(?:{_NAME}\s*,\s*)*{_NAME}\s*(?::\s*\[|=(?!=))))",
             Name.Variable),
            include("common"),
        ],
        "inside": [
            include("space"),
            (r"(\))", Punctuation, "#pop"),
            (r"(\])", Punctuation, "#pop"),
            (rf"(:)(\s*)({_alt(ANNOTATIONS)})", bygroups(Punctuation, Whitespace, Keyword.Type)),
            (rf"{_EQ}({_MERGES}|{_FUNCS})(?=\s*\()", bygroups(Operator, Whitespace, Name.Builtin)),
            (rf"(?<![A-Za-z0-9_.])({_NAME})(?=\s*=(?!=))", Name.Attribute),
            include("common"),
        ],
        "space": [
            (r"\s+", Whitespace),
            (r"#.*?$", Comment.Single),
        ],
        "attribute": [
            (rf"@\s*{_NAME}", Name.Decorator),
        ],
        "common": [
            (r'"[^"\n]*"', String.Double),
            (r'"[^"\n]*', Error),  # a string is one line: the unterminated rest is the error
            include("attribute"),
            (rf"({_MERGES}|{_FUNCS})(?=\s*\()", Name.Builtin),
            (r"\b(?:if|else|net|input|output|block|where|claim|param|as)\b", Keyword),
            (r"\b(?:true|false|inf)\b", Keyword.Constant),
            (r"\b[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|\b[0-9]+[eE][-+]?[0-9]+\b", Number.Float),
            (r"\b[0-9]+\b", Number.Integer),
            (r"->|\|>|==|!=|<=|>=|<|>|\*\*|//|[-+*/%=]", Operator),
            (r"\?", Keyword.Pseudo),
            (r"[(\[]", Punctuation, "inside"),
            # Docs elide with `...`: no spec holds it, but a reader should not see it as an error.
            (r"\.\.\.|[,:{}]", Punctuation),
            (_NAME, Name),
        ],
    }
