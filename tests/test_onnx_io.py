"""ONNX models through the Graph IR (`surgery.ir.onnx_io`): load -> save gives the model back, edits
made with the Graph API save to models that onnx.checker accepts and onnxruntime runs, and bad
files are ModelLoadErrors. Models come from real exporters (tf2onnx on a Keras application) and
from onnx.helper (the features exporters rarely use at once), built once per module."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from surgery.errors import ModelLoadError
from surgery.ir.attrs import make_attr
from surgery.ir.graph import Graph
from surgery.ir.node import split_inputs
from surgery.ir.onnx_io import (
    DOMAIN_ATTR,
    NAME_ATTR,
    NONE_OP,
    OUTPUT_OP,
    PLUGIN_DOMAIN,
    graph_opset,
    load_onnx,
    opset_warning,
    save_onnx,
)
from surgery.ir.ports import TensorRef
from surgery.ir.protos import GraphDef
from surgery.ir.tensor_values import shape_of, to_numpy

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMALL_OUTPUTS = ("final", "relu_out", "conv_out")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx_models")


@pytest.fixture(scope="module")
def keras_model(model_dir: Path) -> Path:
    """MobileNetV2 (random weights) through tf2onnx."""
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    tf.keras.utils.set_random_seed(0)
    net = tf.keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None)
    spec = (tf.TensorSpec((None, 96, 96, 3), tf.float32, name="input"),)
    path = model_dir / "mobilenet_v2.onnx"
    tf2onnx.convert.from_keras(net, input_signature=spec, opset=17, output_path=str(path))
    return path


def _small_proto() -> onnx.ModelProto:
    """Nameless nodes, a "/"-path name, an If whose branches read the outer graph, an empty
    optional input, a Constant, a custom-domain node, typed and raw initializers, value_info,
    symbolic dims, unsorted attributes and model metadata."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "W")
    bias = helper.make_tensor("B", TensorProto.FLOAT, [4], [0.1, -0.2, 0.3, -0.4])  # float_data
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    big = numpy_helper.from_array(rng.normal(size=(4, 16, 16)).astype(np.float32), "big")
    conv = helper.make_node(
        "Conv", ["X", "W", "B"], ["conv_out"], "/backbone/conv1/Conv", pads=[1, 1, 1, 1],
        kernel_shape=[3, 3], group=1,
    )  # fmt: skip
    conv.attribute.reverse()  # tf2onnx's attribute order is not alphabetical either
    then_branch = helper.make_graph(
        [helper.make_node("Identity", ["added"], ["then_out"])], "then", [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, None)],
    )  # fmt: skip
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["added"], ["else_out"])], "else", [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)],
    )  # fmt: skip
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        conv,
        helper.make_node("Relu", ["conv_out"], ["relu_out"]),
        helper.make_node("Resize", ["relu_out", "", "scales"], ["resized"], mode="nearest"),
        helper.make_node("Constant", [], ["c1"], "const_node", value=one),
        helper.make_node("Gelu", ["resized"], ["gelu_out"], domain="com.microsoft"),
        helper.make_node("Add", ["gelu_out", "c1"], ["added"]),
        helper.make_node(
            "If", ["cond"], ["if_out"], then_branch=then_branch, else_branch=else_branch
        ),  # fmt: skip
        helper.make_node("Add", ["if_out", "big"], ["final"], "final_add"),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3, 8, 8]),
            # an initializer listed as an input too (a default the caller may override)
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [4]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("final", TensorProto.FLOAT, ["N", 4, 16, 16]),
            helper.make_tensor_value_info("relu_out", TensorProto.FLOAT, ["N", 4, 8, 8]),
            helper.make_tensor_value_info("conv_out", TensorProto.FLOAT, ["N", 4, 8, 8]),
        ],
        [weights, bias, scales, big],
        value_info=[
            helper.make_tensor_value_info("resized", TensorProto.FLOAT, ["N", 4, None, None]),
            helper.make_tensor_value_info("added", TensorProto.FLOAT, None),
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        producer_name="test_onnx_io",
        producer_version="1.0",
        doc_string="a small model",
    )
    model.ir_version = 8
    helper.set_model_props(model, {"author": "tests"})
    return model


