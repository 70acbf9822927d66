"""`surgery build`: TensorRT(-RTX) engines on the CPU, plugin layers, and the error paths."""

from __future__ import annotations

from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("tf2onnx")

from onnx import TensorProto, helper  # noqa: E402

from surgery import cli  # noqa: E402
from surgery.backends import trt_backend  # noqa: E402
from surgery.backends.onnx_export import export_onnx  # noqa: E402
from surgery.ir.onnx_io import PLUGIN_DOMAIN  # noqa: E402
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


# --------------------------------------------------------------------------- Mask R-CNN
MASKRCNN_RULES = Path(__file__).resolve().parent.parent / "rules" / "maskrcnn.rules"
MASKRCNN_PLUGINS = {
    "ResizeNearest_TRT": 3, "ProposalLayer_TRT": 1, "PyramidROIAlign_TRT": 2,
    "DetectionLayer_TRT": 1, "SpecialSlice_TRT": 1,
}  # fmt: skip
_NETWORK_SHAPES = """
import json, sys
from surgery.backends import trt_backend
trt = trt_backend.require_trt()
logger = trt.Logger(trt.Logger.ERROR)
trt_backend.register_plugins(trt, logger, None)
builder = trt.Builder(logger)
network = builder.create_network(0)
parser = trt.OnnxParser(network, logger)
ok = bool(parser.parse_from_file(sys.argv[1]))
shapes = {}
for i in range(network.num_layers if ok else 0):
    layer = network.get_layer(i)
    if layer.type.name.startswith("PLUGIN"):
        shapes[layer.name] = [list(layer.get_output(k).shape) for k in range(layer.num_outputs)]
del parser, network
print(json.dumps({"ok": ok, "shapes": shapes}))
"""


def network_plugin_shapes(onnx_path: Path) -> dict[str, list[list[int]]]:
    """Output shapes TensorRT's parser gives each plugin layer (in a child: the RTX dlopen fix)."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    in_process, lib_dir = trt_backend.rtx_library_fix()
    if not in_process:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(lib_dir), env.get("LD_LIBRARY_PATH", "")) if p
        )
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", _NETWORK_SHAPES, str(onnx_path)], env=env, cwd=root,
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    reply = json.loads(proc.stdout.strip().splitlines()[-1])
    assert reply["ok"]
    return reply["shapes"]


def onnx_shapes(model) -> dict[str, list]:
    """Tensor name -> dims (ints, or the dim_param name) from the model's value_info and I/O."""
    infos = [*model.graph.value_info, *model.graph.input, *model.graph.output]
    return {
        v.name: [d.dim_value if d.HasField("dim_value") else d.dim_param
                 for d in v.type.tensor_type.shape.dim]
        for v in infos
    }  # fmt: skip


@pytest.fixture(scope="module")
def maskrcnn_onnx(tmp_path_factory) -> Path:
    from surgery.engine.run import apply_rules
    from surgery.ir import model_io
    from surgery.lang.rule_parser import load_rules
    from surgery.models import fixture_info
    from surgery.passes.prepare import drop_inferred_shapes, prepare_graph

    graph = model_io.load(fixture_info("maskrcnn_small_nchw").path)
    rule_files = [load_rules(MASKRCNN_RULES)]
    prepare_graph(graph, rule_files)  # the class count is read from a shape
    apply_rules(graph, rule_files)
    drop_inferred_shapes(graph)
    out = tmp_path_factory.mktemp("build") / "maskrcnn_small.onnx"
    export_onnx(graph, out)
    return out


@needs_trt
def test_maskrcnn_engine_builds(maskrcnn_onnx, tmp_path, capsys):
    """Every Mask R-CNN plugin has a creator (build-only where no GPU kernel exists)."""
    import time

    model = onnx.load(str(maskrcnn_onnx))
    creators = {n.name: n.op_type for n in trt_backend.plugin_nodes(model)}
    engine = tmp_path / "maskrcnn.engine"
    start = time.perf_counter()
    assert cli.main(["build", str(maskrcnn_onnx), "-o", str(engine)]) == 0
    assert time.perf_counter() - start < 60
    summary = capsys.readouterr().out
    assert "PLUGIN_V3 x8" in summary
    assert all(name in summary for name in creators)  # the 8 plugin layers are listed
    result = trt_backend.build_engine(maskrcnn_onnx, tmp_path / "again.engine")
    assert result.layers["PLUGIN_V3"] == 8 and sorted(result.plugin_layers) == sorted(creators)
    counts: dict[str, int] = {}
    for name in result.plugin_layers:
        counts[creators[name]] = counts.get(creators[name], 0) + 1
    assert counts == MASKRCNN_PLUGINS
    assert engine.stat().st_size > 100_000
    assert result.outputs == ["Identity:0", "Identity_1:0"]


