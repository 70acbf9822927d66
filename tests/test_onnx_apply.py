"""`surgery apply RULES model.onnx -o out.onnx`: the rule language on ONNX models.

The model is a real export: the box3d network (LeakyReLU 0.1) frozen, then converted by
tf2onnx through `surgery export`; rules/leaky_relu.rules, written for TensorFlow graphs, turns
its LeakyRelu nodes into LReLU_TRT plugin nodes encoded as TensorRT's ONNX parser reads them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from surgery.cli import main
from surgery.errors import OutputPathError
from surgery.ir.model_io import load, save

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
pytest.importorskip("tf2onnx", reason="the ONNX model is made by tf2onnx")


@pytest.fixture(scope="module")
def box3d_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from surgery.models import fixture_info

    path = tmp_path_factory.mktemp("onnx_apply") / "box3d.onnx"
    assert main(["export", str(fixture_info("box3d").path), "-o", str(path)]) == 0
    return path


def test_leaky_relu_rules_rewrite_an_onnx_export_into_plugin_nodes(box3d_onnx: Path) -> None:
    out = box3d_onnx.with_name("box3d.lrelu.onnx")
    before = onnx.load(str(box3d_onnx))
    assert main(["apply", str(REPO / "rules" / "leaky_relu.rules"), str(box3d_onnx),
                 "-o", str(out)]) == 0  # fmt: skip
    after = onnx.load(str(out))
    onnx.checker.check_model(after)
    leaky = [n for n in before.graph.node if n.op_type == "LeakyRelu"]
    plugins = [n for n in after.graph.node if n.op_type == "LReLU_TRT"]
    assert len(leaky) == len(plugins) == 5
    assert not [n for n in after.graph.node if n.op_type == "LeakyRelu"]
    by_name = {n.name: n for n in leaky}
    for node in plugins:
        assert node.domain == "trt.plugins"
        attrs = {a.name: a for a in node.attribute}
        assert attrs["negSlope"].type == onnx.AttributeProto.FLOAT
        assert attrs["negSlope"].f == pytest.approx(by_name[node.name].attribute[0].f)
        assert helper.get_attribute_value(attrs["plugin_version"]) == b"1"
        assert list(node.input) == list(by_name[node.name].input)
    assert ("trt.plugins", 1) in [(o.domain, o.version) for o in after.opset_import]
    # the model's interface is kept: same inputs and outputs by name, type and shape
    assert after.graph.input == before.graph.input
    assert after.graph.output == before.graph.output
    assert len(after.graph.initializer) == len(before.graph.initializer)


def test_an_onnx_model_is_unchanged_where_no_rule_matches(box3d_onnx: Path, tmp_path: Path) -> None:
    rules = tmp_path / "none.rules"
    rules.write_text("rule nothing:\n    match y = Softsign(x)\n    remove y\n")
    out = tmp_path / "same.onnx"
    assert main(["apply", str(rules), str(box3d_onnx), "-o", str(out)]) == 0
    assert out.read_bytes() == box3d_onnx.read_bytes()
    feed = {"input_1:0": np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)}
    ran = [ort.InferenceSession(str(p)).run(None, feed) for p in (box3d_onnx, out)]
    assert all(np.array_equal(a, b) for a, b in zip(*ran, strict=True))


def test_formats_are_not_mixed_on_save(box3d_onnx: Path, tmp_path: Path) -> None:
    from surgery.models import fixture_info

    with pytest.raises(OutputPathError, match=r"saved as \.onnx"):
        save(load(box3d_onnx), tmp_path / "x.pb")
    with pytest.raises(OutputPathError, match="surgery export"):
        save(load(fixture_info("box3d").path), tmp_path / "x.onnx")


ONNX_RULES = """formats "onnx"
use plugins "trt-8.6"
rule conv_relu:
    match y = Relu(X: c = Conv(W: w = Const(), X: x, ...)) where w.shape[1] > 0
    replace y with LReLU_TRT(c) { negSlope = 0.0 }