@pytest.fixture(scope="module")
def small_model(model_dir: Path) -> Path:
    folder = model_dir / "small"
    folder.mkdir()
    path = folder / "small.onnx"
    onnx.save_model(
        _small_proto(), path, save_as_external_data=True, location="small.onnx.data",
        size_threshold=4096,
    )  # fmt: skip
    return path


def _feeds(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    graph = onnx.load(path, load_external_data=False).graph
    defaults = {t.name for t in graph.initializer}
    feeds = {}
    for value in graph.input:
        if value.name in defaults:
            continue
        elem = value.type.tensor_type.elem_type
        dims = [d.dim_value or 2 for d in value.type.tensor_type.shape.dim]
        if elem == TensorProto.BOOL:
            feeds[value.name] = np.array(True)
        else:
            feeds[value.name] = rng.normal(size=dims).astype(np.float32)
    return feeds


def _run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


def _assert_same_model(original: onnx.ModelProto, saved: onnx.ModelProto) -> None:
    for field in ("node", "initializer", "input", "output", "value_info", "sparse_initializer"):
        assert list(getattr(saved.graph, field)) == list(getattr(original.graph, field)), field
    header = ("ir_version", "opset_import", "producer_name", "producer_version", "doc_string")
    for field in (*header, "metadata_props", "functions", "domain", "model_version"):
        assert getattr(saved, field) == getattr(original, field), field
    assert saved.graph.name == original.graph.name


# --------------------------------------------------------------------------- round trips
def test_keras_round_trip_is_byte_identical(keras_model: Path, tmp_path: Path) -> None:
    graph = load_onnx(keras_model)
    out = save_onnx(graph, tmp_path / "copy.onnx", inputs=(keras_model,))
    original, saved = onnx.load(keras_model), onnx.load(out)
    onnx.checker.check_model(saved, full_check=True)
    _assert_same_model(original, saved)
    assert out.read_bytes() == original.SerializeToString(deterministic=True)
    feeds = _feeds(keras_model)
    before, after = _run(keras_model, feeds), _run(out, feeds)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value)


def test_small_round_trip(small_model: Path, tmp_path: Path) -> None:
    out = save_onnx(load_onnx(small_model), tmp_path / "copy.onnx")
    onnx.checker.check_model(str(out), full_check=True)
    original, saved = onnx.load(small_model), onnx.load(out)  # external data read in
    _assert_same_model(original, saved)
    for before, after in zip(original.graph.initializer, saved.graph.initializer, strict=True):
        assert before.SerializeToString() == after.SerializeToString()
    big = onnx.load(out, load_external_data=False).graph.initializer[3]
    assert big.data_location == TensorProto.EXTERNAL  # external data stays external
    assert (tmp_path / "copy.onnx.data").exists()
    feeds = _feeds(small_model)
    before_run, after_run = _run(small_model, feeds), _run(out, feeds)
    for name in SMALL_OUTPUTS:
        np.testing.assert_array_equal(after_run[name], before_run[name])


def test_saves_are_deterministic_and_survive_copy(small_model: Path, tmp_path: Path) -> None:
    graph = load_onnx(small_model)
    first = save_onnx(graph, tmp_path / "a.onnx").read_bytes()
    second = save_onnx(graph.copy(), tmp_path / "b.onnx").read_bytes()
    assert first.replace(b"a.onnx.data", b"b.onnx.data") == second
    assert graph_opset(graph) == 17 and graph_opset(graph, "com.microsoft") == 1


