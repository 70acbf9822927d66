"""Matcher: each pattern construct on its own, on small graphs built from NodeDefs."""

from __future__ import annotations

import numpy as np
import pytest

from surgery.engine.explain import explain_at
from surgery.engine.matcher import RuleMatcher
from surgery.errors import RuleError
from surgery.ir.attrs import make_attr
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef
from surgery.ir.protos import GraphDef
from surgery.lang import rule_ast as ast
from surgery.lang.rule_parser import parse_rules


def make_graph(spec: list[tuple]) -> Graph:
    """[(name, op, [inputs], {attr: (value, kind)}), ...] -> Graph (no TensorFlow needed)."""
    graph_def = GraphDef()
    for name, op, inputs, *rest in spec:
        node = graph_def.node.add(name=name, op=op)
        node.input.extend(inputs)
        for key, (value, kind) in (rest[0] if rest else {}).items():
            node.attr[key].CopyFrom(make_attr(value, kind))
    return Graph(graph_def)


def const(name: str, value, dtype: str = "float32") -> tuple:
    attrs = {"value": (np.asarray(value, dtype), "tensor"), "dtype": (dtype, "type")}
    return (name, "Const", [], attrs)


def rule_of(text: str, name: str | None = None) -> tuple[ast.Rule, ast.RuleFile]:
    rf = parse_rules(text, "t.rules")
    rule = rf.rules[0] if name is None else next(r for r in rf.rules if r.name == name)
    return rule, rf


def matches(graph: Graph, text: str) -> list:
    rule, rf = rule_of(text)
    return list(RuleMatcher(graph, rule, rf.commutative).matches())


L = ast.Loc("ast.rules", 1, 1)


@pytest.fixture
def small() -> Graph:
    return make_graph([
        ("x", "Placeholder", [], {"dtype": ("float32", "type")}),
        const("w", np.ones((3, 3, 1, 4))),
        const("alpha", 0.2),
        ("conv", "Conv2D", ["x", "w"],
         {"data_format": ("NHWC", "string"), "T": ("float32", "type")}),
        ("lrelu", "LeakyRelu", ["conv"], {"alpha": (0.1, "float")}),
        ("lrelu_big", "LeakyRelu", ["conv"], {"alpha": (1.5, "float")}),
        ("relu6", "Relu6", ["lrelu"]),
        ("mul", "Mul", ["alpha", "conv"]),
        ("sub", "Sub", ["alpha", "conv"]),
        ("max", "Maximum", ["mul", "conv"]),
        ("split_dim", "Const", [], {"value": (np.asarray(3, "int32"), "tensor")}),
        ("split", "Split", ["split_dim", "max"], {"num_split": (3, "int")}),
        ("a", "AddV2", ["split:1", "split:2"]),
        ("axis", "Const", [], {"value": (np.asarray(3, "int32"), "tensor")}),
        ("cat", "ConcatV2", ["split", "a", "relu6", "axis"], {"N": (3, "int")}),
    ])  # fmt: skip


# ------------------------------------------------------------------ built from the AST directly
def test_ast_built_rule_matches_op_and_binds_tensors(small: Graph) -> None:
    pat = ast.OpPattern(("LeakyRelu",), (ast.Operand(ast.Capture("x", L), L),), L, var="y")
    rule = ast.Rule("r", ast.MatchStmt((pat,), L), (), L)
    found = list(RuleMatcher(small, rule).matches())
    assert [m.anchor for m in found] == ["lrelu", "lrelu_big"]
    assert found[0].bindings == {"y": TensorRef("lrelu", 0), "x": TensorRef("conv", 0)}
    assert found[0].interior == ("lrelu",)


def test_ast_where_on_attribute(small: Graph) -> None:
    where = ast.Compare("<", ast.Ref("y", L, prop="alpha"), ast.Literal(1, L), L)
    pat = ast.OpPattern(("LeakyRelu",), (ast.Operand(ast.Wildcard(L), L),), L, var="y")
    rule = ast.Rule("r", ast.MatchStmt((pat,), L, where=where), (), L)
    assert [m.anchor for m in RuleMatcher(small, rule).matches()] == ["lrelu"]


# ------------------------------------------------------------------ from rule text
def test_alternatives_and_any_op(small: Graph) -> None:
    assert [m.anchor for m in matches(small, "rule r:\n match y = Relu6|LeakyRelu(_)")] == [
        "lrelu", "lrelu_big", "relu6",
    ]  # fmt: skip
    found = matches(small, "rule r:\n match y = *(lrelu_in = LeakyRelu(_))")
    assert [m.anchor for m in found] == ["relu6"]