@needs_trt
def test_maskrcnn_plugin_shapes_in_tensorrt_match_tensorflow(maskrcnn_onnx):
    """The schema's shape expressions, through TensorRT's IExprBuilder, give TF's shapes."""
    model = onnx.load(str(maskrcnn_onnx))
    tf_shapes = onnx_shapes(model)
    nodes = {n.name: n for n in trt_backend.plugin_nodes(model)}
    got = network_plugin_shapes(maskrcnn_onnx)
    assert sorted(got) == sorted(nodes)
    for name, shapes in got.items():
        assert shapes == [tf_shapes[t] for t in nodes[name].output], name


def dynamic_plugin_model(path: Path) -> tuple[Path, int]:
    """(model, anchor count): ProposalLayer_TRT on a dynamic batch and ResizeNearest_TRT x1.5
    on dynamic N, H, W, so the shape expressions meet symbolic dims."""
    from plugins.reference._mrcnn import pyramid_anchors

    anchors = len(pyramid_anchors(3, 64, 64))
    nodes = [
        helper.make_node("ProposalLayer_TRT", ["scores", "deltas"], ["rois"], name="proposals",
                         domain=PLUGIN_DOMAIN, prenms_topk=32, keep_topk=8, iou_threshold=0.7,
                         image_size=[3, 64, 64]),
        helper.make_node("ResizeNearest_TRT", ["x"], ["up"], name="resize", domain=PLUGIN_DOMAIN,
                         scale=1.5),
    ]  # fmt: skip
    floats = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "dynamic",
        [helper.make_tensor_value_info("scores", floats, ["N", anchors, 2]),
         helper.make_tensor_value_info("deltas", floats, ["N", anchors, 4]),
         helper.make_tensor_value_info("x", floats, ["N", 2, "H", "W"])],
        [helper.make_tensor_value_info("rois", floats, ["N", 8, 4]),
         helper.make_tensor_value_info("up", floats, ["N", 2, "H2", "W2"])],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(PLUGIN_DOMAIN, 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path, anchors


@needs_trt
def test_build_only_plugins_on_symbolic_dims(tmp_path):
    model, anchors = dynamic_plugin_model(tmp_path / "dynamic.onnx")
    shapes = network_plugin_shapes(model)
    assert shapes == {"proposals": [[-1, 8, 4]], "resize": [[-1, 2, -1, -1]]}
    engine = tmp_path / "dynamic.engine"
    result = trt_backend.build_engine(
        model, engine,
        shapes={"scores": [2, anchors, 2], "deltas": [2, anchors, 4], "x": [2, 2, 5, 7]},
    )  # fmt: skip
    assert result.layers["PLUGIN_V3"] == 2 and engine.stat().st_size > 0


def test_every_catalog_plugin_has_a_creator_and_a_gpu_kernel():
    from plugins.gpu import GPU_KERNELS
    from plugins.trt import IMPLEMENTED, plugin_status
    from surgery.ops.plugin_schema import load_catalog

    names = {s.name for s in load_catalog()}
    assert set(IMPLEMENTED) == names
    assert set(GPU_KERNELS) == names
    assert set(plugin_status().values()) == {"gpu kernel"}


@needs_trt
def test_creators_register_and_describe_every_plugin():
    """Each creator makes a plugin whose dtypes, outputs and formats follow the schema."""
    from plugins import trt as our_plugins
    from surgery.ops.plugin_schema import load_catalog

    trt = trt_backend.load_trt()
    our_plugins.register(trt)
    registry = trt.get_plugin_registry()
    for schema in load_catalog():
        creator = registry.get_creator(schema.name, schema.version, schema.namespace)
        assert creator is not None, schema.name
        assert creator.name == schema.name


@needs_trt
def test_build_only_enqueue_raises_clearly(tmp_path):
    """A plugin a user adds to the catalog without a GPU kernel builds, and refuses to run."""
    import json

    from plugins.gpu import GpuKernelError
    from plugins.trt.creators import _plugin_class
    from surgery.ops.plugin_schema import load_catalog, load_schema

    trt = trt_backend.load_trt()
    path = tmp_path / "Mine_TRT.json"
    path.write_text(json.dumps({
        "name": "Mine_TRT", "version": "1", "fields": [],
        "inputs": [{"name": "x"}], "outputs": [{"name": "y", "shape": "in0"}],
    }))  # fmt: skip
    plugin = _plugin_class(trt)(load_schema(path), {})
    assert plugin.num_outputs == 1
    assert plugin.get_output_data_types([trt.DataType.FLOAT]) == [trt.DataType.FLOAT]
    with pytest.raises(GpuKernelError, match="no GPU kernel for Mine_TRT yet"):
        plugin.enqueue([], [], [0], [0], 0, 0)
    nms = _plugin_class(trt)(load_catalog().get("NMS_TRT"), {"keepTopK": 4})
    assert nms.get_output_data_types([trt.DataType.FLOAT] * 3) == [
        trt.DataType.FLOAT, trt.DataType.INT32,
    ]  # fmt: skip
