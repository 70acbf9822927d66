"""Parse actions of the rule grammar: each turns the tokens of one construct (a pattern, an
operand, a node call, an action, a rule) into its `surgery.lang.rule_ast` object, checking what the
grammar alone cannot (known functions, kinds, dtypes, targets, literal-only params)."""

from __future__ import annotations

import re
from dataclasses import replace

import pyparsing as pp

from surgery.errors import RuleError
from surgery.lang import rule_ast as ast
from surgery.lang.rule_syntax import (
    ATTR_KINDS,
    CURRENT_SOURCE,
    DTYPES,
    FORMATS,
    FUNCTIONS,
    RESERVED,
    STATEMENTS,
    TOP_LEVEL,
    OpMarker,
    Tagged,
    action,
    did_you_mean,
    loc_at,
)
from surgery.ops.targets import unknown_target


# --------------------------------------------------------------------------- builders
def ident_not_reserved(what: str) -> pp.ParserElement:
    """An identifier that is not a reserved word."""
    ident = pp.Regex(r"[A-Za-z_][A-Za-z0-9_]*")
    return ident.copy().add_condition(lambda t: t[0] not in RESERVED).set_name(what)


def make_number(text: str, offset: int, toks: list) -> ast.Literal:
    """An int or float literal; anything else that starts with a digit is a bad literal."""
    raw = toks[0]
    try:
        value: object = int(raw, 10) if re.fullmatch(r"\d+", raw) else float(raw)
    except ValueError:
        raise pp.ParseFatalException(text, offset, f"bad number literal '{raw}'") from None
    if isinstance(value, float) and not re.fullmatch(r"(\d+\.\d*|\d+)([eE][+-]?\d+)?", raw):
        raise pp.ParseFatalException(text, offset, f"bad number literal '{raw}'")
    return ast.Literal(value, loc_at(offset))


def unterminated_string(text: str, offset: int, toks: list) -> None:
    """Parse action for a quote that never closes on its line."""
    raise pp.ParseFatalException(text, offset, "unterminated string (strings end on their line)")


def fold_binary(text: str, offset: int, toks: list) -> object:
    """Left-fold `a op b op c` into BinOp/Compare nodes."""
    result = toks[0]
    for i in range(1, len(toks), 2):
        op: OpMarker = toks[i]
        right = toks[i + 1]
        loc = loc_at(op.offset)
        if op.text in ("==", "!=", "<", "<=", ">", ">=", "in"):
            result = ast.Compare(op.text, result, right, loc)
        elif op.text == "not in":
            result = ast.Not(ast.Compare("in", result, right, loc), loc)
        else:
            result = ast.BinOp(op.text, result, right, loc)
    return result


def fold_bool(name: str):
    """Parse action turning `a and b and c` into one BoolOp (or passing a single operand)."""

    def build(text: str, offset: int, toks: list) -> object:
        return toks[0] if len(toks) == 1 else ast.BoolOp(name, tuple(toks), loc_at(offset))

    return action(build)


def make_negation(text: str, offset: int, toks: list) -> object:
    """Unary minus: folded into numeric literals, else `0 - x`."""
    operand = toks[0]
    if isinstance(operand, ast.Literal) and (
        type(operand.value) is int or type(operand.value) is float
    ):
        return ast.Literal(-operand.value, loc_at(offset))
    return ast.BinOp("-", ast.Literal(0, loc_at(offset)), operand, loc_at(offset))


def make_ref(text: str, offset: int, toks: list) -> ast.Ref:
    """`x`, `x:1`, `x.prop`, `x.attr.name` -> Ref."""
    var = toks[0]
    port = next((t.value for t in toks if isinstance(t, Tagged) and t.tag == "port"), None)
    names = [t for t in toks if isinstance(t, Tagged) and t.tag == "dot"]
    prop = attr = None
    if len(names) == 1:
        prop = names[0].value
    elif len(names) == 2:
        if names[0].value != "attr":
            raise pp.ParseFatalException(
                text, names[1].offset, "only 'x.attr.NAME' may have a second '.'"
            )
        attr = names[1].value
    return ast.Ref(var, loc_at(offset), port=port, prop=prop, attr=attr)


def make_call(text: str, offset: int, toks: list) -> ast.Call:
    """A whitelisted function call."""
    return ast.Call(toks[0], tuple(toks[1:]), loc_at(offset))


