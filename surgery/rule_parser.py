"""Rule-file parser: a pyparsing grammar that turns rule text into `surgery.rule_ast` objects.

Loading a rule file never executes code: the text is only tokenised and matched against the
grammar below, and every value ends up as plain data in the syntax tree. Errors raise
`RuleSyntaxError` with a message that starts with `file:line:col:` and says what was expected.
"""

from __future__ import annotations

import bisect
import contextvars
import difflib
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyparsing as pp

from surgery import rule_ast as ast
from surgery.errors import RuleError, RuleSyntaxError
from surgery.targets import unknown_target

# --------------------------------------------------------------------------- vocabulary
TOP_LEVEL = ("rule", "use", "targets", "commutative", "param", "let")
STATEMENTS = (
    "match", "where", "scope", "replace", "collapse", "remove", "forward",
    "connect", "disconnect", "set", "insert", "prune",
)  # fmt: skip
RESERVED = frozenset(
    TOP_LEVEL + STATEMENTS
    + ("and", "or", "not", "in", "true", "false", "with", "into", "outputs", "as", "except",
       "enters", "leaves", "side", "_")
)  # fmt: skip
FUNCTIONS = (
    "len", "abs", "min", "max", "int", "float", "prod", "matches", "sqrt", "log2", "round",
    "floor", "ceil", "if", "input", "shape", "operand", "limit",
)  # fmt: skip
SCALAR_KINDS = ("int", "float", "bool", "string", "type", "shape", "tensor")
LIST_KINDS = ("int", "float", "bool", "string", "type", "shape")
ATTR_KINDS = SCALAR_KINDS + tuple(f"list({k})" for k in LIST_KINDS)
DTYPES = (
    "float16", "bfloat16", "float32", "float64", "half", "float", "double", "int8", "int16",
    "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "string", "complex64",
    "complex128",
)  # fmt: skip

_COMMENT_OR_STRING = re.compile(r""""(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|\#[^\n]*""")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d[\w.]*|->|\.\.\.|\S")


# --------------------------------------------------------------------------- source positions
@dataclass
class _Source:
    """The text being parsed, with a line index for offset -> Loc."""

    path: str
    text: str
    line_starts: list[int]

    def loc(self, offset: int) -> ast.Loc:
        """The 1-based line/column of a character offset."""
        line = bisect.bisect_right(self.line_starts, offset) - 1
        return ast.Loc(self.path, line + 1, offset - self.line_starts[line] + 1)


_SOURCE: contextvars.ContextVar[_Source] = contextvars.ContextVar("rule_source")


def _loc(offset: int) -> ast.Loc:
    """Loc of an offset in the file now being parsed."""
    return _SOURCE.get().loc(offset)


def _skip(text: str, at: int) -> int:
    """Offset of the next non-blank character (comments are already blanked out)."""
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _found(text: str, at: int) -> str:
    """A short description of the token at `at`, for 'found ...' in messages."""
    at = _skip(text, at)
    if at >= len(text):
        return "end of file"
    if text[at] in "\"'":
        return "a string"
    match = _TOKEN.match(text, at)
    return f"'{match.group() if match else text[at]}'"


