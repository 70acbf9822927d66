"""Export keeps the weights out of tf2onnx: the ONNX initializers are the GraphDef's own bytes.

A weight read only as data reaches tf2onnx as a Placeholder and comes back as an initializer
(`surgery.backends.export.weight_standins`, `surgery.backends.export.initializers`); these tests
compare every such initializer with the Const it came from, byte for byte (a convolution kernel
permuted HWIO -> OIHW, nothing else), check that the streamed file is the canonical serialisation
of the model it holds, that external data holds the same bytes, and that the layouts tf2onnx gives
stood-in weights (depthwise kernels, transposed MatMul operands, a kernel read twice, an NCHW bias)
run in onnxruntime as they do in TensorFlow, and that a plugin sized only by running the graph still
gets its output shape with the weights stood in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tf2onnx")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from surgery.backends.onnx_export import export_onnx  # noqa: E402
from surgery.ir import model_io  # noqa: E402
from surgery.ir.graph import Graph  # noqa: E402
from surgery.ir.protos import GraphDef  # noqa: E402
from surgery.ir.tensor_values import to_numpy  # noqa: E402
from surgery.passes.tf_reference import run_graph_def  # noqa: E402

RULES = Path(__file__).resolve().parent.parent / "rules" / "maskrcnn.rules"
GOLDEN = Path(__file__).parent / "rules_golden"
KERNEL_TO_ONNX = (3, 2, 0, 1)  # TF HWIO (or HWOI for a transposed conv) -> ONNX OIHW / IOHW
WEIGHT_INPUTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "BatchNormalization": (1, 2, 3, 4),
                 "Gemm": (1, 2), "MatMul": (1,)}  # fmt: skip


def _maskrcnn_rewritten() -> Graph:
    """The small NCHW Mask R-CNN after rules/maskrcnn.rules: plugins, batch norms, NCHW
    biases, a transposed convolution and dense layers."""
    from surgery.engine.run import apply_rules
    from surgery.lang.rule_parser import load_rules
    from surgery.models import fixture_info
    from surgery.passes.prepare import drop_inferred_shapes, prepare_graph

    graph = model_io.load(fixture_info("maskrcnn_small_nchw").path)
    rule_files = [load_rules(RULES)]
    prepare_graph(graph, rule_files)
    apply_rules(graph, rule_files)
    drop_inferred_shapes(graph)
    return graph


def _consts(graph: Graph) -> dict[str, np.ndarray]:
    """Every float Const's value by ONNX tensor name (`name:0`), also under the names of the
    Identity chains that read it (grappler may fold such an Identity into a Const of its name)."""
    values = {
        f"{node.name}:0": to_numpy(node.attr["value"].tensor)
        for node in graph.nodes_by_op("Const")
        if node.attr["value"].tensor.dtype == 1
    }
    for name in graph.topological_order():
        node = graph.node(name)
        if node.op == "Identity" and f"{node.inputs[0].node}:0" in values:
            values[f"{name}:0"] = values[f"{node.inputs[0].node}:0"]
    return values


def _check_weights(graph: Graph, model) -> dict[str, int]:
    """Assert that every weight operand of a Conv, ConvTranspose, BatchNormalization or Gemm is
    an initializer holding a Const's exact bytes (kernels permuted to ONNX's order); the number
    of operands checked per op."""
    values = _consts(graph)
    inits = {t.name: t for t in model.graph.initializer}
    checked: dict[str, int] = {}
    for node in model.graph.node:
        for slot in WEIGHT_INPUTS.get(node.op_type, ()):
            if slot >= len(node.input):
                continue
            name = node.input[slot]
            assert name in inits and name in values, (node.name, slot, name)
            value = values[name]
            if slot == 1 and node.op_type in ("Conv", "ConvTranspose"):
                value = np.transpose(value, KERNEL_TO_ONNX)
            assert tuple(inits[name].dims) == value.shape, name
            assert numpy_helper.to_array(inits[name]).tobytes() == value.tobytes(), name
            checked[node.op_type] = checked.get(node.op_type, 0) + 1
    return checked


def test_maskrcnn_initializers_are_the_graphdefs_weights(tmp_path):
    graph = _maskrcnn_rewritten()
    out = tmp_path / "maskrcnn.onnx"
    result = export_onnx(graph, out)
    model = onnx.load(str(out))
    checked = _check_weights(graph, model)
    ops = [n.op_type for n in model.graph.node]
    # every kernel, bias and batch-norm statistic is a Const's bytes: no batch norm folded
    assert checked["Conv"] >= ops.count("Conv") > 0
    assert checked["BatchNormalization"] == 4 * ops.count("BatchNormalization") > 0
    assert checked["ConvTranspose"] >= 1 and checked["Gemm"] == 4
    assert result.inputs == ["input_image:0"]  # the stand-ins are no inputs
    assert out.read_bytes() == model.SerializeToString()  # streamed = canonical serialisation


def test_resnet50_nhwc_kernels_permuted_bias_folded_into_conv(resnet50_pb, tmp_path):
    graph = model_io.load(resnet50_pb)
    out = tmp_path / "resnet50.onnx"
    export_onnx(graph, out)
    model = onnx.load(str(out))
    checked = _check_weights(graph, model)
    assert checked["BatchNormalization"] == 4 * 53 and checked["MatMul"] == 1
    assert checked["Conv"] > 53  # the 53 kernels and the biases folded into the convolutions


def test_external_data_holds_the_same_bytes(resnet50_pb, tmp_path):
    inline, external = tmp_path / "inline.onnx", tmp_path / "external.onnx"
    export_onnx(resnet50_pb, inline)
    result = export_onnx(resnet50_pb, external, large_model=True)
    assert result.external_data == tmp_path / "external.onnx.data"
    small = onnx.load(str(external), load_external_data=False)
    located = [t for t in small.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    offsets = [int({e.key: e.value for e in t.external_data}["offset"]) for t in located]
    assert len(located) > 100 and all(offset % 64 == 0 for offset in offsets)
    names = {t.name for t in located}
    full = {t.name: t.raw_data for t in onnx.load(str(external)).graph.initializer}
    expected = {t.name: t.raw_data for t in onnx.load(str(inline)).graph.initializer}
    assert {n: full[n] for n in names} == {n: expected[n] for n in names}


def _layouts_graph() -> tuple[GraphDef, dict[str, np.ndarray], list[str]]:
    """A graph whose weights take each layout tf2onnx gives a non-constant weight: a depthwise
    kernel (reshaped, then transposed), one kernel read by two convolutions, a MatMul with
    transpose_b, and an NCHW BiasAdd that no convolution absorbs."""
    import tensorflow as tf

    rng = np.random.default_rng(7)

    def const(name: str, *shape: int):
        return tf.constant(rng.standard_normal(shape).astype(np.float32), name=name)

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="x")
        y = tf.nn.depthwise_conv2d(x, const("dw", 3, 3, 3, 2), [1, 1, 1, 1], "SAME")
        y = tf.nn.relu(tf.nn.conv2d(y, const("k1", 1, 1, 6, 4), 1, "SAME"))
        shared = const("shared", 3, 3, 4, 4)
        y = tf.nn.relu(tf.nn.conv2d(y, shared, 1, "SAME"))
        y = tf.nn.conv2d(y, shared, 1, "SAME")
        flat = tf.reshape(y, [1, 8 * 8 * 4])
        logits = tf.matmul(flat, const("fc", 5, 8 * 8 * 4), transpose_b=True, name="logits")
        nchw = tf.transpose(tf.nn.relu(y), [0, 3, 1, 2])  # (1, 4, 8, 8): C = 4
        square = nchw[:, :, :4, :4]  # width 4 = channels: a wrong broadcast would not fail
        tf.nn.bias_add(square, const("bias", 4), data_format="NCHW", name="biased")
    feeds = {"x:0": rng.standard_normal((1, 8, 8, 3)).astype(np.float32)}
    return GraphDef.FromString(graph.as_graph_def().SerializeToString()), feeds, [
        logits.name, "biased:0"
    ]


def test_standin_layouts_run_like_tensorflow(tmp_path):
    graph_def, feeds, outputs = _layouts_graph()
    out = tmp_path / "layouts.onnx"
    export_onnx(Graph(graph_def), out, outputs=outputs)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(outputs, feeds)
    expected = run_graph_def(graph_def, feeds, outputs)
    for name, value in zip(outputs, got, strict=True):
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-5)
    model = onnx.load(str(out))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consts = _consts(Graph(graph_def))
    dw = consts["dw:0"]  # (3, 3, 3, 2): ONNX wants (C * M, 1, H, W), group = C
    depthwise = dw.reshape(3, 3, 1, 6).transpose(KERNEL_TO_ONNX)
    assert inits["dw:0"].tobytes() == depthwise.tobytes()
    shared = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] == "shared:0"]
    assert len(shared) == 2  # one initializer for both readers
    assert inits["shared:0"].tobytes() == consts["shared:0"].transpose(KERNEL_TO_ONNX).tobytes()
    gemm_b = [inits[n.input[1]] for n in model.graph.node if n.op_type in ("Gemm", "MatMul")
              and n.input[1] in inits]  # fmt: skip
    assert any(b.tobytes() in (consts["fc:0"].tobytes(), consts["fc:0"].T.tobytes())
               for b in gemm_b)  # fmt: skip


def test_external_data_with_a_constant_tf2onnx_folds(tmp_path):
    """A large Const read by an op outside the weight slots (a Transpose, which grappler folds)
    stays with tf2onnx; with external data, tf2onnx's copy lands in the data file beside the
    stood-in weights, and the model still runs like TensorFlow."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2, 64], name="x")
        folded = tf.transpose(tf.constant(rng.standard_normal((48, 64)).astype(np.float32)))
        hidden = tf.nn.relu(tf.matmul(x, folded))  # (2, 48)
        dense = tf.constant(rng.standard_normal((48, 32)).astype(np.float32), name="dense")
        tf.matmul(hidden, dense, name="y")
    graph_def = GraphDef.FromString(graph.as_graph_def().SerializeToString())
    out = tmp_path / "folded.onnx"
    result = export_onnx(Graph(graph_def), out, outputs=["y:0"], large_model=True)
    small = onnx.load(str(out), load_external_data=False)
    external = {t.name for t in small.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL}  # fmt: skip
    assert "dense:0" in external and len(external) == 2  # the stand-in and tf2onnx's fold
    assert result.external_data is not None
    feeds = {"x:0": rng.standard_normal((2, 64)).astype(np.float32)}
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    expected = run_graph_def(graph_def, feeds, ["y:0"])["y:0"]
    np.testing.assert_allclose(session.run(["y:0"], feeds)[0], expected, rtol=1e-5, atol=1e-5)


