"""Rewrite actions, each on its own, on small graphs (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest
from test_matcher import const, make_graph

from surgery.engine.run import apply_rules
from surgery.errors import RewriteRefused, RuleError
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef
from surgery.ir.tensor_values import to_numpy
from surgery.lang.rule_parser import parse_rules


def run(graph: Graph, text: str):
    return apply_rules(graph, [parse_rules('use plugins "trt-8.6"\n' + text, "w.rules")])


@pytest.fixture
def g() -> Graph:
    return make_graph([
        ("x", "Placeholder", []),
        const("w", np.ones((1, 1, 3, 4))),
        ("w/read", "Identity", ["w"]),
        ("conv", "Conv2D", ["x", "w/read"], {"data_format": ("NHWC", "string")}),
        ("act", "LeakyRelu", ["conv"], {"alpha": (0.25, "float")}),
        ("ident", "Identity", ["act", "^w/read"]),
        ("out", "Relu", ["ident"]),
        ("side", "Identity", ["conv"]),
    ])  # fmt: skip


def test_replace_plugin_field_typed_from_schema(g: Graph) -> None:
    run(g, "rule r:\n match y = LeakyRelu(x)\n replace y with LReLU_TRT(x) { negSlope = y.alpha }")
    node = g.node("act")
    assert node.op == "LReLU_TRT" and node.attr["negSlope"].f == pytest.approx(0.25)
    assert g.node("ident").inputs == (TensorRef("act"),)


def test_replace_plugin_field_type_checked(g: Graph) -> None:
    with pytest.raises(RuleError) as err:
        run(g, 'rule r:\n match y = LeakyRelu(x)\n replace y with LReLU_TRT(x) { negSlope = "a" }')
    assert str(err.value).startswith("w.rules:4:32: rule 'r' at 'act'")
    assert "negSlope" in str(err.value)
    with pytest.raises(RuleError) as err:
        run(g, "rule r:\n match y = LeakyRelu(x)\n replace y with LReLU_TRT(x) { slope = 1.0 }")
    assert "no field 'slope'" in str(err.value)
    with pytest.raises(RuleError) as err:
        run(g, "rule r:\n match y = LeakyRelu(x)\n replace y with LReLU_TRT(x)")
    assert "needs field 'negSlope'" in str(err.value)


def test_tf_op_attrs_need_kinds(g: Graph) -> None:
    with pytest.raises(RuleError) as err:
        run(g, "rule r:\n match y = LeakyRelu(x)\n replace y with Relu(x) { T = 1 }")
    assert "explicit kind" in str(err.value)
    run(g, "rule r:\n match y = LeakyRelu(x)\n replace y with Relu(x) { T: type = float32 }")
    assert g.node("act").op == "Relu" and g.node("act").attr["T"].type == 1


def test_replace_removes_dead_interior_keeps_shared(g: Graph) -> None:
    # conv is interior but `side` still reads it: kept; w/read is a capture: kept
    text = 'rule r:\n match y = LeakyRelu(c = Conv2D(x, w))\n replace y with Foo(x, w) as "fused"'
    run(g, text)
    assert "conv" in g and g.node("fused").inputs == (TensorRef("x"), TensorRef("w/read"))
    assert g.node("ident").inputs == (TensorRef("fused"),)
    g.check()


def test_replace_refuses_unmapped_port() -> None:
    g2 = make_graph([("a", "Placeholder", []), ("s", "Split", ["d", "a"]), ("d", "Const", []),
                     ("u0", "Identity", ["s"]), ("u1", "Identity", ["s:1"])])  # fmt: skip
    with pytest.raises(RewriteRefused) as err:
        run(g2, "rule r:\n match s = Split(_, a)\n replace s with Foo(a)")
    text = str(err.value)
    assert text.startswith("w.rules:4:2: rule 'r' refused at 's'")
    assert "s:1 is still read by 'u1'" in text


def test_replace_maps_several_ports() -> None:
    g = make_graph([("a", "Placeholder", []), ("d", "Const", []), ("s", "Split", ["d", "a"]),
                    ("u0", "Identity", ["s"]), ("u1", "Identity", ["s:1"])])  # fmt: skip
    run(g, "rule r:\n match s = Split(_, a)\n replace s with Foo(a) outputs { s -> 1, s:1 -> 0 }")
    assert g.node("u0").inputs == (TensorRef("s", 1),) and g.node("u1").inputs == (TensorRef("s"),)


def test_remove_and_refusal(g: Graph) -> None:
    with pytest.raises(RewriteRefused) as err:
        run(g, "rule r:\n match y = LeakyRelu(_)\n remove y")
    assert "'ident'" in str(err.value)
    run(g, "rule r:\n match s = Identity(c = Conv2D(_, _)) where s.consumers == 0\n remove s")
    assert "side" not in g


def test_forward_bypasses_and_moves_controls(g: Graph) -> None:
    run(g, "rule r:\n match i = Identity(k = Const())\n forward i")
    assert "w/read" not in g
    assert g.node("conv").inputs[1] == TensorRef("w")
    assert g.node("ident").controls == ("w",)


def test_connect_disconnect_slots_and_controls(g: Graph) -> None:
    run(g, "rule r:\n match o = Relu(i = Identity(a, ...))\n connect a -> o[0]\n disconnect i[^]")
    assert g.node("out").inputs == (TensorRef("act"),) and g.node("ident").controls == ()
    run(g, "rule r2:\n match o = Relu(a) where o.consumers == 0\n connect a -> o[+]\n"
           " connect a -> o[^]\n set o.done: bool = true")  # fmt: skip
    assert g.node("out").inputs == (TensorRef("act"), TensorRef("act"))
    assert g.node("out").controls == ("act",)


def test_insert_is_named_after_root_and_const_arg(g: Graph) -> None:
    text = ("rule r:\n match c = Conv2D(x, w) where x.op != \"Transpose\"\n"
            " insert t = Transpose(x, const(int32, [0, 3, 1, 2])) { T: type = float32 }\n"
            " connect t -> c[0]")  # fmt: skip
    result = run(g, text)
    assert result.per_rule_counts == {"r": 1}
    assert g.node("conv").inputs[0] == TensorRef("conv/t")
    perm = g.node("conv/t").inputs[1].node
    assert perm == "conv/t/const"
    assert to_numpy(g.node(perm).attr["value"].tensor).tolist() == [0, 3, 1, 2]
    g.check()


def test_set_attr_typed_and_plugin_field(g: Graph) -> None:
    run(g, 'rule r:\n match c = Conv2D(_, _) where c.data_format == "NHWC"\n'
           ' set c.data_format: string = "NCHW"')  # fmt: skip
    assert g.node("conv").attr["data_format"].s == b"NCHW"
    with pytest.raises(RuleError) as err:
        run(g, "rule r:\n match c = Conv2D(_, _)\n set c.strides = [1, 1, 1, 1]")
    assert "give the kind" in str(err.value)
    run(g, "rule r:\n match y = LeakyRelu(x)\n replace y with LReLU_TRT(x) { negSlope = 0.5 }\n")
    run(g, "rule r:\n match y = LReLU_TRT(x) where y.negSlope > 0.4\n set y.negSlope = 0.1")
    assert g.node("act").attr["negSlope"].f == pytest.approx(0.1)


# ------------------------------------------------------------------ rules-library author reports
def scope_graph() -> Graph:
    """ns/ reads a and b, two tensors leave it (ns/cat, ns/s:1); `dead` feeds only ns/."""
    return make_graph([
        ("a", "Placeholder", [], {"dtype": ("float32", "type"),
                                  "_output_shapes": ([[1, 4]], "list(shape)")}),
        ("b", "Placeholder", []),
        ("k", "Const", [], {"dtype": ("int32", "type")}),
        ("dead", "Identity", ["k"]),
        ("ns/cat", "ConcatV2", ["a", "b", "dead"]),
        ("ns/s", "Split", ["k", "ns/cat"]),
        ("u0", "Identity", ["ns/cat"]),
        ("u1", "Identity", ["ns/s:1"]),
    ])  # fmt: skip


def test_collapse_default_outputs_map_leaving_tensors_in_order() -> None:
    g = scope_graph()
    run(g, 'rule r:\n scope s = "ns" leaves 2\n collapse s into Foo(s.in[0]) { T: type = float32 }')
    assert g.node("ns").op == "Foo"
    assert g.node("u0").inputs == (TensorRef("ns", 0),)  # s.out[0] = ns/cat -> 0
    assert g.node("u1").inputs == (TensorRef("ns", 1),)  # s.out[1] = ns/s:1 -> 1
    g.check()


def test_collapse_default_outputs_refused_when_plugin_has_fewer_outputs() -> None:
    g = scope_graph()
    before = g.serialize()
    with pytest.raises(RewriteRefused) as err:
        run(g, 'rule r:\n scope s = "ns"\n collapse s into LReLU_TRT(s.in[0]) { negSlope = 0.1 }')
    text = str(err.value)
    assert "2 tensors leaving scope 'ns'" in text and "only 1 output" in text
    assert g.serialize() == before


def test_collapse_list_inputs_and_outputs_star() -> None:
    g = scope_graph()
    g.remove_nodes(["u1"])
    run(g, 'rule r:\n scope s = "ns"\n'
           ' collapse s into FlattenConcat_TRT(s.in[*]) { axis = 1, ignoreBatch = 0 }')  # fmt: skip
    # entering tensors in documented order (producer position, then port)
    entering = tuple(TensorRef(n) for n in ("a", "b", "k", "dead"))
    assert g.node("ns").inputs == entering
    assert g.node("ns").op == "FlattenConcat_TRT" and g.node("u0").inputs == (TensorRef("ns"),)
    g2 = scope_graph()  # a list in `outputs` maps to consecutive ports
    run(g2, 'rule r:\n scope s = "ns"\n collapse s into Foo(s.in[*]) { T: type = float32 }\n'
            '  outputs { s.out[*] -> 1 }')  # fmt: skip
    assert g2.node("ns").inputs == entering
    assert g2.node("u0").inputs == (TensorRef("ns", 1),)
    assert g2.node("u1").inputs == (TensorRef("ns", 2),)


def test_scope_boundary_tensor_properties_in_expressions() -> None:
    g = scope_graph()
    text = ('rule r:\n scope s = "ns" where s.in[0].shape == [1, 4] and s.in[0].dtype == "float32"'
            ' and len(s.in[*]) == 4 and s.in("a").attr.dtype == "float32"\n'
            ' collapse s into Foo(s.in[0]) { T: type = float32, n: int = s.in[0].shape[1] }')
    run(g, text)
    assert g.node("ns").attr["n"].i == 4
    g2 = scope_graph()
    result = run(g2, 'rule r:\n scope s = "ns" where s.in[0].shape[0] == 2\n'
                     ' collapse s into Foo(s.in[0]) { T: type = float32 }')  # fmt: skip
    assert result.per_rule_counts == {"r": 0}


def test_prune_removes_dead_producer_cone_only() -> None:
    g = scope_graph()
    g.add_node("lonely", "Const")  # a graph output before the rules ran: kept
    run(g, 'rule r:\n scope s = "ns"\n collapse s into Foo(s.in[0]) { T: type = float32 }\n prune')
    assert "dead" not in g and "k" not in g  # only ns/ read them
    assert "b" in g and "a" in g and "lonely" in g  # placeholders and old outputs stay
    g.check()
    g2 = make_graph([("x", "Placeholder", []), ("w", "Const", []), ("r", "Identity", ["w"]),
                     ("y", "Mul", ["x", "r"]), ("o", "Identity", ["y"])])  # fmt: skip
    result = run(g2, "rule r:\n match y = Mul(x, _)\n replace y with Relu(x) { T: type = float32 }"
                     "\n prune")  # fmt: skip
    assert sorted(g2.names) == ["o", "x", "y"]
    removed = [c.node for c in result.changes if c.kind == "remove_node"]
    assert removed == ["y", "r", "w"]