def _suggest(word: str, candidates: tuple[str, ...] | list[str]) -> str:
    """` (did you mean 'x'?)` when a close candidate exists, else ''."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _fail(text: str, at: int, message: str) -> pp.ParseFatalException:
    """A fatal parse error at the next token after `at`."""
    return pp.ParseFatalException(text, _skip(text, at), message)


# --------------------------------------------------------------------------- helper elements
class _Expect(pp.ParseElementEnhance):
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
            raise _fail(instring, at, f"{self.message}, found {_found(instring, at)}") from None


class _Bracketed(pp.ParseElementEnhance):
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
            at = _skip(instring, loc)
            word = _TOKEN.match(instring, at)
            if at >= len(instring) or (word and word.group() in TOP_LEVEL + STATEMENTS):
                raise pp.ParseFatalException(instring, start, f"unclosed '{self.opener}'") from None
            raise _fail(
                instring,
                at,
                f"expected {self.what} or '{self.closer}', found {_found(instring, at)}",
            ) from None
        return loc, tokens


def _action(fn):
    """Wrap a (text, offset, tokens) -> value builder as a pyparsing parse action."""

    def run(text: str, offset: int, tokens: pp.ParseResults):
        # And/MatchFirst report the offset before their leading whitespace: skip it
        return fn(text, _skip(text, offset), list(tokens))

    return run


def _comma_list(item: pp.ParserElement, closer: str, what: str) -> pp.ParserElement:
    """`item (, item)* [,]` where a comma commits to another item unless the list closes."""
    more = pp.Suppress(",") + ~pp.FollowedBy(closer) + _Expect(item, f"expected {what} after ','")
    return pp.Optional(item + pp.ZeroOrMore(more) + pp.Optional(pp.Suppress(",")))


# --------------------------------------------------------------------------- marker tokens
@dataclass(frozen=True)
class _Op:
    """An operator token with its offset."""

    text: str
    offset: int


@dataclass(frozen=True)
class _Tagged:
    """A tagged intermediate value (clause of a statement) with its offset."""

    tag: str
    value: Any
    offset: int


def _tag(tag: str, expr: pp.ParserElement) -> pp.ParserElement:
    """Wrap the tokens of `expr` as one `_Tagged(tag, value)`; value is one token or a tuple."""

    def build(text: str, offset: int, toks: list) -> _Tagged:
        value = toks[0] if len(toks) == 1 else (tuple(toks) or None)
        return _Tagged(tag, value, offset)

    return pp.Group(expr).set_parse_action(lambda s, o, t: build(s, _skip(s, o), list(t[0])))


def kw(word: str) -> pp.ParserElement:
    """A keyword (not matched as a prefix of a longer identifier), suppressed."""
    return pp.Suppress(pp.Keyword(word))


def sym(text: str) -> pp.ParserElement:
    """A suppressed punctuation token."""
    return pp.Suppress(pp.Literal(text))


# --------------------------------------------------------------------------- builders
def _ident_not_reserved(what: str) -> pp.ParserElement:
    """An identifier that is not a reserved word."""
    ident = pp.Regex(r"[A-Za-z_][A-Za-z0-9_]*")
    return ident.copy().add_condition(lambda t: t[0] not in RESERVED).set_name(what)


def _number(text: str, offset: int, toks: list) -> ast.Literal:
    """An int or float literal; anything else that starts with a digit is a bad literal."""
    raw = toks[0]
    try:
        value: object = int(raw, 10) if re.fullmatch(r"\d+", raw) else float(raw)
    except ValueError:
        raise pp.ParseFatalException(text, offset, f"bad number literal '{raw}'") from None
    if isinstance(value, float) and not re.fullmatch(r"(\d+\.\d*|\d+)([eE][+-]?\d+)?", raw):
        raise pp.ParseFatalException(text, offset, f"bad number literal '{raw}'")
    return ast.Literal(value, _loc(offset))


def _unterminated(text: str, offset: int, toks: list) -> None:
    """Parse action for a quote that never closes on its line."""
    raise pp.ParseFatalException(text, offset, "unterminated string (strings end on their line)")


def _fold_binary(text: str, offset: int, toks: list) -> object:
    """Left-fold `a op b op c` into BinOp/Compare nodes."""
    result = toks[0]
    for i in range(1, len(toks), 2):
        op: _Op = toks[i]
        right = toks[i + 1]
        loc = _loc(op.offset)
        if op.text in ("==", "!=", "<", "<=", ">", ">=", "in"):
            result = ast.Compare(op.text, result, right, loc)
        elif op.text == "not in":
            result = ast.Not(ast.Compare("in", result, right, loc), loc)
        else:
            result = ast.BinOp(op.text, result, right, loc)
    return result


def _fold_bool(name: str):
    """Parse action turning `a and b and c` into one BoolOp (or passing a single operand)."""

    def build(text: str, offset: int, toks: list) -> object:
        return toks[0] if len(toks) == 1 else ast.BoolOp(name, tuple(toks), _loc(offset))

    return _action(build)


def _negate(text: str, offset: int, toks: list) -> object:
    """Unary minus: folded into numeric literals, else `0 - x`."""
    operand = toks[0]
    if isinstance(operand, ast.Literal) and (
        type(operand.value) is int or type(operand.value) is float
    ):
        return ast.Literal(-operand.value, _loc(offset))
    return ast.BinOp("-", ast.Literal(0, _loc(offset)), operand, _loc(offset))


def _make_ref(text: str, offset: int, toks: list) -> ast.Ref:
    """`x`, `x:1`, `x.prop`, `x.attr.name` -> Ref."""
    var = toks[0]
    port = next((t.value for t in toks if isinstance(t, _Tagged) and t.tag == "port"), None)
    names = [t for t in toks if isinstance(t, _Tagged) and t.tag == "dot"]
    prop = attr = None
    if len(names) == 1:
        prop = names[0].value
    elif len(names) == 2:
        if names[0].value != "attr":
            raise pp.ParseFatalException(
                text, names[1].offset, "only 'x.attr.NAME' may have a second '.'"
            )
        attr = names[1].value
    return ast.Ref(var, _loc(offset), port=port, prop=prop, attr=attr)


def _make_call(text: str, offset: int, toks: list) -> ast.Call:
    """A whitelisted function call."""
    return ast.Call(toks[0], tuple(toks[1:]), _loc(offset))


def _check_function(text: str, offset: int, toks: list) -> str:
    """Refuse any function outside the whitelist (this is what keeps rule files inert)."""
    name = toks[0]
    if name not in FUNCTIONS:
        raise pp.ParseFatalException(
            text, offset,
            f"unknown function '{name}'{_suggest(name, FUNCTIONS)}; "
            f"allowed: {', '.join(FUNCTIONS)}",
        )  # fmt: skip
    return name


def _check_kind(text: str, offset: int, toks: list) -> str:
    """An attribute kind from the fixed list."""
    kind = toks[0]
    if kind not in ATTR_KINDS:
        raise pp.ParseFatalException(
            text, offset, f"unknown attribute kind '{kind}'{_suggest(kind, ATTR_KINDS)}; "
            f"expected one of {', '.join(ATTR_KINDS)}",
        )  # fmt: skip
    return kind


def _check_dtype(text: str, offset: int, toks: list) -> str:
    """A dtype name for `const(...)`."""
    name = toks[0]
    if name not in DTYPES:
        raise pp.ParseFatalException(
            text, offset, f"unknown dtype '{name}'{_suggest(name, DTYPES)}"
        )
    return name


def _check_name_pattern(kind: str):
    """Validate a scope glob (balanced braces) or regex (compiles) at parse time."""

    def build(text: str, offset: int, toks: list) -> ast.NamePattern:
        pattern = toks[-1]
        if kind == "regex":  # as the matcher will: RE2 (linear time; no backreferences)
            from surgery.expr_eval import name_regex

            try:
                name_regex(pattern)
            except RuleError as exc:
                raise pp.ParseFatalException(text, offset, str(exc)) from None
        elif pattern.count("{") != pattern.count("}") or not pattern:
            raise pp.ParseFatalException(text, offset, f"bad namespace glob '{pattern}'")
        return ast.NamePattern(kind, pattern, _loc(offset))

    return _action(build)


def _make_op_pattern(text: str, offset: int, toks: list) -> ast.OpPattern:
    """`[var =] Op1|Op2(operands)[:port]` -> OpPattern."""
    var = None
    if isinstance(toks[0], _Tagged) and toks[0].tag == "bind":
        var = toks[0].value
        toks = toks[1:]
    ops_tag = toks[0]
    ops = ops_tag.value if isinstance(ops_tag.value, tuple) else (ops_tag.value,)
    if ops == ("*",):
        ops = ()
    operands: list[ast.Operand] = []
    allow_extra = False
    extra_at = offset
    port = 0
    for tok in toks[1:]:
        if isinstance(tok, _Tagged) and tok.tag == "port":
            port = tok.value
        elif isinstance(tok, _Tagged) and tok.tag == "extra":
            if allow_extra:
                raise pp.ParseFatalException(text, tok.offset, "'...' may appear only once")
            allow_extra = True
            extra_at = tok.offset
        else:
            if allow_extra:
                raise pp.ParseFatalException(
                    text, extra_at, "a trailing '...' must be the last operand"
                )
            operands.append(tok)
    return ast.OpPattern(
        tuple(ops), tuple(operands), _loc(offset), var=var, port=port, allow_extra=allow_extra
    )


def _make_operand(text: str, offset: int, toks: list) -> ast.Operand:
    """`[role:] pattern [...]` -> Operand."""
    role = None
    if isinstance(toks[0], _Tagged) and toks[0].tag == "role":
        role = toks[0].value
        toks = toks[1:]
    pattern = toks[0]
    variadic = len(toks) > 1
    if variadic and not isinstance(pattern, ast.Capture):
        raise pp.ParseFatalException(
            text, offset, "only a captured variable can be variadic (write 'xs...')"
        )
    if variadic and pattern.port is not None:
        raise pp.ParseFatalException(text, offset, "a variadic capture cannot take a port")
    return ast.Operand(pattern, _loc(offset), role=role, variadic=variadic)


def _make_capture(text: str, offset: int, toks: list) -> ast.Capture:
    """`x` or `x:1` in a pattern."""
    port = toks[1].value if len(toks) > 1 else None
    return ast.Capture(toks[0], _loc(offset), port=port)


def _make_scope(text: str, offset: int, toks: list) -> ast.ScopeStmt:
    """`scope r = "NS" [except ...] [enters N] [leaves N]` -> ScopeStmt."""
    var = toks[0]
    include = tuple(t for t in toks[1:] if isinstance(t, ast.NamePattern))
    clauses = {t.tag: t for t in toks if isinstance(t, _Tagged)}
    exclude = clauses["except"].value if "except" in clauses else ()
    if isinstance(exclude, ast.NamePattern):
        exclude = (exclude,)
    tagged = [t for t in toks if isinstance(t, _Tagged) and t.tag == "side"]
    side = tuple(t.value for t in tagged)
    roles = [item.role for item in side]
    for tok in tagged:
        if roles.count(tok.value.role) > 1:
            message = f"side input '{tok.value.role}' given twice"
            raise pp.ParseFatalException(text, tok.offset, message)
    return ast.ScopeStmt(
        var, include, _loc(offset), exclude=tuple(exclude),
        enters=clauses["enters"].value if "enters" in clauses else None,
        leaves=clauses["leaves"].value if "leaves" in clauses else None,
        side=side,
    )  # fmt: skip


def _make_side(text: str, offset: int, toks: list) -> ast.SideInput:
    """`side ROLE = "glob", ...` -> SideInput."""
    return ast.SideInput(toks[0], tuple(toks[1:]), _loc(offset))


def _make_param(text: str, offset: int, toks: list) -> ast.Param:
    """`param NAME = LITERAL` -> Param (the default must be a literal: it is data, not code)."""
    name, value = toks[0], toks[1]
    if not isinstance(value, ast.Literal) or not _literal_only(value):
        raise pp.ParseFatalException(
            text, offset, f"param '{name}': the default must be a literal "
            "(number, string, bool or list of them); compute values with 'let'"
        )  # fmt: skip
    loc = _loc(offset)
    return ast.Param(name, value, loc, doc=_doc_above(loc.line))


def _literal_only(value: ast.Literal) -> bool:
    """A literal whose list items are literals too."""
    if isinstance(value.value, tuple):
        return all(isinstance(v, ast.Literal) and _literal_only(v) for v in value.value)
    return True


def _make_node_call(text: str, offset: int, toks: list) -> ast.NodeCall:
    """`Op(args) { fields }` -> NodeCall."""
    args = tuple(t for t in toks[1:] if isinstance(t, ast.Arg))
    fields = tuple(t for t in toks[1:] if isinstance(t, ast.FieldAssign))
    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise pp.ParseFatalException(
                text, _SOURCE.get().line_starts[f.loc.line - 1] + f.loc.col - 1,
                f"field '{f.name}' is set twice",
            )  # fmt: skip
        seen.add(f.name)
    return ast.NodeCall(toks[0], args, fields, _loc(offset))


def _make_arg(text: str, offset: int, toks: list) -> ast.Arg:
    """`[role =] tensor` -> Arg."""
    if isinstance(toks[0], _Tagged):
        return ast.Arg(toks[1], _loc(offset), role=toks[0].value)
    return ast.Arg(toks[0], _loc(offset))


def _make_field(text: str, offset: int, toks: list) -> ast.FieldAssign:
    """`name [: kind] = expr` -> FieldAssign; a bare dtype name for a `type` field is a string."""
    name, kind, value = toks[0], None, toks[-1]
    if len(toks) == 3:
        kind = toks[1]
    if kind in ("type", "list(type)"):
        value = _dtype_literal(value)
    return ast.FieldAssign(name, value, _loc(offset), kind=kind)


def _dtype_literal(value: object) -> object:
    """Turn bare dtype identifiers (`float32`) into string literals."""
    if isinstance(value, ast.Ref) and value.var in DTYPES and not (value.port or value.prop):
        return ast.Literal(value.var, value.loc)
    if isinstance(value, ast.Literal) and isinstance(value.value, tuple):
        return ast.Literal(tuple(_dtype_literal(v) for v in value.value), value.loc)
    return value


def _clauses(text: str, toks: list, allowed: tuple[str, ...]) -> dict[str, _Tagged]:
    """Collect trailing `outputs {..}` / `as ..` clauses, refusing duplicates."""
    found: dict[str, _Tagged] = {}
    for tok in toks:
        if isinstance(tok, _Tagged) and tok.tag in allowed:
            if tok.tag in found:
                raise pp.ParseFatalException(text, tok.offset, f"'{tok.tag}' given twice")
            found[tok.tag] = tok
    return found


def _outputs(clauses: dict[str, _Tagged]) -> tuple[ast.OutputMap, ...]:
    """The output maps of an `outputs { ... }` clause."""
    if "outputs" not in clauses:
        return ()
    value = clauses["outputs"].value
    return value if isinstance(value, tuple) else (value,)


def _make_replace(text: str, offset: int, toks: list) -> ast.Replace:
    """`replace y[, z] with Call [outputs {..}] [as name]` -> Replace."""
    targets = tuple(t for t in toks if isinstance(t, ast.Ref))
    call = next(t for t in toks if isinstance(t, ast.NodeCall))
    found = _clauses(text, toks, ("outputs", "as"))
    name = found["as"].value if "as" in found else None
    return ast.Replace(targets, call, _loc(offset), outputs=_outputs(found), name=name)


def _make_collapse(text: str, offset: int, toks: list) -> ast.Collapse:
    """`collapse r into Call [outputs {..}] [as name]` -> Collapse."""
    call = next(t for t in toks if isinstance(t, ast.NodeCall))
    found = _clauses(text, toks, ("outputs", "as"))
    name = found["as"].value if "as" in found else None
    return ast.Collapse(toks[0], call, _loc(offset), outputs=_outputs(found), name=name)


def _check_target(text: str, offset: int, toks: list) -> str:
    """A target name string; a known one (`surgery.targets.TARGETS`), else a fatal error."""
    message = unknown_target(toks[0])
    if message is not None:
        raise pp.ParseFatalException(text, offset, message)
    return toks[0]


def _make_targets(text: str, offset: int, toks: list) -> _Tagged:
    """`targets "a", "b"` (a file's or a rule's) -> _Tagged("targets", names); no repeats."""
    if len(set(toks)) != len(toks):
        twice = next(n for n in toks if toks.count(n) > 1)
        raise pp.ParseFatalException(text, offset, f"target '{twice}' is listed twice")
    return _Tagged("targets", tuple(toks), offset)


def _make_rule(text: str, offset: int, toks: list) -> ast.Rule:
    """Assemble a rule from its header and statements (match/scope/where parts + actions)."""
    name = toks[0]
    max_iterations = 100
    targets: tuple[str, ...] = ()
    body_parts: list[_Tagged] = []
    actions: list[ast.Action] = []
    for tok in toks[1:]:
        if isinstance(tok, _Tagged) and tok.tag == "max_iterations":
            max_iterations = tok.value
            if max_iterations < 1:
                raise pp.ParseFatalException(text, tok.offset, "max_iterations must be >= 1")
        elif isinstance(tok, _Tagged) and tok.tag == "targets":
            targets = tok.value
        elif isinstance(tok, _Tagged) and tok.tag in ("match", "scope", "where"):
            if actions:
                raise pp.ParseFatalException(
                    text, tok.offset, f"'{tok.tag}' must come before the rule's actions"
                )
            body_parts.append(tok)
        else:
            actions.append(tok)
    body = _rule_body(text, offset, name, body_parts)
    loc = _loc(offset)
    return ast.Rule(
        name, body, tuple(actions), loc, max_iterations=max_iterations,
        doc=_doc_above(loc.line), targets=targets,
    )  # fmt: skip


def _rule_body(text: str, offset: int, name: str, parts: list[_Tagged]):
    """Merge match statements (or the one scope statement) and `where` clauses into the body."""
    scopes = [p for p in parts if p.tag == "scope"]
    matches = [p for p in parts if p.tag == "match"]
    if not scopes and not matches:
        raise pp.ParseFatalException(
            text, offset, f"rule '{name}' needs a 'match' or 'scope' statement"
        )
    if scopes and matches:
        raise pp.ParseFatalException(
            text, matches[0].offset if matches[0].offset > scopes[0].offset else scopes[0].offset,
            f"rule '{name}' mixes 'scope' and 'match'; a rule has either match statements "
            "or one scope statement",
        )  # fmt: skip
    if len(scopes) > 1:
        raise pp.ParseFatalException(text, scopes[1].offset, "a rule has one scope statement")
    if parts[0].tag == "where":
        raise pp.ParseFatalException(
            text, parts[0].offset, "'where' must follow a 'match' or 'scope' statement"
        )
    conditions: list[ast.Expr] = []
    roots: list[ast.OpPattern] = []
    for part in parts:
        if part.tag == "where":
            conditions.append(part.value)
        elif part.tag == "match":
            stmt: ast.MatchStmt = part.value
            roots.extend(stmt.roots)
            if stmt.where is not None:
                conditions.append(stmt.where)
    where: ast.Expr | None = None
    if len(conditions) == 1:
        where = conditions[0]
    elif conditions:
        where = ast.BoolOp("and", tuple(conditions), conditions[0].loc)
    if scopes:
        return replace(scopes[0].value, where=where)
    first: ast.MatchStmt = matches[0].value
    return ast.MatchStmt(tuple(roots), first.loc, where=where)


def _doc_above(line: int) -> str:
    """The comment lines directly above line `line` (1-based), without their '#'."""
    lines = _SOURCE.get().text.splitlines()
    doc: list[str] = []
    i = line - 2
    while i >= 0 and lines[i].lstrip().startswith("#"):
        doc.append(_strip_comment(lines[i]))
        i -= 1
    return "\n".join(reversed(doc))


def _strip_comment(line: str) -> str:
    """`   # text` -> `text`."""
    body = line.lstrip()[1:]
    return body[1:] if body.startswith(" ") else body


def _header(text: str) -> str:
    """The file's leading comment block, unless it is the doc of a rule right below it."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    block: list[str] = []
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        block.append(_strip_comment(lines[i]))
        i += 1
    if i < len(lines) and re.match(r"\s*rule\b", lines[i]):
        return ""
    return "\n".join(block)


