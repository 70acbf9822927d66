"""The rule language's vocabulary and the pieces its grammar is built from: keywords, source
positions (file:line:col for every error), fatal-error elements that say what was expected and
what was found, and the marker tokens parse actions pass between them
(`surgery.lang.rule_parser`)."""

from __future__ import annotations

import bisect
import contextvars
import difflib
import re
from dataclasses import dataclass
from typing import Any

import pyparsing as pp

from surgery.lang import rule_ast as ast

# --------------------------------------------------------------------------- vocabulary
TOP_LEVEL = ("rule", "use", "targets", "formats", "commutative", "param", "let")
FORMATS = ("tensorflow", "onnx")
"""Model formats a rule file can state it is written for (`formats "onnx"`); none stated:
TensorFlow's, whose op names the file then uses."""
STATEMENTS = (
    "match", "where", "scope", "replace", "collapse", "remove", "forward",
    "connect", "disconnect", "set", "insert", "prune",
)  # fmt: skip
RESERVED = frozenset(
    TOP_LEVEL + STATEMENTS
    + ("and", "or", "not", "in", "true", "false", "with", "into", "outputs", "as", "except",
       "enters", "leaves", "side", "_")
)  # fmt: skip
FUNCTIONS = ast.FUNCTIONS
SCALAR_KINDS = ("int", "float", "bool", "string", "type", "shape", "tensor")
LIST_KINDS = ("int", "float", "bool", "string", "type", "shape")
ATTR_KINDS = SCALAR_KINDS + tuple(f"list({k})" for k in LIST_KINDS)
DTYPES = (
    "float16", "bfloat16", "float32", "float64", "half", "float", "double", "int8", "int16",
    "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "string", "complex64",
    "complex128",
)  # fmt: skip

COMMENT_OR_STRING = re.compile(r""""(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|\#[^\n]*""")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d[\w.]*|->|\.\.\.|\S")


# --------------------------------------------------------------------------- source positions
@dataclass
class Source:
    """The text being parsed, with a line index for offset -> Loc."""

    path: str
    text: str
    line_starts: list[int]

    def loc(self, offset: int) -> ast.Loc:
        """The 1-based line/column of a character offset."""
        line = bisect.bisect_right(self.line_starts, offset) - 1
        return ast.Loc(self.path, line + 1, offset - self.line_starts[line] + 1)


CURRENT_SOURCE: contextvars.ContextVar[Source] = contextvars.ContextVar("rule_source")


def loc_at(offset: int) -> ast.Loc:
    """Loc of an offset in the file now being parsed."""
    return CURRENT_SOURCE.get().loc(offset)


def skip_blanks(text: str, at: int) -> int:
    """Offset of the next non-blank character (comments are already blanked out)."""
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def found_token(text: str, at: int) -> str:
    """A short description of the token at `at`, for 'found ...' in messages."""
    at = skip_blanks(text, at)
    if at >= len(text):
        return "end of file"
    if text[at] in "\"'":
        return "a string"
    match = _TOKEN.match(text, at)
    return f"'{match.group() if match else text[at]}'"


def did_you_mean(word: str, candidates: tuple[str, ...] | list[str]) -> str:
    """` (did you mean 'x'?)` when a close candidate exists, else ''."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _fail(text: str, at: int, message: str) -> pp.ParseFatalException:
    """A fatal parse error at the next token after `at`."""
    return pp.ParseFatalException(text, skip_blanks(text, at), message)


# --------------------------------------------------------------------------- helper elements
class Expect(pp.ParseElementEnhance):
    """Parse `expr`; on failure stop the whole parse with a human message and what was found."""

    def __init__(self, expr: pp.ParserElement | str, message: str) -> None:
        super().__init__(pp.Suppress(expr) if isinstance(expr, str) else expr)
        self.message = message

    def parseImpl(self, instring: str, loc: int, do_actions: bool = True):  # noqa: N802
        """Delegate, turning a recoverable failure into a fatal one at the failing token."""
        try:
            return self.expr._parse(instring, loc, do_actions, callPreParse=False)
        except pp.ParseFatalException:
            raise
        except pp.ParseException as exc:
            at = max(loc, exc.loc)
            found = found_token(instring, at)
            raise _fail(instring, at, f"{self.message}, found {found}") from None


class Bracketed(pp.ParseElementEnhance):
    """`open inner close`, reporting an unclosed bracket at the opening one."""

    def __init__(self, opener: str, inner: pp.ParserElement, closer: str, what: str) -> None:
        super().__init__(inner)
        self.opener, self.closer, self.what = opener, closer, what
        self.open_expr = pp.Suppress(opener)
        self.close_expr = pp.Suppress(closer)

    def parseImpl(self, instring: str, loc: int, do_actions: bool = True):  # noqa: N802
        """Parse the opener (recoverable), then the inner part and the closer (fatal)."""
        start = loc
        loc, _ = self.open_expr._parse(instring, loc, do_actions)
        loc, tokens = self.expr._parse(instring, loc, do_actions)
        try:
            loc, _ = self.close_expr._parse(instring, loc, do_actions)
        except pp.ParseException:
            at = skip_blanks(instring, loc)
            word = _TOKEN.match(instring, at)
            if at >= len(instring) or (word and word.group() in TOP_LEVEL + STATEMENTS):
                raise pp.ParseFatalException(instring, start, f"unclosed '{self.opener}'") from None
            raise _fail(
                instring,
                at,
                f"expected {self.what} or '{self.closer}', found {found_token(instring, at)}",
            ) from None
        return loc, tokens


def action(fn):
    """Wrap a (text, offset, tokens) -> value builder as a pyparsing parse action."""

    def run(text: str, offset: int, tokens: pp.ParseResults):
        # And/MatchFirst report the offset before their leading whitespace: skip it
        return fn(text, skip_blanks(text, offset), list(tokens))

    return run


def comma_list(item: pp.ParserElement, closer: str, what: str) -> pp.ParserElement:
    """`item (, item)* [,]` where a comma commits to another item unless the list closes."""
    more = pp.Suppress(",") + ~pp.FollowedBy(closer) + Expect(item, f"expected {what} after ','")
    return pp.Optional(item + pp.ZeroOrMore(more) + pp.Optional(pp.Suppress(",")))


# --------------------------------------------------------------------------- marker tokens
@dataclass(frozen=True)
class OpMarker:
    """An operator token with its offset."""

    text: str
    offset: int


@dataclass(frozen=True)
class Tagged:
    """A tagged intermediate value (clause of a statement) with its offset."""

    tag: str
    value: Any
    offset: int


def tag_clause(tag: str, expr: pp.ParserElement) -> pp.ParserElement:
    """Wrap the tokens of `expr` as one `Tagged(tag, value)`; value is one token or a tuple."""

    def build(text: str, offset: int, toks: list) -> Tagged:
        value = toks[0] if len(toks) == 1 else (tuple(toks) or None)
        return Tagged(tag, value, offset)

    return pp.Group(expr).set_parse_action(lambda s, o, t: build(s, skip_blanks(s, o), list(t[0])))


def kw(word: str) -> pp.ParserElement:
    """A keyword (not matched as a prefix of a longer identifier), suppressed."""
    return pp.Suppress(pp.Keyword(word))


def sym(text: str) -> pp.ParserElement:
    """A suppressed punctuation token."""
    return pp.Suppress(pp.Literal(text))
