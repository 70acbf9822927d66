"""Rule-language parser: every construct's syntax tree, and malformed files' exact positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from surgery.errors import RuleSyntaxError
from surgery.lang import rule_ast as ast
from surgery.lang.rule_parser import load_rules, parse_rules

BAD = Path(__file__).parent / "rules_bad"


def one_rule(body: str) -> ast.Rule:
    """Parse `rule r:` + body and return the single rule."""
    return parse_rules(f"rule r:\n{body}\n", "t.rules").rules[0]


def strip(node: object) -> object:
    """The tree without locations, for compact comparisons."""
    if isinstance(node, tuple):
        return tuple(strip(n) for n in node)
    if hasattr(node, "__dataclass_fields__"):
        values = {k: strip(getattr(node, k)) for k in node.__dataclass_fields__ if k != "loc"}
        return (type(node).__name__, values)
    return node


def test_header_use_commutative_doc_and_loc() -> None:
    text = (
        '# Leaky ReLU for TensorRT 8.6\n# second line\n\nuse plugins "trt-8.6", "surgery"\n'
        "commutative Maximum, Minimum\n\n# LeakyRelu becomes LReLU.\n# Doc line two.\n"
        "rule leaky_relu max_iterations 7:\n"
        "    match y = LeakyRelu(x) where y.alpha < 1\n"
        "    replace y with LReLU_TRT(x) { negSlope = y.alpha }\n"
    )
    rf = parse_rules(text, "f.rules")
    assert rf.header == "Leaky ReLU for TensorRT 8.6\nsecond line"
    assert rf.plugins == ("trt-8.6", "surgery")
    assert rf.commutative == ("Maximum", "Minimum")
    rule = rf.rules[0]
    assert rule.name == "leaky_relu" and rule.max_iterations == 7
    assert rule.doc == "LeakyRelu becomes LReLU.\nDoc line two."
    assert rule.loc == ast.Loc("f.rules", 9, 1)
    root = rule.body.roots[0]
    assert root.loc == ast.Loc("f.rules", 10, 11) and root.var == "y"
    assert rule.body.where.loc == ast.Loc("f.rules", 10, 42)  # the '<'


def test_leading_comment_directly_above_rule_is_its_doc() -> None:
    rf = parse_rules("# doc\nrule r:\n match y = Relu(x)\n remove y\n", "f")
    assert rf.header == "" and rf.rules[0].doc == "doc"


def test_op_pattern_alternatives_nesting_roles_bind() -> None:
    rule = one_rule("match y = Relu|Relu6(BiasAdd(c = Conv2D(input: x, filter: w), b))")
    root = rule.body.roots[0]
    assert root.ops == ("Relu", "Relu6") and root.var == "y"
    bias = root.operands[0].pattern
    assert bias.ops == ("BiasAdd",) and bias.var is None
    conv = bias.operands[0].pattern
    assert conv.var == "c" and [o.role for o in conv.operands] == ["input", "filter"]
    assert [o.pattern.var for o in conv.operands] == ["x", "w"]
    assert strip(bias.operands[1].pattern) == ("Capture", {"var": "b", "port": None})


def test_wildcard_any_op_ports_and_namespaced_ops() -> None:
    rule = one_rule(
        "match s = Split(split_dim: _, value: v):1\nmatch y = *(s:1, Addons>Gelu.V2(s:0))"
    )
    split, anyop = rule.body.roots
    assert split.port == 1 and isinstance(split.operands[0].pattern, ast.Wildcard)
    assert anyop.ops == () and anyop.operands[0].pattern == ast.Capture(
        "s", anyop.operands[0].pattern.loc, port=1
    )
    assert anyop.operands[1].pattern.ops == ("Addons>Gelu.V2",)


def test_variadic_and_trailing_ellipsis() -> None:
    rule = one_rule("match y = ConcatV2(xs..., axis: a, ...) where a.value == 3 and len(xs) >= 2")
    root = rule.body.roots[0]
    assert root.allow_extra and root.operands[0].variadic and root.operands[0].pattern.var == "xs"
    assert root.operands[1].role == "axis"
    assert strip(rule.body.where) == ("BoolOp", {"op": "and", "operands": (
        ("Compare", {"op": "==",
                     "left": ("Ref", {"var": "a", "port": None, "prop": "value", "attr": None}),
                     "right": ("Literal", {"value": 3})}),
        ("Compare", {"op": ">=", "left": ("Call", {"func": "len", "args": (
            ("Ref", {"var": "xs", "port": None, "prop": None, "attr": None}),)}),
            "right": ("Literal", {"value": 2})}),
    )})  # fmt: skip


def test_several_match_lines_and_where_statement_merge() -> None:
    rule = one_rule(
        'match a = Relu(x) where a.T == "float"\nmatch b = Neg(a)\nwhere not (b.value == 0)'
    )
    assert [r.var for r in rule.body.roots] == ["a", "b"]
    assert isinstance(rule.body.where, ast.BoolOp) and len(rule.body.where.operands) == 2
    assert isinstance(rule.body.where.operands[1], ast.Not)


def test_expressions_precedence_literals_refs() -> None:
    rule = one_rule(
        "match y = Relu(x) where x.shape[3] * 2 + -1 // 2 > 1 or x:1.attr.T in [\"a\", 'b'] "
        'and y.dtype not in [1.5e3, true, false] and matches(y.name, "ROI/*")'
    )
    where = rule.body.where
    assert where.op == "or"
    left = where.operands[0]
    assert left.op == ">" and left.left.op == "+" and left.left.left.op == "*"
    assert isinstance(left.left.left.left, ast.Index)
    assert left.left.right.op == "//" and left.left.right.left.value == -1
    conj = where.operands[1]
    ref = conj.operands[0].left
    assert (ref.var, ref.port, ref.prop, ref.attr) == ("x", 1, None, "T")
    assert [i.value for i in conj.operands[0].right.value] == ["a", "b"]
    negated = conj.operands[1]
    assert isinstance(negated, ast.Not) and negated.operand.op == "in"
    assert [i.value for i in negated.operand.right.value] == [1500.0, True, False]
    assert conj.operands[2].func == "matches"


def test_unary_minus_on_expression() -> None:
    where = one_rule("match y = Relu(x) where -x.value < 0").body.where
    assert strip(where.left) == ("BinOp", {"op": "-", "left": ("Literal", {"value": 0}),
        "right": ("Ref", {"var": "x", "port": None, "prop": "value", "attr": None})})  # fmt: skip


def test_replace_with_fields_outputs_and_name() -> None:
    rule = one_rule(
        "match s = Split(split_dim: _, value: v)\nmatch y = AddV2(s:1, s:0)\n"
        "replace y, s:1 with Foo_TRT(v, gamma = s:0) { k: int = 3, f = [1, 2.5] } "
        'as "foo" outputs { y -> 0, s:1 -> 1 }'
    )
    rep = rule.actions[0]
    assert [(t.var, t.port) for t in rep.targets] == [("y", None), ("s", 1)]
    assert rep.call.op == "Foo_TRT" and rep.name.value == "foo"
    assert [a.role for a in rep.call.args] == [None, "gamma"]
    assert rep.call.args[1].value.port == 0
    assert [(f.name, f.kind) for f in rep.call.fields] == [("k", "int"), ("f", None)]
    assert [(o.tensor.var, o.tensor.port, o.port) for o in rep.outputs] == [
        ("y", None, 0),
        ("s", 1, 1),
    ]


def test_scope_and_collapse() -> None:
    rule = one_rule(
        'scope r = "ROI", regex "ROI_[0-9]+" except "ROI/debug*" enters 2 leaves 1\n'
        'where matches(r.name, "ROI*")\n'
        'collapse r into ProposalLayer_TRT(scores = r.in("rpn_class*"), deltas = r.in[1]) {\n'
        "  prenms_topk = 1024, keep_topk = 1000, iou_threshold = 0.7,\n"
        "  image_size = [3, 1024, 1024],\n"
        '} outputs { r.out[0] -> 0, r.out("*packed*:1") -> 0 }'
    )
    scope = rule.body
    assert [(p.kind, p.text) for p in scope.include] == [("glob", "ROI"), ("regex", "ROI_[0-9]+")]
    assert [p.text for p in scope.exclude] == ["ROI/debug*"]
    assert (scope.enters, scope.leaves) == (2, 1) and scope.where.func == "matches"
    col = rule.actions[0]
    assert col.scope == "r" and col.call.op == "ProposalLayer_TRT"
    sel = [a.value for a in col.call.args]
    assert (sel[0].direction, sel[0].glob, sel[1].index) == ("in", "rpn_class*", 1)
    assert [f.name for f in col.call.fields][-1] == "image_size"
    assert col.outputs[1].tensor.glob == "*packed*:1" and col.outputs[1].tensor.direction == "out"


def test_insert_connect_disconnect_set_remove_forward() -> None:
    rule = one_rule(
        "match y = Conv2DBackpropInput(input_sizes: s, filter: w, out_backprop: x)\n"
        "insert t = Transpose(x, const(int32, [0, 2, 3, 1])) {\n"
        '  T: type = float32, Tperm: type = "int32" }\n'
        'connect t -> y[2]\nconnect w -> y[+]\nconnect tensor "input_image:0" -> y[^]\n'
        "disconnect y[0]\ndisconnect y[^w]\ndisconnect y[^]\n"
        'set y.data_format: string = "NCHW"\nset y.strides = [1, 1, 2, 2]\n'
        "remove s, w\nforward y\nforward y input 1"
    )
    kinds = [type(a).__name__ for a in rule.actions]
    assert kinds == [
        "Insert",
        "Connect",
        "Connect",
        "Connect",
        "Disconnect",
        "Disconnect",
        "Disconnect",
        "SetAttr",
        "SetAttr",
        "Remove",
        "Remove",
        "Forward",
        "Forward",
    ]
    ins = rule.actions[0]
    const = ins.call.args[1].value
    assert const.dtype == "int32" and [v.value for v in const.value.value] == [0, 2, 3, 1]
    assert [(f.kind, f.value.value) for f in ins.call.fields] == [
        ("type", "float32"),
        ("type", "int32"),
    ]
    assert [a.slot for a in rule.actions[1:4]] == [2, "+", "^"]
    assert rule.actions[3].source.name == "input_image:0"
    assert [a.slot for a in rule.actions[4:7]] == [0, "^w", "^"]
    assert (rule.actions[7].attr, rule.actions[7].kind) == ("data_format", "string")
    assert rule.actions[8].kind is None
    assert [a.var for a in rule.actions[9:11]] == ["s", "w"]
    assert [a.slot for a in rule.actions[11:]] == [0, 1]


def test_comments_everywhere_and_hash_in_strings() -> None:
    rule = one_rule(
        "match y = Relu( # a comment inside parens\n x) # trailing\n"
        'where y.name == "a#b"  # not part of the string\nremove y'
    )
    assert rule.body.where.right.value == "a#b"


def test_newlines_are_insignificant() -> None:
    a = one_rule(
        "match y = Relu(x) where y.alpha < 1 replace y with LReLU_TRT(x) { negSlope = 0.1 }"
    )
    b = one_rule(
        "match\n y\n =\n Relu(\nx)\n where\n y.alpha\n <\n 1\n replace y\n with\n LReLU_TRT(x)\n"
        "{\n negSlope\n =\n 0.1\n }"
    )
    assert strip(a) == strip(b)


BAD_CASES = {
    "unclosed_paren.rules": "2:24: unclosed '('",
    "unknown_statement.rules": "3:5: unknown statement 'relpace' (did you mean 'replace'?)",
    "missing_with.rules": "3:15: expected 'with' after the replaced variables, found 'LReLU_TRT'",
    "bad_literal.rules": "2:44: bad number literal '0.1.2'",
    "bad_port.rules": "2:27: expected a port number after ':', found 'first'",
    "unterminated_string.rules": "2:44: unterminated string",
    "bad_keyword.rules": "1:1: unknown statement 'rul' (did you mean 'rule'?)",
    "missing_pattern.rules": "3:5: expected an op pattern after 'match', found 'remove'",
    "missing_colon.rules": "2:5: expected ':' after the rule header, found 'match'",
    "bad_kind.rules": "3:14: unknown attribute kind 'flaot' (did you mean 'float'?)",
    "missing_comma.rules": "3:50: expected ',' or '}', found 'alpha'",
    "python_code.rules": "2:29: unknown function '__import__'",
    "no_match.rules": "1:1: rule 'nobody' needs a 'match' or 'scope' statement",
    "bad_slot.rules": "3:20: expected a slot (N, + or ^), found 'first'",
    "unclosed_list.rules": "3:43: expected ',' or ']', found '}'",
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_malformed_files_report_exact_position(name: str) -> None:
    path = BAD / name
    with pytest.raises(RuleSyntaxError) as info:
        load_rules(path)
    assert str(info.value).startswith(f"{path}:{BAD_CASES[name]}")


def test_every_bad_file_has_a_case() -> None:
    assert {p.name for p in BAD.glob("*.rules")} == set(BAD_CASES)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("match y = X(x)", "1:1: 'match' must be inside a rule"),
        ("rule a:\n match y = X(x) where y.a <\n remove y", "3:2: expected an expression"),
        ("rule a:\n match y = X(x, 5)", "2:17: expected a pattern, found '5'"),
        (
            "rule a:\n match y = X(x)\n replace y with F(x) { a = 1, a = 2 }",
            "3:31: field 'a' is set twice",
        ),
        ('rule a:\n scope r = regex "a("\n collapse r into F(r.in[0])', "2:12: bad regex"),
        ("rule a:\n match y = X(x) where y.shape[1 == 2", "2:30: unclosed '['"),
        ("rule a:\n match y = X(x) where y.a.b == 1", "2:26: only 'x.attr.NAME'"),
        (
            "rule a:\n match y = X(x)\n insert t = T(x, const(int33, [1]))",
            "3:24: unknown dtype 'int33'",
        ),
        (
            "rule a:\n match y = X(x)\n remove y\n )",
            "4:2: expected 'rule', 'use', 'targets', 'formats', 'commutative', 'param' or 'let'",
        ),
        ("rule a:\n match y = X(x...)", "2:14: "),
        ("rule a:\n match y = X(Y(a)...)", "2:14: only a captured variable can be variadic"),
        ("rule a:\n match y = X(..., x)", "2:14: a trailing '...' must be the last operand"),
        ("rule a:\n remove y\n match y = X(x)", "3:2: 'match' must come before the rule's actions"),
        ('rule a:\n scope r = "A"\n match y = X(x)', "3:2: rule 'a' mixes 'scope' and 'match'"),
        ('rule a:\n match y = X(x)\n replace y with F(x) as "a" as "b"', "3:29: 'as' given twice"),
    ],
)
def test_more_syntax_errors(text: str, expected: str) -> None:
    if expected == "2:14: ":  # `x...` outside a list is fine: a one-operand variadic capture
        assert parse_rules(text, "f").rules[0].body.roots[0].operands[0].variadic
        return
    with pytest.raises(RuleSyntaxError) as info:
        parse_rules(text, "f")
    assert str(info.value).startswith(f"f:{expected}")


def test_python_code_is_rejected_and_never_runs(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    calls: list[object] = []
    monkeypatch.setattr("builtins.__import__", _spy(calls, __import__))
    for text in (
        f"import os\nos.system('touch {marker}')\n",
        f"rule r:\n match y = Relu(x) where __import__('os').system('touch {marker}')\n",
        f"rule r:\n match y = __import__('os').system('touch {marker}')\n",
        f"rule r:\n match y = Relu(x)\n set y.a = eval(\"open('{marker}', 'w')\")\n",
        "rule r:\n match y = Relu(x) where y.__class__.__bases__ == 1\n remove y\n",
    ):
        try:
            parse_rules(text, "evil.rules")
        except RuleSyntaxError:
            pass
        else:
            # the last one parses: dunder names are only data (a property name), never evaluated
            assert "__class__" in text
    assert not marker.exists()
    assert not [c for c in calls if c in ("os", "subprocess")]


def _spy(calls: list[object], real):
    """An __import__ that records what is imported."""

    def spy(name, *args, **kwargs):
        calls.append(name)
        return real(name, *args, **kwargs)

    return spy


def test_load_rules_missing_file(tmp_path: Path) -> None:
    from surgery.errors import RuleError

    with pytest.raises(RuleError, match="cannot read rule file"):
        load_rules(tmp_path / "nope.rules")


def test_empty_operand_and_argument_lists() -> None:
    rule = one_rule(
        "match w = Const()\nmatch y = Conv2D(x, w)\ninsert n = NoOp()\n"
        "replace y with F(input: x, filter = w)"
    )
    assert rule.body.roots[0].operands == () and rule.actions[0].call.args == ()
    assert [a.role for a in rule.actions[1].call.args] == ["input", "filter"]


def test_float_literals_with_an_exponent() -> None:
    rule_file = parse_rules("rule r:\n match y = LeakyRelu(x) where y.alpha < 1e-3 or "
                            "y.alpha == 2.5E+2 or y.alpha == 3e2\n remove y")  # fmt: skip
    values = [c.right.value for c in rule_file.rules[0].body.where.operands]
    assert values == [0.001, 250.0, 300.0]