def _unknown_statement(where: str):
    """Parse action for a word that starts no known statement (with a did-you-mean)."""

    def fail(text: str, offset: int, toks: list) -> None:
        word = toks[0]
        if where == "top" and word in STATEMENTS:
            message = f"'{word}' must be inside a rule (start one with 'rule NAME:')"
        else:
            pool = TOP_LEVEL + STATEMENTS + (("input", "outputs", "as") if where == "rule" else ())
            message = f"unknown statement '{word}'{_suggest(word, pool)}"
        raise pp.ParseFatalException(text, offset, message)

    return _action(fail)


# --------------------------------------------------------------------------- the grammar
@lru_cache(maxsize=1)
def _grammar() -> pp.ParserElement:
    """Build the whole grammar once."""
    ident = pp.Regex(r"[A-Za-z_][A-Za-z0-9_]*")
    var = _ident_not_reserved("a variable name")
    opname = pp.Regex(r"[A-Za-z_][A-Za-z0-9_.>]*").add_condition(lambda t: t[0] not in RESERVED)
    integer = pp.Regex(r"\d+(?!\w|\.\d)").set_parse_action(lambda t: int(t[0]))
    colon_int = sym(":") + _Expect(integer, "expected a port number after ':'")
    string = (pp.QuotedString('"', esc_char="\\") | pp.QuotedString("'", esc_char="\\")) | pp.Regex(
        r"""["'][^\n]*"""
    ).set_parse_action(_action(_unterminated))
    # an exponent first (`1e-3`, `2.5E+2`), else a run of word characters (`1abc`: an error)
    number = pp.Regex(r"\d+(?:\.\d*)?[eE][+-]?\d+(?![\w.])|\d[\w.]*").set_parse_action(
        _action(_number)
    )

    # ---------------------------------------------------------------- expressions
    expr = pp.Forward()
    str_lit = string.copy().add_parse_action(_action(lambda s, o, t: ast.Literal(t[0], _loc(o))))
    bool_lit = (pp.Keyword("true") | pp.Keyword("false")).set_parse_action(
        _action(lambda s, o, t: ast.Literal(t[0] == "true", _loc(o)))
    )
    list_lit: pp.ParserElement = _Bracketed(
        "[", _comma_list(expr, "]", "an expression"), "]", "','"
    )
    list_lit = pp.Group(list_lit).set_parse_action(
        _action(lambda s, o, t: ast.Literal(tuple(t[0]), _loc(o)))
    )
    func = (var.copy() + pp.FollowedBy("(")).set_parse_action(_action(_check_function))
    call = (
        func + _Bracketed("(", _comma_list(expr, ")", "an argument"), ")", "','")
    ).set_parse_action(_action(_make_call))
    dot = sym(".") + _Expect(ident, "expected a property name after '.'")
    ref = (
        var + pp.Optional(_tag("port", colon_int)) + pp.Optional(_tag("dot", dot))
        + pp.Optional(_tag("dot", dot))
    ).set_parse_action(_action(_make_ref))  # fmt: skip
    paren = _Bracketed("(", _Expect(expr, "expected an expression after '('"), ")", "an operator")
    scope_expr = (
        var + sym(".") + (pp.Keyword("in") | pp.Keyword("out")) + pp.FollowedBy(pp.Char("[("))
        + (_tag("index", _Bracketed("[", integer | pp.Literal("*"), "]", "an index or '*'"))
           | _tag("glob", _Bracketed("(", string, ")", "a name glob")))
        + pp.Optional(_tag("dot", dot)) + pp.Optional(_tag("dot", dot))
    ).set_parse_action(_action(_make_scope_tensor))  # fmt: skip
    atom = number | str_lit | bool_lit | list_lit | call | scope_expr | ref | paren
    index = _Bracketed("[", _Expect(expr, "expected an index after '['"), "]", "an operator")
    postfix = (atom + pp.ZeroOrMore(_tag("index", index))).set_parse_action(_action(_fold_index))
    unary = pp.Forward()
    unary <<= (sym("-") + unary).set_parse_action(_action(_negate)) | postfix

    def op(*texts: str) -> pp.ParserElement:
        """Operator tokens, each returned as an `_Op` with its offset."""
        alts = [pp.Keyword(t) if t.isalpha() else pp.Literal(t) for t in texts]
        return pp.MatchFirst(alts).set_parse_action(_action(lambda s, o, t: _Op(t[0], o)))

    def binary(operand: pp.ParserElement, operator: pp.ParserElement) -> pp.ParserElement:
        """`operand (operator operand)*`, left-folded."""
        tail = operator + _Expect(operand, "expected an expression after the operator")
        return (operand + pp.ZeroOrMore(tail)).set_parse_action(_action(_fold_binary))

    term = binary(unary, op("//", "*", "/"))
    arith = binary(term, op("+", "-"))
    not_in = (pp.Keyword("not") + pp.Keyword("in")).set_parse_action(
        _action(lambda s, o, t: _Op("not in", o))
    )
    compare_op = op("==", "!=", "<=", ">=", "<", ">", "in") | not_in
    comparison = (
        arith + pp.Optional(compare_op + _Expect(arith, "expected an expression to compare with"))
    ).set_parse_action(_action(_fold_binary))
    negation = pp.Forward()
    negation <<= (
        kw("not") + _Expect(negation, "expected a condition after 'not'")
    ).set_parse_action(_action(lambda s, o, t: ast.Not(t[0], _loc(o)))) | comparison
    conj = (
        negation + pp.ZeroOrMore(kw("and") + _Expect(negation, "expected a condition after 'and'"))
    ).set_parse_action(_fold_bool("and"))
    expr <<= (
        conj + pp.ZeroOrMore(kw("or") + _Expect(conj, "expected a condition after 'or'"))
    ).set_parse_action(_fold_bool("or"))

    # ---------------------------------------------------------------- patterns
    pattern = pp.Forward()
    op_names = pp.Literal("*") | (
        opname + pp.ZeroOrMore(sym("|") + _Expect(opname, "expected an op name after '|'"))
    )
    operand_item = pp.Forward()
    operands = _comma_list(operand_item, ")", "an operand")
    bare_op = (
        _tag("ops", op_names) + pp.FollowedBy("(")
        + _Bracketed("(", operands, ")", "',' or an operand")
        + pp.Optional(_tag("port", colon_int))
    )  # fmt: skip
    bind = _tag("bind", var + sym("=") + ~pp.FollowedBy("="))
    op_pattern = (
        (bind + _Expect(bare_op, "expected an op pattern like 'Op(x)' after '='")) | bare_op
    ).set_parse_action(_action(_make_op_pattern))
    wildcard = pp.Keyword("_").set_parse_action(_action(lambda s, o, t: ast.Wildcard(_loc(o))))
    capture = (var + pp.Optional(_tag("port", colon_int))).set_parse_action(_action(_make_capture))
    pattern <<= op_pattern | wildcard | capture
    role = _tag("role", ident + sym(":") + ~pp.FollowedBy(pp.Regex(r"\d")))
    extra = _tag("extra", pp.Literal("..."))
    operand_item <<= extra | (
        ~pp.FollowedBy(")")
        + pp.Optional(role)
        + _Expect(pattern, "expected a pattern")
        + pp.Optional("...")
    ).set_parse_action(_action(_make_operand))

    # ---------------------------------------------------------------- tensor selectors
    dtype = (ident | string).set_parse_action(_action(_check_dtype))
    const_arg = (
        kw("const") + pp.FollowedBy("(")
        + _Bracketed(
            "(",
            _Expect(dtype, "expected a dtype like int32") + _Expect(",", "expected ','")
            + _Expect(expr, "expected a value"),
            ")", "','",
        )
    ).set_parse_action(_action(lambda s, o, t: ast.ConstArg(t[0], t[1], _loc(o))))  # fmt: skip
    tensor_name = (kw("tensor") + string).set_parse_action(
        _action(lambda s, o, t: ast.TensorName(t[0], _loc(o)))
    )
    direction = pp.Keyword("in") | pp.Keyword("out")
    scope_tensor = (
        var + sym(".") + direction
        + _Expect(
            _tag("index", _Bracketed("[", integer | pp.Literal("*"), "]", "an index or '*'"))
            | _tag("glob", _Bracketed("(", string, ")", "a name glob")),
            "expected '[index]' or '(\"glob\")' after the scope accessor",
        )
    ).set_parse_action(_action(_make_scope_tensor))  # fmt: skip
    ref_sel = (var + pp.Optional(_tag("port", colon_int))).set_parse_action(_action(_make_ref))
    tensor_sel = const_arg | tensor_name | scope_tensor | ref_sel
    tensor_sel_x = _Expect(tensor_sel, 'expected a tensor (x, x:1, r.in[0], tensor "n:0")')

    # ---------------------------------------------------------------- node calls
    kind = pp.Regex(r"[a-z]+(\([a-z]+\))?").set_parse_action(_action(_check_kind))
    field_item = (
        ident + pp.Optional(sym(":") + _Expect(kind, "expected an attribute kind"))
        + _Expect("=", "expected '=' after the field name")
        + _Expect(expr, "expected a value after '='")
    ).set_parse_action(_action(_make_field))  # fmt: skip
    fields = _Bracketed("{", _comma_list(field_item, "}", "a field"), "}", "','")
    arg_role = _tag("role", ident + (sym("=") | (sym(":") + ~pp.FollowedBy(pp.Regex(r"\d")))))
    arg = (~pp.FollowedBy(")") + pp.Optional(arg_role) + tensor_sel_x).set_parse_action(
        _action(_make_arg)
    )
    node_call = (
        opname + pp.FollowedBy("(")
        + _Bracketed("(", _comma_list(arg, ")", "an input"), ")", "','")
        + pp.Optional(fields)
    ).set_parse_action(_action(_make_node_call))  # fmt: skip
    node_call_x = _Expect(node_call, "expected a node like 'Op(inputs) { fields }'")

    out_item = (
        tensor_sel
        + _Expect("->", "expected '->' after the tensor")
        + _Expect(integer, "expected an output port number after '->'")
    ).set_parse_action(_action(lambda s, o, t: ast.OutputMap(t[0], t[1], _loc(o))))
    out_map = _Bracketed("{", _comma_list(out_item, "}", "an output mapping"), "}", "','")
    tail_clauses = pp.ZeroOrMore(
        _tag("outputs", kw("outputs") + _Expect(out_map, "expected '{' after 'outputs'"))
        | _tag("as", kw("as") + _Expect(expr, "expected a node name after 'as'"))
    )

    # ---------------------------------------------------------------- statements
    match_stmt = _tag("match", (
        kw("match") + _Expect(op_pattern, "expected an op pattern after 'match'")
        + pp.ZeroOrMore(sym(";") + _Expect(op_pattern, "expected an op pattern after ';'"))
        + pp.Optional(_tag("where", kw("where")
                           + _Expect(expr, "expected a condition after 'where'")))
    ).set_parse_action(_action(_make_match)))  # fmt: skip
    where_stmt = _tag("where", kw("where") + _Expect(expr, "expected a condition after 'where'"))
    name_pat = (kw("regex") + _Expect(string, "expected a string after 'regex'")).set_parse_action(
        _check_name_pattern("regex")
    ) | string.copy().set_parse_action(_check_name_pattern("glob"))
    name_pats = name_pat + pp.ZeroOrMore(sym(",") + _Expect(name_pat, "expected a pattern"))
    scope_stmt = _tag("scope", (
        kw("scope") + _Expect(var, "expected a variable name after 'scope'")
        + _Expect("=", "expected '=' after the scope variable")
        + _Expect(name_pats, "expected a namespace (a quoted glob or regex \"...\")")
        + pp.Optional(_tag("except", kw("except")
                           + _Expect(name_pats, "expected a namespace pattern after 'except'")))
        + pp.Optional(_tag("enters", kw("enters")
                           + _Expect(integer, "expected a count after 'enters'")))
        + pp.Optional(_tag("leaves", kw("leaves")
                           + _Expect(integer, "expected a count after 'leaves'")))
        + pp.ZeroOrMore(_tag("side", (
            kw("side") + _Expect(var, "expected a role name after 'side'")
            + _Expect("=", "expected '=' after the side input's role")
            + _Expect(name_pats, "expected a producer name pattern (a quoted glob)")
        ).set_parse_action(_action(_make_side))))
    ).set_parse_action(_action(_make_scope)))  # fmt: skip
    target = (var + pp.Optional(_tag("port", colon_int))).set_parse_action(_action(_make_ref))
    replace_stmt = (
        kw("replace") + _Expect(target, "expected the variable to replace after 'replace'")
        + pp.ZeroOrMore(sym(",") + _Expect(target, "expected a variable after ','"))
        + _Expect(kw("with"), "expected 'with' after the replaced variables")
        + node_call_x + tail_clauses
    ).set_parse_action(_action(_make_replace))  # fmt: skip
    collapse_stmt = (
        kw("collapse") + _Expect(var, "expected a scope variable after 'collapse'")
        + _Expect(kw("into"), "expected 'into' after the scope variable")
        + node_call_x + tail_clauses
    ).set_parse_action(_action(_make_collapse))  # fmt: skip
    remove_stmt = (
        kw("remove") + _Expect(var, "expected a variable after 'remove'")
        + pp.ZeroOrMore(sym(",") + _Expect(var, "expected a variable after ','"))
    ).set_parse_action(_action(_make_removes))  # fmt: skip
    forward_stmt = (
        kw("forward")
        + _Expect(var, "expected a variable after 'forward'")
        + pp.Optional(kw("input") + _Expect(integer, "expected an input number after 'input'"))
    ).set_parse_action(_action(lambda s, o, t: ast.Forward(t[0], _loc(o), *t[1:])))
    slot = integer | pp.Literal("+") | pp.Literal("^")
    connect_stmt = (
        kw("connect")
        + tensor_sel_x
        + _Expect("->", "expected '->' after the source tensor")
        + _Expect(var, "expected the target variable after '->'")
        + _Expect(
            _Bracketed("[", _Expect(slot, "expected a slot (N, + or ^)"), "]", "a slot"),
            "expected '[slot]' after the target",
        )
    ).set_parse_action(_action(lambda s, o, t: ast.Connect(t[0], t[1], t[2], _loc(o))))
    dslot = integer | pp.Combine(pp.Literal("^") + pp.Optional(ident))
    disconnect_stmt = (
        kw("disconnect")
        + _Expect(var, "expected a variable after 'disconnect'")
        + _Expect(
            _Bracketed("[", _Expect(dslot, "expected a slot (N, ^ or ^x)"), "]", "a slot"),
            "expected '[slot]' after the variable",
        )
    ).set_parse_action(_action(lambda s, o, t: ast.Disconnect(t[0], t[1], _loc(o))))
    set_stmt = (
        kw("set") + _Expect(var, "expected a variable after 'set'")
        + _Expect(".", "expected '.attribute' after the variable")
        + _Expect(ident, "expected an attribute name after '.'")
        + pp.Optional(sym(":") + _Expect(kind, "expected an attribute kind"))
        + _Expect("=", "expected '=' after the attribute")
        + _Expect(expr, "expected a value after '='")
    ).set_parse_action(_action(_make_set))  # fmt: skip
    prune_stmt = kw("prune").set_parse_action(_action(lambda s, o, t: ast.Prune(_loc(o))))
    insert_stmt = (
        kw("insert")
        + _Expect(var, "expected a variable after 'insert'")
        + _Expect("=", "expected '=' after the new variable")
        + node_call_x
    ).set_parse_action(_action(lambda s, o, t: ast.Insert(t[0], t[1], _loc(o))))
    top_word = pp.MatchFirst([pp.Keyword(w) for w in TOP_LEVEL])
    unknown = (~top_word + ident).set_parse_action(_unknown_statement("rule"))
    statement = (
        match_stmt | where_stmt | scope_stmt | replace_stmt | collapse_stmt | remove_stmt
        | forward_stmt | connect_stmt | disconnect_stmt | set_stmt | insert_stmt | prune_stmt
        | unknown
    )  # fmt: skip

    # ---------------------------------------------------------------- top level
    target = string.copy().add_parse_action(_action(_check_target))
    targets = (
        kw("targets") + _Expect(target, "expected a target name string after 'targets'")
        + pp.ZeroOrMore(sym(",") + _Expect(target, "expected a target name string after ','"))
    ).set_parse_action(_action(_make_targets))  # fmt: skip
    rule = (
        kw("rule") + _Expect(ident, "expected a rule name after 'rule'")
        + pp.Optional(_tag("max_iterations", kw("max_iterations")
                           + _Expect(integer, "expected a number after 'max_iterations'")))
        + pp.Optional(targets)
        + _Expect(":", "expected ':' after the rule header")
        + pp.ZeroOrMore(statement)
    ).set_parse_action(_action(_make_rule))  # fmt: skip
    use = _tag(
        "use",
        kw("use")
        + _Expect(kw("plugins"), "expected 'plugins' after 'use'")
        + _Expect(string, "expected a catalog name string after 'use plugins'")
        + pp.ZeroOrMore(sym(",") + _Expect(string, "expected a string after ','")),
    )
    commutative = _tag(
        "commutative",
        kw("commutative")
        + _Expect(opname, "expected op names after 'commutative'")
        + pp.ZeroOrMore(sym(",") + _Expect(opname, "expected an op name")),
    )
    param = (
        kw("param") + _Expect(var, "expected a parameter name after 'param'")
        + _Expect("=", "expected '=' after the parameter name")
        + _Expect(expr, "expected a default value after '='")
    ).set_parse_action(_action(_make_param))  # fmt: skip
    let = (
        kw("let") + _Expect(var, "expected a name after 'let'")
        + _Expect("=", "expected '=' after the name")
        + _Expect(expr, "expected a value after '='")
    ).set_parse_action(_action(lambda s, o, t: ast.Let(t[0], t[1], _loc(o))))  # fmt: skip
    top_unknown = ident.copy().set_parse_action(_unknown_statement("top"))
    grammar = pp.ZeroOrMore(rule | use | targets | commutative | param | let | top_unknown) + (
        _Expect(pp.StringEnd(), f"expected {', '.join(map(repr, TOP_LEVEL[:-1]))} or 'let'")
    )
    return grammar.parse_with_tabs()


