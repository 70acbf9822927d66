"""Graph IR semantics: ports, control edges, index upkeep on edits, refusals, order checks."""

from __future__ import annotations

import gc
import sys

import pytest
from google.protobuf import text_format

from surgery.errors import GraphError
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef, parse_input, parse_tensor
from surgery.ir.protos import GraphDef

SMALL = """
node { name: "x" op: "Placeholder" }
node { name: "ns/dim" op: "Const" }
node { name: "ns/split" op: "Split" input: "ns/dim" input: "x"
       attr { key: "num_split" value { i: 3 } } }
node { name: "a" op: "AddV2" input: "ns/split:1" input: "ns/split:0" input: "^x" }
node { name: "b" op: "Mul" input: "ns/split:2" input: "ns/split" }
node { name: "out" op: "Identity" input: "a" input: "^b" }
"""


def small_graph() -> Graph:
    return Graph(text_format.Parse(SMALL, GraphDef()))


def test_port_parsing() -> None:
    assert parse_tensor("x") == parse_tensor("x:0") == TensorRef("x", 0)
    assert parse_tensor("x:1") == TensorRef("x", 1)
    assert parse_tensor("a/b:12") == TensorRef("a/b", 12)
    assert parse_input("^x") == (None, "x")
    assert str(TensorRef("x", 0)) == "x" and str(TensorRef("x", 2)) == "x:2"
    with pytest.raises(GraphError):
        parse_tensor("^x")


def test_consumers_by_port_and_control_edges_are_separate() -> None:
    g = small_graph()
    assert [(n.name, s) for n, s in g.consumers("ns/split:1")] == [("a", 0)]
    assert sorted((n.name, s) for n, s in g.consumers("ns/split")) == [("a", 1), ("b", 1)]
    assert g.consumers("ns/split:0") == g.consumers("ns/split")
    assert [n.name for n in g.control_consumers("x")] == ["a"]
    assert g.node("a").inputs == (TensorRef("ns/split", 1), TensorRef("ns/split", 0))
    assert g.node("a").controls == ("x",)
    assert g.used_ports("ns/split") == [0, 1, 2]
    assert [n.name for n in g.graph_outputs()] == ["out"]


def test_edits_update_both_ends_and_the_proto() -> None:
    g = small_graph()
    g.set_input("a", 0, "ns/split:2")
    assert [(n.name, s) for n, s in g.consumers("ns/split:2")] == [("a", 0), ("b", 0)]
    assert g.consumers("ns/split:1") == []
    assert list(g.node("a").proto.input) == ["ns/split:2", "ns/split:0", "^x"]
    moved = g.replace_uses("ns/split:2", "x")
    assert moved == 2 and g.consumers("ns/split:2") == []
    g.add_control("b", "x")
    assert list(g.node("b").proto.input) == ["x", "ns/split", "^x"]
    g.remove_control("a", "x")
    assert [n.name for n in g.control_consumers("x")] == ["b"]


def test_remove_refuses_a_tensor_still_read() -> None:
    g = small_graph()
    with pytest.raises(GraphError, match=r"'a' still reads ns/split(:0)? at input 1"):
        g.remove_nodes(["ns/split"])
    g.remove_nodes(["a", "b", "out", "ns/split"])
    assert "ns/split" not in g and g.consumers("ns/dim") == []
    assert g.control_consumers("x") == []


def test_removed_node_control_edges_are_dropped() -> None:
    g = small_graph()
    g.set_inputs("out", ["x"], controls=["b"])
    g.remove_nodes(["b"])
    assert g.node("out").controls == ()
    assert list(g.node("out").proto.input) == ["x"]


def test_unknown_node_suggests_close_names() -> None:
    g = small_graph()
    with pytest.raises(GraphError, match="did you mean 'ns/split'"):
        g.node("ns/splt")


def test_cycle_and_dangling_detection() -> None:
    g = small_graph()
    g.check()
    order = g.topological_order()
    assert order.index("ns/split") < order.index("a") < order.index("out")
    g.set_input("ns/split", 1, "out")
    with pytest.raises(GraphError, match="cycle"):
        g.check()
    g = small_graph()
    g.set_input("b", 0, "gone:1")
    assert g.dangling_inputs() == [("b", "gone:1")]
    with pytest.raises(GraphError, match="b reads missing gone:1"):
        g.check()


