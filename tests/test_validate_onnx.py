"""`surgery validate ORIGINAL.onnx REWRITTEN.onnx`: onnxruntime runs compared, plugin nodes run by
their NumPy references.

The models are real: the box3d network (LeakyReLU 0.1, an L2 normalize) frozen and converted by
tf2onnx through `surgery export`, rewritten by rules/leaky_relu.rules into five LReLU_TRT plugin
nodes; and a small onnx.helper model whose LeakyRelus become plugins reading plugins.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from surgery.cli import main

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
LEAKY_RULES = str(REPO / "rules" / "leaky_relu.rules")
pytest.importorskip("tf2onnx", reason="the ONNX model is made by tf2onnx")
pytest.importorskip("onnxruntime")


def _apply(model: Path, out: Path) -> Path:
    assert main(["apply", LEAKY_RULES, str(model), "-o", str(out)]) == 0
    return out


def _set_slope(model: Path, node_name: str, slope: float, out: Path) -> Path:
    """A copy of `model` whose plugin node `node_name` has negSlope `slope`."""
    proto = onnx.load(str(model))
    node = next(n for n in proto.graph.node if n.name == node_name)
    next(a for a in node.attribute if a.name == "negSlope").f = slope
    onnx.save(proto, str(out))
    return out


def _validate(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["validate", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def box3d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the tf2onnx export of box3d, its rewrite with five LReLU_TRT plugin nodes)."""
    from surgery.models import fixture_info

    folder = tmp_path_factory.mktemp("validate_onnx")
    model = folder / "box3d.onnx"
    assert main(["export", str(fixture_info("box3d").path), "-o", str(model)]) == 0
    return model, _apply(model, folder / "box3d.lrelu.onnx")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """x -> LeakyRelu -> LeakyRelu -> Mul -> LeakyRelu -> y, and Relu of the first to r: once
    rewritten, plugins read a plugin directly and through an ONNX node."""
    folder = tmp_path_factory.mktemp("validate_onnx_chain")
    weight = numpy_helper.from_array(np.linspace(-2, 2, 8).astype(np.float32), "w")
    nodes = [
        helper.make_node("LeakyRelu", ["x"], ["a"], name="lrelu_a", alpha=0.1),
        helper.make_node("LeakyRelu", ["a"], ["b"], name="lrelu_b", alpha=0.2),
        helper.make_node("Mul", ["b", "w"], ["c"], name="mul"),
        helper.make_node("LeakyRelu", ["c"], ["y"], name="lrelu_y", alpha=0.05),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
    ]
    float_n8 = [(name, onnx.TensorProto.FLOAT, ["n", 8]) for name in ("x", "y", "r")]
    x, y, r = (helper.make_tensor_value_info(*spec) for spec in float_n8)
    graph = helper.make_graph(nodes, "chain", [x], [y, r], [weight])
    # IR version 8: one the installed onnxruntime reads
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path = folder / "chain.onnx"
    onnx.save(model, str(path))
    return path, _apply(path, folder / "chain.lrelu.onnx")