"""


def test_a_rule_file_for_onnx_names_onnx_ops_and_roles(
    box3d_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "onnx.rules"
    rules.write_text(ONNX_RULES)
    assert main(["check", str(rules)]) == 0
    out = tmp_path / "roles.onnx"
    assert main(["apply", str(rules), str(box3d_onnx), "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "warning" not in printed.err
    nodes = onnx.load(str(box3d_onnx)).graph.node
    convs = {n.output[0] for n in nodes if n.op_type == "Conv"}
    relus = [n for n in nodes if n.op_type == "Relu" and n.input[0] in convs]
    plugins = [n for n in onnx.load(str(out)).graph.node if n.op_type == "LReLU_TRT"]
    assert len(plugins) == len(relus) > 0
    assert all(n.input[0] in convs for n in plugins)  # only a Relu after a Conv
    wrong = tmp_path / "wrong.rules"
    wrong.write_text(ONNX_RULES.replace("W: w", "filter: w"))
    assert main(["check", str(wrong)]) == 1
    assert "Conv has no operand 'filter'" in capsys.readouterr().out


def test_check_says_which_ops_the_onnx_op_set_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "tf.rules"
    rules.write_text("rule r:\n    match y = Conv2D(input: x, filter: w)\n    remove y\n")
    assert main(["check", str(rules)]) == 0  # TensorFlow's op, as the file is by default
    assert main(["check", "--format", "onnx", str(rules)]) == 1
    assert "unknown op 'Conv2D' for ONNX: a TensorFlow op" in capsys.readouterr().out
    both = tmp_path / "both.rules"
    both.write_text('formats "tensorflow", "onnx"\n' + rules.read_text())
    assert main(["check", str(both)]) == 1


def test_applying_tensorflow_rules_to_an_onnx_model_warns(
    box3d_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "tf.rules"
    rules.write_text("rule r:\n    match y = Relu6(x)\n    remove y\n")
    assert main(["apply", str(rules), str(box3d_onnx), "-o", str(tmp_path / "o.onnx")]) == 0
    assert "written for TensorFlow graphs, and the model is ONNX" in capsys.readouterr().err


def test_inspect_and_diff_speak_of_the_onnx_model(
    box3d_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lrelu.onnx"
    assert main(["apply", str(REPO / "rules" / "leaky_relu.rules"), str(box3d_onnx),
                 "-o", str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "inputs: input_1:0 float[?, 64, 64, 3]" in text  # the model's names, not node names
    assert "outputs: Identity:0, Identity_2:0, Identity_1:0\n" in text
    assert "ops unknown to ONNX: LReLU_TRT x5" in text
    assert main(["diff", str(box3d_onnx), str(out)]) == 0
    text = capsys.readouterr().out
    assert "op LeakyRelu -> LReLU_TRT; attr domain: (unset) -> 'trt.plugins'" in text
    assert "_onnx_outputs" not in text and "_onnx_attr_order" not in text
    opsets = "ai.onnx 17, ai.onnx.ml 2"
    assert f"attr opsets: {opsets} -> {opsets}, trt.plugins 1" in text


def test_an_opset_newer_than_onnx_knows_is_named(
    box3d_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = onnx.load(str(box3d_onnx))
    for entry in model.opset_import:
        if entry.domain == "":
            entry.version = onnx.defs.onnx_opset_version() + 5
    future = tmp_path / "future.onnx"
    onnx.save(model, str(future))
    capsys.readouterr()
    assert main(["inspect", str(future)]) == 0
    want = f"imports opset {onnx.defs.onnx_opset_version() + 5} of ai.onnx; the installed onnx"
    assert want in capsys.readouterr().err
    rules = str(REPO / "rules" / "leaky_relu.rules")
    assert main(["apply", rules, str(future), "-o", str(tmp_path / "o.onnx")]) == 0
    assert want in capsys.readouterr().err


def test_view_draws_the_onnx_model_without_the_irs_records(box3d_onnx: Path) -> None:
    from surgery.views.visualize import to_networkx

    view = to_networkx(load(box3d_onnx))
    assert "_onnx_model" not in view.nodes
    shown = {key for _, data in view.nodes(data=True) for key in data["info"]["attrs"]}
    assert "alpha" in shown  # the LeakyRelu nodes' own attribute
    assert not shown & {"_onnx_outputs", "_onnx_output", "_onnx_input", "_onnx_value_info"}


def test_input_pins_an_onnx_model_and_rules_read_onnx_inferred_shapes(
    box3d_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "batch2.rules"
    rules.write_text(
        'formats "onnx"\nuse plugins "trt-8.6"\nrule batch2:\n'
        "    match y = LeakyRelu(x) where x.shape[0] == 2 and x.shape[1] > 0\n"
        "    replace y with LReLU_TRT(x) { negSlope = y.alpha }\n"
    )
    pinned = tmp_path / "pinned.onnx"
    argv = ["apply", str(rules), str(box3d_onnx), "-o", str(pinned)]
    assert main([*argv, "--input", "input_1:0=2,64,64,3"]) == 0
    assert "pinned input_1:0 to [2, 64, 64, 3]" in capsys.readouterr().err
    model = onnx.load(str(pinned))
    onnx.checker.check_model(model)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 64, 64, 3]
    assert sum(n.op_type == "LReLU_TRT" for n in model.graph.node) == 5  # shapes from onnx
    assert main(argv[:-1] + [str(tmp_path / "dynamic.onnx")]) == 0  # batch unknown: no match
    assert "rule 'batch2' matched nothing" in capsys.readouterr().err
    assert main([*argv, "--input", "nope=1,2"]) == 2
    assert "no input 'nope' (inputs: input_1:0)" in capsys.readouterr().err


def test_rules_read_the_models_opset_and_onnx_constant_values(tmp_path: Path) -> None:
    from onnx import TensorProto

    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], name="c", value=two),
            helper.make_node("Mul", ["x", "c"], ["y"], name="twice"),
            helper.make_node("LeakyRelu", ["y"], ["z"], name="act", alpha=0.2),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
    )
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    text = (
        'formats "onnx"\nuse plugins "trt-8.6"\nrule doubled:\n'
        "    match z = LeakyRelu(X: Mul(A: x, B: c = Constant()))\n"
        '    where c.value == 2.0 and opset("ai.onnx") >= NEED and opset("trt.plugins") == 0\n'
        "    replace z with LReLU_TRT(x) { negSlope = z.alpha }\n"
    )
    for need, plugins in ((17, 1), (18, 0)):
        rules = tmp_path / f"r{need}.rules"
        rules.write_text(text.replace("NEED", str(need)))
        out = tmp_path / f"out{need}.onnx"
        assert main(["apply", str(rules), str(model), "-o", str(out)]) == 0
        assert sum(n.op_type == "LReLU_TRT" for n in onnx.load(str(out)).graph.node) == plugins

