"""The ONNX saver's fast paths write what its general path writes: plugin nodes encoded for
TensorRT as wire bytes (`_Saver.node_wire`) equal the NodeProto `_Saver.node` builds, and the
node order (`_Saver.ordered`, which places a node whose producers are placed without walking)
equals the depth-first walk from every node in graph order, cycles refused alike. Plugin
attributes are made as onnx's helpers make them, and a plain apply imports neither those helpers
nor ml_dtypes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from surgery.backends.onnx_plugins import encode_plugins
from surgery.cache import load_rules
from surgery.engine.run import apply_rules
from surgery.ir import onnx_io as io
from surgery.ir.graph import Graph
from surgery.ir.node import Node
from surgery.ir.onnx_io import load_onnx
from surgery.ir.onnx_save import _Saver

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent


def _leaky_model(path: Path) -> Path:
    """LeakyRelus of two slopes (nodes of equal fields share an encoding), one nameless, one
    with a doc_string, one read by a graph output."""
    dims = [1, 4]
    nodes = [
        helper.make_node("LeakyRelu", ["x"], ["a"], "first", alpha=0.1),
        helper.make_node("LeakyRelu", ["a"], ["b"], "", alpha=0.1),
        helper.make_node("Add", ["a", "b"], ["c"], "add"),
        helper.make_node("LeakyRelu", ["c"], ["d"], "documented", alpha=0.2,
                         doc_string="kept"),  # fmt: skip
        helper.make_node("LeakyRelu", ["d"], ["y"], "last", alpha=0.2),
    ]
    graph = helper.make_graph(
        nodes, "leaky", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_encoded_plugin_nodes_on_the_wire_path_equal_the_general_path(tmp_path: Path) -> None:
    graph = load_onnx(_leaky_model(tmp_path / "leaky.onnx"))
    apply_rules(graph, [load_rules(REPO / "rules" / "leaky_relu.rules")])
    encoded = encode_plugins(graph)
    assert len(encoded) == 4
    assert len({id(p) for p in encoded.values()}) == 2  # one NodeProto per distinct fields
    saver = _Saver(graph, encoded)
    for node in saver.ordered():
        wire = saver.node_wire(node)
        general = saver.node(node).SerializeToString(deterministic=True)
        assert wire[-len(general) :] == general, node.name
    out = tmp_path / "out.onnx"
    io.save_onnx(graph, out, encoded=encoded)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    plugins = [n for n in model.graph.node if n.op_type == "LReLU_TRT"]
    assert [n.name for n in plugins] == ["first", "b", "documented", "last"]  # named by output
    assert {n.domain for n in plugins} == {io.PLUGIN_DOMAIN}


def _walk(ops: list[Node]) -> list[Node]:
    """The order `ordered` gives, by the plain depth-first walk (the reference)."""
    by_name = {n.name: n for n in ops}
    done: dict[str, bool] = {}
    out: list[Node] = []

    def before(node: Node) -> Iterator[str]:
        for name in [r.node for r in node.inputs] + list(node.controls):
            if name in by_name:
                yield name

    for start in ops:
        if start.name in done:
            continue
        done[start.name] = False
        stack = [(start, before(start))]
        while stack:
            node, pending = stack[-1]
            for name in pending:
                if name in done and not done[name]:
                    raise io.OnnxSaveError(f"the graph has a cycle through {name!r}")
                if name not in done:
                    done[name] = False
                    stack.append((by_name[name], before(by_name[name])))
                    break
            else:
                stack.pop()
                done[node.name] = True
                out.append(node)
    return out


def _chain_graph(tmp_path: Path) -> Graph:
    nodes = [helper.make_node("Relu", ["x" if i == 0 else f"t{i - 1}"], [f"t{i}"], f"n{i}")
             for i in range(6)]  # fmt: skip
    nodes.append(helper.make_node("Add", ["t1", "t4"], ["y"], "sum"))
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )  # fmt: skip
    path = tmp_path / "chain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return load_onnx(path)


@pytest.mark.parametrize(("moved", "control"), [
    ([], False), (["n0"], False), (["n2", "n0"], False), (["sum", "n3"], False),
    (["n5", "n1", "n4"], False), (["n5"], True), (["n0"], True),
])  # fmt: skip
def test_node_order_equals_the_depth_first_walk(
    tmp_path: Path, moved: list[str], control: bool
) -> None:
    graph = _chain_graph(tmp_path)
    for name in moved:  # out of order: taken out and put back at the end of graph order
        node = graph.node(name)
        graph._take([name], readers_ok=(name,))
        graph._attach(node.proto, node)
    if control:  # `sum` waits for n5, which it does not read
        graph.add_control("sum", "n5")
    saver = _Saver(graph, {})
    assert [n.name for n in saver.ordered()] == [n.name for n in _walk(saver.ops)]


def test_a_cycle_is_refused_on_save(tmp_path: Path) -> None:
    graph = _chain_graph(tmp_path)
    graph.set_input("n1", 0, "n4")  # n1 <- n4 <- n3 <- n2 <- n1
    saver = _Saver(graph, {})
    with pytest.raises(io.OnnxSaveError, match="cycle"):
        saver.ordered()
    with pytest.raises(io.OnnxSaveError, match="cycle"):
        _walk(saver.ops)


@pytest.mark.parametrize(("value", "kind"), [
    (3, "INT"), (True, "INT"), (0.25, "FLOAT"), ("ns", "STRING"), (b"raw", "STRING"),
    ([1, 2], "INTS"), ([], "INTS"), ([0.5, 1.5], "FLOATS"), (["a", b"b"], "STRINGS"),
])  # fmt: skip
def test_plugin_attributes_equal_onnx_helpers(value: object, kind: str) -> None:
    from surgery.backends.export.plugin_nodes import _attribute

    code = getattr(onnx.AttributeProto, kind)
    assert _attribute("f", value, code) == helper.make_attribute("f", value, attr_type=code)


def test_a_value_of_another_type_is_refused_as_by_onnx_helpers() -> None:
    from surgery.backends.export.plugin_nodes import _attribute

    with pytest.raises(TypeError):
        helper.make_attribute("f", 1, attr_type=onnx.AttributeProto.FLOAT)
    with pytest.raises(TypeError, match="INT value"):
        _attribute("f", 1, onnx.AttributeProto.FLOAT)


def test_the_message_classes_are_onnxs() -> None:
    from surgery.ir import onnx_pb

    for name in ("AttributeProto", "GraphProto", "ModelProto", "NodeProto", "TensorProto",
                 "TensorShapeProto", "ValueInfoProto"):  # fmt: skip
        assert getattr(onnx_pb, name) is getattr(onnx, name)


def test_apply_on_onnx_imports_neither_onnx_nor_ml_dtypes(tmp_path: Path) -> None:
    """A plain `surgery apply` on an ONNX model loads onnx's message classes alone (the
    known-opset answer comes from the cache once asked), and they are onnx's own after all."""
    model = _leaky_model(tmp_path / "leaky.onnx")
    script = (
        "import sys\n"
        "from surgery.cli import main\n"
        "for run in range(2):\n"
        f"    assert main(['apply', {str(REPO / 'rules' / 'leaky_relu.rules')!r}, {str(model)!r},"
        f" '-o', {str(tmp_path / 'out.onnx')!r}]) == 0\n"
        "    if run == 0:\n"
        "        for name in [m for m in sys.modules if m == 'onnx' or m.startswith('onnx.')\n"
        "                     or m.startswith('ml_dtypes')]:\n"
        "            del sys.modules[name]\n"
        "print(sorted(m for m in sys.modules if m in ('onnx', 'ml_dtypes')))\n"
    )
    env = dict(os.environ, SURGERY_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    env.pop("SURGERY_CACHE", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True, cwd=REPO)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "[]"
