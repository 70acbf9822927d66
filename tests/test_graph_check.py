"""surgery.ops.graph_check: an input graph's structural defects, each with its nodes and one
line."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_matcher import make_graph

from surgery.errors import GraphError, ModelLoadError
from surgery.ir import model_io
from surgery.ir.graph import Graph
from surgery.ops.graph_check import Defect, find_defects, refuse_invalid
from surgery.ops.opdefs import tensorflow_available

X = ("x", "Placeholder", [], {"dtype": ("float32", "type")})


def kinds(defects: list[Defect]) -> list[str]:
    return [d.kind for d in defects]


def test_a_real_graph_has_no_defects(box3d_pb: Path) -> None:
    assert find_defects(model_io.load(box3d_pb)) == []


def test_port_beyond_the_producers_outputs() -> None:
    graph = make_graph([X, ("a", "LeakyRelu", ["x:99"], {"alpha": (0.1, "float")})])
    (defect,) = find_defects(graph)
    assert defect == Defect("port", ("a", "x"), "'a' reads x:99, but Placeholder 'x' has only "
                            "1 output")  # fmt: skip


def test_variadic_outputs_are_counted_through_attrs() -> None:
    graph = make_graph([
        X, ("dim", "Const", []),
        ("s", "Split", ["dim", "x"], {"num_split": (2, "int")}),
        ("ok", "Relu", ["s:1"]), ("bad", "Relu", ["s:2"]),
        ("t", "Split", ["dim", "x"]),  # no num_split: its count is unknown, not checked
        ("unsized", "Relu", ["t:7"]),
    ])  # fmt: skip
    (defect,) = find_defects(graph)
    assert defect.nodes == ("bad", "s")
    assert defect.text == "'bad' reads s:2, but Split 's' has only 2 outputs"


def test_reading_an_op_without_outputs() -> None:
    graph = make_graph([X, ("n", "NoOp", []), ("a", "Relu", ["n"]), ("b", "Relu", ["x", "^n"])])
    (defect,) = find_defects(graph)
    assert defect.text == "'a' reads n, but NoOp 'n' has no outputs"


def test_plugin_outputs_come_from_the_schema_unknown_ops_are_not_checked() -> None:
    graph = make_graph([
        X, ("p", "LReLU_TRT", ["x"]), ("a", "Relu", ["p:1"]),
        ("c", "MyCustomOp", ["x"]), ("b", "Relu", ["c:5"]),
    ])  # fmt: skip
    (defect,) = find_defects(graph)
    assert defect.text == "'a' reads p:1, but LReLU_TRT 'p' has only 1 output"


@pytest.mark.skipif(not tensorflow_available(), reason="needs TensorFlow's op registry")
def test_ops_only_tensorflow_knows() -> None:
    graph = make_graph([X, ("d", "ListDiff", ["x", "x"]), ("ok", "Relu", ["d:1"]),
                        ("bad", "Relu", ["d:2"])])  # fmt: skip
    assert [d.nodes for d in find_defects(graph)] == [("bad", "d")]
    assert find_defects(graph, use_tf=False) == []  # inspect --no-tf: not looked up


def test_self_loops_data_and_control() -> None:
    graph = make_graph([X, ("a", "AddV2", ["a", "x"]), ("b", "Relu", ["x", "^b"])])
    assert find_defects(graph) == [
        Defect("self-loop", ("a",), "'a' reads its own output a (a self-loop)"),
        Defect("self-loop", ("b",), "'b' has a control edge from itself (^b) (a self-loop)"),
    ]


def test_cycles_are_named_in_data_flow_order() -> None:
    graph = make_graph([
        X, ("a", "AddV2", ["c", "x"]), ("b", "Relu", ["a"]), ("c", "Relu", ["b"]),
        ("d", "Relu", ["c"]),  # downstream of the cycle, not on it
        ("e", "Relu", ["f"]), ("f", "Relu", ["^e"]),  # a second cycle, through a control edge
    ])  # fmt: skip
    assert find_defects(graph) == [
        Defect("cycle", ("a", "b", "c"), "cycle a -> b -> c -> a"),
        Defect("cycle", ("e", "f"), "cycle e -> f -> e"),
    ]


def test_a_component_larger_than_the_cycle_shown() -> None:
    graph = make_graph([X, ("a", "AddN", ["b", "c"]), ("b", "Relu", ["a"]),
                        ("c", "Relu", ["a"])])  # fmt: skip
    (defect,) = find_defects(graph)
    assert defect.nodes == ("a", "b", "c")
    assert defect.text == "cycle a -> b -> a (3 nodes lie on cycles together)"


def test_while_loop_back_edge_is_no_cycle() -> None:
    # TF1 control flow: Merge reads NextIteration, listed after it (graph order not topological)
    graph = make_graph([
        X, ("enter", "Enter", ["x"]), ("merge", "Merge", ["enter", "next"]),
        ("switch", "Switch", ["merge", "cond"]), ("cond", "LoopCond", ["x"]),
        ("body", "Relu", ["switch:1"]), ("next", "NextIteration", ["body"]),
        ("exit", "Exit", ["switch"]),
    ])  # fmt: skip
    assert find_defects(graph) == []


def test_unordered_but_acyclic_graph_is_fine() -> None:
    graph = make_graph([("b", "Relu", ["a"]), ("a", "Relu", ["x"]), X])
    assert find_defects(graph) == []


def test_dangling_inputs_and_controls() -> None:
    graph = make_graph([X, ("a", "Relu", ["gone:1"]), ("b", "Relu", ["x", "^lost"])])
    assert find_defects(graph) == [
        Defect("dangling", ("a",), "'a' reads gone:1 from missing node 'gone'"),
        Defect("dangling", ("b",), "'b' has a control edge from missing node 'lost'"),
    ]


def test_empty_graph() -> None:
    assert find_defects(Graph()) == [Defect("empty", (), "the graph has no nodes")]


def test_zero_byte_file_is_an_error_naming_it(tmp_path: Path) -> None:
    for name in ("empty.pb", "empty.pbtxt"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(ModelLoadError, match=rf"^.*{name}: empty file \(0 bytes\)"):
            model_io.load(tmp_path / name)


def test_refusal_is_one_line_naming_the_nodes(capsys: pytest.CaptureFixture) -> None:
    graph = make_graph([X, ("a", "AddV2", ["a", "x:3"]), ("b", "Relu", ["m"]),
                        ("c", "Relu", ["n"]), ("d", "Relu", ["o"])])  # fmt: skip
    with pytest.raises(GraphError) as info:
        refuse_invalid(graph, "m.pb")
    text = str(info.value)
    assert "\n" not in text
    assert text == (
        "m.pb: invalid graph (5 defects): 'a' reads its own output a (a self-loop); 'a' reads "
        "x:3, but Placeholder 'x' has only 1 output; 'b' reads m from missing node 'm'; and 2 "
        "more; `surgery inspect` lists them; --allow-invalid goes on anyway"
    )
    assert len(refuse_invalid(graph, "m.pb", allow_invalid=True)) == 5
    assert "warning: m.pb: invalid graph (5 defects)" in capsys.readouterr().err
