"""Operand roles: the built-in table agrees with TensorFlow's registry, covers every fixture op,
expands variadic arguments, and answers without importing TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from surgery import models
from surgery.errors import GraphError
from surgery.ir import model_io
from surgery.ir.protos import AttrValue
from surgery.ops import opdefs


def test_builtin_table_agrees_with_tensorflow() -> None:
    pytest.importorskip("tensorflow")
    wrong = []
    for op in opdefs.BUILTIN:
        ours = opdefs.builtin_signature(op)
        theirs = opdefs.tf_signature(op)
        if theirs is None:
            wrong.append(f"{op}: not in TensorFlow's registry")
        elif (ours.inputs, ours.outputs) != (theirs.inputs, theirs.outputs):
            wrong.append(f"{op}: ours {ours.inputs}->{ours.outputs}, TF {theirs.inputs}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", models.TEST_FIXTURES)
def test_table_covers_every_fixture_op(name: str, fixture_info) -> None:
    graph = model_io.load(fixture_info[name].path)
    missing = sorted(op for op in graph.op_types() if op not in opdefs.BUILTIN)
    assert not missing, f"{name}: ops missing from the built-in table: {missing}"
    for node in graph:  # every node's roles line up with its data inputs
        roles = opdefs.node_input_roles(node, use_tf=False)
        assert len(roles) == len(node.inputs), node


def test_required_roles() -> None:
    assert opdefs.input_roles("Conv2D") == ["input", "filter"]
    assert opdefs.input_roles("Conv2DBackpropInput") == ["input_sizes", "filter", "out_backprop"]
    assert opdefs.input_roles("MatMul") == ["a", "b"]
    assert opdefs.input_roles("FusedBatchNormV3") == ["x", "scale", "offset", "mean", "variance"]
    assert opdefs.input_roles("Split") == ["split_dim", "value"]
    assert opdefs.input_roles("SplitV") == ["value", "size_splits", "split_dim"]
    assert opdefs.input_roles("CropAndResize") == ["image", "boxes", "box_ind", "crop_size"]
    assert opdefs.input_roles("BiasAdd") == ["value", "bias"]
    assert opdefs.role_slot("Conv2DBackpropInput", "filter") == 1
    for op in ("Add", "AddV2", "Mul", "Sub"):
        assert opdefs.input_roles(op) == ["x", "y"]
    for op in ("Const", "Placeholder", "NoOp"):
        assert opdefs.input_roles(op) == []
    with pytest.raises(GraphError, match="no input role 'kernel'"):
        opdefs.role_slot("Conv2D", "kernel")


def test_variadic_expansion() -> None:
    assert opdefs.input_roles("ConcatV2", {"N": 3}) == [
        "values[0]", "values[1]", "values[2]", "axis"
    ]
    two = ["values[0]", "values[1]", "axis"]
    assert opdefs.input_roles("ConcatV2", {"N": AttrValue(i=2)}) == two
    assert opdefs.input_roles("ConcatV2", num_inputs=3) == ["values[0]", "values[1]", "axis"]
    assert opdefs.input_roles("ConcatV2") == ["values[*]", "axis"]
    assert opdefs.input_roles("Pack", {"N": 2}) == ["values[0]", "values[1]"]
    types = AttrValue()
    types.list.type.extend([1, 1])
    assert opdefs.input_roles("IdentityN", {"T": types}) == ["input[0]", "input[1]"]
    assert opdefs.output_roles("Split", {"num_split": 3}) == ["output[0]", "output[1]", "output[2]"]
    assert opdefs.output_roles("Unpack", {"num": 2}) == ["output[0]", "output[1]"]
    specs = opdefs.arg_specs("ConcatV2")
    assert [(s.name, s.variadic, s.number_attr) for s in specs] == [
        ("values", True, "N"), ("axis", False, "")
    ]


def test_fallback_to_tensorflow_registry_and_unknown_ops() -> None:
    pytest.importorskip("tensorflow")
    assert "Betainc" not in opdefs.BUILTIN
    assert opdefs.signature("Betainc").source == "tensorflow"
    assert opdefs.input_roles("Betainc") == ["a", "b", "x"]
    assert not opdefs.is_known("Betainc", use_tf=False)
    assert not opdefs.is_known("LReLU_TRT")
    with pytest.raises(GraphError, match="unknown op 'LReLU_TRT'"):
        opdefs.input_roles("LReLU_TRT")


def test_builtin_lookups_do_not_import_tensorflow() -> None:
    code = (
        "import sys; from surgery.ops import opdefs\n"
        "assert opdefs.input_roles('Conv2D') == ['input', 'filter']\n"
        "assert opdefs.is_known('TopKV2') and not opdefs.is_known('X_TRT', use_tf=False)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_onnx_signatures_come_from_onnx_defs_at_the_opset() -> None:
    resize = opdefs.onnx_signature("Resize", 17)
    assert resize is not None and [a.name for a in resize.inputs] == ["X", "roi", "scales", "sizes"]
    assert not any(a.variadic for a in resize.inputs) and len(resize.outputs) == 1
    concat = opdefs.onnx_signature("Concat")
    assert concat is not None and concat.inputs[-1].rest
    assert opdefs.onnx_signature("MyPlugin", 1) is None  # a plugin: no operator of ai.onnx
