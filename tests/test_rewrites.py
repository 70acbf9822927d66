"""Rewrite actions, each on its own, on small graphs (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest
from test_matcher import const, make_graph

from surgery.engine import apply_rules
from surgery.errors import RewriteRefused, RuleError
from surgery.graph import Graph
from surgery.ports import TensorRef
from surgery.rule_parser import parse_rules
from surgery.tensor_values import to_numpy


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
