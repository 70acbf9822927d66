"""`--input NAME=D0,D1,...`: placeholders pinned, the shape arithmetic that becomes constant
folded into Consts, on real frozen tf-keras graphs with dynamic dims (no mocks)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from surgery import models
from surgery.cli import main
from surgery.ir import model_io
from surgery.ir.graph import Graph
from surgery.ir.tensor_values import to_numpy
from surgery.passes.input_shapes import (
    InputShapeError,
    fold_shape_arithmetic,
    parse_input_flag,
    parse_input_flags,
    pin_and_fold,
    pin_inputs,
)

pytest.importorskip("tensorflow")

RULES = (
    'use plugins "trt-8.6"\n'
    "rule upsample_const:\n"
    "    match y = ResizeNearestNeighbor(x, s = Const())\n"
    "    where y.align_corners == false and len(s.value) == 2\n"
    "    insert t = Transpose(x, const(int32, [0, 3, 1, 2])) { T: type = float32, "
    "Tperm: type = int32 }\n"
    "    insert p = ResizeNearest_TRT(t) { scale = s.value[0] / 16 }\n"
    "    replace y with Transpose(p, const(int32, [0, 2, 3, 1])) { T: type = float32, "
    "Tperm: type = int32 }\n"
)
COMMANDS = ("layout", "apply", "match", "explain", "shapes", "validate", "export")
PIN = "image=1,16,16,3"


def _freeze(model: Any, path: Path) -> Path:
    """Freeze a tf-keras model to `path` (TF1 control flow, as real frozen models have)."""
    from surgery.passes.freeze import freeze_keras_model

    path.write_bytes(freeze_keras_model(model).graph_def.SerializeToString())
    return path


@pytest.fixture(scope="module")
def upsample_pb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conv -> UpSampling2D -> Conv on `image [?, ?, ?, 3]`, plus a Reshape whose shape is
    `Pack(Shape(y)[0], Shape(y)[1] * Shape(y)[2], 2)`."""
    import tensorflow as tf

    from surgery.passes.freeze import import_tf_keras

    keras = import_tf_keras()
    keras.utils.set_random_seed(0)
    image = keras.Input(shape=(None, None, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(image)
    x = keras.layers.UpSampling2D(2, name="up")(x)
    y = keras.layers.Conv2D(2, 1, name="head")(x)

    def flatten(t: Any) -> Any:
        dims = tf.shape(t)
        return tf.reshape(t, tf.stack([dims[0], dims[1] * dims[2], 2]))

    flat = keras.layers.Lambda(flatten, name="flat")(y)
    return _freeze(keras.Model(image, [y, flat]), tmp_path_factory.mktemp("m") / "up.pb")


@pytest.fixture(scope="module")
def control_flow_pb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cond whose branches return `tf.shape(t) * 2` or `* 3` straight into the Merge, then a
    while loop whose body reshapes by `tf.shape` of a tensor captured from outside: after
    pinning those Shapes are static, but sit in a branch or a frame and must not be folded."""
    import tensorflow as tf

    from surgery.passes.freeze import import_tf_keras

    keras = import_tf_keras()
    image = keras.Input(shape=(None, 4), name="image")

    def cond(t: Any) -> Any:
        picked = tf.cond(tf.reduce_sum(t) > 0, lambda: tf.shape(t) * 2, lambda: tf.shape(t) * 3)
        return t * tf.cast(tf.reduce_sum(picked), tf.float32)

    def loop(t: Any) -> Any:
        body = lambda i, v: (i + 1, tf.reshape(v * 2.0, tf.shape(t)))  # noqa: E731
        return tf.while_loop(lambda i, v: i < 3, body, [tf.constant(0), t])[1]

    picked = keras.layers.Lambda(cond, name="cond")(image)
    out = keras.layers.Lambda(loop, name="loop")(picked)
    return _freeze(keras.Model(image, out), tmp_path_factory.mktemp("m") / "cf.pb")


TF1_LOOP = """
import sys
import tensorflow as tf

tf.compat.v1.disable_control_flow_v2()
graph = tf.Graph()
with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="image")
    body = lambda i, v: (i + 1, tf.reshape(v * 2.0, tf.shape(x)))
    _, y = tf.compat.v1.while_loop(lambda i, v: i < 3, body, [tf.constant(0), x])
    tf.identity(y * tf.cast(tf.reduce_prod(tf.shape(x)), tf.float32), name="out")
open(sys.argv[1], "wb").write(graph.as_graph_def().SerializeToString())
"""


@pytest.fixture(scope="module")
def tf1_loop_pb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF1 while loop (Enter/Merge/Switch/NextIteration/Exit) whose body reshapes by the shape
    of a tensor from outside (an `Enter(is_constant)`, static once pinned), built by
    `tf.compat.v1` in a child process (control flow v1 is a process-wide switch)."""
    import subprocess
    import sys

    path = tmp_path_factory.mktemp("m") / "tf1_loop.pb"
    subprocess.run([sys.executable, "-c", TF1_LOOP, str(path)], check=True)
    return path


def _run(path: Path | Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every graph output of `path`, run in TensorFlow."""
    from surgery.passes.tf_reference import run_graph_def

    graph = path if isinstance(path, Graph) else model_io.load(path)
    outputs = [f"{n.name}:0" for n in graph.graph_outputs() if n.op != "Placeholder"]
    return run_graph_def(graph.to_graph_def(), feeds, outputs)


def _const_value(graph: Graph, name: str) -> list | None:
    """The value of node `name` if it is a Const, else None."""
    node = graph.node(name)
    return to_numpy(node.attr["value"].tensor).tolist() if node.op == "Const" else None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- folding
def test_apply_input_folds_upsample_size_and_reshape_shape(
    upsample_pb: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    before = model_io.load(upsample_pb)
    resize = before.nodes_by_op("ResizeNearestNeighbor")[0]
    assert before.node(resize.inputs[1].node).op == "Mul"  # Mul(StridedSlice(Shape(x)), Const)
    rules = tmp_path / "up.rules"
    rules.write_text(RULES)
    out = tmp_path / "out.pb"
    digest = _digest(upsample_pb)
    # Without --input the size is computed: the rule cannot see a Const.
    assert main(["apply", str(rules), str(upsample_pb), "-o", str(out)]) == 0
    assert not model_io.load(out).nodes_by_op("ResizeNearest_TRT")
    assert main(["apply", str(rules), str(upsample_pb), "-o", str(out), "--input", PIN]) == 0
    printed = capsys.readouterr().out
    assert "pinned image=[1, 16, 16, 3]; folded 2 shape-arithmetic nodes into Consts" in printed
    assert "upsample_const: 1 match applied" in printed
    assert _digest(upsample_pb) == digest  # the input file is never modified
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic: no leftovers
    after = model_io.load(out)
    assert len(after.nodes_by_op("ResizeNearest_TRT")) == 1
    assert [d.size for d in after.node("image").attr["shape"].shape.dim] == [1, 16, 16, 3]


def test_apply_input_with_infer_shapes_gives_rules_the_pinned_shapes(
    upsample_pb: Path, tmp_path: Path
) -> None:
    rules = tmp_path / "up.rules"
    rules.write_text(RULES.replace("/ 16", "/ shape(x)[1]"))
    out = tmp_path / "out.pb"
    argv = ["apply", str(rules), str(upsample_pb), "-o", str(out), "--input", PIN]
    assert main([*argv, "--infer-shapes"]) == 0
    graph = model_io.load(out)
    assert len(graph.nodes_by_op("ResizeNearest_TRT")) == 1  # shape(x) read [1, 16, 16, 4]


def test_folded_graph_computes_the_same_with_weights_untouched(
    upsample_pb: Path, tmp_path: Path
) -> None:
    out = tmp_path / "layout.pb"
    original = model_io.load(upsample_pb)
    graph = model_io.load(upsample_pb)
    report = pin_and_fold(graph, [PIN])
    assert report.pinned == {"image": (1, 16, 16, 3)} and not report.warnings
    resize = graph.nodes_by_op("ResizeNearestNeighbor")[0]
    assert _const_value(graph, resize.inputs[1].node) == [32, 32]
    reshape = graph.nodes_by_op("Reshape")[0]
    assert _const_value(graph, reshape.inputs[1].node) == [1, 32 * 32, 2]
    assert sorted(report.folded) == sorted([resize.inputs[1].node, reshape.inputs[1].node])
    assert not graph.nodes_by_op("Shape", "StridedSlice", "Pack")  # their only readers folded
    assert set(report.removed) == set(original.names) - set(graph.names)
    # Weights: every Const of the original that is still there is byte-identical.
    for node in original.nodes_by_op("Const"):
        if node.name in graph:
            assert graph.node(node.name).proto.SerializeToString(
                deterministic=True
            ) == node.proto.SerializeToString(deterministic=True), node.name
    weights = [n.name for n in original.nodes_by_op("Const") if "ReadVariableOp" in n.name]
    assert len(weights) == 4 and all(name in graph for name in weights)  # 2 kernels, 2 biases
    image = np.random.default_rng(1).standard_normal((1, 16, 16, 3)).astype(np.float32)
    want, got = _run(original, {"image": image}), _run(graph, {"image": image})
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    model_io.save(graph, out)
    graph_again = model_io.load(out)
    assert fold_shape_arithmetic(graph_again).folded == []  # nothing left to fold


def test_layout_pins_and_folds(upsample_pb: Path, tmp_path: Path) -> None:
    out = tmp_path / "nchw.pb"
    assert main(["layout", "nchw", str(upsample_pb), "-o", str(out), "--input", PIN]) == 0
    graph = model_io.load(out)
    assert [d.size for d in graph.node("image").attr["shape"].shape.dim] == [1, 16, 16, 3]
    assert not graph.nodes_by_op("Shape")
    for resize in graph.nodes_by_op("ResizeNearestNeighbor"):
        assert graph.node(resize.inputs[1].node).op == "Const"


def test_match_and_explain_see_the_folded_graph(
    upsample_pb: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rules = tmp_path / "up.rules"
    rules.write_text(RULES)
    assert main(["match", str(rules), str(upsample_pb)]) == 0
    assert "0 matches" in capsys.readouterr().out  # the size is Mul(StridedSlice(Shape(x)), 2)
    assert main(["match", str(rules), str(upsample_pb), "--input", PIN, "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # the summary goes to stderr, stdout stays JSON
    assert len(doc[0]["matches"]) == 1 and "pinned image=" in captured.err
    resize = model_io.load(upsample_pb).nodes_by_op("ResizeNearestNeighbor")[0].name
    argv = ["explain", str(rules), str(upsample_pb), "--rule", "upsample_const", "--node", resize]
    assert main(argv) == 0
    assert "does not match" in capsys.readouterr().out
    assert main([*argv, "--input", PIN]) == 0
    assert f"rule upsample_const matches at {resize!r}" in capsys.readouterr().out


def test_shapes_prints_pinned_shapes(upsample_pb: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["shapes", str(upsample_pb), "--ops", "Placeholder", "ResizeNearestNeighbor"]) == 0
    assert "image (Placeholder): [?, ?, ?, 3]" in capsys.readouterr().out
    assert main(["shapes", str(upsample_pb), "--input", PIN, "--ops", "Placeholder",
                 "ResizeNearestNeighbor"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "image (Placeholder): [1, 16, 16, 3]" in printed
    assert "(ResizeNearestNeighbor): [1, 32, 32, 4]" in printed


def test_validate_input_pins_both_graphs_and_shape_is_an_alias(
    upsample_pb: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folded = tmp_path / "folded.pb"
    graph = model_io.load(upsample_pb)
    pin_and_fold(graph, [PIN])
    model_io.save(graph, folded)
    # The original's image is [?, ?, ?, 3]: random inputs need a shape.
    assert main(["validate", str(upsample_pb), str(folded)]) == 1
    capsys.readouterr()
    for flag in ("--input", "--shape"):
        assert main(["validate", str(upsample_pb), str(folded), flag, PIN]) == 0
        assert "PASS" in capsys.readouterr().out
    assert main(["validate", str(upsample_pb), str(folded), "--input", "image=1,8,8,3"]) == 1
    assert "dim 1 is 16 in the graph, 8 given" in capsys.readouterr().err  # folded's pinned dims


def test_export_pins_before_conversion(upsample_pb: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("tf2onnx")
    out = tmp_path / "up.onnx"
    assert main(["export", str(upsample_pb), "-o", str(out), "--input", PIN]) == 0
    model = onnx.load(str(out))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 16, 16, 3]


def test_while_frames_and_cond_branches_are_left_alone(control_flow_pb: Path) -> None:
    original = model_io.load(control_flow_pb)
    assert original.nodes_by_op("Enter") and original.nodes_by_op("Switch")
    graph = model_io.load(control_flow_pb)
    report = pin_and_fold(graph, ["image=2,3,4"])
    assert not report.warnings
    shapes = {n.name for n in original.nodes_by_op("Shape")}
    assert shapes and shapes <= {n.name for n in graph.nodes_by_op("Shape")}  # none folded
    for value in (1.0, -1.0):  # both branches of the cond
        image = np.full((2, 3, 4), value, dtype=np.float32)
        want, got = _run(original, {"image": image}), _run(graph, {"image": image})
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


def test_tf1_while_frames_are_left_alone(tf1_loop_pb: Path) -> None:
    original = model_io.load(tf1_loop_pb)
    assert original.nodes_by_op("Enter") and original.nodes_by_op("NextIteration")
    graph = model_io.load(tf1_loop_pb)
    report = pin_and_fold(graph, ["image=2,4"])
    in_loop = [n.name for n in original.nodes_by_op("Shape") if "while/" in n.name]
    assert in_loop and all(graph.node(name).op == "Shape" for name in in_loop)
    assert report.folded == ["Cast"]  # the loop-free reduce_prod(shape(x)) outside
    assert _const_value(graph, "Cast") == 8.0
    image = np.arange(8, dtype=np.float32).reshape(2, 4)
    want, got = _run(original, {"image": image}), _run(graph, {"image": image})
    np.testing.assert_array_equal(got["out:0"], want["out:0"])


def test_plugin_graphs_are_pinned_not_folded(upsample_pb: Path, tmp_path: Path) -> None:
    rules = tmp_path / "up.rules"
    rules.write_text(RULES)
    rewritten = tmp_path / "trt.pb"
    assert main(["apply", str(rules), str(upsample_pb), "-o", str(rewritten), "--input", PIN]) == 0
    graph = model_io.load(rewritten)
    graph.node("image").attr["shape"].shape.dim[1].size = -1  # dynamic again, plugin inside
    report = pin_and_fold(graph, [PIN])
    assert report.pinned == {"image": (1, 16, 16, 3)}
    assert report.warnings and "not folded" in report.warnings[0]
    assert [d.size for d in graph.node("image").attr["shape"].shape.dim] == [1, 16, 16, 3]


# --------------------------------------------------------------------------- errors
def test_parse_input_flag() -> None:
    assert parse_input_flag("input_image=1,128,128,3") == ("input_image", (1, 128, 128, 3))
    assert parse_input_flag("input_image:0=1, 8") == ("input_image", (1, 8))
    assert parse_input_flag("scalar=") == ("scalar", ())
    for bad in ("image", "=1,2", "image=1,x,3", "image=1,-1", "image:1=1", "image=1,,2"):
        with pytest.raises(InputShapeError, match="expected NAME=D0,D1,"):
            parse_input_flag(bad)
    with pytest.raises(InputShapeError, match="given twice"):
        parse_input_flags(["a=1,2", "a=1,3"])


def test_pin_checks_everything_before_writing(upsample_pb: Path) -> None:
    graph = model_io.load(upsample_pb)
    with pytest.raises(InputShapeError, match="no Placeholder named 'nope'"):
        pin_inputs(graph, {"image": (1, 8, 8, 3), "nope": (1,)})
    assert [d.size for d in graph.node("image").attr["shape"].shape.dim] == [-1, -1, -1, 3]


def _argv(command: str, model: Path, tmp: Path, flag: str) -> list[str]:
    """`command` on `model` with one `--input` value `flag`, every other argument valid."""
    rules = tmp / "up.rules"
    rules.write_text(RULES)
    out = tmp / "out.pb"
    return {
        "layout": ["layout", "nchw", str(model), "-o", str(out)],
        "apply": ["apply", str(rules), str(model), "-o", str(out)],
        "match": ["match", str(rules), str(model)],
        "explain": ["explain", str(rules), str(model), "--rule", "upsample_const", "--node", "x"],
        "shapes": ["shapes", str(model)],
        "validate": ["validate", str(model), str(model)],
        "export": ["export", str(model), "-o", str(tmp / "out.onnx")],
    }[command] + ["--input", flag]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("imag=1,16,16,3", "--input imag: no Placeholder named 'imag' in the graph "
                           "(did you mean 'image'?)"),
        ("{conv}=1,16,16,4", "--input {conv}: is a Conv2D node, not a Placeholder"),
        ("image=1,16,16", "--input image: 3 dims given [1, 16, 16], but the placeholder is "
                          "rank 4: [?, ?, ?, 3]"),
        ("image=1,16,16,4", "--input image: dim 3 is 3 in the graph, 4 given "
                            "(declared [?, ?, ?, 3])"),
        ("image=1,16,x,3", "--input 'image=1,16,x,3': expected NAME=D0,D1,..."),
    ],
)  # fmt: skip
def test_errors_are_one_line_naming_the_node(
    command: str, flag: str, message: str, upsample_pb: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    conv = model_io.load(upsample_pb).nodes_by_op("Conv2D")[0].name
    flag, message = flag.replace("{conv}", conv), message.replace("{conv}", conv)
    assert main(_argv(command, upsample_pb, tmp_path, flag)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"surgery {command}: error: {message}"), err
    assert err.count("\n") == 1
    assert not (tmp_path / "out.pb").exists() and not (tmp_path / "out.onnx").exists()


def test_every_command_declares_input_the_same_way(capsys: pytest.CaptureFixture) -> None:
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--input NAME=D0,D1,..." in capsys.readouterr().out, command


# --------------------------------------------------------------------------- Mask R-CNN
def _matterport(name: str) -> Path:
    """A Matterport Mask R-CNN fixture, or a skip while surgery.models lacks it."""
    if name not in models.FIXTURES:
        pytest.skip(f"surgery.models has no {name} fixture")
    pytest.importorskip("mrcnn")
    return models.fixture_path(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["matterport_small", "matterport_small_tf1cf"])
def test_matterport_fpn_upsample_sizes_become_consts(name: str) -> None:
    graph = model_io.load(_matterport(name))
    original = graph.copy()
    report = pin_and_fold(graph, ["input_image=1,128,128,3"])
    assert not report.warnings and len(report.folded) >= 13
    sizes = {}
    for level, size in (("p5", 8), ("p4", 16), ("p3", 32)):
        resize = next(n for n in graph.nodes_by_op("ResizeNearestNeighbor")
                      if n.name.startswith(f"fpn_{level}upsampled/"))  # fmt: skip
        sizes[level] = (_const_value(graph, resize.inputs[1].node), [size, size])
    assert all(got == want for got, want in sizes.values()), sizes
    rng = np.random.default_rng(0)
    meta = [0, 128, 128, 3, 128, 128, 3, 0, 0, 128, 128, 1] + [0] * (
        [d.size for d in graph.node("input_image_meta").attr["shape"].shape.dim][1] - 12
    )  # fmt: skip
    anchors = original.node("input_anchors")
    feeds = {
        "input_image": rng.standard_normal((1, 128, 128, 3)).astype(np.float32),
        "input_image_meta": np.array([meta], dtype=np.float32),
        "input_anchors": np.sort(rng.random((1, 4092, 4)), axis=-1).astype(np.float32),
    }
    assert anchors.op == "Placeholder"
    want, got = _run(original, feeds), _run(graph, feeds)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