def check_function(text: str, offset: int, toks: list) -> str:
    """Refuse any function outside the whitelist (this is what keeps rule files inert)."""
    name = toks[0]
    if name not in FUNCTIONS:
        raise pp.ParseFatalException(
            text, offset,
            f"unknown function '{name}'{did_you_mean(name, FUNCTIONS)}; "
            f"allowed: {', '.join(FUNCTIONS)}",
        )  # fmt: skip
    return name


def check_kind(text: str, offset: int, toks: list) -> str:
    """An attribute kind from the fixed list."""
    kind = toks[0]
    if kind not in ATTR_KINDS:
        raise pp.ParseFatalException(
            text, offset, f"unknown attribute kind '{kind}'{did_you_mean(kind, ATTR_KINDS)}; "
            f"expected one of {', '.join(ATTR_KINDS)}",
        )  # fmt: skip
    return kind


def check_dtype(text: str, offset: int, toks: list) -> str:
    """A dtype name for `const(...)`."""
    name = toks[0]
    if name not in DTYPES:
        raise pp.ParseFatalException(
            text, offset, f"unknown dtype '{name}'{did_you_mean(name, DTYPES)}"
        )
    return name


def check_name_pattern(kind: str):
    """Validate a scope glob (balanced braces) or regex (compiles) at parse time."""

    def build(text: str, offset: int, toks: list) -> ast.NamePattern:
        pattern = toks[-1]
        if kind == "regex":  # as the matcher will: RE2 (linear time; no backreferences)
            from surgery.lang.name_patterns import name_regex

            try:
                name_regex(pattern)
            except RuleError as exc:
                raise pp.ParseFatalException(text, offset, str(exc)) from None
        elif pattern.count("{") != pattern.count("}") or not pattern:
            raise pp.ParseFatalException(text, offset, f"bad namespace glob '{pattern}'")
        return ast.NamePattern(kind, pattern, loc_at(offset))

    return action(build)


def make_op_pattern(text: str, offset: int, toks: list) -> ast.OpPattern:
    """`[var =] Op1|Op2(operands)[:port]` -> OpPattern."""
    var = None
    if isinstance(toks[0], Tagged) and toks[0].tag == "bind":
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
        if isinstance(tok, Tagged) and tok.tag == "port":
            port = tok.value
        elif isinstance(tok, Tagged) and tok.tag == "extra":
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
        tuple(ops), tuple(operands), loc_at(offset), var=var, port=port, allow_extra=allow_extra
    )


def make_operand(text: str, offset: int, toks: list) -> ast.Operand:
    """`[role:] pattern [...]` -> Operand."""
    role = None
    if isinstance(toks[0], Tagged) and toks[0].tag == "role":
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
    return ast.Operand(pattern, loc_at(offset), role=role, variadic=variadic)


def make_capture(text: str, offset: int, toks: list) -> ast.Capture:
    """`x` or `x:1` in a pattern."""
    port = toks[1].value if len(toks) > 1 else None
    return ast.Capture(toks[0], loc_at(offset), port=port)


def make_scope(text: str, offset: int, toks: list) -> ast.ScopeStmt:
    """`scope r = "NS" [except ...] [enters N] [leaves N]` -> ScopeStmt."""
    var = toks[0]
    include = tuple(t for t in toks[1:] if isinstance(t, ast.NamePattern))
    clauses = {t.tag: t for t in toks if isinstance(t, Tagged)}
    exclude = clauses["except"].value if "except" in clauses else ()
    if isinstance(exclude, ast.NamePattern):
        exclude = (exclude,)
    tagged = [t for t in toks if isinstance(t, Tagged) and t.tag == "side"]
    side = tuple(t.value for t in tagged)
    roles = [item.role for item in side]
    for tok in tagged:
        if roles.count(tok.value.role) > 1:
            message = f"side input '{tok.value.role}' given twice"
            raise pp.ParseFatalException(text, tok.offset, message)
    return ast.ScopeStmt(
        var, include, loc_at(offset), exclude=tuple(exclude),
        enters=clauses["enters"].value if "enters" in clauses else None,
        leaves=clauses["leaves"].value if "leaves" in clauses else None,
        side=side,
    )  # fmt: skip


def make_side(text: str, offset: int, toks: list) -> ast.SideInput:
    """`side ROLE = "glob", ...` -> SideInput."""
    return ast.SideInput(toks[0], tuple(toks[1:]), loc_at(offset))


