"""`surgery validate --dump DIR`: every plugin node's inputs and reference outputs, read back.

The dump comes from the user's workflow on a real model: our small Mask R-CNN built NHWC, put
into NCHW by `surgery layout nchw`, rewritten by rules/maskrcnn.rules (eight plugin nodes), then
validated with --dump.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from surgery.backends.plugin_dump import FORMAT, MANIFEST, DumpError, DumpWriter, load_dump

pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parent.parent
RULES = str(REPO / "rules" / "maskrcnn.rules")


@pytest.fixture(scope="module")
def dumped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The original, the rewritten file, the dump directory and what validate printed."""
    from surgery.cli import main
    from surgery.models import fixture_info

    work = tmp_path_factory.mktemp("dump")
    original = str(fixture_info("maskrcnn_small_nhwc").path)
    nchw, rewritten, dump = work / "n.pb", work / "t.pb", work / "out" / "dump"
    assert main(["layout", "nchw", original, "-o", str(nchw)]) == 0
    assert main(["apply", RULES, str(nchw), "-o", str(rewritten)]) == 0
    code = main(["validate", original, str(rewritten), "--dump", str(dump)])
    return {"original": original, "rewritten": rewritten, "dir": dump, "code": code}


def test_the_dump_holds_every_plugin_node_and_its_reference_gives_the_outputs(
    dumped: dict[str, Any],
) -> None:
    from plugins.registry import reference
    from surgery.backends.validate import plugin_nodes
    from surgery.ir import model_io

    dump = load_dump(dumped["dir"])
    rewritten = Path(dumped["rewritten"])
    assert dump.model == rewritten.name
    assert dump.model_sha256 == hashlib.sha256(rewritten.read_bytes()).hexdigest()
    graph = model_io.load(rewritten)
    assert [e.node for e in dump.plugins] == plugin_nodes(graph)
    assert [e.op for e in dump.plugins] == [graph.node(e.node).op for e in dump.plugins]
    files = [e.file for e in dump.plugins]
    assert len(set(files)) == len(files) == 8
    assert all(re.fullmatch(r"\d{3}_[A-Za-z0-9._-]+\.npz", f) for f in files), files
    for entry in dump.plugins:
        inputs, outputs = entry.load()
        assert [t.key for t in entry.inputs] == [f"in{i}" for i in range(len(inputs))]
        assert len(inputs) == len(graph.node(entry.node).inputs)
        replayed = reference(entry.op)(inputs, entry.fields)
        assert len(replayed) == len(outputs) >= 1, entry.node
        for got, want in zip(replayed, outputs, strict=True):
            assert got.dtype == want.dtype and np.array_equal(got, want), entry.node


def test_fields_are_typed_by_the_schema(dumped: dict[str, Any]) -> None:
    doc = json.loads((dumped["dir"] / MANIFEST).read_text())
    assert doc["format"] == FORMAT
    by_op = {p["op"]: p["fields"] for p in doc["plugins"]}
    proposal = by_op["ProposalLayer_TRT"]
    assert isinstance(proposal["prenms_topk"], int) and isinstance(proposal["iou_threshold"], float)
    assert all(isinstance(d, int) for d in proposal["image_size"])
    assert isinstance(by_op["ResizeNearest_TRT"]["scale"], float)


def test_feature_maps_are_dumped_as_the_plugin_sees_them_channels_first(
    dumped: dict[str, Any],
) -> None:
    """The NHWC build's feature map reaches PyramidROIAlign_TRT through the transposes
    `layout nchw` inserted: the dump holds it NCHW, the original's tensor transposed."""
    from surgery.backends.validate import random_inputs
    from surgery.ir import model_io
    from surgery.passes.tf_reference import run_graph_def

    original = model_io.load(dumped["original"])
    feeds = {f"{k}:0": v for k, v in random_inputs(original, seed=0).items()}
    nhwc = run_graph_def(original, feeds, ["fpn_p2/BiasAdd"])["fpn_p2/BiasAdd"]
    entry = next(e for e in load_dump(dumped["dir"]).plugins if e.node == "roi_align_classifier")
    inputs, _ = entry.load()
    assert inputs[1].shape == (nhwc.shape[0], nhwc.shape[3], nhwc.shape[1], nhwc.shape[2])
    np.testing.assert_allclose(inputs[1], nhwc.transpose(0, 3, 1, 2), rtol=1e-3, atol=1e-3)


