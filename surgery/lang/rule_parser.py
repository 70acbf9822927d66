"""Rule-file parser: a pyparsing grammar that turns rule text into `surgery.lang.rule_ast` objects.

Loading a rule file never executes code: the text is only tokenised and matched against the
grammar below, and every value ends up as plain data in the syntax tree. Errors raise
`RuleSyntaxError` with a message that starts with `file:line:col:` and says what was expected.
The vocabulary and the grammar's building blocks are in `surgery.lang.rule_syntax`, the parse
actions that build each syntax-tree object in `surgery.lang.rule_builders`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pyparsing as pp

from surgery.errors import RuleError, RuleSyntaxError
from surgery.lang import rule_ast as ast
from surgery.lang.rule_builders import (
    check_dtype,
    check_format,
    check_function,
    check_kind,
    check_name_pattern,
    check_target,
    file_header,
    fold_binary,
    fold_bool,
    fold_index,
    ident_not_reserved,
    make_arg,
    make_call,
    make_capture,
    make_collapse,
    make_field,
    make_match,
    make_negation,
    make_node_call,
    make_number,
    make_op_pattern,
    make_operand,
    make_param,
    make_ref,
    make_removes,
    make_replace,
    make_rule,
    make_scope,
    make_scope_tensor,
    make_set,
    make_side,
    make_targets,
    unknown_statement,
    unterminated_string,
)
from surgery.lang.rule_syntax import (
    COMMENT_OR_STRING,
    CURRENT_SOURCE,
    FORMATS,
    RESERVED,
    TOP_LEVEL,
    Bracketed,
    Expect,
    OpMarker,
    Source,
    Tagged,
    action,
    comma_list,
    found_token,
    kw,
    loc_at,
    skip_blanks,
    sym,
    tag_clause,
)


# --------------------------------------------------------------------------- the grammar
@lru_cache(maxsize=1)
def _grammar() -> pp.ParserElement:
    """Build the whole grammar once."""
    ident = pp.Regex(r"[A-Za-z_][A-Za-z0-9_]*")
    var = ident_not_reserved("a variable name")
    opname = pp.Regex(r"[A-Za-z_][A-Za-z0-9_.>]*").add_condition(lambda t: t[0] not in RESERVED)
    integer = pp.Regex(r"\d+(?!\w|\.\d)").set_parse_action(lambda t: int(t[0]))
    colon_int = sym(":") + Expect(integer, "expected a port number after ':'")
    string = (pp.QuotedString('"', esc_char="\\") | pp.QuotedString("'", esc_char="\\")) | pp.Regex(
        r"""["'][^\n]*"""
    ).set_parse_action(action(unterminated_string))
    # an exponent first (`1e-3`, `2.5E+2`), else a run of word characters (`1abc`: an error)
    number = pp.Regex(r"\d+(?:\.\d*)?[eE][+-]?\d+(?![\w.])|\d[\w.]*").set_parse_action(
        action(make_number)
    )

    # ---------------------------------------------------------------- expressions
    expr = pp.Forward()
    str_lit = string.copy().add_parse_action(action(lambda s, o, t: ast.Literal(t[0], loc_at(o))))
    bool_lit = (pp.Keyword("true") | pp.Keyword("false")).set_parse_action(
        action(lambda s, o, t: ast.Literal(t[0] == "true", loc_at(o)))
    )
    list_lit: pp.ParserElement = Bracketed("[", comma_list(expr, "]", "an expression"), "]", "','")
    list_lit = pp.Group(list_lit).set_parse_action(
        action(lambda s, o, t: ast.Literal(tuple(t[0]), loc_at(o)))
    )
    func = (var.copy() + pp.FollowedBy("(")).set_parse_action(action(check_function))
    call = (
        func + Bracketed("(", comma_list(expr, ")", "an argument"), ")", "','")
    ).set_parse_action(action(make_call))
    dot = sym(".") + Expect(ident, "expected a property name after '.'")
    ref = (
        var + pp.Optional(tag_clause("port", colon_int)) + pp.Optional(tag_clause("dot", dot))
        + pp.Optional(tag_clause("dot", dot))
    ).set_parse_action(action(make_ref))  # fmt: skip
    paren = Bracketed("(", Expect(expr, "expected an expression after '('"), ")", "an operator")
    scope_expr = (
        var + sym(".") + (pp.Keyword("in") | pp.Keyword("out")) + pp.FollowedBy(pp.Char("[("))
        + (tag_clause("index", Bracketed("[", integer | pp.Literal("*"), "]", "an index or '*'"))
           | tag_clause("glob", Bracketed("(", string, ")", "a name glob")))
        + pp.Optional(tag_clause("dot", dot)) + pp.Optional(tag_clause("dot", dot))
    ).set_parse_action(action(make_scope_tensor))  # fmt: skip
    atom = number | str_lit | bool_lit | list_lit | call | scope_expr | ref | paren
    index = Bracketed("[", Expect(expr, "expected an index after '['"), "]", "an operator")
    postfix = (atom + pp.ZeroOrMore(tag_clause("index", index))).set_parse_action(
        action(fold_index)
    )
    unary = pp.Forward()
    unary <<= (sym("-") + unary).set_parse_action(action(make_negation)) | postfix

    def op(*texts: str) -> pp.ParserElement:
        """Operator tokens, each returned as an `OpMarker` with its offset."""
        alts = [pp.Keyword(t) if t.isalpha() else pp.Literal(t) for t in texts]
        return pp.MatchFirst(alts).set_parse_action(action(lambda s, o, t: OpMarker(t[0], o)))

    def binary(operand: pp.ParserElement, operator: pp.ParserElement) -> pp.ParserElement:
        """`operand (operator operand)*`, left-folded."""
        tail = operator + Expect(operand, "expected an expression after the operator")
        return (operand + pp.ZeroOrMore(tail)).set_parse_action(action(fold_binary))

    term = binary(unary, op("//", "*", "/"))
    arith = binary(term, op("+", "-"))
    not_in = (pp.Keyword("not") + pp.Keyword("in")).set_parse_action(
        action(lambda s, o, t: OpMarker("not in", o))
    )
    compare_op = op("==", "!=", "<=", ">=", "<", ">", "in") | not_in
    comparison = (
        arith + pp.Optional(compare_op + Expect(arith, "expected an expression to compare with"))
    ).set_parse_action(action(fold_binary))
    negation = pp.Forward()
    negation <<= (
        kw("not") + Expect(negation, "expected a condition after 'not'")
    ).set_parse_action(action(lambda s, o, t: ast.Not(t[0], loc_at(o)))) | comparison
    conj = (
        negation + pp.ZeroOrMore(kw("and") + Expect(negation, "expected a condition after 'and'"))
    ).set_parse_action(fold_bool("and"))
    expr <<= (
        conj + pp.ZeroOrMore(kw("or") + Expect(conj, "expected a condition after 'or'"))
    ).set_parse_action(fold_bool("or"))

    # ---------------------------------------------------------------- patterns
    pattern = pp.Forward()
    op_names = pp.Literal("*") | (
        opname + pp.ZeroOrMore(sym("|") + Expect(opname, "expected an op name after '|'"))
    )
    operand_item = pp.Forward()
    operands = comma_list(operand_item, ")", "an operand")
    bare_op = (
        tag_clause("ops", op_names) + pp.FollowedBy("(")
        + Bracketed("(", operands, ")", "',' or an operand")
        + pp.Optional(tag_clause("port", colon_int))
    )  # fmt: skip
    bind = tag_clause("bind", var + sym("=") + ~pp.FollowedBy("="))
    op_pattern = (
        (bind + Expect(bare_op, "expected an op pattern like 'Op(x)' after '='")) | bare_op
    ).set_parse_action(action(make_op_pattern))
    wildcard = pp.Keyword("_").set_parse_action(action(lambda s, o, t: ast.Wildcard(loc_at(o))))
    capture = (var + pp.Optional(tag_clause("port", colon_int))).set_parse_action(
        action(make_capture)
    )
    pattern <<= op_pattern | wildcard | capture
    role = tag_clause("role", ident + sym(":") + ~pp.FollowedBy(pp.Regex(r"\d")))
    extra = tag_clause("extra", pp.Literal("..."))
    operand_item <<= extra | (
        ~pp.FollowedBy(")")
        + pp.Optional(role)
        + Expect(pattern, "expected a pattern")
        + pp.Optional("...")
    ).set_parse_action(action(make_operand))

    # ---------------------------------------------------------------- tensor selectors
    dtype = (ident | string).set_parse_action(action(check_dtype))
    const_arg = (
        kw("const") + pp.FollowedBy("(")
        + Bracketed(
            "(",
            Expect(dtype, "expected a dtype like int32") + Expect(",", "expected ','")
            + Expect(expr, "expected a value"),
            ")", "','",
        )
    ).set_parse_action(action(lambda s, o, t: ast.ConstArg(t[0], t[1], loc_at(o))))  # fmt: skip
    tensor_name = (kw("tensor") + string).set_parse_action(
        action(lambda s, o, t: ast.TensorName(t[0], loc_at(o)))
    )
    direction = pp.Keyword("in") | pp.Keyword("out")
    scope_tensor = (
        var + sym(".") + direction
        + Expect(
            tag_clause("index", Bracketed("[", integer | pp.Literal("*"), "]", "an index or '*'"))
            | tag_clause("glob", Bracketed("(", string, ")", "a name glob")),
            "expected '[index]' or '(\"glob\")' after the scope accessor",
        )
    ).set_parse_action(action(make_scope_tensor))  # fmt: skip
    ref_sel = (var + pp.Optional(tag_clause("port", colon_int))).set_parse_action(action(make_ref))
    tensor_sel = const_arg | tensor_name | scope_tensor | ref_sel
    tensor_sel_x = Expect(tensor_sel, 'expected a tensor (x, x:1, r.in[0], tensor "n:0")')

    # ---------------------------------------------------------------- node calls
    kind = pp.Regex(r"[a-z]+(\([a-z]+\))?").set_parse_action(action(check_kind))
    field_item = (
        ident + pp.Optional(sym(":") + Expect(kind, "expected an attribute kind"))
        + Expect("=", "expected '=' after the field name")
        + Expect(expr, "expected a value after '='")
    ).set_parse_action(action(make_field))  # fmt: skip
    fields = Bracketed("{", comma_list(field_item, "}", "a field"), "}", "','")
    arg_role = tag_clause("role", ident + (sym("=") | (sym(":") + ~pp.FollowedBy(pp.Regex(r"\d")))))
    arg = (~pp.FollowedBy(")") + pp.Optional(arg_role) + tensor_sel_x).set_parse_action(
        action(make_arg)
    )
    node_call = (
        opname + pp.FollowedBy("(")
        + Bracketed("(", comma_list(arg, ")", "an input"), ")", "','")
        + pp.Optional(fields)
    ).set_parse_action(action(make_node_call))  # fmt: skip
    node_call_x = Expect(node_call, "expected a node like 'Op(inputs) { fields }'")

    out_item = (
        tensor_sel
        + Expect("->", "expected '->' after the tensor")
        + Expect(integer, "expected an output port number after '->'")
    ).set_parse_action(action(lambda s, o, t: ast.OutputMap(t[0], t[1], loc_at(o))))
    out_map = Bracketed("{", comma_list(out_item, "}", "an output mapping"), "}", "','")
    tail_clauses = pp.ZeroOrMore(
        tag_clause("outputs", kw("outputs") + Expect(out_map, "expected '{' after 'outputs'"))
        | tag_clause("as", kw("as") + Expect(expr, "expected a node name after 'as'"))
    )

    # ---------------------------------------------------------------- statements
    match_stmt = tag_clause("match", (
        kw("match") + Expect(op_pattern, "expected an op pattern after 'match'")
        + pp.ZeroOrMore(sym(";") + Expect(op_pattern, "expected an op pattern after ';'"))
        + pp.Optional(tag_clause("where", kw("where")
                           + Expect(expr, "expected a condition after 'where'")))
    ).set_parse_action(action(make_match)))  # fmt: skip
    where_stmt = tag_clause(
        "where", kw("where") + Expect(expr, "expected a condition after 'where'")
    )
    name_pat = (kw("regex") + Expect(string, "expected a string after 'regex'")).set_parse_action(
        check_name_pattern("regex")
    ) | string.copy().set_parse_action(check_name_pattern("glob"))
    name_pats = name_pat + pp.ZeroOrMore(sym(",") + Expect(name_pat, "expected a pattern"))
    scope_stmt = tag_clause("scope", (
        kw("scope") + Expect(var, "expected a variable name after 'scope'")
        + Expect("=", "expected '=' after the scope variable")
        + Expect(name_pats, "expected a namespace (a quoted glob or regex \"...\")")
        + pp.Optional(tag_clause("except", kw("except")
                           + Expect(name_pats, "expected a namespace pattern after 'except'")))
        + pp.Optional(tag_clause("enters", kw("enters")
                           + Expect(integer, "expected a count after 'enters'")))
        + pp.Optional(tag_clause("leaves", kw("leaves")
                           + Expect(integer, "expected a count after 'leaves'")))
        + pp.ZeroOrMore(tag_clause("side", (
            kw("side") + Expect(var, "expected a role name after 'side'")
            + Expect("=", "expected '=' after the side input's role")
            + Expect(name_pats, "expected a producer name pattern (a quoted glob)")
        ).set_parse_action(action(make_side))))
    ).set_parse_action(action(make_scope)))  # fmt: skip
    target = (var + pp.Optional(tag_clause("port", colon_int))).set_parse_action(action(make_ref))
    replace_stmt = (
        kw("replace") + Expect(target, "expected the variable to replace after 'replace'")
        + pp.ZeroOrMore(sym(",") + Expect(target, "expected a variable after ','"))
        + Expect(kw("with"), "expected 'with' after the replaced variables")
        + node_call_x + tail_clauses
    ).set_parse_action(action(make_replace))  # fmt: skip
    collapse_stmt = (
        kw("collapse") + Expect(var, "expected a scope variable after 'collapse'")
        + Expect(kw("into"), "expected 'into' after the scope variable")
        + node_call_x + tail_clauses
    ).set_parse_action(action(make_collapse))  # fmt: skip
    remove_stmt = (
        kw("remove") + Expect(var, "expected a variable after 'remove'")
        + pp.ZeroOrMore(sym(",") + Expect(var, "expected a variable after ','"))
    ).set_parse_action(action(make_removes))  # fmt: skip
    forward_stmt = (
        kw("forward")
        + Expect(var, "expected a variable after 'forward'")
        + pp.Optional(kw("input") + Expect(integer, "expected an input number after 'input'"))
    ).set_parse_action(action(lambda s, o, t: ast.Forward(t[0], loc_at(o), *t[1:])))
    slot = integer | pp.Literal("+") | pp.Literal("^")
    connect_stmt = (
        kw("connect")
        + tensor_sel_x
        + Expect("->", "expected '->' after the source tensor")
        + Expect(var, "expected the target variable after '->'")
        + Expect(
            Bracketed("[", Expect(slot, "expected a slot (N, + or ^)"), "]", "a slot"),
            "expected '[slot]' after the target",
        )
    ).set_parse_action(action(lambda s, o, t: ast.Connect(t[0], t[1], t[2], loc_at(o))))
    dslot = integer | pp.Combine(pp.Literal("^") + pp.Optional(ident))
    disconnect_stmt = (
        kw("disconnect")
        + Expect(var, "expected a variable after 'disconnect'")
        + Expect(
            Bracketed("[", Expect(dslot, "expected a slot (N, ^ or ^x)"), "]", "a slot"),
            "expected '[slot]' after the variable",
        )
    ).set_parse_action(action(lambda s, o, t: ast.Disconnect(t[0], t[1], loc_at(o))))
    set_stmt = (
        kw("set") + Expect(var, "expected a variable after 'set'")
        + Expect(".", "expected '.attribute' after the variable")
        + Expect(ident, "expected an attribute name after '.'")
        + pp.Optional(sym(":") + Expect(kind, "expected an attribute kind"))
        + Expect("=", "expected '=' after the attribute")
        + Expect(expr, "expected a value after '='")
    ).set_parse_action(action(make_set))  # fmt: skip
    prune_stmt = kw("prune").set_parse_action(action(lambda s, o, t: ast.Prune(loc_at(o))))
    insert_stmt = (
        kw("insert")
        + Expect(var, "expected a variable after 'insert'")
        + Expect("=", "expected '=' after the new variable")
        + node_call_x
    ).set_parse_action(action(lambda s, o, t: ast.Insert(t[0], t[1], loc_at(o))))
    top_word = pp.MatchFirst([pp.Keyword(w) for w in TOP_LEVEL])
    unknown = (~top_word + ident).set_parse_action(unknown_statement("rule"))
    statement = (
        match_stmt | where_stmt | scope_stmt | replace_stmt | collapse_stmt | remove_stmt
        | forward_stmt | connect_stmt | disconnect_stmt | set_stmt | insert_stmt | prune_stmt
        | unknown
    )  # fmt: skip

    # ---------------------------------------------------------------- top level
    target = string.copy().add_parse_action(action(check_target))
    fmt = string.copy().add_parse_action(action(check_format))
    known_formats = ", ".join(f'"{f}"' for f in FORMATS)
    targets = (
        kw("targets") + Expect(target, "expected a target name string after 'targets'")
        + pp.ZeroOrMore(sym(",") + Expect(target, "expected a target name string after ','"))
    ).set_parse_action(action(make_targets))  # fmt: skip
    formats = tag_clause(
        "formats",
        kw("formats")
        + Expect(fmt, f"expected a format string after 'formats' ({known_formats})")
        + pp.ZeroOrMore(sym(",") + Expect(fmt, "expected a format string after ','")),
    )  # fmt: skip
    rule = (
        kw("rule") + Expect(ident, "expected a rule name after 'rule'")
        + pp.Optional(tag_clause("max_iterations", kw("max_iterations")
                           + Expect(integer, "expected a number after 'max_iterations'")))
        + pp.Optional(targets)
        + Expect(":", "expected ':' after the rule header")
        + pp.ZeroOrMore(statement)
    ).set_parse_action(action(make_rule))  # fmt: skip
    use = tag_clause(
        "use",
        kw("use")
        + Expect(kw("plugins"), "expected 'plugins' after 'use'")
        + Expect(string, "expected a catalog name string after 'use plugins'")
        + pp.ZeroOrMore(sym(",") + Expect(string, "expected a string after ','")),
    )
    commutative = tag_clause(
        "commutative",
        kw("commutative")
        + Expect(opname, "expected op names after 'commutative'")
        + pp.ZeroOrMore(sym(",") + Expect(opname, "expected an op name")),
    )
    param = (
        kw("param") + Expect(var, "expected a parameter name after 'param'")
        + Expect("=", "expected '=' after the parameter name")
        + Expect(expr, "expected a default value after '='")
    ).set_parse_action(action(make_param))  # fmt: skip
    let = (
        kw("let") + Expect(var, "expected a name after 'let'")
        + Expect("=", "expected '=' after the name")
        + Expect(expr, "expected a value after '='")
    ).set_parse_action(action(lambda s, o, t: ast.Let(t[0], t[1], loc_at(o))))  # fmt: skip
    top_unknown = ident.copy().set_parse_action(unknown_statement("top"))
    grammar = pp.ZeroOrMore(
        rule | use | targets | formats | commutative | param | let | top_unknown
    ) + (Expect(pp.StringEnd(), f"expected {', '.join(map(repr, TOP_LEVEL[:-1]))} or 'let'"))
    return grammar.parse_with_tabs()


