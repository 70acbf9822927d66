"""The ONNX loader's wire reading (`surgery.ir.onnx_load_wire`) gives what the protobuf API gives:
on every checked-in ONNX model, the benchmark's model, the edge-case model of test_onnx_io and
models the wire reading leaves to the API (fields beyond a node's core ones, a repeated name,
a graph given twice), a load from the file's bytes makes the same GraphDef, the same parsed
inputs and the same saved bytes as a load through the API alone. The NodeDefs the loader hands
over as bytes read, once parsed, as the NodeDefs those bytes are, and save as they would."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from surgery.ir.graph import Graph
from surgery.ir.onnx_io import save_onnx
from surgery.ir.onnx_load import _Loader, load_model
from surgery.ir.onnx_load_values import read_model
from surgery.ir.onnx_load_wire import node_fields
from surgery.ir.wire import varint

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DATA = Path(__file__).resolve().parent / "data" / "onnx"


def _api_load(path: Path) -> Graph:
    """`path` loaded with every node read through the protobuf API."""
    model, _ = read_model(path)
    loader = _Loader(model, None, path)
    graph_def = loader.graph_def()
    return Graph(graph_def, names=loader.order, inputs=loader.parsed, wires=loader.made,
                 ops=loader.made_ops)  # fmt: skip


def _parsed(graph: Graph) -> Graph:
    """A copy of `graph` whose every NodeDef is a parsed message (none held as bytes)."""
    return Graph(graph.to_graph_def())


def _assert_same_load(path: Path, tmp_path: Path) -> None:
    """`path` loads alike from its bytes and through the API, and saves alike held as bytes
    and parsed."""
    wire, api = load_model(path), _api_load(path)
    assert [(n.name, n._ins) for n in wire] == [(n.name, n._ins) for n in api]
    saved = save_onnx(wire, tmp_path / "wire.onnx").read_bytes()  # from the bytes as loaded
    assert saved == save_onnx(api, tmp_path / "api.onnx").read_bytes()
    assert saved == save_onnx(_parsed(wire), tmp_path / "parsed.onnx").read_bytes()
    assert wire.serialize() == api.serialize()  # every NodeDef parsed: the same GraphDef


def _unusual_model() -> bytes:
    """A serialized model with nodes the wire reading leaves to the API: a doc_string, an
    unknown field, a name given twice (parsing keeps the last); and plain ones around them (an
    empty name, an empty optional input, a domain, non-ASCII and long names)."""
    long = "t" * 200
    nodes = [
        helper.make_node("Relu", ["x"], [long], "", doc_string="documented"),
        helper.make_node("Relu", [long], ["ü"], "named"),
        helper.make_node("Clip", ["ü", "", "lim"], ["c"], "clip"),
        helper.make_node("Custom", ["c"], ["y"], "custom", domain="x.y", f=1.5),
    ]
    unknown = helper.make_node("Relu", ["y"], ["z"], "unknown")
    nodes.append(onnx.NodeProto.FromString(unknown.SerializeToString() + b"\xa0\x06\x01"))
    graph = helper.make_graph(
        nodes, "unusual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])],
        [helper.make_tensor("lim", TensorProto.FLOAT, [], [1.0])],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("x.y", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    twice = helper.make_node("Relu", ["z"], ["w"], "first").SerializeToString() + b"\x1a\x06second"
    graph_bytes = model.graph.SerializeToString() + _field(b"\x0a", twice)  # GraphProto.node
    model.ClearField("graph")
    return model.SerializeToString() + _field(b"\x3a", graph_bytes)  # ModelProto.graph


def _field(key: bytes, payload: bytes) -> bytes:
    return key + varint(len(payload)) + payload


@pytest.mark.parametrize("path", sorted(DATA.glob("*.onnx")), ids=lambda p: p.stem)
def test_checked_in_models_load_alike(path: Path, tmp_path: Path) -> None:
    _assert_same_load(path, tmp_path)


def test_benchmark_and_edge_models_load_alike(tmp_path: Path) -> None:
    from benchmarks.bench_ogs import onnx_model
    from tests.test_onnx_io import _edge_proto

    for name, model in (("bench", onnx_model(50)), ("edge", _edge_proto())):
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        _assert_same_load(path, tmp_path)


def test_unusual_nodes_go_through_the_api(tmp_path: Path) -> None:
    path = tmp_path / "unusual.onnx"
    path.write_bytes(_unusual_model())
    wires = read_model(path)[1]
    assert wires is not None
    assert [node_fields(w) is None for w in wires] == [True, False, False, False, True, True]
    _assert_same_load(path, tmp_path)
    fields = node_fields(wires[2])
    assert fields is not None and fields.inputs == ["ü", "", "lim"] and fields.domain is None
    custom = node_fields(wires[3])
    assert custom is not None and custom.domain == "x.y" and len(custom.attributes) == 1


def test_a_graph_given_twice_is_read_through_the_api(tmp_path: Path) -> None:
    more = onnx.ModelProto()
    more.graph.node.append(helper.make_node("Relu", ["w"], ["more"], "more"))
    path = tmp_path / "twice.onnx"
    path.write_bytes(_unusual_model() + more.SerializeToString())  # parsing merges the graphs
    assert read_model(path)[1] is None
    graph = load_model(path)
    assert len(graph.nodes_by_op("Relu")) == 5 and graph.node("second").op == "Relu"
    _assert_same_load(path, tmp_path)


def test_nodes_held_as_bytes_parse_to_those_bytes_with_the_edits_made_since(
    tmp_path: Path,
) -> None:
    """Until something reads its NodeDef, a loaded node is its bytes; the NodeDef then parsed
    is what those bytes say, its inputs as edits (made before and after the parse) left them,
    and the graph saves as the same graph whose NodeDefs were all parsed at load and edited
    alike."""
    from benchmarks.bench_ogs import onnx_model

    path = tmp_path / "bench.onnx"
    onnx.save(onnx_model(3), str(path))
    graph = load_model(path)
    parsed_at_load = [n.name for n in graph if n.unparsed() is None]
    assert parsed_at_load == ["input"]  # a graph input: made through the API
    parsed = _parsed(load_model(path))
    assert all(n.unparsed() is None for n in parsed)
    add = graph.node("block_1/add")
    wire = add.unparsed()
    assert wire is not None and add.op == "Add"
    for edited in (graph, parsed):  # before the parse: inputs of the node alone
        edited.set_input("block_1/add", 0, "block_1/split:0")
        edited.add_control("block_1/add", "block_0/add")
    assert add.unparsed() == wire  # its bytes untouched, its edges edited
    assert add.inputs == (("block_1/split", 0), ("block_1/split", 0))
    assert list(add.proto.input) == ["block_1/split", "block_1/split", "^block_0/add"]
    assert add.unparsed() is None
    for edited in (graph, parsed):  # after the parse: its NodeDef too
        edited.set_input("block_1/add", 1, "block_1/split:1")
    assert list(add.proto.input) == ["block_1/split", "block_1/split:1", "^block_0/add"]
    saved = save_onnx(graph, tmp_path / "held.onnx").read_bytes()
    assert saved == save_onnx(parsed, tmp_path / "parsed.onnx").read_bytes()
    assert graph.node("block_2/add").unparsed() is not None  # the save parsed none of them
    assert graph.serialize() == parsed.serialize()