def test_wrong_arity_does_not_match_without_extra(small: Graph) -> None:
    assert matches(small, "rule r:\n match y = Conv2D(x)") == []
    assert [m.anchor for m in matches(small, "rule r:\n match y = Conv2D(x, ...)")] == ["conv"]


def test_shared_capture_requires_same_tensor(small: Graph) -> None:
    # max = Maximum(mul, conv) and mul = Mul(alpha, conv): conv is shared
    found = matches(small, "rule r:\n match m = Maximum(Mul(_, c), c)")
    assert [f.bindings["c"] for f in found] == [TensorRef("conv")]
    assert matches(small, "rule r:\n match m = Maximum(c, c)") == []
    # Mul commutes, so `Mul(c, _)` also finds conv in the second slot
    assert len(matches(small, "rule r:\n match m = Maximum(Mul(c, _), c)")) == 1


def test_ports_bind_tensors_not_nodes(small: Graph) -> None:
    found = matches(small, "rule r:\n match a = AddV2(Split(_, _):1, Split(_, _):2)")
    assert len(found) == 1 and found[0].interior == ("a", "split")
    # `s:2` = port 2 of the node bound to s
    found = matches(small, "rule r:\n match a = AddV2(s:1, s:2)")
    assert found[0].bindings["s"] == TensorRef("split", 0)
    assert len(matches(small, "rule r:\n match a = AddV2(s:2, s:1)")) == 1  # AddV2 commutes


def test_capture_port_must_agree(small: Graph) -> None:
    assert matches(small, "rule r:\n match a = AddV2(Split(_, _):0, _)") == []


def test_roles_and_positions(small: Graph) -> None:
    found = matches(small, "rule r:\n match c = Conv2D(filter: w, input: x)")
    assert found[0].bindings["w"] == TensorRef("w") and found[0].bindings["x"] == TensorRef("x")
    found = matches(small, "rule r:\n match s = Split(value: v, split_dim: d)")
    assert found[0].bindings["v"] == TensorRef("max")
    rule, _ = rule_of("rule r:\n match c = Conv2D(kernel: w, ...)")
    m = RuleMatcher(small, rule)
    assert m.match_at("conv") is None
    assert "no input role 'kernel'" in m.first_failure.reason
    assert "input, filter" in m.first_failure.reason


def test_variadic_operands(small: Graph) -> None:
    found = matches(small, "rule r:\n match c = ConcatV2(xs..., axis: a)")
    assert found[0].bindings["xs"] == (TensorRef("split"), TensorRef("a"), TensorRef("relu6"))
    assert found[0].bindings["a"] == TensorRef("axis")
    text = "rule r:\n match c = ConcatV2(values: xs..., axis: a) where len(xs) == 3"
    found = matches(small, text)
    assert len(found) == 1
    found = matches(small, "rule r:\n match c = ConcatV2(first, rest..., last)")
    assert found[0].bindings["rest"] == (TensorRef("a"), TensorRef("relu6"))


def test_commutative_tries_swapped_order_only_for_declared_ops(small: Graph) -> None:
    # mul = Mul(alpha, conv): Mul is commutative, so the Const may be written second
    assert len(matches(small, "rule r:\n match m = Mul(Conv2D(_, _), c)")) == 1
    # sub = Sub(alpha, conv): Sub is not, so no swapped attempt
    assert matches(small, "rule r:\n match m = Sub(Conv2D(_, _), c)") == []
    assert len(matches(small, "commutative Sub\nrule r:\n match m = Sub(Conv2D(_, _), c)")) == 1


def test_const_value_shape_dtype_predicates(small: Graph) -> None:
    assert len(matches(small, "rule r:\n match m = Mul(k, _) where k.value == 0.2")) == 1
    assert matches(small, "rule r:\n match m = Mul(k, _) where k.value > 1") == []
    found = matches(small, "rule r:\n match c = Conv2D(_, w) where w.shape == [3, 3, 1, 4]")
    assert len(found) == 1
    found = matches(small, "rule r:\n match c = Conv2D(_, w) where w.shape[3] == 4 and w.rank == 4")
    assert len(found) == 1
    found = matches(small, 'rule r:\n match c = Conv2D(x, _) where c.dtype == "float32"')
    assert len(found) == 1
    found = matches(small, 'rule r:\n match c = Conv2D(x, _) where c.data_format == "NHWC"')
    assert len(found) == 1


