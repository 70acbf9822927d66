"""Static shapes on the 3D-box net: Flatten and Reshape((bins, -1)) become Const-shaped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from surgery.cli import main
from surgery.ir import model_io
from surgery.ir.tensor_values import to_numpy
from surgery.passes import shapes
from surgery.passes.tf_reference import random_feeds, run_graph_def


def reshape_shapes(path: Path) -> dict[str, list[int] | None]:
    graph = model_io.load(path)
    out = {}
    for node in graph.nodes_by_op("Reshape"):
        src = graph.node(node.inputs[1].node)
        out[node.name] = to_numpy(src.attr["value"].tensor).tolist() if src.op == "Const" else None
    return out


def test_static_reshape_on_box3d(box3d_pb: Path, fixture_info, tmp_path: Path) -> None:
    before = reshape_shapes(box3d_pb)
    assert None in before.values()  # Reshape((bins, -1)) computes its shape from Shape(x)
    out = tmp_path / "static.pb"
    assert main(["shapes", str(box3d_pb), "--static-reshape", "-o", str(out),
                 "--input", "input_1=1,64,64,3"]) == 0
    after = reshape_shapes(out)
    assert all(v is not None and v.count(-1) == 0 for v in after.values()), after
    graph = model_io.load(out)
    assert not graph.nodes_by_op("Shape")  # the shape computation is gone
    info = fixture_info["box3d"]
    feeds = random_feeds(info, seed=3)
    want = run_graph_def(box3d_pb, feeds, info.outputs)
    got = run_graph_def(out, feeds, info.outputs)
    for name in info.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)


def test_two_unknown_dims_are_refused_naming_the_node(box3d_pb: Path, tmp_path: Path) -> None:
    graph = model_io.load(box3d_pb)
    inferred = shapes.infer_shapes(graph)
    with pytest.raises(shapes.ShapeError, match=r"reshape_1/Reshape: output shape \[\?, 2, \?\]"):
        shapes.static_reshapes(graph, inferred)
    out = tmp_path / "x.pb"
    assert main(["shapes", str(box3d_pb), "--static-reshape", "-o", str(out)]) == 1
    assert not out.exists()


def test_print_shapes(box3d_pb: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["shapes", str(box3d_pb), "--ops", "Placeholder"]) == 0
    assert "input_1 (Placeholder): [?, 64, 64, 3]" in capsys.readouterr().out
    with pytest.raises(shapes.ShapeError, match="no Placeholder"):
        shapes.infer_shapes(model_io.load(box3d_pb), {"nope": (1,)})


def test_annotate_records_output_shapes(box3d_pb: Path, tmp_path: Path) -> None:
    out = tmp_path / "annotated.pb"
    assert main(["shapes", str(box3d_pb), "--annotate", "-o", str(out),
                 "--input", "input_1=1,64,64,3"]) == 0
    graph = model_io.load(out)
    flatten = next(n for n in graph.nodes_by_op("Reshape") if "flatten" in n.name)
    dims = [d.size for d in flatten.attr["_output_shapes"].list.shape[0].dim]
    assert dims == [1, 1024]