def test_a_rewritten_export_validates_output_by_output(
    box3d: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _validate(capsys, *box3d)
    assert code == 0, out
    assert "plugins run by reference: 5" in out
    for name in ("Identity:0", "Identity_1:0", "Identity_2:0"):
        assert any(line.startswith(f"  ok   {name} (1, ") for line in out.splitlines()), out
    assert out.rstrip().endswith("PASS")


def test_the_dump_holds_every_plugin_with_its_reference_outputs(
    box3d: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from plugins.registry import reference
    from surgery.backends.plugin_dump import load_dump

    code, out, _ = _validate(capsys, *box3d, "--dump", tmp_path / "dump")
    assert code == 0, out
    assert "plugin dump: 5 plugin nodes" in out
    dump = load_dump(tmp_path / "dump")
    assert dump.model == box3d[1].name
    names = [n.name for n in onnx.load(str(box3d[1])).graph.node if n.op_type == "LReLU_TRT"]
    assert sorted(e.node for e in dump.plugins) == sorted(names)
    for entry in dump.plugins:
        assert entry.op == "LReLU_TRT"
        assert entry.fields["negSlope"] == pytest.approx(0.1)
        inputs, outputs = entry.load()
        assert inputs[0].dtype == np.float32 and inputs[0].shape[0] == 1
        expected = reference(entry.op)(inputs, entry.fields)
        assert len(outputs) == len(expected) == 1
        np.testing.assert_array_equal(outputs[0], expected[0])


def test_a_broken_rewrite_fails_and_names_the_output(
    box3d: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original, rewritten = box3d
    # the plugin under the confidence head (Softmax -> Identity_2:0), fed negative values
    broken = _set_slope(rewritten, "box3d/leaky_re_lu_4/LeakyRelu", 0.3, tmp_path / "bad.onnx")
    code, out, _ = _validate(capsys, original, broken)
    assert code == 1, out
    lines = out.splitlines()
    assert any(line.startswith("  FAIL Identity_2:0 (1, 2)") for line in lines), out
    assert any(line.startswith("  ok   Identity:0") for line in lines), out
    assert lines[-1] == "FAIL"


def test_plugins_reading_plugins_run_in_topological_order(
    chain: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from surgery.backends.onnx_evaluate import OnnxEvaluator
    from surgery.backends.plugin_dump import load_dump

    original, rewritten = chain
    waves = OnnxEvaluator(onnx.load(str(rewritten)), {}).waves()
    assert [[p.label for p in wave] for wave in waves] == [["lrelu_a"], ["lrelu_b"], ["lrelu_y"]]
    code, out, _ = _validate(capsys, original, rewritten, "--input", "x=3,8",
                             "--dump", tmp_path / "dump")  # fmt: skip
    assert code == 0, out
    assert "ok   y (3, 8)" in out and "ok   r (3, 8)" in out
    entries = load_dump(tmp_path / "dump").plugins
    assert [e.node for e in entries] == ["lrelu_a", "lrelu_b", "lrelu_y"]
    (_, first), (second_in, _) = entries[0].load(), entries[1].load()
    np.testing.assert_array_equal(second_in[0], first[0])  # a plugin fed a plugin's output
    # the middle plugin changed: y (downstream of it) fails, r (beside it) does not
    broken = _set_slope(rewritten, "lrelu_b", 0.5, tmp_path / "bad.onnx")
    code, out, _ = _validate(capsys, original, broken, "--input", "x=3,8")
    assert code == 1
    assert "FAIL y (3, 8)" in out and "ok   r (3, 8)" in out


def test_inputs_from_an_npz_or_pinned_dims(
    box3d: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = np.random.default_rng(7).standard_normal((3, 64, 64, 3)).astype(np.float32)
    np.savez(tmp_path / "in.npz", **{"input_1:0": image})
    code, out, _ = _validate(capsys, *box3d, "--inputs", tmp_path / "in.npz")
    assert code == 0 and "ok   Identity:0 (3, 3)" in out, out
    code, out, _ = _validate(capsys, *box3d, "--input", "input_1:0=2,64,64,3",
                             "--exclude", "Identity_2*")  # fmt: skip
    assert code == 0 and "ok   Identity:0 (2, 3)" in out, out
    assert "output Identity_2:0: excluded (Identity_2*)" in out
    code, _, err = _validate(capsys, *box3d, "--input", "image=2,64,64,3")
    assert code == 1 and "no input 'image' (inputs: input_1:0)" in err


def test_mixed_formats_and_tensorflow_only_options_are_usage_errors(
    box3d: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from surgery.models import fixture_info

    graph = fixture_info("box3d").path
    for pair in ((graph, box3d[1]), (box3d[0], graph)):
        code, _, err = _validate(capsys, *pair)
        assert code == 2 and "one is an ONNX model, the other a TensorFlow graph" in err
    code, _, err = _validate(capsys, *box3d, "--per-boundary", "--input-map", "a=b")
    assert code == 2
    assert "not for ONNX models: --per-boundary" in err and "--input-map" in err


def test_a_plugin_outside_the_catalog_is_named(
    box3d: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proto = onnx.load(str(box3d[1]))
    node = next(n for n in proto.graph.node if n.op_type == "LReLU_TRT")
    node.op_type = "Mystery_TRT"
    onnx.save(proto, str(tmp_path / "mystery.onnx"))
    code, _, err = _validate(capsys, box3d[0], tmp_path / "mystery.onnx")
    assert code == 1
    assert f"plugin node {node.name!r}: Mystery_TRT version 1 is not in the plugin catalog" in err


def test_a_rewrite_onnxruntime_cannot_run_is_an_error_naming_it(
    chain: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proto = onnx.load(str(chain[1]))
    proto.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones(5, np.float32), "w"))
    broken = tmp_path / "broadcast.onnx"
    onnx.save(proto, str(broken))
    code, _, err = _validate(capsys, chain[0], broken)
    assert code == 1
    assert f"onnxruntime failed on {broken}:" in err and "Mul node" in err