def _fold_index(text: str, offset: int, toks: list) -> object:
    """`base[i][j]` -> nested Index."""
    result = toks[0]
    for tok in toks[1:]:
        result = ast.Index(result, tok.value, _loc(tok.offset))
    return result


def _make_scope_tensor(text: str, offset: int, toks: list) -> ast.ScopeTensor:
    """`r.in[0]` / `r.in[*]` / `r.out("glob")` (with `.prop` in expressions) -> ScopeTensor."""
    var, direction, sel, *dots = toks
    prop = attr = None
    if len(dots) == 1:
        prop = dots[0].value
    elif len(dots) == 2:
        if dots[0].value != "attr":
            raise pp.ParseFatalException(
                text, dots[1].offset, "only 'r.in[i].attr.NAME' may have a second '.'"
            )
        attr = dots[1].value
    loc = _loc(offset)
    if sel.tag == "index" and sel.value == "*":
        return ast.ScopeTensor(var, direction, loc, every=True, prop=prop, attr=attr)
    if sel.tag == "index":
        return ast.ScopeTensor(var, direction, loc, index=sel.value, prop=prop, attr=attr)
    return ast.ScopeTensor(var, direction, loc, glob=sel.value, prop=prop, attr=attr)


def _make_match(text: str, offset: int, toks: list) -> ast.MatchStmt:
    """`match p1; p2 [where cond]` -> MatchStmt."""
    roots = tuple(t for t in toks if isinstance(t, ast.OpPattern))
    where = next((t.value for t in toks if isinstance(t, _Tagged)), None)
    return ast.MatchStmt(roots, _loc(offset), where=where)