def make_param(text: str, offset: int, toks: list) -> ast.Param:
    """`param NAME = LITERAL` -> Param (the default must be a literal: it is data, not code)."""
    name, value = toks[0], toks[1]
    if not isinstance(value, ast.Literal) or not _literal_only(value):
        raise pp.ParseFatalException(
            text, offset, f"param '{name}': the default must be a literal "
            "(number, string, bool or list of them); compute values with 'let'"
        )  # fmt: skip
    loc = loc_at(offset)
    return ast.Param(name, value, loc, doc=_doc_above(loc.line))


def _literal_only(value: ast.Literal) -> bool:
    """A literal whose list items are literals too."""
    if isinstance(value.value, tuple):
        return all(isinstance(v, ast.Literal) and _literal_only(v) for v in value.value)
    return True


def make_node_call(text: str, offset: int, toks: list) -> ast.NodeCall:
    """`Op(args) { fields }` -> NodeCall."""
    args = tuple(t for t in toks[1:] if isinstance(t, ast.Arg))
    fields = tuple(t for t in toks[1:] if isinstance(t, ast.FieldAssign))
    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise pp.ParseFatalException(
                text, CURRENT_SOURCE.get().line_starts[f.loc.line - 1] + f.loc.col - 1,
                f"field '{f.name}' is set twice",
            )  # fmt: skip
        seen.add(f.name)
    return ast.NodeCall(toks[0], args, fields, loc_at(offset))


def make_arg(text: str, offset: int, toks: list) -> ast.Arg:
    """`[role =] tensor` -> Arg."""
    if isinstance(toks[0], Tagged):
        return ast.Arg(toks[1], loc_at(offset), role=toks[0].value)
    return ast.Arg(toks[0], loc_at(offset))


def make_field(text: str, offset: int, toks: list) -> ast.FieldAssign:
    """`name [: kind] = expr` -> FieldAssign; a bare dtype name for a `type` field is a string."""
    name, kind, value = toks[0], None, toks[-1]
    if len(toks) == 3:
        kind = toks[1]
    if kind in ("type", "list(type)"):
        value = _dtype_literal(value)
    return ast.FieldAssign(name, value, loc_at(offset), kind=kind)


def _dtype_literal(value: object) -> object:
    """Turn bare dtype identifiers (`float32`) into string literals."""
    if isinstance(value, ast.Ref) and value.var in DTYPES and not (value.port or value.prop):
        return ast.Literal(value.var, value.loc)
    if isinstance(value, ast.Literal) and isinstance(value.value, tuple):
        return ast.Literal(tuple(_dtype_literal(v) for v in value.value), value.loc)
    return value


def _clauses(text: str, toks: list, allowed: tuple[str, ...]) -> dict[str, Tagged]:
    """Collect trailing `outputs {..}` / `as ..` clauses, refusing duplicates."""
    found: dict[str, Tagged] = {}
    for tok in toks:
        if isinstance(tok, Tagged) and tok.tag in allowed:
            if tok.tag in found:
                raise pp.ParseFatalException(text, tok.offset, f"'{tok.tag}' given twice")
            found[tok.tag] = tok
    return found


def _outputs(clauses: dict[str, Tagged]) -> tuple[ast.OutputMap, ...]:
    """The output maps of an `outputs { ... }` clause."""
    if "outputs" not in clauses:
        return ()
    value = clauses["outputs"].value
    return value if isinstance(value, tuple) else (value,)


def make_replace(text: str, offset: int, toks: list) -> ast.Replace:
    """`replace y[, z] with Call [outputs {..}] [as name]` -> Replace."""
    targets = tuple(t for t in toks if isinstance(t, ast.Ref))
    call = next(t for t in toks if isinstance(t, ast.NodeCall))
    found = _clauses(text, toks, ("outputs", "as"))
    name = found["as"].value if "as" in found else None
    return ast.Replace(targets, call, loc_at(offset), outputs=_outputs(found), name=name)


def make_collapse(text: str, offset: int, toks: list) -> ast.Collapse:
    """`collapse r into Call [outputs {..}] [as name]` -> Collapse."""
    call = next(t for t in toks if isinstance(t, ast.NodeCall))
    found = _clauses(text, toks, ("outputs", "as"))
    name = found["as"].value if "as" in found else None
    return ast.Collapse(toks[0], call, loc_at(offset), outputs=_outputs(found), name=name)


def check_target(text: str, offset: int, toks: list) -> str:
    """A target name string; a known one (`surgery.ops.targets.TARGETS`), else a fatal error."""
    message = unknown_target(toks[0])
    if message is not None:
        raise pp.ParseFatalException(text, offset, message)
    return toks[0]