def test_plugin_shape_behind_a_data_dependent_reshape_comes_from_a_run(tmp_path):
    """Static inference cannot size a plugin input reshaped by a computed shape; export then
    runs the graph once (the weight stand-ins fed their values) and the plugin's output shape
    reaches the ONNX model."""
    import tensorflow as tf

    from surgery.engine.run import apply_rules
    from surgery.lang.rule_parser import load_rules

    rng = np.random.default_rng(5)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="x")
        kernel = tf.constant(rng.standard_normal((3, 3, 3, 4)).astype(np.float32), name="k")
        conv = tf.nn.conv2d(x, kernel, 1, "SAME")
        width = tf.cast(tf.reduce_sum(conv * 0.0) + 4.0, tf.int32)  # 4, known only by running
        flat = tf.reshape(conv, tf.stack([1, -1, width]))
        tf.nn.leaky_relu(flat, alpha=0.2, name="act")
    graph_def = GraphDef.FromString(graph.as_graph_def().SerializeToString())
    model_graph = Graph(graph_def)
    apply_rules(model_graph, [load_rules(GOLDEN / "leaky_relu.rules")])
    assert [n.op for n in model_graph if n.name == "act"] == ["LReLU_TRT"]
    out = tmp_path / "dynamic.onnx"
    export_onnx(model_graph, out, outputs=["act:0"])
    model = onnx.load(str(out))
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 64, 4]
