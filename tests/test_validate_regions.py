"""How validate evaluates: one TF session per graph, each node computed once, the nodes both
graphs share taken from the original's run, weights fed where that changes no result.

On our small Mask R-CNN built NCHW and rewritten by rules/maskrcnn.rules (eight plugin nodes in a
chain: eight waves, the backbone under the first five), and on the ResNet-50 fixture for the
weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parent.parent
RULES = str(REPO / "rules" / "maskrcnn.rules")


@pytest.fixture(scope="module")
def maskrcnn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The NCHW build, its rewrite, the plugin nodes, seeded feeds and the outputs compared."""
    from surgery.backends.validate import graph_output_tensors, plugin_nodes, random_inputs
    from surgery.cli import main
    from surgery.ir import model_io
    from surgery.ir.ports import parse_tensor
    from surgery.models import fixture_info

    original = fixture_info("maskrcnn_small_nchw").path
    out = tmp_path_factory.mktemp("regions") / "t.pb"
    assert main(["apply", RULES, str(original), "-o", str(out)]) == 0
    before, after = model_io.load(original), model_io.load(out)
    return {
        "original": before, "rewritten": after, "plugins": plugin_nodes(after),
        "feeds": random_inputs(before, seed=3),
        "outputs": [parse_tensor(t) for t in graph_output_tensors(before)],
    }  # fmt: skip


def test_every_node_is_computed_by_one_run_and_reread_tensors_are_carried(
    maskrcnn: dict[str, Any],
) -> None:
    from surgery.backends.validate_regions import RegionPlan, _constant_nodes

    graph = maskrcnn["rewritten"]
    plan = RegionPlan(graph, maskrcnn["plugins"], maskrcnn["outputs"])
    assert len(plan.runs) == 9  # a wave per plugin, then the outputs
    constant = _constant_nodes(graph)
    runs_of: dict[str, list[int]] = {}
    for index, run in enumerate(plan.runs):
        for name in run.computed:
            runs_of.setdefault(name, []).append(index)
    again = {n: r for n, r in runs_of.items() if len(r) > 1 and n not in constant}
    assert not again, again
    assert "res2a_branch2a/Conv2D" in runs_of  # the backbone, once
    carried = {ref for run in plan.runs for ref in run.carried_in}
    assert carried  # FPN levels the first waves computed, read by later ones
    for index, run in enumerate(plan.runs):
        for ref in run.carried_in:
            first = plan.assigned[ref.node]
            assert first < index and ref in plan.runs[first].fetch


def test_shared_nodes_come_from_the_original_and_change_no_value(
    maskrcnn: dict[str, Any],
) -> None:
    """The rewrite left the backbone alone: its tensors are taken from the original's run, the
    rewritten graph's session holds the heads only, and every output is bit-identical to the
    evaluation that computes everything itself."""
    from surgery.backends.validate_regions import (
        RegionEvaluator,
        RegionPlan,
        known_tensors,
        shared_nodes,
    )  # fmt: skip
    from surgery.passes.tf_reference import run_graph_def

    original, rewritten = maskrcnn["original"], maskrcnn["rewritten"]
    plugins, outputs, feeds = maskrcnn["plugins"], maskrcnn["outputs"], maskrcnn["feeds"]
    candidates = shared_nodes(original, rewritten, plugins, set(feeds))
    assert "res5c_branch2c/Conv2D" in candidates and not candidates & set(plugins)
    kept, known = known_tensors(original, rewritten, plugins, outputs, candidates)
    assert known and kept <= candidates
    for ref in known:  # cut only where TensorFlow cannot have fused across
        assert rewritten.consumer_count(ref) >= 2 and original.consumer_count(ref) >= 2, ref
    alone = len(RegionPlan(rewritten, plugins, outputs).assigned)
    assert len(RegionPlan(rewritten, plugins, outputs, kept).assigned) < alone / 2
    reference = run_graph_def(original, {f"{k}:0": v for k, v in feeds.items()},
                              [str(r) for r in known])  # fmt: skip
    with_shared = RegionEvaluator(rewritten, feeds, shared=kept).run(
        outputs, known={ref: reference[str(ref)] for ref in known}
    )
    by_itself = RegionEvaluator(rewritten, feeds).run(outputs)
    for ref in outputs:
        assert np.array_equal(with_shared[ref], by_itself[ref]), ref


def test_a_missing_known_value_is_an_error(maskrcnn: dict[str, Any]) -> None:
    from surgery.backends.validate import ValidationError
    from surgery.backends.validate_regions import RegionEvaluator, known_tensors, shared_nodes

    original, rewritten = maskrcnn["original"], maskrcnn["rewritten"]
    plugins, outputs, feeds = maskrcnn["plugins"], maskrcnn["outputs"], maskrcnn["feeds"]
    kept, known = known_tensors(original, rewritten, plugins, outputs,
                                shared_nodes(original, rewritten, plugins, set(feeds)))
    with pytest.raises(ValidationError, match="no value given for shared tensor"):
        RegionEvaluator(rewritten, feeds, shared=kept).run(outputs, known={})