def test_duplicate_names_refused() -> None:
    g = small_graph()
    with pytest.raises(GraphError, match="already exists"):
        g.add_node("a", "NoOp")


def test_serialisation_is_deterministic_and_keeps_library() -> None:
    gd = text_format.Parse(SMALL, GraphDef())
    gd.library.function.add().signature.name = "body_fn"
    gd.versions.producer = 1882
    g = Graph(gd)
    out = g.to_graph_def()
    assert out.library.function[0].signature.name == "body_fn"
    assert out.versions.producer == 1882
    assert out.SerializeToString(deterministic=True) == gd.SerializeToString(deterministic=True)


def test_serialize_after_edits_equals_a_merged_graph_def() -> None:
    gd = text_format.Parse(SMALL, GraphDef())
    gd.library.function.add().signature.name = "body_fn"
    g = Graph(gd)
    g.remove_nodes(["out"])
    g.add_node("z", "Relu", ["a"])
    assert g.serialize() == g.to_graph_def().SerializeToString(deterministic=True)


def test_edges_from_a_missing_node_wait_for_a_node_of_that_name() -> None:
    g = small_graph()
    g.consumers("x")  # the consumer index exists before the edits below
    g.add_node("late", "Identity", ["ghost:1"], controls=["ghost"])
    assert [(n.name, s) for n, s in g.consumers("ghost:1")] == [("late", 0)]
    assert g.dangling_inputs() == [("late", "ghost:1"), ("late", "^ghost")]
    ghost = g.add_node("ghost", "Split", ["ns/dim", "x"])
    assert [(n.name, s) for n, s in g.consumers("ghost:1")] == [("late", 0)]
    assert g.control_consumers("ghost") == [g.node("late")] and g.is_read("ghost")
    with pytest.raises(GraphError, match="'late' still reads ghost:1 at input 0"):
        g.remove_nodes(["ghost"])
    taken, dropped = g._take(["ghost"], readers_ok=("ghost",))
    assert taken == [ghost] and dropped == [("late", "ghost")]
    assert [(n.name, s) for n, s in g.consumers("ghost:1")] == [("late", 0)]
    g._restore(taken, dropped)  # the very node back: its readers and controls again
    assert g.node("ghost") is ghost and g.node("late").controls == ("ghost",)
    assert g.readers("ghost") == [g.node("late")] and g.dangling_inputs() == []


def test_readers_in_port_then_graph_order_then_controls() -> None:
    g = Graph()
    g.add_node("s", "Split")
    g.add_node("early", "Neg", ["s:1"])
    g.add_node("late", "Neg", ["s:0"])
    g.add_node("ctl", "NoOp", controls=["s"])
    g.add_node("both", "AddV2", ["s:1"], controls=["s"])
    assert g.consumer_names("s") == ["late", "early", "both", "ctl"]
    assert [n.name for n in g.readers("s")] == g.consumer_names("s")
    assert g.consumer_names("early") == [] and not g.is_read("early")


def test_set_op_keeps_node_op_and_op_index_in_step() -> None:
    g = small_graph()
    g.set_op("b", "AddV2")
    assert g.node("b").op == g.node("b").proto.op == "AddV2"
    assert [n.name for n in g.nodes_by_op("AddV2")] == ["a", "b"]
    assert g.nodes_by_op("Mul") == [] and g.op_types()["AddV2"] == 2


def test_a_dropped_graph_with_a_while_loop_frees_its_nodes_without_the_cyclic_gc() -> None:
    # A loop's edges make its Nodes a reference cycle through the consumer index; a big graph's
    # objects are frozen out of the cyclic GC, so dropping the Graph must break the cycle itself.
    loop = """
    node { name: "x" op: "Placeholder" }
    node { name: "enter" op: "Enter" input: "x" }
    node { name: "merge" op: "Merge" input: "enter" input: "next" }
    node { name: "body" op: "Relu" input: "merge" }
    node { name: "next" op: "NextIteration" input: "body" }
    """
    g = Graph(text_format.Parse(loop, GraphDef()))
    assert [n.name for n in g.readers("next")] == ["merge"]  # the index (and the cycle) exists
    proto = g.node("merge").proto
    held = sys.getrefcount(proto)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        del g
        assert sys.getrefcount(proto) == held - 1  # the Node holding it is gone
    finally:
        if was_enabled:
            gc.enable()