def test_unknown_shape_fails_with_reason(small: Graph) -> None:
    rule, _ = rule_of("rule r:\n match y = LeakyRelu(x) where x.shape[0] == 1")
    m = RuleMatcher(small, rule)
    assert m.match_at("lrelu") is None
    assert "shape unknown" in m.first_failure.reason
    assert (m.first_failure.loc.line, m.first_failure.loc.col) == (2, 31)  # the `x.shape` ref


def test_value_only_from_const(small: Graph) -> None:
    rule, _ = rule_of("rule r:\n match y = LeakyRelu(x) where x.value == 0")
    m = RuleMatcher(small, rule)
    assert m.match_at("lrelu") is None
    assert "not a Const" in m.first_failure.reason


def test_where_failure_names_values(small: Graph) -> None:
    rule, _ = rule_of("rule r:\n match y = LeakyRelu(x) where y.alpha < 1")
    m = RuleMatcher(small, rule)
    assert m.match_at("lrelu_big") is None
    assert "y.alpha < 1" in m.first_failure.reason and "1.5" in m.first_failure.reason


def test_properties_op_name_scope_consumers(small: Graph) -> None:
    text = (
        'rule r:\n match y = LeakyRelu(x) where x.op == "Conv2D" and x.consumers == 5'
        ' and y.scope == ""'
    )
    assert len(matches(small, text)) == 2
    text = 'rule r:\n match y = LeakyRelu(_) where matches(y.name, "lrelu_*")'
    assert [m.anchor for m in matches(small, text)] == ["lrelu_big"]
    text = 'rule r:\n match y = LeakyRelu(_) where y.name in ["lrelu", "zz"] or y.alpha > 1'
    assert len(matches(small, text)) == 2


def test_dag_pattern_over_several_roots(small: Graph) -> None:
    # two roots sharing conv: the Maximum and the Sub that both read it
    text = "rule r:\n match m = Maximum(_, c); s = Sub(_, c)"
    found = matches(small, text)
    assert len(found) == 1
    assert found[0].bindings["s"] == TensorRef("sub") and found[0].interior == ("max", "sub")
    assert matches(small, "rule r:\n match m = Maximum(_, c); s = Sub(c, _)") == []


def test_anchor_is_op_index_not_full_scan(small: Graph) -> None:
    rule, _ = rule_of("rule r:\n match y = LeakyRelu(_)")
    assert RuleMatcher(small, rule).candidates() == ["lrelu", "lrelu_big"]


# ------------------------------------------------------------------ scopes
@pytest.fixture
def scoped() -> Graph:
    return make_graph([
        ("in", "Placeholder", []),
        ("fpn_p3upsampled/a", "Relu", ["in"]),
        ("fpn_p3upsampled/b", "Relu", ["fpn_p3upsampled/a"]),
        ("fpn_p4upsampled/a", "Relu", ["in"]),
        ("fpn_p6upsampled/a", "Relu", ["in"]),
        ("ROI", "Relu", ["in"]),
        ("ROI/x/deep", "Relu", ["ROI"]),
        ("ROI/keep", "Unpack", ["ROI/x/deep"], {"num": (3, "int")}),
        ("ROI/xtra", "Relu", ["in"]),
        ("out1", "Identity", ["ROI/keep:1"]),
        ("out2", "Identity", ["ROI/keep:2"]),
        ("out3", "Identity", ["fpn_p3upsampled/b"]),
    ])  # fmt: skip


def scope_matches(graph: Graph, text: str) -> list:
    return matches(graph, text + "\n collapse r into Foo(r.in[0])")


def test_scope_glob_alternation_one_match_per_instance(scoped: Graph) -> None:
    found = scope_matches(scoped, 'rule r:\n scope r = "fpn_p{3,4,5}upsampled"')
    assert [m.anchor for m in found] == ["fpn_p3upsampled", "fpn_p4upsampled"]
    inst = found[0].scope
    assert inst.nodes == ("fpn_p3upsampled/a", "fpn_p3upsampled/b")
    assert inst.enters == (TensorRef("in"),) and inst.leaves == (TensorRef("fpn_p3upsampled/b"),)


def test_scope_star_stays_in_segment_double_star_any_depth(scoped: Graph) -> None:
    found = scope_matches(scoped, 'rule r:\n scope r = "fpn_*"')
    assert len(found) == 3
    found = scope_matches(scoped, 'rule r:\n scope r = "ROI/**"')
    assert [m.anchor for m in found] == ["ROI"]
    assert set(found[0].scope.nodes) == {"ROI", "ROI/x/deep", "ROI/keep", "ROI/xtra"}