def _make_removes(text: str, offset: int, toks: list) -> pp.ParseResults:
    """`remove a, b` -> one Remove per variable."""
    return pp.ParseResults([ast.Remove(v, _loc(offset)) for v in toks])


def _make_set(text: str, offset: int, toks: list) -> ast.SetAttr:
    """`set y.attr[: kind] = expr` -> SetAttr."""
    var, attr, *rest = toks
    kind = rest[0] if len(rest) == 2 else None
    value = rest[-1]
    if kind in ("type", "list(type)"):
        value = _dtype_literal(value)
    return ast.SetAttr(var, attr, value, _loc(offset), kind=kind)


# --------------------------------------------------------------------------- public API
def _blank_comments(text: str) -> str:
    """Replace every `#` comment by spaces (strings are left alone), keeping offsets."""

    def blank(match: re.Match[str]) -> str:
        tok = match.group()
        return " " * len(tok) if tok.startswith("#") else tok

    return _COMMENT_OR_STRING.sub(blank, text)


def parse_rules(text: str, path: str = "<rules>") -> ast.RuleFile:
    """Parse rule-file text into a RuleFile; raises RuleSyntaxError with file:line:col."""
    source = _Source(path, text, [0] + [m.end() for m in re.finditer("\n", text)])
    token = _SOURCE.set(source)
    try:
        tokens = list(_grammar().parse_string(_blank_comments(text), parse_all=True))
    except pp.ParseBaseException as exc:
        at = _skip(text, exc.loc)
        if isinstance(exc, pp.ParseFatalException):
            at = exc.loc
            message = exc.msg
        else:
            message = f"unexpected {_found(text, at)}"
        raise RuleSyntaxError(f"{source.loc(at)}: {message}") from None
    except RecursionError:
        raise RuleSyntaxError(f"{path}:1:1: rule file nests too deeply") from None
    finally:
        _SOURCE.reset(token)
    rules = tuple(t for t in tokens if isinstance(t, ast.Rule))
    params = tuple(t for t in tokens if isinstance(t, ast.Param))
    lets = tuple(t for t in tokens if isinstance(t, ast.Let))
    _check_file_names(source, rules, params, lets)
    plugins: list[str] = []
    commutative: list[str] = []
    stated = [t for t in tokens if isinstance(t, _Tagged) and t.tag == "targets"]
    for tok in tokens:
        if isinstance(tok, _Tagged) and tok.tag != "targets":
            values = tok.value if isinstance(tok.value, tuple) else (tok.value,)
            (plugins if tok.tag == "use" else commutative).extend(values)
    targets_loc = source.loc(stated[0].offset) if stated else None
    targets: tuple[str, ...] = stated[0].value if stated else ()
    _check_targets(source, stated, rules)
    return ast.RuleFile(
        path, rules, plugins=tuple(plugins), commutative=tuple(commutative), header=_header(text),
        params=params, lets=lets, targets=targets, targets_loc=targets_loc,
    )  # fmt: skip


