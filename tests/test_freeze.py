"""`surgery freeze` on SavedModel directories and Keras files: exit codes, numerics, determinism,
refusals (output over the input, unknown inputs, TensorFlow missing)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from surgery.cli import main
from surgery.ir import model_io
from surgery.passes import freeze, tf_reference

REPO = Path(__file__).resolve().parent.parent


def _small_model():
    """A tiny randomised tf-keras model with two outputs (conv/BN/dense)."""
    import tf_keras as keras

    from surgery.models.weights import randomise

    keras.backend.clear_session()
    image = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(image)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.LeakyReLU(0.1, name="act")(x)
    x = keras.layers.Flatten(name="flat")(x)
    logits = keras.layers.Dense(5, name="logits")(x)
    probs = keras.layers.Softmax(name="probs")(logits)
    model = keras.Model(image, [logits, probs], name="small")
    randomise(model, 9)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    """The small model saved as .keras, .h5 and a SavedModel directory, with a reference run."""
    root = tmp_path_factory.mktemp("freeze")
    model = _small_model()
    paths = {
        "keras": root / "small.keras",
        "h5": root / "small.h5",
        "savedmodel": root / "small_savedmodel",
    }
    model.save(paths["keras"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "HDF5 is a legacy format": we test it
        model.save(paths["h5"])
    model.save(paths["savedmodel"], save_format="tf")
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    want = [np.asarray(t) for t in model(x, training=False)]
    return {"paths": paths, "x": x, "want": want, "root": root}


@pytest.mark.parametrize("kind", ["keras", "h5", "savedmodel"])
def test_freeze_cli_matches_keras(kind: str, saved: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "frozen.pb"
    assert main(["freeze", str(saved["paths"][kind]), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    graph = model_io.load(out)
    assert not graph.nodes_by_op("VarHandleOp", "ReadVariableOp", "StatefulPartitionedCall")
    assert {"Conv2D", "FusedBatchNormV3", "LeakyRelu", "MatMul"} <= set(graph.op_types())
    (placeholder,) = graph.graph_inputs()
    outputs = [n.name for n in graph.nodes_by_op("Identity") if n.controls == ("NoOp",)]
    got = tf_reference.run_graph_def(out, {placeholder.name: saved["x"]}, outputs)
    values = sorted((got[o] for o in outputs), key=lambda v: float(v.sum()))
    wanted = sorted(saved["want"], key=lambda v: float(v.sum()))
    for a, b in zip(values, wanted, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_freeze_is_deterministic_and_writes_pbtxt(saved: dict, tmp_path: Path) -> None:
    source = str(saved["paths"]["keras"])
    assert main(["freeze", source, "-o", str(tmp_path / "a.pb")]) == 0
    assert main(["freeze", source, "-o", str(tmp_path / "b.pb")]) == 0
    assert (tmp_path / "a.pb").read_bytes() == (tmp_path / "b.pb").read_bytes()
    assert main(["freeze", source, "-o", str(tmp_path / "a.pbtxt")]) == 0
    text = model_io.load(tmp_path / "a.pbtxt").to_graph_def()
    assert text == model_io.read_graph_def(tmp_path / "a.pb")


def test_freeze_output_prunes(saved: dict, tmp_path: Path) -> None:
    full = freeze.freeze(saved["paths"]["keras"])
    first = full.outputs[0]
    pruned = freeze.freeze_to_file(saved["paths"]["keras"], tmp_path / "p.pb", [first])
    assert pruned.outputs == [first] and len(pruned.graph_def.node) < len(full.graph_def.node)
    assert main(["freeze", str(saved["paths"]["keras"]), "-o", str(tmp_path / "q.pb"),
                 "--output", "no_such_node"]) == 1
    assert not (tmp_path / "q.pb").exists()


def test_freeze_refuses_output_over_input(saved: dict, capsys) -> None:
    keras_file = saved["paths"]["keras"]
    before = keras_file.read_bytes()
    listing = sorted(os.listdir(saved["root"]))
    assert main(["freeze", str(keras_file), "-o", str(keras_file)]) == 1
    err = capsys.readouterr().err
    assert "overwrite the input" in err and err.count("\n") == 1
    assert keras_file.read_bytes() == before and sorted(os.listdir(saved["root"])) == listing
    directory = saved["paths"]["savedmodel"]
    assert main(["freeze", str(directory), "-o", str(directory)]) == 1
    assert directory.is_dir()


@pytest.mark.parametrize("case", ["missing", "not_a_model", "not_a_savedmodel", "bad_keras"])
def test_freeze_bad_input(case: str, tmp_path: Path, capsys) -> None:
    source = tmp_path / {"missing": "nope.keras", "not_a_model": "notes.txt",
                         "not_a_savedmodel": "emptydir", "bad_keras": "broken.h5"}[case]
    if case == "not_a_model":
        source.write_text("hello")
    elif case == "not_a_savedmodel":
        source.mkdir()
    elif case == "bad_keras":
        source.write_bytes(b"\x89HDF\r\n truncated")
    out = tmp_path / "out.pb"
    assert main(["freeze", str(source), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(source) in err and err.count("\n") == 1
    assert not out.exists()


def test_freeze_without_tensorflow_says_so(saved: dict, tmp_path: Path) -> None:
    out = tmp_path / "out.pb"
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "from surgery.cli import main\n"
        f"sys.exit(main(['freeze', {str(saved['paths']['keras'])!r}, '-o', {str(out)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "TensorFlow is required" in proc.stderr and not out.exists()


def test_freeze_plain_tf_module_savedmodel(tmp_path: Path) -> None:
    import tensorflow as tf

    class Scale(tf.Module):
        """y = relu(x @ w) with one variable, exported with a serving signature."""

        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2) - 2.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.nn.relu(tf.matmul(x, self.w))}

    module = Scale()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.__call__)
    frozen = freeze.freeze_to_file(tmp_path / "sm", tmp_path / "sm.pb")
    assert [s.name for s in frozen.inputs] == ["x"] and frozen.output_keys == ["y"]
    x = np.ones((2, 3), np.float32)
    got = tf_reference.run_graph_def(tmp_path / "sm.pb", {"x": x}, frozen.outputs)
    np.testing.assert_allclose(got[frozen.outputs[0]], np.asarray(module(x)["y"]))