def test_a_failed_validation_still_writes_the_dump_and_reads_back_without_tensorflow(
    dumped: dict[str, Any],
) -> None:
    """validate exits 1 on this rewrite (the NCHW sums move Identity_1 past 1e-5), and the dump
    is there for the kernels; the reader needs numpy alone."""
    assert dumped["code"] == 1
    script = (
        "import sys\n"
        "from surgery.backends.plugin_dump import load_dump\n"
        f"dump = load_dump({str(dumped['dir'])!r})\n"
        "arrays = [entry.load() for entry in dump.plugins]\n"
        "assert 'tensorflow' not in sys.modules and 'google.protobuf' not in sys.modules\n"
        "print(len(arrays))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "8"


def test_a_previous_dump_is_replaced_and_other_directories_are_refused(
    dumped: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from surgery.cli import main

    target = tmp_path / "again"
    shutil.copytree(dumped["dir"], target)
    (target / "000_stale.npz").write_bytes((dumped["dir"] / load_dump(target).plugins[0].file)
                                           .read_bytes())  # fmt: skip
    argv = ["validate", dumped["original"], str(dumped["rewritten"]), "--dump"]
    assert main([*argv, str(target)]) == 1  # FAIL, as above, and the dump replaced
    assert not (target / "000_stale.npz").exists()
    assert len(load_dump(target).plugins) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no temporary left behind
    capsys.readouterr()
    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main([*argv, str(foreign)]) == 1
    err = capsys.readouterr().err
    assert "not empty and not a previous plugin dump (holds notes.txt)" in err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


# --------------------------------------------------------------------------- writer and reader
def _write(directory: Path, model: Path) -> None:
    with DumpWriter(directory, model) as writer:
        writer.add("scope/a:b*c", "LReLU_TRT", {"negSlope": np.float32(0.25)},
                   [np.arange(6, dtype=np.float32).reshape(2, 3)],
                   [np.ones((2, 3), np.float32)])  # fmt: skip
        writer.add("scope/a:b*c", "LReLU_TRT", {"negSlope": 0.5}, [np.zeros(2, np.int32)],
                   [np.zeros(2, np.int32), np.zeros((0, 4), np.float32)])  # fmt: skip


def test_writer_names_files_safely_and_creates_missing_parents(tmp_path: Path) -> None:
    model = tmp_path / "m.pb"
    model.write_bytes(b"graph bytes")
    target = tmp_path / "a" / "b" / "dump"
    _write(target, model)
    dump = load_dump(target)
    assert [e.file for e in dump.plugins] == ["000_scope_a_b_c.npz", "001_scope_a_b_c.npz"]
    assert dump.model_sha256 == hashlib.sha256(b"graph bytes").hexdigest()
    assert dump.plugins[0].fields == {"negSlope": 0.25}
    inputs, outputs = dump.plugins[1].load()
    assert inputs[0].dtype == np.int32 and outputs[1].shape == (0, 4)


def test_an_error_while_writing_leaves_nothing(tmp_path: Path) -> None:
    model = tmp_path / "m.pb"
    model.write_bytes(b"x")
    with pytest.raises(RuntimeError), DumpWriter(tmp_path / "dump", model) as writer:
        writer.add("n", "LReLU_TRT", {}, [np.zeros(1)], [np.zeros(1)])
        raise RuntimeError("validate failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pb"]
    with pytest.raises(DumpError, match="field 'bad'"), DumpWriter(tmp_path / "d", model) as w:
        w.add("n", "LReLU_TRT", {"bad": object()}, [], [])


def test_a_file_as_target_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.pb"
    model.write_bytes(b"x")
    with pytest.raises(DumpError, match="m.pb: not a directory"):
        DumpWriter(model, model)


@pytest.fixture
def small_dump(tmp_path: Path) -> Path:
    model = tmp_path / "m.pb"
    model.write_bytes(b"x")
    _write(tmp_path / "dump", model)
    return tmp_path / "dump"


def _edit(directory: Path, change: Any) -> None:
    doc = json.loads((directory / MANIFEST).read_text())
    change(doc)
    (directory / MANIFEST).write_text(json.dumps(doc))


def test_reader_refuses_a_directory_without_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(DumpError, match=r"manifest.json: no such file; .* is no plugin dump"):
        load_dump(tmp_path)


def test_reader_refuses_another_format_version(small_dump: Path) -> None:
    _edit(small_dump, lambda doc: doc.update(format="surgery-plugin-dump/2"))
    with pytest.raises(DumpError, match="format 'surgery-plugin-dump/2'; this reader takes"):
        load_dump(small_dump)


def test_reader_names_the_entry_of_a_missing_file(small_dump: Path) -> None:
    (small_dump / "001_scope_a_b_c.npz").unlink()
    with pytest.raises(DumpError, match=r"plugins\[1\] \(scope/a:b\*c\): .*001_scope_a_b_c.npz "
                                        r"is missing"):  # fmt: skip
        load_dump(small_dump)


def test_reader_refuses_shapes_and_dtypes_the_arrays_do_not_have(small_dump: Path) -> None:
    _edit(small_dump, lambda doc: doc["plugins"][0]["inputs"][0].update(shape=[3, 2]))
    with pytest.raises(DumpError, match=r"plugins\[0\] .*000_scope_a_b_c.npz\[in0\] is "
                                        r"float32 \[2, 3\]; the manifest says float32 \[3, 2\]"):
        load_dump(small_dump)
    _edit(small_dump, lambda doc: doc["plugins"][0]["inputs"][0].update(shape=[2, 3],
                                                                        dtype="float64"))
    with pytest.raises(DumpError, match=r"is float32 \[2, 3\]; the manifest says float64"):
        load_dump(small_dump)
    _edit(small_dump, lambda doc: (doc["plugins"][0]["inputs"][0].update(dtype="float32"),
                                   doc["plugins"][0]["outputs"][0].update(key="out7")))
    with pytest.raises(DumpError, match="has no array 'out7'"):
        load_dump(small_dump)


def test_reader_refuses_a_malformed_entry(small_dump: Path) -> None:
    _edit(small_dump, lambda doc: doc["plugins"][1].pop("op"))
    with pytest.raises(DumpError, match=r"plugins\[1\] .*malformed entry \('op'\)"):
        load_dump(small_dump)
    _edit(small_dump, lambda doc: doc["plugins"][1].update(op="X", file="../m.pb"))
    with pytest.raises(DumpError, match="file '../m.pb' must be a name inside"):
        load_dump(small_dump)