def _check_targets(source: _Source, stated: list[_Tagged], rules: tuple[ast.Rule, ...]) -> None:
    """A file states its targets once; a rule's targets are among the file's."""
    if len(stated) > 1:
        first = source.loc(stated[0].offset)
        raise RuleSyntaxError(
            f"{source.loc(stated[1].offset)}: 'targets' is stated twice (first at line "
            f"{first.line}); list every target in one statement"
        )
    if not stated:
        return
    for rule in rules:
        outside = [t for t in rule.targets if t not in stated[0].value]
        if outside:
            raise RuleSyntaxError(
                f"{rule.loc}: rule '{rule.name}' is for {outside[0]}, which the file's targets "
                f"(line {source.loc(stated[0].offset).line}: {', '.join(stated[0].value)}) "
                "do not include"
            )


def _check_file_names(
    source: _Source, rules: tuple[ast.Rule, ...], params: tuple[ast.Param, ...],
    lets: tuple[ast.Let, ...],
) -> None:  # fmt: skip
    """File-level names are defined once, before the rules that use them."""
    seen: dict[str, ast.Loc] = {}
    first_rule = rules[0].loc if rules else None
    items: list[ast.Param | ast.Let] = [*params, *lets]
    for item in sorted(items, key=lambda i: (i.loc.line, i.loc.col)):
        if item.name in seen:
            raise RuleSyntaxError(
                f"{item.loc}: '{item.name}' is already defined at line {seen[item.name].line}"
            )
        seen[item.name] = item.loc
        if first_rule is not None and (item.loc.line, item.loc.col) > (
            first_rule.line, first_rule.col
        ):
            kind = "param" if isinstance(item, ast.Param) else "let"
            raise RuleSyntaxError(
                f"{item.loc}: {kind} '{item.name}' must come before the first rule"
            )


def load_rules(path: str | Path) -> ast.RuleFile:
    """Read and parse a rule file (UTF-8); never executes anything in it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path}: cannot read rule file: {exc}") from None
    return parse_rules(text, str(path))
