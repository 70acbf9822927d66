"""`surgery build`: TensorRT(-RTX) engines on the CPU, plugin layers, and the error paths."""

from __future__ import annotations

from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("tf2onnx")

from onnx import TensorProto, helper  # noqa: E402

from surgery import cli, trt_backend  # noqa: E402
from surgery.export.plugin_nodes import PLUGIN_DOMAIN  # noqa: E402
from surgery.onnx_export import export_onnx  # noqa: E402
from tests.test_export import unet_with_resize_plugins  # noqa: E402

needs_trt = pytest.mark.skipif(
    trt_backend.load_trt() is None, reason="no TensorRT Python API (tensorrt or TensorRT-RTX)"
)


def tiny_model(path: Path, op: str, domain: str, **attrs) -> Path:
    """x -> Relu -> custom op -> y, as an ONNX file."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node(op, ["r"], ["y"], name="custom", domain=domain, **attrs),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


@pytest.fixture(scope="module")
def resnet_onnx(resnet50_pb, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "resnet50.onnx"
    export_onnx(resnet50_pb, out)
    return out


@pytest.fixture(scope="module")
def unet_plugin_onnx(unet_pb, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "unet_plugins.onnx"
    export_onnx(unet_with_resize_plugins(unet_pb), out)
    return out


@needs_trt
def test_fixture_engine_builds(resnet_onnx, tmp_path):
    engine = tmp_path / "resnet50.engine"
    result = trt_backend.build_engine(resnet_onnx, engine)
    assert engine.stat().st_size == result.size > 100_000
    assert result.layers["CONVOLUTION"] == 53 and not result.plugin_layers


@needs_trt
def test_engine_with_plugin_layers_builds(unet_plugin_onnx, tmp_path):
    """The TensorRT-RTX abort is fixed: parser -> Python IPluginV3 creator -> built engine."""
    engine = tmp_path / "unet.engine"
    assert cli.main(["build", str(unet_plugin_onnx), "-o", str(engine)]) == 0
    result = trt_backend.build_engine(unet_plugin_onnx, tmp_path / "again.engine")
    assert len(result.plugin_layers) == 3 and result.layers["PLUGIN_V3"] == 3
    assert engine.stat().st_size > 0


def test_rtx_library_fix_gives_the_unversioned_name():
    if trt_backend._import_module("tensorrt_rtx_libs") is None:
        pytest.skip("TensorRT-RTX is not installed")
    in_process, directory = trt_backend.rtx_library_fix()
    assert in_process or (directory / trt_backend.RTX_LIB).resolve().name.endswith(".so.1")


def test_not_onnx_is_refused_without_engine(tmp_path, capsys):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"\x00\x01 this is not a protobuf \xff" * 10)
    engine = tmp_path / "model.engine"
    assert cli.main(["build", str(bogus), "-o", str(engine)]) == 1
    assert "not an ONNX model" in capsys.readouterr().err
    assert not engine.exists()


@needs_trt
def test_plugin_without_creator_names_the_node(tmp_path):
    model = tiny_model(tmp_path / "m.onnx", "AcmeMystery", "acme.ops")
    with pytest.raises(trt_backend.BuildError, match="'custom'.*AcmeMystery"):
        trt_backend.build_engine(model, tmp_path / "m.engine")
    assert not (tmp_path / "m.engine").exists()


def test_unknown_plugin_in_our_domain_names_the_node(tmp_path):
    model = tiny_model(tmp_path / "m.onnx", "NoSuchPlugin_TRT", PLUGIN_DOMAIN)
    with pytest.raises(trt_backend.BuildError, match="'custom'.*NoSuchPlugin_TRT"):
        trt_backend.check_plugin_nodes(onnx.load(str(model)))


def test_field_of_wrong_type_names_node_and_field(tmp_path):
    model = tiny_model(tmp_path / "m.onnx", "LReLU_TRT", PLUGIN_DOMAIN, negSlope="steep")
    with pytest.raises(trt_backend.BuildError, match="'custom'.*negSlope"):
        trt_backend.build_engine(model, tmp_path / "m.engine")
    assert not (tmp_path / "m.engine").exists()


def test_tensorrt_absent(monkeypatch, resnet_onnx, tmp_path, capsys):
    monkeypatch.setattr(trt_backend, "_import_module", lambda name: None)
    with pytest.raises(trt_backend.TensorRTMissing, match="tensorrt-rtx"):
        trt_backend.build_engine(resnet_onnx, tmp_path / "x.engine")
    assert cli.main(["build", str(resnet_onnx), "-o", str(tmp_path / "x.engine")]) == 1
    assert "no TensorRT Python API" in capsys.readouterr().err
    assert not (tmp_path / "x.engine").exists()


@needs_trt
def test_fp16_on_rtx_is_a_clear_error(resnet_onnx, tmp_path):
    if not trt_backend.is_rtx(trt_backend.load_trt()):
        pytest.skip("only TensorRT-RTX lacks the FP16 flag")
    with pytest.raises(trt_backend.BuildError, match="strongly typed"):
        trt_backend.build_engine(resnet_onnx, tmp_path / "x.engine", fp16=True)