def test_scope_multi_segment_glob_selects_deeper_nodes(scoped: Graph) -> None:
    found = scope_matches(scoped, 'rule r:\n scope r = "ROI/x"')
    assert [m.anchor for m in found] == ["ROI/x"]
    assert found[0].scope.nodes == ("ROI/x/deep",)
    found = scope_matches(scoped, 'rule r:\n scope r = "{ROI/x,fpn_p4upsampled}"')
    assert [m.anchor for m in found] == ["fpn_p4upsampled", "ROI/x"]
    found = scope_matches(scoped, 'rule r:\n scope r = "ROI/x/deep"')  # a node's own name
    assert [m.scope.nodes for m in found] == [("ROI/x/deep",)]


def test_scope_exclusion_and_ordered_interface(scoped: Graph) -> None:
    found = scope_matches(scoped, 'rule r:\n scope r = "ROI" except "ROI/x*"')
    inst = found[0].scope
    assert inst.nodes == ("ROI", "ROI/keep")
    assert inst.enters == (TensorRef("in"), TensorRef("ROI/x/deep"))
    assert inst.leaves == (TensorRef("ROI", 0), TensorRef("ROI/keep", 1), TensorRef("ROI/keep", 2))


def test_scope_regex(scoped: Graph) -> None:
    found = scope_matches(scoped, 'rule r:\n scope r = regex "fpn_p[0-9]+upsampled"')
    assert len(found) == 3


def test_scope_contract_violation_is_an_error_naming_tensors(scoped: Graph) -> None:
    with pytest.raises(RuleError) as err:
        scope_matches(scoped, 'rule r:\n scope r = "ROI" enters 1 leaves 1')
    text = str(err.value)
    assert "t.rules:2:2" in text and "'r'" in text and "scope 'ROI'" in text
    assert "ROI/keep:1" in text and "ROI/keep:2" in text and "leave, not 1" in text


def test_scope_where(scoped: Graph) -> None:
    found = scope_matches(scoped, 'rule r:\n scope r = "fpn_*"\n where r.nodes > 1')
    assert [m.anchor for m in found] == ["fpn_p3upsampled"]


# ------------------------------------------------------------------ explain
def test_explain_names_first_failed_predicate(small: Graph) -> None:
    rule, _ = rule_of("rule r:\n match y = LeakyRelu(c = Conv2D(x, w)) where y.alpha < 1")
    ex = explain_at(RuleMatcher(small, rule), "lrelu_big")
    assert not ex.matched and "y.alpha < 1" in ex.failure.reason
    assert str(ex.failure).startswith("t.rules:2:")
    ex = explain_at(RuleMatcher(small, rule), "conv")
    assert "conv is Conv2D, pattern wants LeakyRelu" in ex.failure.reason
    assert (ex.failure.loc.line, ex.failure.loc.col) == (2, 8)
    assert any("anchored at 'lrelu'" in n for n in ex.notes)
    ex = explain_at(RuleMatcher(small, rule), "lrelu")
    assert ex.matched and ex.match.bindings["w"] == TensorRef("w")


def test_explain_scope(scoped: Graph) -> None:
    rule, _ = rule_of('rule r:\n scope r = "ROI" except "ROI/x*"\n collapse r into F(r.in[0])')
    assert explain_at(RuleMatcher(scoped, rule), "ROI/keep").matched
    ex = explain_at(RuleMatcher(scoped, rule), "ROI/x/deep")
    assert "excluded" in ex.failure.reason
    ex = explain_at(RuleMatcher(scoped, rule), "out1")
    assert "no namespace" in ex.failure.reason


def test_role_pattern_on_node_with_fewer_inputs_does_not_match() -> None:
    # e.g. a CropAndResize plugin node a rule just created, with 2 inputs instead of TF's 4
    g = make_graph([("i", "Placeholder", []), ("b", "Placeholder", []),
                    ("cr", "CropAndResize", ["i", "b"])])  # fmt: skip
    text = "rule r:\n match y = CropAndResize(image: i, boxes: b, box_ind: n, crop_size: c)\n"
    assert matches(g, text) == []
    rule, rf = rule_of(text)
    failure = explain_at(RuleMatcher(g, rule, rf.commutative), "cr").failure
    assert failure is not None and "has 2 inputs" in failure.reason