def _edge_proto() -> onnx.ModelProto:
    """Corners: a type TensorFlow lacks, typed/string/bfloat16/empty initializers, names that
    clash or read as ports, an omitted optional output, an empty INTS and a documented attribute,
    a Loop with empty optional inputs reading the outer graph, a sparse initializer, value_info
    of a tensor nothing makes, and a graph input that is also an output."""
    inits = [
        helper.make_tensor("f8", TensorProto.FLOAT8E4M3FN, [2], [1.0, 2.0]),
        helper.make_tensor("i64", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("strs", TensorProto.STRING, [2], [b"a", b"bc"]),
        helper.make_tensor("bf", TensorProto.BFLOAT16, [2], [1.0, 2.0]),
        numpy_helper.from_array(np.zeros((0,), np.float32), "empty"),
        helper.make_tensor("W", TensorProto.FLOAT, [1], [3.0]),
    ]
    custom = helper.make_node("Custom", ["z"], ["q"], "c", domain="x.y", f=1.5)
    custom.attribute.append(helper.make_attribute("ints", [], attr_type=onnx.AttributeProto.INTS))
    custom.attribute.append(helper.make_attribute("axes", [0]))
    custom.attribute[-1].doc_string = "documented"
    custom.doc_string = "a custom node"
    scalar = [
        helper.make_tensor_value_info("i", TensorProto.INT64, []),
        helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
    ]
    body = helper.make_graph(
        [helper.make_node("Add", ["acc", "z"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [*scalar, helper.make_tensor_value_info("acc", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None)],
    )  # fmt: skip
    nodes = [
        helper.make_node("Dropout", ["X"], ["d", ""], "W"),
        helper.make_node("Identity", ["d"], ["y:0"], "y:0"),
        helper.make_node("Identity", ["y:0"], ["z"], "/W"),
        custom,
        helper.make_node("Loop", ["", "", "z"], ["loop_out"], body=body),
    ]
    values = numpy_helper.from_array(np.array([1.0], np.float32), "sp")
    sparse = helper.make_sparse_tensor(
        values, numpy_helper.from_array(np.array([0], np.int64), "sp_idx"), [3]
    )
    graph = helper.make_graph(
        nodes,
        "edge",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["a", None])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("q", "loop_out", "X")],
        inits,
        value_info=[helper.make_tensor_value_info("ghost", TensorProto.FLOAT, [1]),
                    helper.make_tensor_value_info("d", TensorProto.FLOAT, ["a", 5])],
        sparse_initializer=[sparse],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("x.y", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def test_edge_cases_round_trip(tmp_path: Path) -> None:
    model = _edge_proto()
    onnx.save(model, tmp_path / "edge.onnx")
    graph = load_onnx(tmp_path / "edge.onnx")
    assert graph.node("W").op == "Const" and graph.node("W_1").op == "Dropout"
    assert graph.node("y_0").attr[NAME_ATTR].s == b"y:0"
    assert "value" not in graph.node("f8").attr  # no TensorFlow type: kept whole
    loop = graph.nodes_by_op("Loop")[0]
    assert [str(t) for t in loop.inputs] == ["_onnx_none", "_onnx_none", "W_2"]
    assert loop.controls == ("W_2",)
    dropout = graph.node("W_1")
    dims = [shape_of(s) for s in dropout.attr["_output_shapes"].list.shape]
    assert dims == [(-1, 5), None]
    out = save_onnx(graph, tmp_path / "copy.onnx")
    assert onnx.load(out) == model
    dropout.attr["_output_shapes"].list.shape[0].dim[1].size = 7  # a shape edit reaches
    saved = onnx.load(save_onnx(graph, tmp_path / "edited.onnx"))  # value_info, dim names kept
    assert saved.graph.value_info[1] == helper.make_tensor_value_info(
        "d", TensorProto.FLOAT, ["a", 7]
    )


# --------------------------------------------------------------------------- representation
def test_representation(small_model: Path) -> None:
    graph = load_onnx(small_model)
    conv = graph.node("backbone/conv1/Conv")
    assert conv.attr[NAME_ATTR].s == b"/backbone/conv1/Conv"
    assert [str(t) for t in conv.inputs] == ["X", "W", "B"]
    assert shape_of(conv.attr["_output_shapes"].list.shape[0]) == (-1, 4, 8, 8)
    relu = graph.node("relu_out")  # nameless: named after its output
    assert relu.op == "Relu" and relu.attr[NAME_ATTR].s == b""
    resize = graph.nodes_by_op("Resize")[0]
    assert graph.node(resize.inputs[1].node).op == NONE_OP
    assert resize.inputs[2].node == "scales"
    assert (
        graph.node("scales").op == "Const" and graph.node("scales").attr["_onnx_input_index"].i == 1
    )
    assert graph.node("gelu_out").attr[DOMAIN_ATTR].s == b"com.microsoft"
    if_node = graph.nodes_by_op("If")[0]
    assert if_node.controls == ("added",)  # the branches read it from the outer graph
    assert graph.node("const_node").op == "Constant"
    np.testing.assert_allclose(
        to_numpy(graph.node("B").attr["value"].tensor), [0.1, -0.2, 0.3, -0.4]
    )
    assert to_numpy(graph.node("big").attr["value"].tensor).shape == (4, 16, 16)
    x = graph.node("X")
    assert x.op == "Placeholder" and shape_of(x.attr["shape"].shape) == (-1, 3, 8, 8)
    sinks = graph.nodes_by_op(OUTPUT_OP)
    assert [str(s.inputs[0]) for s in sinks] == ["final_add", "relu_out", "backbone/conv1/Conv"]
    assert {n.name for n in sinks} <= {n.name for n in graph.graph_outputs()}
    graph.check()


def _parsed_inputs_are_the_protos(graph: Graph) -> None:
    """Every node's name and data/control inputs as the loader handed them to Graph equal what
    Graph reads and parses from the NodeDef itself."""
    given = 0
    for node in graph:
        assert node.name == node.proto.name
        if node._ins is not None:
            given += 1
            assert (node._ins, node._ctl) == split_inputs(node.proto.input), node.name
            assert all(type(r) is TensorRef for r in node._ins)
    assert given  # the loader gave them (where it could)


@pytest.mark.parametrize("which", ["small", "edge", "keras"])
def test_loaded_inputs_come_parsed_as_graph_parses_them(
    which: str, small_model: Path, keras_model: Path, tmp_path: Path
) -> None:
    if which == "edge":
        path = tmp_path / "edge.onnx"
        onnx.save(_edge_proto(), path)
    else:
        path = small_model if which == "small" else keras_model
    graph = load_onnx(path)
    _parsed_inputs_are_the_protos(graph)
    graph.check()


# --------------------------------------------------------------------------- edits
def test_relu_to_leaky_relu(small_model: Path, tmp_path: Path) -> None:
    graph = load_onnx(small_model)
    relu = graph.node("relu_out")
    leaky = graph.add_node(
        "backbone/leaky", "LeakyRelu", relu.inputs, attrs={"alpha": make_attr(0.1, "float")}
    )
    graph.replace_uses(relu.output(0), leaky.output(0))
    graph.remove_nodes([relu.name])
    out = save_onnx(graph, tmp_path / "leaky.onnx")
    onnx.checker.check_model(str(out), full_check=True)
    saved = onnx.load(out, load_external_data=False)
    assert [n.op_type for n in saved.graph.node].count("LeakyRelu") == 1
    assert [o.name for o in saved.graph.output] == list(SMALL_OUTPUTS)
    result = _run(out, _feeds(small_model))
    conv = result["conv_out"]
    assert (conv < 0).any()
    np.testing.assert_allclose(result["relu_out"], np.where(conv > 0, conv, 0.1 * conv), rtol=1e-6)


def test_softmax_to_log_softmax(keras_model: Path, tmp_path: Path) -> None:
    graph = load_onnx(keras_model)
    softmax = graph.nodes_by_op("Softmax")[0]
    log_softmax = graph.add_node(
        softmax.name + "/log", "LogSoftmax", softmax.inputs, attrs={"axis": make_attr(-1, "int")}
    )
    graph.replace_uses(softmax.output(0), log_softmax.output(0))
    graph.remove_nodes([softmax.name])
    out = save_onnx(graph, tmp_path / "log.onnx")
    onnx.checker.check_model(str(out), full_check=True)
    feeds = _feeds(keras_model)
    before, after = _run(keras_model, feeds), _run(out, feeds)
    assert list(after) == list(before) == ["predictions"]
    np.testing.assert_allclose(after["predictions"], np.log(before["predictions"]), atol=1e-5)


def test_inserted_plugin_node(small_model: Path, tmp_path: Path) -> None:
    graph = load_onnx(small_model)
    attrs = {DOMAIN_ATTR: make_attr(PLUGIN_DOMAIN, "string"), "scale": make_attr(2.0, "float")}
    plugin = graph.add_node("backbone/plugin", "MyPlugin", ["backbone/conv1/Conv"], attrs=attrs)
    graph.set_input("relu_out", 0, plugin.output(0))
    out = save_onnx(graph, tmp_path / "plugin.onnx")
    onnx.checker.check_model(str(out))
    saved = onnx.load(out, load_external_data=False)
    node = next(n for n in saved.graph.node if n.op_type == "MyPlugin")
    assert node.domain == PLUGIN_DOMAIN and node.input == ["conv_out"]
    assert node.output == ["backbone/plugin"]
    assert helper.get_attribute_value(node.attribute[0]) == pytest.approx(2.0)
    relu = next(n for n in saved.graph.node if n.op_type == "Relu")
    assert relu.input == ["backbone/plugin"]
    assert helper.make_opsetid(PLUGIN_DOMAIN, 1) in saved.opset_import
    assert [n.op_type for n in saved.graph.node].index("MyPlugin") < [
        n.op_type for n in saved.graph.node
    ].index("Relu")  # sorted before its reader although added last


# --------------------------------------------------------------------------- errors
def _bad_files(folder: Path, keras_model: Path) -> list[Path]:
    garbage = folder / "garbage.onnx"
    garbage.write_bytes(bytes(range(256)) * 4)
    truncated = folder / "truncated.onnx"
    truncated.write_bytes(keras_model.read_bytes()[: keras_model.stat().st_size // 2])
    empty = folder / "empty.onnx"
    empty.write_bytes(b"")
    graph_def = GraphDef()
    graph_def.node.add(name="x", op="Placeholder")
    graph_def.versions.producer = 1
    tf_pb = folder / "frozen.onnx"
    tf_pb.write_bytes(graph_def.SerializeToString())
    return [garbage, truncated, empty, tf_pb, folder / "missing.onnx", folder]


def test_bad_files_are_load_errors(keras_model: Path, tmp_path: Path) -> None:
    for path in _bad_files(tmp_path, keras_model):
        with pytest.raises(ModelLoadError) as caught:
            load_onnx(path)
        message = str(caught.value)
        assert str(path) in message and "\n" not in message, message


def test_missing_external_data(small_model: Path, tmp_path: Path) -> None:
    model = onnx.load(small_model, load_external_data=False)
    path = tmp_path / "moved.onnx"
    onnx.save_model(model, path)  # still points at small.onnx.data, which is not here
    with pytest.raises(ModelLoadError, match="small.onnx.data") as caught:
        load_onnx(path)
    assert "\n" not in str(caught.value)


def test_output_must_not_overwrite_input(small_model: Path) -> None:
    from surgery.errors import OutputPathError

    with pytest.raises(OutputPathError):
        save_onnx(load_onnx(small_model), small_model, inputs=(small_model,))


# --------------------------------------------------------------------------- schemas
def test_opset_warning() -> None:
    assert opset_warning("", 17) is None
    assert "999" in (opset_warning("", 999) or "")
    assert opset_warning(PLUGIN_DOMAIN, 5) is None