# --------------------------------------------------------------------------- public API
def _blank_comments(text: str) -> str:
    """Replace every `#` comment by spaces (strings are left alone), keeping offsets."""

    def blank(match: re.Match[str]) -> str:
        tok = match.group()
        return " " * len(tok) if tok.startswith("#") else tok

    return COMMENT_OR_STRING.sub(blank, text)


def parse_rules(text: str, path: str = "<rules>") -> ast.RuleFile:
    """Parse rule-file text into a RuleFile; raises RuleSyntaxError with file:line:col."""
    source = Source(path, text, [0] + [m.end() for m in re.finditer("\n", text)])
    token = CURRENT_SOURCE.set(source)
    try:
        tokens = list(_grammar().parse_string(_blank_comments(text), parse_all=True))
    except pp.ParseBaseException as exc:
        at = skip_blanks(text, exc.loc)
        if isinstance(exc, pp.ParseFatalException):
            at = exc.loc
            message = exc.msg
        else:
            message = f"unexpected {found_token(text, at)}"
        raise RuleSyntaxError(f"{source.loc(at)}: {message}") from None
    except RecursionError:
        raise RuleSyntaxError(f"{path}:1:1: rule file nests too deeply") from None
    finally:
        CURRENT_SOURCE.reset(token)
    rules = tuple(t for t in tokens if isinstance(t, ast.Rule))
    params = tuple(t for t in tokens if isinstance(t, ast.Param))
    lets = tuple(t for t in tokens if isinstance(t, ast.Let))
    _check_file_names(source, rules, params, lets)
    plugins: list[str] = []
    commutative: list[str] = []
    stated = [t for t in tokens if isinstance(t, Tagged) and t.tag == "targets"]
    formats = [t for t in tokens if isinstance(t, Tagged) and t.tag == "formats"]
    for tok in tokens:
        if isinstance(tok, Tagged) and tok.tag in ("use", "commutative"):
            values = tok.value if isinstance(tok.value, tuple) else (tok.value,)
            (plugins if tok.tag == "use" else commutative).extend(values)
    if len(formats) > 1:
        raise RuleSyntaxError(f"{source.loc(formats[1].offset)}: 'formats' is stated twice "
                              f"(first at line {source.loc(formats[0].offset).line})")  # fmt: skip
    stated_formats = formats[0].value if formats else ()
    stated_formats = stated_formats if isinstance(stated_formats, tuple) else (stated_formats,)
    if len(set(stated_formats)) != len(stated_formats):
        twice = next(f for f in stated_formats if stated_formats.count(f) > 1)
        raise RuleSyntaxError(f"{source.loc(formats[0].offset)}: format '{twice}' is listed twice")
    targets_loc = source.loc(stated[0].offset) if stated else None
    targets: tuple[str, ...] = stated[0].value if stated else ()
    _check_targets(source, stated, rules)
    return ast.RuleFile(
        path, rules, plugins=tuple(plugins), commutative=tuple(commutative),
        header=file_header(text),
        params=params, lets=lets, targets=targets, targets_loc=targets_loc,
        formats=stated_formats,
    )  # fmt: skip


def _check_targets(source: Source, stated: list[Tagged], rules: tuple[ast.Rule, ...]) -> None:
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
    source: Source, rules: tuple[ast.Rule, ...], params: tuple[ast.Param, ...],
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
            first_rule.line,
            first_rule.col,
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
