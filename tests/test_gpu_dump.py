"""`surgery kernels DIR`: the GPU kernels on a real `validate --dump`, and the dump's guards.

The dump is the user's: our small Mask R-CNN put into NCHW, rewritten by rules/maskrcnn.rules
(eight plugin nodes) and validated with --dump. On a GPU machine without TensorFlow, point
SURGERY_PLUGIN_DUMP (and SURGERY_PLUGIN_MODEL, the rewritten .pb) at a dump made elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from plugins.gpu import gpu_unavailable_reason

REPO = Path(__file__).resolve().parent.parent
RULES = str(REPO / "rules" / "maskrcnn.rules")


@pytest.fixture(scope="module")
def dumped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The rewritten model and its dump: given by the environment, else made here with TF."""
    given = os.environ.get("SURGERY_PLUGIN_DUMP")
    if given:
        return {"dir": Path(given), "rewritten": Path(os.environ["SURGERY_PLUGIN_MODEL"])}
    pytest.importorskip("tensorflow", reason="making a dump needs TensorFlow; or set "
                        "SURGERY_PLUGIN_DUMP and SURGERY_PLUGIN_MODEL")  # fmt: skip
    from surgery.cli import main
    from surgery.models import fixture_info

    work = tmp_path_factory.mktemp("kernels")
    original = str(fixture_info("maskrcnn_small_nhwc").path)
    nchw, rewritten, dump = work / "n.pb", work / "t.pb", work / "dump"
    assert main(["layout", "nchw", original, "-o", str(nchw)]) == 0
    assert main(["apply", RULES, str(nchw), "-o", str(rewritten)]) == 0
    main(["validate", original, str(rewritten), "--dump", str(dump)])  # written pass or fail
    return {"dir": dump, "rewritten": rewritten}


def kernels(*argv: str) -> int:
    """`surgery kernels ...` in this process."""
    from surgery.cli import main

    return main(["kernels", *argv])


def test_every_kernel_agrees_with_the_reference_on_the_real_dump(
    dumped: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no CUDA GPU / CuPy on this machine: {reason}")
    code = kernels(str(dumped["dir"]), "--model", str(dumped["rewritten"]))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "8 of 8 plugin nodes agree" in out


def test_without_a_gpu_it_says_what_is_missing(
    dumped: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    if gpu_unavailable_reason() is None:
        pytest.skip("this machine has a GPU: the check runs instead")
    assert kernels(str(dumped["dir"])) == 1
    err = capsys.readouterr().err
    assert "surgery kernels: error:" in err and ("needs CuPy" in err or "no CUDA GPU" in err)


def _edited(dumped: dict[str, Path], tmp_path: Path, edit: Any) -> Path:
    """The rewritten model with `edit(graph)` applied, saved beside the test."""
    from surgery.ir import model_io

    graph = model_io.load(dumped["rewritten"])
    edit(graph)
    out = tmp_path / "other.pb"
    model_io.save(graph, out)
    return out


def test_a_dump_of_another_model_is_refused_naming_the_plugin_node(
    dumped: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from surgery.backends.plugin_dump import load_dump

    entry = next(e for e in load_dump(dumped["dir"]).plugins if e.op == "ProposalLayer_TRT")

    def fewer_boxes(graph: Any) -> None:
        graph.node(entry.node).attr["keep_topk"].i = int(entry.fields["keep_topk"]) - 1

    other = _edited(dumped, tmp_path, fewer_boxes)
    assert kernels(str(dumped["dir"]), "--model", str(other)) == 1
    err = capsys.readouterr().err
    assert f"plugin node {entry.node} (ProposalLayer_TRT): field keep_topk" in err
    assert "another model" in err


def test_a_model_without_the_dumped_node_is_refused(
    dumped: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from surgery.backends.plugin_dump import load_dump
    from surgery.ir.model_io import read_graph_def

    first = load_dump(dumped["dir"]).plugins[0]
    assert kernels(str(dumped["dir"]), "--model", str(REPO / "tests" / "missing.pb")) == 1
    assert "no such file" in capsys.readouterr().err
    # the rewritten model with that plugin node renamed (no TensorFlow needed: GPU machines lack it)
    graph_def = read_graph_def(dumped["rewritten"])
    old, new = first.node, first.node + "_renamed"
    for node in graph_def.node:
        node.name = new if node.name == old else node.name
        node.input[:] = [new + i[len(old) :] if i == old or i.startswith(old + ":") else
                         "^" + new if i == "^" + old else i for i in node.input]  # fmt: skip
    other = tmp_path / "renamed.pb"
    other.write_bytes(graph_def.SerializeToString())
    assert kernels(str(dumped["dir"]), "--model", str(other)) == 1
    assert f"plugin node {first.node} ({first.op}) of the dump is not in the model" in (
        capsys.readouterr().err
    )


def test_a_folder_that_is_no_dump_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kernels(str(tmp_path)) == 1
    assert str(tmp_path) in capsys.readouterr().err
