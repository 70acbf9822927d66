"""`surgery validate`: region-wise evaluation; correct rewrites pass, planted bugs are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from surgery.backends.validate import ValidationError, load_inputs, random_inputs, validate
from surgery.cli import main
from surgery.ir import model_io
from surgery.ir.graph import Graph
from surgery.ir.tensor_values import from_numpy
from surgery.ops.plugin_schema import field_attr, load_catalog

pytest.importorskip("tensorflow")

LRELU_1 = "box3d/leaky_re_lu_1/LeakyRelu"
LRELU_2 = "box3d/leaky_re_lu_2/LeakyRelu"


def to_plugins(graph: Graph, slopes: dict[str, float] | None = None) -> Graph:
    """Every LeakyRelu becomes LReLU_TRT in place (same name); `slopes` overrides negSlope."""
    schema = load_catalog().get("LReLU_TRT")
    for node in graph.nodes_by_op("LeakyRelu"):
        slope = (slopes or {}).get(node.name, node.attr["alpha"].f)
        graph.set_op(node.name, "LReLU_TRT")
        for key in list(node.attr):
            del node.attr[key]
        node.attr["negSlope"].CopyFrom(field_attr(schema, "negSlope", slope))
    return graph


def test_correct_rewrite_passes(box3d_pb: Path) -> None:
    report = validate(
        model_io.load(box3d_pb), to_plugins(model_io.load(box3d_pb)), per_boundary=True
    )
    assert report.passed, report.format()
    assert len(report.plugins) == 5 and len(report.outputs) == 3
    assert report.first_divergent is None
    assert "PASS" in report.format()


def test_engine_rewrite_passes_through_the_cli(box3d_pb: Path, tmp_path: Path, capsys) -> None:
    out, log = tmp_path / "rewritten.pb", tmp_path / "changes.json"
    rules = [
        str(Path(__file__).parent.parent / "rules" / n)
        for n in ("leaky_relu.rules", "l2_normalize.rules")
    ]
    assert main(["apply", *rules, str(box3d_pb), "-o", str(out), "--log", str(log)]) == 0
    capsys.readouterr()
    assert main(["validate", str(box3d_pb), str(out), "--log", str(log)]) == 0
    text = capsys.readouterr().out
    assert "plugins run by reference: 6" in text and "L2Norm_Surgery" in text and "PASS" in text


def test_wrong_slope_is_caught_and_named(box3d_pb: Path, tmp_path: Path, capsys) -> None:
    bad = to_plugins(model_io.load(box3d_pb), {LRELU_2: 0.3})
    report = validate(model_io.load(box3d_pb), bad, per_boundary=True)
    assert not report.passed
    assert report.first_divergent is not None
    assert report.first_divergent.label.startswith(f"output 0 of plugin {LRELU_2}")
    assert any(not c.passed for c in report.outputs)
    path = tmp_path / "bad.pb"
    model_io.save(bad, path)
    assert main(["validate", str(box3d_pb), str(path), "--per-boundary"]) == 1
    assert f"first divergence: output 0 of plugin {LRELU_2}" in capsys.readouterr().out


def test_layout_mixup_before_flatten_is_caught(box3d_pb: Path) -> None:
    bad = to_plugins(model_io.load(box3d_pb))
    perm = from_numpy(np.array([0, 3, 1, 2], dtype=np.int32))
    attrs = {"dtype": field_attr_type("int32"), "value": tensor_attr(perm)}
    bad.add_node("planted/perm", "Const", attrs=attrs)
    pool = "box3d/block4_pool/MaxPool"
    bad.add_node("planted/to_nchw", "Transpose", [pool, "planted/perm"],
                 attrs={"T": field_attr_type(), "Tperm": field_attr_type("int32")})  # fmt: skip
    bad.set_input("box3d/flatten/Reshape", 0, "planted/to_nchw")
    report = validate(model_io.load(box3d_pb), bad, per_boundary=True)
    assert not report.passed
    first = report.first_divergent
    assert first is not None and first.label.startswith("input 0 of plugin ")
    assert "/BiasAdd" in first.label and "dense_" in first.label


def test_renamed_plugin_is_paired_through_the_log(box3d_pb: Path, tmp_path: Path) -> None:
    graph = model_io.load(box3d_pb)
    schema = load_catalog().get("LReLU_TRT")
    old = graph.node(LRELU_1)
    graph.add_node("plugins/lrelu_1", "LReLU_TRT", list(old.inputs),
                   attrs={"negSlope": field_attr(schema, "negSlope", 0.5)})  # fmt: skip
    users = [(user.name, slot) for user, slot in graph.consumers(LRELU_1)]
    for user, slot in users:
        graph.set_input(user, slot, "plugins/lrelu_1")
    graph.remove_nodes([LRELU_1])
    changes = [
        {"kind": "add_node", "node": "plugins/lrelu_1", "rule": "r", "loc": "", "match": "r#1",
         "detail": {"op": "LReLU_TRT"}},
        *({"kind": "rewire", "node": user, "rule": "r", "loc": "", "match": "r#1",
           "detail": {"slot": slot, "old": LRELU_1, "new": "plugins/lrelu_1"}}
          for user, slot in users),
    ]  # fmt: skip
    log = tmp_path / "changes.json"
    log.write_text(json.dumps({"changes": changes}))
    rewritten = tmp_path / "renamed.pb"
    model_io.save(graph, rewritten)
    from surgery.backends.validate import provenance_map

    assert provenance_map(log) == {"plugins/lrelu_1": LRELU_1}
    report = validate(model_io.load(box3d_pb), graph, per_boundary=True,
                      provenance=provenance_map(log))  # fmt: skip
    assert report.first_divergent is not None
    assert report.first_divergent.label.startswith("output 0 of plugin plugins/lrelu_1")
    assert LRELU_1 in report.first_divergent.label


def test_npz_inputs_checked_and_used(box3d_pb: Path, tmp_path: Path, capsys) -> None:
    graph = model_io.load(box3d_pb)
    feeds = random_inputs(graph, seed=3)
    good = tmp_path / "good.npz"
    np.savez(good, **{"input_1:0": feeds["input_1"]})
    np.testing.assert_array_equal(load_inputs(good, graph)["input_1"], feeds["input_1"])
    cases = {
        "name.npz": ({"image": feeds["input_1"]}, "names no placeholder"),
        "shape.npz": ({"input_1": np.zeros((1, 32, 32, 3), np.float32)}, "has shape"),
        "empty.npz": ({}, "no array for placeholder"),
    }
    for file, (arrays, message) in cases.items():
        np.savez(tmp_path / file, **arrays)
        with pytest.raises(ValidationError, match=message):
            load_inputs(tmp_path / file, graph)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValidationError, match="cannot read"):
        load_inputs(tmp_path / "junk.npz", graph)
    rewritten = tmp_path / "ok.pb"
    model_io.save(to_plugins(model_io.load(box3d_pb)), rewritten)
    assert (
        main(["validate", str(box3d_pb), str(rewritten), "--inputs", str(tmp_path / "shape.npz")])
        == 1
    )
    assert "has shape (1, 32, 32, 3)" in capsys.readouterr().err
    assert main(["validate", str(box3d_pb), str(rewritten), "--inputs", str(good)]) == 0


def test_unknown_dims_need_a_shape(box3d_pb: Path) -> None:
    graph = model_io.load(box3d_pb)
    graph.node("input_1").attr["shape"].shape.dim[1].size = -1
    with pytest.raises(ValidationError, match="input_1.*--shape input_1="):
        random_inputs(graph)
    assert random_inputs(graph, {"input_1": (2, 64, 64, 3)})["input_1"].shape == (2, 64, 64, 3)
    with pytest.raises(ValidationError, match="does not fit"):
        random_inputs(graph, {"input_1": (1, 64, 64)})
    with pytest.raises(ValidationError, match="not a placeholder"):
        random_inputs(graph, {"nope": (1,)})


def test_unknown_op_and_missing_reference(box3d_pb: Path, monkeypatch) -> None:
    graph = model_io.load(box3d_pb)
    graph.set_op(LRELU_1, "Mystery_TRT")
    with pytest.raises(ValidationError, match="Mystery_TRT.*neither a TensorFlow op"):
        validate(model_io.load(box3d_pb), graph)
    import plugins.registry as registry

    monkeypatch.delitem(registry.REFERENCES, "LReLU_TRT")
    with pytest.raises(ValidationError, match="LReLU_TRT has no reference"):
        validate(model_io.load(box3d_pb), to_plugins(model_io.load(box3d_pb)))


def field_attr_type(name: str = "float32"):
    """A `type` AttrValue."""
    from surgery.ir.attrs import make_attr

    return make_attr(name, "type")


def tensor_attr(tensor):
    """A `tensor` AttrValue."""
    from surgery.ir.protos import AttrValue

    attr = AttrValue()
    attr.tensor.CopyFrom(tensor)
    return attr


def test_engine_validation_says_plainly_why_it_cannot_run(tmp_path, capsys) -> None:
    """This CI machine has no NVIDIA driver: `--engine` must say so, not fail obscurely."""
    from surgery.backends.trt_runtime import cuda_devices, why_engine_cannot_run
    from surgery.cli import main as cli

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not run")
    reason = why_engine_cannot_run(engine)
    if cuda_devices():
        pytest.skip("a GPU is present here; this test covers machines without one")
    assert reason is not None
    assert cli(["validate", "a.pb", "b.pb", "--engine", str(engine)]) == 1
    err = capsys.readouterr().err
    assert "cannot run the engine here:" in err and reason in err


# --------------------------------------------------------------------------- small graphs
def _tf_graph(build) -> Graph:
    """A Graph from a TF1-style graph built by `build(tf)` (placeholders and ops by name)."""
    import tensorflow as tf

    from surgery.ir.protos import GraphDef

    with tf.Graph().as_default() as g:
        build(tf)
    return Graph(GraphDef.FromString(g.as_graph_def().SerializeToString()))


def test_every_port_of_a_multi_output_graph_output_is_compared() -> None:
    from surgery.backends.validate import graph_output_tensors

    def original(tf) -> None:
        x = tf.compat.v1.placeholder(tf.float32, [4], name="x")
        tf.split(x, 2, name="parts")

    def wrong_second_half(tf) -> None:
        x = tf.compat.v1.placeholder(tf.float32, [4], name="x")
        tf.split(x * tf.constant([1.0, 1.0, 1.0, 2.0]), 2, name="parts")

    before = _tf_graph(original)
    assert graph_output_tensors(before) == ["parts:0", "parts:1"]
    good = validate(before, _tf_graph(original))
    assert good.passed and [c.label for c in good.outputs] == ["parts", "parts:1"]
    bad = validate(before, _tf_graph(wrong_second_half))
    assert not bad.passed
    assert [c.passed for c in bad.outputs] == [True, False]


def test_input_map_parses_and_rejects() -> None:
    from surgery.backends.validate import InputMapping, parse_input_map
    from surgery.ir.ports import TensorRef

    assert parse_input_map("Input=image_tensor:0,3,1,2") == InputMapping(
        "Input", TensorRef("image_tensor", 0), (0, 3, 1, 2)
    )
    assert parse_input_map("Input=pre/sub") == InputMapping("Input", TensorRef("pre/sub", 0))
    assert parse_input_map("In=a/b:1:1,0").source == TensorRef("a/b", 1)
    assert str(parse_input_map("In=a/b:1:1,0")) == "In=a/b:1:1,0"
    for text, message in (
        ("Input", "expected NEW=OLD"), ("=x", "expected NEW=OLD"),
        ("Input=x:0,2,2", "not a permutation"), ("Input=x:0,a", "not a permutation"),
    ):  # fmt: skip
        with pytest.raises(ValidationError, match=message):
            parse_input_map(text)


def _nchw_input_rewrite(perm_of_new: tuple[int, ...] = (0, 2, 3, 1)) -> tuple[Graph, Graph]:
    """Original: image NHWC -> *2 -> sum over H; rewritten: an NCHW `Input` transposed back."""

    def original(tf) -> None:
        image = tf.compat.v1.placeholder(tf.float32, [1, 4, 5, 3], name="image")
        pre = tf.multiply(image, 2.0, name="pre")
        tf.reduce_sum(pre * pre, axis=1, name="out")

    def rewritten(tf) -> None:
        new = tf.compat.v1.placeholder(tf.float32, [1, 3, 4, 5], name="Input")
        pre = tf.transpose(new, list(perm_of_new), name="pre")
        tf.reduce_sum(pre * pre, axis=1, name="out")

    return _tf_graph(original), _tf_graph(rewritten)


def test_input_map_feeds_a_new_placeholder_from_an_original_tensor() -> None:
    from surgery.backends.validate import parse_input_map

    before, after = _nchw_input_rewrite()
    with pytest.raises(ValidationError, match="Input that the original lacks.*--input-map"):
        validate(before, after)
    report = validate(before, after, input_map=[parse_input_map("Input=pre:0,3,1,2")])
    assert report.passed, report.format()
    assert "input map: Input=pre:0,3,1,2" in report.format()
    with pytest.raises(ValidationError, match="gives shape \\(1, 3, 5, 4\\)"):
        validate(before, after, input_map=[parse_input_map("Input=pre:0,3,2,1")])


def test_input_map_errors_name_the_problem() -> None:
    from surgery.backends.validate import parse_input_map

    before, after = _nchw_input_rewrite()
    cases = {
        "Input=pre:0,2,1,3": "gives shape \\(1, 5, 4, 3\\); placeholder 'Input' is",
        "Input=pre:0,1": "permutation of rank 2",
        "Other=pre": "no placeholder 'Other'",
        "Input=nowhere": "original graph has no node 'nowhere'",
    }
    for text, message in cases.items():
        with pytest.raises(ValidationError, match=message):
            validate(before, after, input_map=[parse_input_map(text)])


def test_input_map_wrong_order_same_shape_fails() -> None:
    from surgery.backends.validate import parse_input_map

    # Input is [1, 3, 4, 4]: NCHW from NHWC is (0, 3, 1, 2); (0, 3, 2, 1) fits but swaps H, W.
    def original(tf) -> None:
        image = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 3], name="image")
        tf.reduce_sum(image * tf.reshape(tf.range(4.0), [1, 4, 1, 1]), axis=3, name="out")

    def rewritten(tf) -> None:
        new = tf.compat.v1.placeholder(tf.float32, [1, 3, 4, 4], name="Input")
        nhwc = tf.transpose(new, [0, 2, 3, 1])
        tf.reduce_sum(nhwc * tf.reshape(tf.range(4.0), [1, 4, 1, 1]), axis=3, name="out")

    before, after = _tf_graph(original), _tf_graph(rewritten)
    assert validate(before, after, input_map=[parse_input_map("Input=image:0,3,1,2")]).passed
    assert not validate(before, after, input_map=[parse_input_map("Input=image:0,3,2,1")]).passed


def test_merged_outputs_are_compared_at_the_boundary_and_exclude_is_reported() -> None:
    from surgery.backends.validate import sources_from_changes

    # Original: two outputs of separate ops; rewritten: one LReLU_TRT port stands for both
    # (a stand-in for NMS_TRT's detections replacing boxes, scores and classes).
    def original(tf) -> None:
        x = tf.compat.v1.placeholder(tf.float32, [2, 3], name="x")
        y = tf.identity(x, name="feature")
        tf.nn.leaky_relu(y, 0.1, name="a")
        tf.abs(y, name="b")

    before = _tf_graph(original)
    after = _tf_graph(original)
    after.set_op("a", "LReLU_TRT")
    node = after.node("a")
    del node.attr["alpha"], node.attr["T"]
    node.attr["negSlope"].CopyFrom(field_attr(load_catalog().get("LReLU_TRT"), "negSlope", 0.1))
    after.set_op("b", "Identity")
    after.set_input("b", 0, "a")
    changes = [
        {"kind": "add_node", "node": "a", "detail": {}},
        {"kind": "rewire", "node": "b", "detail": {"old": "feature", "new": "a"}},
        {"kind": "rewire", "node": "c", "detail": {"old": "a_old", "new": "a"}},
    ]
    provenance = sources_from_changes(changes)
    assert provenance == {"a": ("feature", "a_old")}
    plain = validate(before, after)
    assert not plain.passed  # b = |x| differs from leaky_relu(x)
    report = validate(before, after, per_boundary=True, provenance=provenance)
    assert report.passed, report.format()
    assert [c.label for c in report.outputs] == []
    assert any(c.label.startswith("input 0 of plugin a") for c in report.boundaries)
    assert sum("compared at the plugin boundaries instead" in s for s in report.skipped) == 2
    excluded = validate(before, after, exclude=["b"])
    assert [c.label for c in excluded.outputs] == ["a"] and excluded.passed
    assert excluded.skipped == ["output b: excluded (b)"]
    nothing = validate(before, after, exclude=["a"])  # b is computed from a: excluded too
    assert not nothing.passed and "nothing was compared" in nothing.format()


def test_boundaries_of_different_shape_compare_flat() -> None:
    from surgery.backends.validate import compare

    want = np.arange(8, dtype=np.float32).reshape(1, 2, 1, 4)
    same = compare("c", "c", "c", want, want.reshape(1, 8, 1, 1), 1e-5, 1e-5, flat_ok=True)
    assert same.passed and "compared flat" in same.note
    mixed = want.reshape(1, 2, 4).transpose(0, 2, 1).reshape(1, 8, 1, 1)
    assert not compare("c", "c", "c", want, mixed, 1e-5, 1e-5, flat_ok=True).passed
    assert not compare("c", "c", "c", want, want.reshape(1, 8, 1, 1), 1e-5, 1e-5).passed


def test_cli_input_map_and_exclude(tmp_path: Path, capsys) -> None:
    before, after = _nchw_input_rewrite()
    a, b = tmp_path / "a.pb", tmp_path / "b.pb"
    model_io.save(before, a)
    model_io.save(after, b)
    assert main(["validate", str(a), str(b)]) == 1
    assert "--input-map" in capsys.readouterr().err
    assert main(["validate", str(a), str(b), "--input-map", "Input=pre:0,3,1,2"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["validate", str(a), str(b), "--input-map", "Input=pre:0,3,1,2",
                 "--exclude", "out"]) == 1  # fmt: skip
    text = capsys.readouterr().out
    assert "output out: excluded (out)" in text and "nothing was compared" in text
