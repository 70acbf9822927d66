"""Model fixtures: each builds, has its ops, runs in TensorFlow with random input, matches its
Keras model, has every variable randomised, and freezes byte-deterministically."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from surgery import models
from surgery.errors import SurgeryError
from surgery.ir import model_io
from surgery.ir.graph import Graph
from surgery.passes import tf_reference

REPO = Path(__file__).resolve().parent.parent

EXPECTED_OPS = {
    "box3d": {"Conv2D", "MaxPool", "Reshape", "MatMul", "LeakyRelu", "Rsqrt", "Softmax"},
    "unet": {"Conv2D", "FusedBatchNormV3", "ResizeNearestNeighbor", "ConcatV2", "Sigmoid"},
    "resnet50": {"Conv2D", "FusedBatchNormV3", "AddV2", "Pad", "MaxPool", "Mean", "Softmax"},
    "detector": {"Conv2DBackpropInput", "Split", "Unpack", "TopKV2", "GatherV2", "Assert", "NoOp"},
}


def _const_value(graph: Graph, tensor_node: str) -> np.ndarray:
    """The value of a Const, looking through the Identity that frozen TF 2 graphs put before it."""
    node = graph.node(tensor_node)
    while node.op == "Identity":
        node = graph.node(node.inputs[0].node)
    assert node.op == "Const", node
    tensor = node.attr["value"].tensor
    dtype = np.float32 if tensor.dtype == 1 else np.int32
    return np.frombuffer(tensor.tensor_content, dtype=dtype)


@pytest.mark.parametrize("name", models.TEST_FIXTURES)
def test_fixture_builds_with_expected_ops(name: str, fixture_info) -> None:
    info = fixture_info[name]
    graph = model_io.load(info.path)
    assert len(graph) == info.nodes and info.path.stat().st_size == info.size
    missing = EXPECTED_OPS[name] - set(graph.op_types())
    assert not missing, f"{name} lacks {missing}"
    assert [n.name for n in graph.graph_inputs()] == [s.name for s in info.inputs]
    for tensor in info.outputs:
        assert tensor.split(":")[0] in graph
    graph.check()


@pytest.mark.parametrize("name", models.TEST_FIXTURES)
def test_every_variable_is_randomised(name: str, fixture_info) -> None:
    graph = model_io.load(fixture_info[name].path)
    for node in graph.nodes_by_op("BiasAdd"):
        bias = _const_value(graph, node.inputs[1].node)
        assert np.count_nonzero(bias) == bias.size, f"{node.name}: zero bias"
    for node in graph.nodes_by_op("FusedBatchNormV3"):
        gamma, beta, mean, variance = (_const_value(graph, r.node) for r in node.inputs[1:])
        assert not np.allclose(gamma, 1) and not np.allclose(beta, 0), node.name
        assert not np.allclose(mean, 0) and not np.allclose(variance, 1), node.name
        assert (variance > 0).all()


def test_box3d_matches_the_blog_network(fixture_info) -> None:
    graph = model_io.load(fixture_info["box3d"].path)
    alphas = {round(n.attr["alpha"].f, 6) for n in graph.nodes_by_op("LeakyRelu")}
    assert alphas == {0.1}
    assert "box3d/orientation/l2_normalize" in graph  # the op TensorRT needs a plugin for
    reshape = graph.node("box3d/reshape_1/Reshape")
    assert reshape.op == "Reshape"
    assert "box3d/flatten/Reshape" in graph
    assert fixture_info["box3d"].output_keys == ("dimension", "orientation", "confidence")


@pytest.mark.parametrize("name", models.TEST_FIXTURES)
def test_fixture_runs_in_tensorflow_and_matches_keras(name: str, fixture_info) -> None:
    info = fixture_info[name]
    feeds = tf_reference.random_feeds(info, seed=5, batch=2)
    outputs = tf_reference.run_graph_def(info.path, feeds, info.outputs)
    model = models.build_model(name)
    expected = model(list(feeds.values())[0], training=False)
    expected = expected if isinstance(expected, list | tuple) else [expected]
    assert len(expected) == len(info.outputs)
    for tensor, want in zip(info.outputs, expected, strict=True):
        got = outputs[tensor]
        assert got.shape[0] == 2 and np.isfinite(got).all(), tensor
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-4, err_msg=tensor)


def test_random_feeds_are_seeded(fixture_info) -> None:
    info = fixture_info["unet"]
    a, b = tf_reference.random_feeds(info, 3), tf_reference.random_feeds(info.path, 3)
    assert list(a) == ["image:0"] and a["image:0"].shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(a["image:0"], b["image:0"])
    assert not np.array_equal(a["image:0"], tf_reference.random_feeds("unet", 4)["image:0"])


def test_cache_is_reused_and_keyed(fixture_info, tmp_path: Path) -> None:
    path = models.fixture_path("detector")
    assert path == fixture_info["detector"].path and path.parent == models.default_cache_dir()
    stamp = path.stat().st_mtime_ns
    assert models.fixture_path("detector") == path and path.stat().st_mtime_ns == stamp
    assert models.cache_key("detector") in path.name
    with pytest.raises(SurgeryError, match="unknown model fixture"):
        models.fixture_path("nope")


@pytest.mark.slow
def test_builds_are_byte_identical_across_concurrent_processes(fixture_info, tmp_path) -> None:
    """Two processes, different hash seeds and build orders, one cache dir, at the same time:
    both succeed, and the bytes equal this process's builds."""
    names = list(models.TEST_FIXTURES)
    script = (
        "import sys; from surgery import models\n"
        "for n in sys.argv[2:]: models.build(n, sys.argv[1])"
    )
    procs = []
    for seed, order in (("11", names), ("12", names[::-1])):
        env = {**os.environ, "PYTHONHASHSEED": seed, "TF_CPP_MIN_LOG_LEVEL": "2"}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), *order],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        ))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    for name in names:
        mine = fixture_info[name].path
        theirs = tmp_path / mine.name
        assert theirs.read_bytes() == mine.read_bytes(), name
    assert not list(tmp_path.glob(".*.tmp"))


def test_run_graph_def_accepts_graphs_bytes_and_port_names(fixture_info) -> None:
    info = fixture_info["detector"]
    feeds = tf_reference.random_feeds(info, seed=1)
    split = "detector/detections/split_head/split"
    fetches = [f"{split}:1", f"{split}:2", split, "detector/detections/top_k/TopKV2:1"]
    by_path = tf_reference.run_graph_def(info.path, {"image": feeds["image:0"]}, fetches)
    by_graph = tf_reference.run_graph_def(model_io.load(info.path), feeds, fetches)
    by_bytes = tf_reference.run_graph_def(info.path.read_bytes(), feeds, fetches)
    for name in fetches:
        np.testing.assert_array_equal(by_path[name], by_graph[name])
        np.testing.assert_array_equal(by_path[name], by_bytes[name])
    assert by_path[f"{split}:1"].shape == (1, 16 * 16 * 3, 2)
    assert by_path["detector/detections/top_k/TopKV2:1"].dtype == np.int32
    with pytest.raises(SurgeryError, match="no node 'nope'"):
        tf_reference.run_graph_def(info.path, feeds, ["nope:0"])
