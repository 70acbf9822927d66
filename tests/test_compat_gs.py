"""The graphsurgeon-compatible API on small hand-made graphs: ports, control edges, raw edits."""

from __future__ import annotations

import numpy as np
import pytest

from surgery.compat import graphsurgeon as gs
from surgery.errors import GraphError
from surgery.ir.protos import GraphDef


def make_graph(spec: list[tuple[str, str, list[str]]]) -> gs.DynamicGraph:
    """(name, op, inputs) triples -> DynamicGraph."""
    graph_def = GraphDef()
    for name, op, inputs in spec:
        graph_def.node.add(name=name, op=op, input=inputs)
    return gs.DynamicGraph(graph_def)


def inputs(graph: gs.DynamicGraph, name: str) -> list[str]:
    return list(graph.node_map[name].input)


@pytest.fixture
def ns_graph() -> gs.DynamicGraph:
    """x -> ns/{a, split(2 outputs), c} -> consumers outside, with ports and control edges."""
    return make_graph(
        [
            ("x", "Placeholder", []),
            ("w", "Const", []),
            ("ns/a", "Relu", ["x", "^w"]),
            ("ns/split", "Split", ["w", "ns/a"]),
            ("ns/inner/c", "Add", ["ns/split", "ns/split:1"]),
            ("ns/keep", "Identity", ["ns/inner/c"]),
            ("y0", "Identity", ["ns/split"]),
            ("y1", "Identity", ["ns/split:1"]),
            ("y2", "Add", ["ns/inner/c", "ns/keep"]),
            ("y3", "NoOp", ["^ns/a"]),
        ]
    )


def test_collapse_keeps_ports_controls_and_order(ns_graph):
    plugin = gs.create_plugin_node("P", op="My_TRT", k=3, on=True)
    ns_graph.collapse_namespaces({"ns": plugin})
    assert inputs(ns_graph, "P") == ["x", "w", "^w"]
    assert inputs(ns_graph, "y0") == ["P"]
    assert inputs(ns_graph, "y1") == ["P:1"]  # graphsurgeon rewired this to port 0
    assert inputs(ns_graph, "y2") == ["P", "P"]  # both slots kept
    assert inputs(ns_graph, "y3") == ["^P"]  # still a control edge
    assert list(plugin.input) == ["x", "w", "^w"]  # the script's object is filled, as before
    assert ns_graph.node_map["P"].attr["on_u_bool"].b is True
    ns_graph.graph.check()


def test_collapse_exclude_nodes_and_output_remap(ns_graph):
    plugin = gs.create_plugin_node("P", op="My_TRT")
    keep = ns_graph.find_nodes_by_path("ns/keep")
    ns_graph.collapse_namespaces({"ns/": plugin}, exclude_nodes=keep, outputs={"ns/split:1": 2})
    assert "ns/keep" in ns_graph.node_map
    assert inputs(ns_graph, "ns/keep") == ["P"]
    assert inputs(ns_graph, "y1") == ["P:2"]
    assert inputs(ns_graph, "y2") == ["P", "ns/keep"]
    with pytest.raises(GraphError, match="ns/none"):
        ns_graph.collapse_namespaces({"q": plugin}, exclude_nodes=["ns/none"])


def test_collapse_longest_prefix_and_plugin_to_plugin(ns_graph):
    outer = gs.create_plugin_node("Outer", op="O_TRT")
    inner = gs.create_plugin_node("Inner", op="I_TRT")
    ns_graph.collapse_namespaces({"ns": outer, "ns/inner": inner, "ns/split:1": outer})
    assert inputs(ns_graph, "Inner") == ["Outer", "Outer:1"]
    # ns/keep (in Outer) reads ns/inner/c (in Inner): the namespaces feed each other.
    assert inputs(ns_graph, "Outer") == ["x", "w", "Inner", "^w"]
    assert "ns/keep" not in ns_graph.node_map
    assert inputs(ns_graph, "y2") == ["Inner", "Outer"]
    with pytest.raises(GraphError, match="cycle"):
        ns_graph.graph.check()


def test_collapse_plugin_named_like_a_collapsed_node():
    graph = make_graph(
        [
            ("x", "Placeholder", []),
            ("ROI", "Relu", ["x"]),
            ("ROI/b", "Relu", ["ROI"]),
            ("y", "Neg", ["ROI/b"]),
        ]
    )
    graph.collapse_namespaces({"ROI": gs.create_plugin_node("ROI", op="ProposalLayer_TRT")})
    assert inputs(graph, "ROI") == ["x"] and inputs(graph, "y") == ["ROI"]
    graph.graph.check()
    clash = gs.create_plugin_node("y", op="X")
    with pytest.raises(GraphError, match="clash"):
        graph.collapse_namespaces({"ROI": clash})


def test_raw_nodedef_edits_reach_the_index():
    graph = make_graph([("a", "Const", []), ("b", "Const", []), ("c", "Add", ["a"])])
    graph.node_map["c"].input.insert(0, "b")
    node = graph.node_map["c"]
    node.op = "AddV2"
    node.input.append("^a")
    assert [n.name for n in graph.node_outputs["b"]] == ["c"]
    assert [n.name for n in graph.find_nodes_by_op("AddV2")] == ["c"]
    assert graph.find_nodes_by_op("Add") == []
    del node.input[:]
    graph.remove("a")  # nothing reads a any more: no input is dropped from c
    assert inputs(graph, "c") == []
    node.name = "d"
    assert "d" in graph.node_map and "c" not in graph.node_map
    graph.graph.check()