# --------------------------------------------------------------------------- fed weights
_LIFT = r"""
import json, sys
import numpy as np
from surgery.ir import model_io
from surgery.models import fixture_info
from surgery.passes.tf_reference import (
    LIFTED_CONST_BYTES, WEIGHT_INPUT, import_graph, random_feeds, run_graph_def, weights_frozen,
    wire_graph,
)
import tensorflow as tf

info = fixture_info("resnet50")
graph = model_io.load(info.path)
feeds = random_feeds(info, seed=1)
wire = wire_graph(graph)
readers = {w: [n.op for n in graph if w in {r.node for r in n.inputs}] for w in wire.weights}
fed = run_graph_def(graph, feeds, info.outputs)
with tf.compat.v1.Session(graph=import_graph(graph.to_graph_def())) as session:
    held = session.run(info.outputs, feeds)
print(json.dumps({
    "frozen": weights_frozen(), "lifted": len(wire.weights),
    "only_weights": all(set(ops) <= set(WEIGHT_INPUT) | {"Identity"} for ops in readers.values()),
    "all_large": all(graph.node(w).attr["value"].tensor.ByteSize() > LIFTED_CONST_BYTES
                     for w in wire.weights),
    "same": all(np.array_equal(a, b) for a, b in zip(fed.values(), held, strict=True)),
}))
"""


@pytest.mark.parametrize("frozen", ["1", "0"])
def test_fed_weights_give_the_results_of_consts_to_the_bit(frozen: str) -> None:
    """In a fresh process where TensorFlow treats weights as frozen, ResNet-50's large conv and
    matmul weights are fed instead of held, and the outputs are those of the graph with its
    Consts; where it does not, nothing is fed."""
    import os

    env = dict(os.environ, TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=frozen, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", _LIFT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["same"] and result["only_weights"] and result["all_large"], result
    assert result["frozen"] == (frozen == "1")
    assert (result["lifted"] > 0) == (frozen == "1"), result


def test_dynamic_weights_are_found() -> None:
    """A matmul of two activations has no frozen weights; a conv reading a Const through an
    Identity has."""
    from surgery.ir.attrs import make_attr
    from surgery.ir.graph import Graph
    from surgery.ir.tensor_values import from_numpy
    from surgery.passes.tf_reference import dynamic_weights

    graph = Graph()
    graph.add_node("x", "Placeholder", attrs={"dtype": make_attr("float32", "type")})
    graph.add_node("y", "Placeholder", attrs={"dtype": make_attr("float32", "type")})
    filters = from_numpy(np.ones((1, 1, 3, 3), np.float32))
    graph.add_node("w", "Const", attrs={"dtype": make_attr("float32", "type"),
                                        "value": make_attr(filters, "tensor")})
    graph.add_node("w/read", "Identity", ["w"])
    graph.add_node("conv", "Conv2D", ["x", "w/read"])
    graph.add_node("scores", "MatMul", ["x", "y"])
    assert dynamic_weights(graph) == ["scores"]


# --------------------------------------------------------------------------- comparison
def test_comparison_in_blocks_is_the_whole_arrays_comparison() -> None:
    """Differences, NaN pairs and infinities in several blocks give what one float64 pass over
    the whole arrays gives."""
    from surgery.backends.validate_compare import _CHUNK, compare

    rng = np.random.default_rng(0)
    want = rng.standard_normal(2 * _CHUNK + 1000).astype(np.float32)
    got = want + rng.standard_normal(want.size).astype(np.float32) * 1e-6
    got[_CHUNK + 5] += 3e-3  # the largest difference, in the second block
    want[10], got[10] = np.nan, np.nan  # NaN in both: equal
    want[2 * _CHUNK + 7], got[2 * _CHUNK + 7] = 1e-9, 5e-6  # below atol: no relative error
    a, b = want.astype(np.float64), got.astype(np.float64)
    err = np.abs(a - b)
    err[np.isnan(a) & np.isnan(b)] = 0.0
    scale = np.abs(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(scale > 1e-5, err / scale, 0.0)
    result = compare("x", "x", "x", want.reshape(2, -1), got.reshape(2, -1), 1e-4, 1e-5)
    assert result.max_abs == float(np.nanmax(err)) and result.max_rel == float(np.nanmax(rel))
    assert not result.passed
    got[_CHUNK + 5] = want[_CHUNK + 5]
    assert compare("x", "x", "x", want, got, 1e-4, 1e-5).passed
    got[2 * _CHUNK + 9] = np.nan  # NaN on one side only: an infinite difference
    one_sided = compare("x", "x", "x", want, got, 1e-4, 1e-5)
    assert one_sided.max_abs == np.inf and not one_sided.passed