def check_format(text: str, offset: int, toks: list) -> str:
    """A model format string: one of `FORMATS`, else a fatal error."""
    if toks[0] not in FORMATS:
        known = ", ".join(f'"{f}"' for f in FORMATS)
        hint = did_you_mean(toks[0], FORMATS)
        raise pp.ParseFatalException(text, offset, f"unknown format '{toks[0]}'{hint} ({known})")
    return toks[0]


def make_targets(text: str, offset: int, toks: list) -> Tagged:
    """`targets "a", "b"` (a file's or a rule's) -> Tagged("targets", names); no repeats."""
    if len(set(toks)) != len(toks):
        twice = next(n for n in toks if toks.count(n) > 1)
        raise pp.ParseFatalException(text, offset, f"target '{twice}' is listed twice")
    return Tagged("targets", tuple(toks), offset)


def make_rule(text: str, offset: int, toks: list) -> ast.Rule:
    """Assemble a rule from its header and statements (match/scope/where parts + actions)."""
    name = toks[0]
    max_iterations = 100
    targets: tuple[str, ...] = ()
    body_parts: list[Tagged] = []
    actions: list[ast.Action] = []
    for tok in toks[1:]:
        if isinstance(tok, Tagged) and tok.tag == "max_iterations":
            max_iterations = tok.value
            if max_iterations < 1:
                raise pp.ParseFatalException(text, tok.offset, "max_iterations must be >= 1")
        elif isinstance(tok, Tagged) and tok.tag == "targets":
            targets = tok.value
        elif isinstance(tok, Tagged) and tok.tag in ("match", "scope", "where"):
            if actions:
                raise pp.ParseFatalException(
                    text, tok.offset, f"'{tok.tag}' must come before the rule's actions"
                )
            body_parts.append(tok)
        else:
            actions.append(tok)
    body = _rule_body(text, offset, name, body_parts)
    loc = loc_at(offset)
    return ast.Rule(
        name, body, tuple(actions), loc, max_iterations=max_iterations,
        doc=_doc_above(loc.line), targets=targets,
    )  # fmt: skip


def _rule_body(text: str, offset: int, name: str, parts: list[Tagged]):
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
    lines = CURRENT_SOURCE.get().text.splitlines()
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


def file_header(text: str) -> str:
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


def unknown_statement(where: str):
    """Parse action for a word that starts no known statement (with a did-you-mean)."""

    def fail(text: str, offset: int, toks: list) -> None:
        word = toks[0]
        if where == "top" and word in STATEMENTS:
            message = f"'{word}' must be inside a rule (start one with 'rule NAME:')"
        else:
            pool = TOP_LEVEL + STATEMENTS + (("input", "outputs", "as") if where == "rule" else ())
            message = f"unknown statement '{word}'{did_you_mean(word, pool)}"
        raise pp.ParseFatalException(text, offset, message)

    return action(fail)


def fold_index(text: str, offset: int, toks: list) -> object:
    """`base[i][j]` -> nested Index."""
    result = toks[0]
    for tok in toks[1:]:
        result = ast.Index(result, tok.value, loc_at(tok.offset))
    return result


def make_scope_tensor(text: str, offset: int, toks: list) -> ast.ScopeTensor:
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
    loc = loc_at(offset)
    if sel.tag == "index" and sel.value == "*":
        return ast.ScopeTensor(var, direction, loc, every=True, prop=prop, attr=attr)
    if sel.tag == "index":
        return ast.ScopeTensor(var, direction, loc, index=sel.value, prop=prop, attr=attr)
    return ast.ScopeTensor(var, direction, loc, glob=sel.value, prop=prop, attr=attr)


def make_match(text: str, offset: int, toks: list) -> ast.MatchStmt:
    """`match p1; p2 [where cond]` -> MatchStmt."""
    roots = tuple(t for t in toks if isinstance(t, ast.OpPattern))
    where = next((t.value for t in toks if isinstance(t, Tagged)), None)
    return ast.MatchStmt(roots, loc_at(offset), where=where)


def make_removes(text: str, offset: int, toks: list) -> pp.ParseResults:
    """`remove a, b` -> one Remove per variable."""
    return pp.ParseResults([ast.Remove(v, loc_at(offset)) for v in toks])


def make_set(text: str, offset: int, toks: list) -> ast.SetAttr:
    """`set y.attr[: kind] = expr` -> SetAttr."""
    var, attr, *rest = toks
    kind = rest[0] if len(rest) == 2 else None
    value = rest[-1]
    if kind in ("type", "list(type)"):
        value = _dtype_literal(value)
    return ast.SetAttr(var, attr, value, loc_at(offset), kind=kind)