def test_edits_through_a_held_input_list_reach_the_output():
    graph = make_graph([("a", "Const", []), ("b", "Identity", [])])
    held = graph.node_map["b"].input
    held.append("a")
    assert list(graph.as_graph_def().node[1].input) == ["a"]
    assert [n.name for n in graph.graph_outputs] == ["b"]


def test_remove_drops_inputs_and_exclusive_dependencies():
    graph = make_graph(
        [
            ("k", "Const", []),
            ("r", "Identity", ["k"]),
            ("shared", "Const", []),
            ("x", "Add", ["r", "shared"]),
            ("y", "Neg", ["shared"]),
            ("z", "Add", ["x:0", "y", "^x"]),
        ]
    )
    graph.remove(graph.node_map["x"], remove_exclusive_dependencies=True)
    assert sorted(graph.node_map) == ["shared", "y", "z"]
    assert inputs(graph, "z") == ["y"]
    with pytest.raises(gs.NodeNotFound, match="'nope'"):
        graph.remove("nope")
    with pytest.raises(KeyError):
        graph.node_map["nope"]


def test_forward_inputs_with_ports_and_controls():
    graph = make_graph(
        [
            ("a", "Const", []),
            ("b", "Const", []),
            ("g", "NoOp", []),
            ("id", "IdentityN", ["a", "b", "^g"]),
            ("u", "Add", ["id:1", "id"]),
            ("v", "NoOp", ["^id"]),
        ]
    )
    graph.forward_inputs(graph.find_nodes_by_op("IdentityN"))
    assert inputs(graph, "u") == ["b", "a", "b", "^g"]
    assert inputs(graph, "v") == ["^a", "^b", "^g"]
    graph.graph.check()


def test_connect_disconnect_sort_append():
    graph = make_graph([("a", "Split", []), ("b", "Const", []), ("c", "Concat", ["b"])])
    graph.connect("a:1", "c")
    graph.connect(graph.node_map["a"], "c")
    assert inputs(graph, "c") == ["b", "a:1", "a"]
    graph.sort("c", ["a", "a:1"])
    assert inputs(graph, "c") == ["a", "a:1", "b"]
    graph.disconnect("a:1", "c")
    assert inputs(graph, "c") == ["a", "b"]
    graph.disconnect("a", "c")
    assert inputs(graph, "c") == ["b"]
    with pytest.raises(GraphError, match="not an input"):
        graph.disconnect("a", "c", error_if_not_connected=True)
    with pytest.raises(GraphError, match="already"):
        graph.connect("b", "c", error_if_connected=True)
    graph.append(gs.create_node("d", op="Neg", inputs=["c"]))
    graph.extend([gs.create_node("e", op="Neg", inputs=["d"])])
    graph.add(gs.create_node("f", op="Neg", inputs=["e"]))
    with pytest.raises(GraphError, match="already exists"):
        graph.append(gs.create_node("d", op="Neg"))
    assert [n.name for n in graph.graph_outputs] == ["f"]
    assert [n.name for n in graph.find_node_inputs("f")] == ["e"]
    with pytest.raises(gs.NodeNotFound, match="'zz'"):
        graph.connect("zz", "c")


def test_searches():
    graph = make_graph(
        [
            ("in", "Placeholder", []),
            ("s/conv", "Conv2D", ["in"]),
            ("s/relu", "Relu", ["s/conv"]),
            ("t/conv", "Conv2D", ["s/relu"]),
            ("t/relu", "Relu", ["t/conv:0"]),
        ]
    )
    assert [n.name for n in graph.find_nodes_by_name("relu")] == ["s/relu", "t/relu"]
    assert [n.name for n in graph.find_nodes_by_name("re.*")] == ["s/relu", "t/relu"]
    assert graph.find_nodes_by_name("rel") == []  # whole-string matches only
    assert [n.name for n in graph.find_nodes_by_path(["t/.*"])] == ["t/conv", "t/relu"]
    assert [n.name for n in graph.find_nodes_by_op({"Relu", "Conv2D"})][:2] == ["s/conv", "s/relu"]
    chains = graph.find_node_chains_by_op(["Conv2D", "Relu"])
    assert [[n.name for n in c] for c in chains] == [["s/conv", "s/relu"], ["t/conv", "t/relu"]]
    assert [n.name for n in graph.find_node_inputs_by_op("t/conv", "Relu")] == ["s/relu"]
    assert [n.name for n in graph.find_node_inputs_by_name("t/relu", "conv")] == ["t/conv"]
    assert [n.name for n in graph.graph_inputs] == ["in"]
    assert graph[0].name == "in" and graph["t/relu"].op == "Relu" and len(graph) == 5
    assert [n.name for n in graph] == list(graph.node_map)


def test_node_helpers():
    node = gs.create_node(
        "c", op="Const", dtype=np.float32, value=np.arange(6, dtype=np.float32).reshape(2, 3)
    )
    assert gs.extract_numpy_array(node).shape == (2, 3)
    ph = gs.create_node("p", op="Placeholder", shape=[1, 3, -1])
    assert gs.shape(ph) == (1, 3, -1)
    with pytest.raises(GraphError, match="'c'"):
        gs.shape(node)
    with pytest.raises(TypeError, match="k"):
        gs.create_plugin_node("x", op="X", k={"a": 1})
    plugin = gs.create_plugin_node("x", op="X", flag=False, n=2, f=0.5, s="t", il=[1], fl=[1, 0.5])
    assert sorted(plugin.attr) == [
        "f_u_float",
        "fl_u_flist",
        "flag_u_bool",
        "il_u_ilist",
        "n_u_int",
        "s_u_str",
    ]
    assert gs.update_node(plugin, op="Y").op == "Y"
