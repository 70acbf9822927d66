"""`surgery preprocess CONFIG.py MODEL.pb -o OUT.pb` end to end, and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from surgery.cli import main
from surgery.ir import model_io

pytest.importorskip("tensorflow")
from gs_scripts import tf_graphs  # noqa: E402

SCRIPTS = Path(__file__).parent / "gs_scripts"


@pytest.fixture(scope="module")
def ssd_pb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "ssd.pb"
    path.write_bytes(tf_graphs.ssd_graph())
    return path


@pytest.fixture(scope="module")
def maskrcnn_pb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "maskrcnn.pb"
    path.write_bytes(tf_graphs.maskrcnn_graph())
    return path


def test_ssd_end_to_end(ssd_pb, tmp_path, capsys):
    out = tmp_path / "ssd_trt.pb"
    before = ssd_pb.read_bytes()
    assert main(["preprocess", str(SCRIPTS / "ssd_config.py"), str(ssd_pb), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert ssd_pb.read_bytes() == before
    graph = model_io.load(out)
    assert list(graph.node("NMS").proto.input) == [
        "concat_box_loc",
        "concat_priorbox",
        "concat_box_conf",
    ]
    assert [str(r) for r in graph.node("detection_classes").inputs] == ["NMS:1"]
    graph.check()
    again = tmp_path / "again.pb"
    assert main(["preprocess", str(SCRIPTS / "ssd_config.py"), str(ssd_pb), "-o", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()  # deterministic


def test_maskrcnn_end_to_end_to_pbtxt(maskrcnn_pb, tmp_path):
    out = tmp_path / "mrcnn.pbtxt"
    assert (
        main(["preprocess", str(SCRIPTS / "maskrcnn_config.py"), str(maskrcnn_pb), "-o", str(out)])
        == 0
    )
    graph = model_io.load(out)
    assert graph.node("mrcnn_detection").op == "DetectionLayer_TRT"


def test_tensorflow_stand_in_when_not_installed(maskrcnn_pb, tmp_path, monkeypatch):
    import importlib.util
    import sys

    monkeypatch.delitem(sys.modules, "tensorflow")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorflow" else real(name, *a),
    )
    out = tmp_path / "o.pb"
    assert (
        main(["preprocess", str(SCRIPTS / "maskrcnn_config.py"), str(maskrcnn_pb), "-o", str(out)])
        == 0
    )
    assert model_io.load(out).node("ROI").op == "ProposalLayer_TRT"


def _fails(args: list[str], capsys, *words: str) -> None:
    assert main(["preprocess", *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def test_script_errors_name_file_and_line(ssd_pb, tmp_path, capsys):
    out = tmp_path / "o.pb"
    script = SCRIPTS / "raises_config.py"
    _fails([str(script), str(ssd_pb), "-o", str(out)], capsys, f"{script}:6", "no/such/node")
    assert not out.exists() and not list(tmp_path.iterdir())

    bad = tmp_path / "bad.py"
    bad.write_text("import graphsurgeon as gs\n\ndef preprocess(g)\n    pass\n")
    _fails([str(bad), str(ssd_pb), "-o", str(out)], capsys, f"{bad}:3", "syntax")

    top = tmp_path / "top.py"
    top.write_text("import graphsurgeon as gs\nx = gs.create_plugin_node('p', op='X', f={})\n")
    _fails([str(top), str(ssd_pb), "-o", str(out)], capsys, f"{top}:2", "'p.f'")

    nofunc = tmp_path / "nofunc.py"
    nofunc.write_text("import graphsurgeon as gs\n")
    _fails([str(nofunc), str(ssd_pb), "-o", str(out)], capsys, "preprocess(dynamic_graph)")

    dangling = tmp_path / "dangling.py"
    dangling.write_text("def preprocess(g):\n    g.node_map['concat'].input.append('ghost')\n")
    _fails([str(dangling), str(ssd_pb), "-o", str(out)], capsys, "ghost", "--no-check")
    assert not out.exists()
    assert main(["preprocess", "--no-check", str(dangling), str(ssd_pb), "-o", str(out)]) == 0
    assert "graphsurgeon" not in __import__("sys").modules


def test_bad_paths(ssd_pb, tmp_path, capsys):
    script = str(SCRIPTS / "ssd_config.py")
    _fails(
        [str(tmp_path / "missing.py"), str(ssd_pb), "-o", str(tmp_path / "o.pb")],
        capsys,
        "missing.py",
    )
    _fails([str(tmp_path), str(ssd_pb), "-o", str(tmp_path / "o.pb")], capsys, "directory")
    _fails([script, str(tmp_path / "none.pb"), "-o", str(tmp_path / "o.pb")], capsys, "none.pb")
    before = ssd_pb.read_bytes()
    _fails([script, str(ssd_pb), "-o", str(ssd_pb)], capsys, "overwrite")
    assert ssd_pb.read_bytes() == before
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit) as info:
        main(["preprocess", script, str(ssd_pb)])  # -o is required
    assert info.value.code == 2
