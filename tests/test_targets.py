"""TensorRT targets (issue 18): the catalog's per-target plugin facts, `targets` in rule files,
and `--target` on check, apply, support, export and build, on the real catalog, the rule
library and small real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_matcher import const, make_graph

import plugins.gpu
from surgery.backends import trt_backend
from surgery.cli import main
from surgery.errors import RuleError, RuleSyntaxError
from surgery.ir import model_io
from surgery.lang.rule_parser import load_rules, parse_rules
from surgery.ops.plugin_schema import load_catalog, load_schema
from surgery.ops.targets import TARGET_NAMES, export_creator, provision, resolve_creator

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
LEAKY_TARGETS_AT = next(  # where rules/leaky_relu.rules states its targets
    i for i, line in enumerate((RULES / "leaky_relu.rules").read_text().splitlines(), 1)
    if line.startswith("targets ")
)
CATALOG_DIR = ROOT / "plugins" / "catalog"
LEAKY_RULE = """use plugins "trt-8.6"
{targets}
rule leaky_relu{rule_targets}:
    match y = LeakyRelu(x) where y.alpha < 1
    replace y with LReLU_TRT(x) {{ negSlope = y.alpha }}
"""
HAS_RTX = trt_backend.load_trt("tensorrt_rtx_bindings") is not None
needs_rtx = pytest.mark.skipif(not HAS_RTX, reason="TensorRT-RTX is not installed")


def leaky_rules(tmp_path: Path, targets: str = "", rule_targets: str = "") -> Path:
    """A one-rule file turning LeakyRelu into LReLU_TRT, with the given `targets` clauses."""
    path = tmp_path / "leaky.rules"
    path.write_text(LEAKY_RULE.format(targets=targets, rule_targets=rule_targets))
    return path


def without_kernel(monkeypatch, name: str) -> None:
    """Surgery as it is when plugin `name` has no GPU kernel (plugins.gpu.GPU_KERNELS)."""
    monkeypatch.setattr(plugins.gpu, "GPU_KERNELS",
                        tuple(k for k in plugins.gpu.GPU_KERNELS if k != name))  # fmt: skip


# --------------------------------------------------------------------------- the catalog
def test_every_plugin_records_every_target() -> None:
    for schema in load_catalog():
        assert [t for t, _ in schema.targets] == list(TARGET_NAMES), schema.path
        assert provision(schema, "tensorrt-rtx").provider != "library"  # no plugin library
        assert schema.precisions[0] == "float32"  # the "precisions" key is kept beside it


def test_tensorrt_11_removals_and_10_12_deprecations() -> None:
    catalog = load_catalog()
    for name in ("LReLU_TRT", "SpecialSlice_TRT", "NMS_TRT", "Normalize_TRT", "Proposal"):
        entry = dict(catalog.get(name).targets)
        assert entry["tensorrt-11"].removed == "11.0" and entry["tensorrt-11"].version is None
        assert entry["tensorrt-10"].version == "1" and entry["tensorrt-10"].deprecated == "9.0"
    for name in ("DetectionLayer_TRT", "FlattenConcat_TRT", "GridAnchor_TRT",
                 "ProposalLayer_TRT", "ResizeNearest_TRT"):  # fmt: skip
        for target in ("tensorrt-10", "tensorrt-11"):
            entry = dict(catalog.get(name).targets)[target]
            assert (entry.version, entry.interface, entry.deprecated) == (
                "1", "IPluginV2Ext", "10.12"
            ), (name, target)
    crop = catalog.get("CropAndResize")
    assert export_creator(crop, "tensorrt-11") == ("CropAndResizeDynamic", "2")
    assert export_creator(crop, "tensorrt-10") == ("CropAndResize", "1")
    assert resolve_creator(catalog, "CropAndResizeDynamic", "2") is crop
    assert resolve_creator(catalog, "CropAndResizeDynamic", "1") is None
    native = dict(catalog.get("LReLU_TRT").targets)["tensorrt-11"].native or ""
    assert "LeakyRelu" in native
    assert all(e.version is None for _, e in catalog.get("L2Norm_Surgery").targets)


def test_provision_follows_the_gpu_kernels() -> None:
    lrelu = load_catalog().get("LReLU_TRT")
    assert provision(lrelu, "tensorrt-10", kernels=()).provider == "library"
    assert provision(lrelu, "tensorrt-11", kernels=("LReLU_TRT",)).provider == "surgery"
    missing = provision(lrelu, "tensorrt-11", kernels=())
    ((severity, message),) = missing.diagnostics()
    assert severity == "warning" and "removed in TensorRT 11.0" in message
    assert "no GPU kernel" in message and "ONNX LeakyRelu" in message
    rtx = provision(lrelu, "tensorrt-rtx", kernels=())
    assert "ships no plugin library" in rtx.diagnostics()[0][1]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"tensorrt-12": {}}, "unknown target 'tensorrt-12' (did you mean 'tensorrt-11'?)"),
        ({"tensorrt-11": {"removed": "11.0", "version": "1", "interface": "IPluginV2"}},
         "a plugin removed in 11.0 has no 'version'"),
        ({"tensorrt-rtx": {"version": "1", "interface": "IPluginV3"}}, "ships no plugin library"),
        ({"tensorrt-10": {"version": "1", "interface": "IPluginV4"}}, "'interface' must be one"),
        ({"tensorrt-10": {"version": "1", "interface": "IPluginV2", "deprecatd": "9.0"}},
         "unknown key 'deprecatd' (did you mean 'deprecated'?)"),
        ({"tensorrt-10": {"deprecated": "9.0"}}, "give its 'version' too"),
        ({"tensorrt-10": {"version": "1", "interface": "IPluginV2", "deprecated": "soon"}},
         "must be a TensorRT release"),
        ({"tensorrt-10": {"version": 1, "interface": "IPluginV2"}}, "'version' must be a string"),
    ],
)  # fmt: skip
def test_bad_targets_key_names_file_and_target(tmp_path: Path, targets, message: str) -> None:
    raw = json.loads((CATALOG_DIR / "LReLU_TRT.json").read_text())
    raw["targets"] = targets
    path = tmp_path / "LReLU_TRT.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(RuleError) as info:
        load_schema(path)
    assert str(info.value).startswith(f"{path}: \"targets\"") and message in str(info.value)


# --------------------------------------------------------------------------- rule files
def test_targets_statement_and_rule_clause_are_kept() -> None:
    rule_file = parse_rules(LEAKY_RULE.format(
        targets='targets "tensorrt-8.6", "tensorrt-10"', rule_targets=' targets "tensorrt-10"'
    ), "t.rules")  # fmt: skip
    assert rule_file.targets == ("tensorrt-8.6", "tensorrt-10")
    assert str(rule_file.targets_loc) == "t.rules:2:1"
    assert rule_file.rules[0].targets == ("tensorrt-10",)
    assert load_rules(RULES / "leaky_relu.rules").targets == ("tensorrt-8.6", "tensorrt-10")
    boxes = next(r for r in load_rules(RULES / "maskrcnn.rules").rules
                 if r.name == "detection_boxes")  # fmt: skip
    assert boxes.targets == ("tensorrt-8.6", "tensorrt-10")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('use plugins "trt-8.6"\ntargets "tensorrt-10", "tensorrt-12"\n',
         "t.rules:2:24: unknown target 'tensorrt-12' (did you mean 'tensorrt-11'?) (targets: "
         "tensorrt-8.6, tensorrt-10, tensorrt-11, tensorrt-rtx)"),
        ('targets "tensorrt-10"\ntargets "tensorrt-11"\n',
         "t.rules:2:1: 'targets' is stated twice (first at line 1)"),
        ('targets "tensorrt-10", "tensorrt-10"\n', "t.rules:1:1: target 'tensorrt-10' is listed"),
        ("targets tensorrt-10\n", "t.rules:1:9: expected a target name string after 'targets'"),
        ('targets "tensorrt-10"\nrule r targets "tensorrt-11":\n match y = Relu(x)\n remove y\n',
         "t.rules:2:1: rule 'r' is for tensorrt-11, which the file's targets (line 1: "
         "tensorrt-10) do not include"),
        ('rule r targets "rtx":\n match y = Relu(x)\n remove y\n',
         "t.rules:1:16: unknown target 'rtx'"),
    ],
)  # fmt: skip
def test_targets_errors_point_at_file_line_col(text: str, message: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse_rules(text, "t.rules")
    assert str(info.value).startswith(message)


# --------------------------------------------------------------------------- check
def test_check_library_for_tensorrt_11_reports_no_missing_plugin(capsys) -> None:
    """`surgery check --target tensorrt-11 rules/*.rules`: nothing TensorRT 11 lacks without a
    surgery kernel; leaky_relu.rules (LeakyRelu is native there) says it is not for 11."""
    files = sorted(str(p) for p in RULES.glob("*.rules"))
    assert main(["check", "--no-tf", "--target", "tensorrt-11", *files]) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if ": warning: " in line]
    where = f"{RULES / 'leaky_relu.rules'}:{LEAKY_TARGETS_AT}:1"
    assert warnings == [f"{where}: warning: this file is for tensorrt-8.6, tensorrt-10, not "
                        "tensorrt-11"]  # fmt: skip
    assert "rule 'detection_boxes' is left out for tensorrt-11" in out
    assert "CropAndResizeDynamic version 2 (IPluginV3)" in out  # faster_rcnn's CropAndResize
    assert "native alternative: ONNX Slice" not in out  # SpecialSlice_TRT's rule is left out


def test_check_warns_for_a_plugin_nobody_computes(tmp_path: Path, monkeypatch, capsys) -> None:
    path = leaky_rules(tmp_path)
    without_kernel(monkeypatch, "LReLU_TRT")
    assert main(["check", "--no-tf", "--target", "tensorrt-11", str(path)]) == 0
    captured = capsys.readouterr()
    assert f"{path}:5:20: warning: plugin LReLU_TRT on tensorrt-11: removed in TensorRT 11.0 " \
        "and surgery has no GPU kernel for it" in captured.out
    assert "native alternative: ONNX LeakyRelu" in captured.out
    assert captured.err.strip() == "0 error(s), 1 warning(s)"
    assert main(["check", "--no-tf", "--target", "tensorrt-10", str(path)]) == 0
    out = capsys.readouterr().out
    assert "note: plugin LReLU_TRT on tensorrt-10: its plugin library has LReLU_TRT version 1 " \
        "(IPluginV2), deprecated since TensorRT 9.0" in out and "warning" not in out


def test_check_without_target_checks_the_stated_ones(tmp_path: Path, monkeypatch, capsys) -> None:
    without_kernel(monkeypatch, "LReLU_TRT")
    for_11 = leaky_rules(tmp_path, 'targets "tensorrt-11"')
    assert main(["check", "--no-tf", str(for_11)]) == 0
    assert "warning: plugin LReLU_TRT on tensorrt-11" in capsys.readouterr().out
    for_10 = leaky_rules(tmp_path, 'targets "tensorrt-10"')
    assert main(["check", "--no-tf", str(for_10)]) == 0
    assert capsys.readouterr().out.startswith("ok: 1 rule file(s)")  # notes only with --target


@pytest.mark.parametrize("command", ["check", "apply", "support", "export", "build"])
def test_unknown_target_is_a_usage_error(command: str, capsys) -> None:
    argv = {"check": ["x.rules"], "apply": ["x.rules", "m.pb", "-o", "o.pb"],
            "support": ["m.pb"], "export": ["m.pb", "-o", "m.onnx"],
            "build": ["m.onnx", "-o", "m.engine"]}[command]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        main([command, *argv, "--target", "tensorrt12"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown target 'tensorrt12' (did you mean 'tensorrt-1" in err
    assert "(targets: tensorrt-8.6, tensorrt-10, tensorrt-11, tensorrt-rtx)" in err


# --------------------------------------------------------------------------- apply
def test_apply_warns_for_a_file_not_meant_for_the_target(box3d_pb, tmp_path, capsys) -> None:
    out = tmp_path / "out.pb"
    rules = str(RULES / "leaky_relu.rules")
    assert main(["apply", rules, str(box3d_pb), "-o", str(out), "--target", "tensorrt-11"]) == 0
    captured = capsys.readouterr()
    assert "leaky_relu: 5 matches applied" in captured.out  # the user named it: applied
    assert f"warning: {rules}:{LEAKY_TARGETS_AT}:1: this file is for tensorrt-8.6, " \
        "tensorrt-10, not tensorrt-11; applying it all the same" in captured.err
    assert "note: 5 node(s): plugin LReLU_TRT on tensorrt-11: removed in TensorRT 11.0" \
        in captured.err and "native alternative: ONNX LeakyRelu" in captured.err
    assert len(model_io.load(out).nodes_by_op("LReLU_TRT")) == 5


def test_apply_leaves_out_rules_for_other_targets(box3d_pb, tmp_path, capsys) -> None:
    rules = leaky_rules(tmp_path, rule_targets=' targets "tensorrt-8.6", "tensorrt-10"')
    out = tmp_path / "out.pb"
    argv = ["apply", str(rules), str(box3d_pb), "-o", str(out), "--target"]
    assert main([*argv, "tensorrt-11"]) == 0
    captured = capsys.readouterr()
    assert f"note: {rules}:3:1: rule 'leaky_relu' left out: it is for tensorrt-8.6, " \
        "tensorrt-10, not tensorrt-11" in captured.err
    assert not model_io.load(out).nodes_by_op("LReLU_TRT")
    assert len(model_io.load(out).nodes_by_op("LeakyRelu")) == 5
    assert main([*argv, "tensorrt-10"]) == 0
    assert "leaky_relu: 5 matches applied" in capsys.readouterr().out
    assert len(model_io.load(out).nodes_by_op("LReLU_TRT")) == 5


# --------------------------------------------------------------------------- export, build
def crop_and_resize_graph(path: Path) -> Path:
    """An NHWC image [1, 8, 8, 4] made NCHW, and rois [1, 3, 4, 1] (a reshaped [1, 12]) -> the
    CropAndResize plugin (2 x 2), as a rewritten graph has it."""
    f32 = ("float32", "type")
    graph = make_graph([
        ("image", "Placeholder", [], {"dtype": f32, "shape": ([1, 8, 8, 4], "shape")}),
        const("perm", [0, 3, 1, 2], "int32"),
        ("fmap", "Transpose", ["image", "perm"], {"T": f32, "Tperm": ("int32", "type")}),
        ("boxes", "Placeholder", [], {"dtype": f32, "shape": ([1, 12], "shape")}),
        const("rois_shape", [1, 3, 4, 1], "int32"),
        ("rois", "Reshape", ["boxes", "rois_shape"], {"T": f32, "Tshape": ("int32", "type")}),
        ("crops", "CropAndResize", ["fmap", "rois"],
         {"crop_width": (2, "int"), "crop_height": (2, "int")}),
    ])  # fmt: skip
    model_io.save(graph, path)
    return path


@pytest.fixture(scope="module")
def crop_onnx(tmp_path_factory) -> dict[str, Path]:
    """The CropAndResize plugin graph exported without a target and for tensorrt-11."""
    pytest.importorskip("tf2onnx")
    root = tmp_path_factory.mktemp("targets")
    pb = crop_and_resize_graph(root / "crop.pb")
    out = {}
    for name, extra in (("default", []), ("tensorrt-11", ["--target", "tensorrt-11"])):
        out[name] = root / f"crop-{name}.onnx"
        assert main(["export", str(pb), "-o", str(out[name]), *extra]) == 0
    return out


def _plugin_nodes(path: Path) -> list[tuple[str, str]]:
    """(op type, plugin_version) of the custom nodes of an ONNX file."""
    import onnx

    model = onnx.load(str(path))
    return [(n.op_type, next(a.s.decode() for a in n.attribute if a.name == "plugin_version"))
            for n in model.graph.node if n.domain == "trt.plugins"]  # fmt: skip


def test_export_writes_the_creator_the_target_expects(crop_onnx) -> None:
    assert _plugin_nodes(crop_onnx["default"]) == [("CropAndResize", "1")]
    assert _plugin_nodes(crop_onnx["tensorrt-11"]) == [("CropAndResizeDynamic", "2")]


@needs_rtx
def test_build_for_tensorrt_11_is_strongly_typed(crop_onnx, tmp_path, capsys) -> None:
    engine = tmp_path / "crop.engine"
    model = str(crop_onnx["tensorrt-11"])
    assert main(["build", model, "-o", str(engine), "--target", "tensorrt-11"]) == 0
    out = capsys.readouterr().out
    assert "target:  tensorrt-11, strongly typed (TensorRT 11 is not installed here" in out
    assert "tensorrt_rtx_bindings" in out and engine.stat().st_size > 0
    assert "standing in for the target's library (build only): CropAndResizeDynamic v2" in out
    refused = tmp_path / "fp16.engine"
    assert main(["build", model, "-o", str(refused), "--target", "tensorrt-11", "--fp16"]) == 1
    err = capsys.readouterr().err
    assert "--fp16: tensorrt_rtx_bindings, standing in for TensorRT 11, builds strongly typed " \
        "networks" in err and not refused.exists()


@needs_rtx
def test_build_for_rtx_notes_a_creator_of_another_target(crop_onnx, tmp_path) -> None:
    result = trt_backend.build_engine(crop_onnx["tensorrt-11"], tmp_path / "c.engine",
                                      target="tensorrt-rtx")  # fmt: skip
    assert result.strongly_typed and result.target == "tensorrt-rtx" and not result.stand_in
    assert "CropAndResizeDynamic version 2 is not what tensorrt-rtx has (CropAndResize " \
        "version 1)" in result.notes[0]
    plain = trt_backend.build_engine(crop_onnx["default"], tmp_path / "d.engine")
    assert plain.target == "tensorrt-rtx" and plain.strongly_typed and not plain.notes


def test_support_names_the_native_alternative(crop_onnx, tmp_path, capsys) -> None:
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("LReLU_TRT", ["x"], ["y"], name="lrelu", domain="trt.plugins",
                              negSlope=0.1, plugin_version="1", plugin_namespace="")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    path = tmp_path / "lrelu.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert main(["support", str(path), "--target", "tensorrt-11"]) == 0
    out = capsys.readouterr().out
    assert "plugins on tensorrt-11:\n  LReLU_TRT x1: removed in TensorRT 11.0; surgery's Python " \
        "plugin" in out and "native alternative: ONNX LeakyRelu" in out
    assert main(["support", str(crop_onnx["tensorrt-11"]), "--target", "tensorrt-10"]) == 3
    out = capsys.readouterr().out
    assert "CropAndResizeDynamic x1: tensorrt-10 expects CropAndResize version 1" in out
