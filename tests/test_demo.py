"""`make demo`'s pipeline end to end on Matterport's small Mask R-CNN: every artifact is written."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from surgery.demo import main
from surgery.ir import model_io

pytest.importorskip("mrcnn", reason="the demo builds Matterport's Mask R-CNN (mrcnn-colab)")


def test_demo_pipeline_writes_every_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    assert main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("maskrcnn_small.pb", "maskrcnn_small.nchw.pb", "maskrcnn_small.trt.pb",
                 "changes.json", "report.html",
                 "maskrcnn_small.onnx", "maskrcnn_small.engine"):
        assert (out / name).stat().st_size > 0, name
        assert name in printed
    assert "PASS" in printed  # validate against TensorFlow
    rewritten = model_io.load(out / "maskrcnn_small.trt.pb")
    plugins = sorted(n.op for n in rewritten if n.op.endswith("_TRT"))
    assert plugins == sorted(["ResizeNearest_TRT"] * 3 + ["ProposalLayer_TRT",
                              "PyramidROIAlign_TRT", "PyramidROIAlign_TRT",
                              "DetectionLayer_TRT", "SpecialSlice_TRT"])
    model = onnx.load(str(out / "maskrcnn_small.onnx"), load_external_data=False)
    assert sum(n.domain == "trt.plugins" for n in model.graph.node) == 8
    # the engine has no plugin left without a GPU kernel, and the dump holds each plugin node
    from plugins.gpu import GPU_KERNELS
    from surgery.backends.plugin_dump import load_dump

    assert {n.op_type for n in model.graph.node if n.domain == "trt.plugins"} <= set(GPU_KERNELS)
    dump = load_dump(out / "plugin_dump")
    assert sorted(e.op for e in dump.plugins) == plugins
    assert "surgery kernels" in printed
