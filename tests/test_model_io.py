"""Loading and saving: every bad input gives a one-line error naming the file; no partial output."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorboard.compat.proto import summary_pb2

from surgery.cli import main
from surgery.errors import ModelLoadError, OutputPathError
from surgery.ir import model_io
from surgery.ir.protos import GraphDef

GRAPH = 'node { name: "x" op: "Placeholder" }\nnode { name: "y" op: "Relu" input: "x" }\n'


@pytest.fixture
def good_pb(tmp_path: Path) -> Path:
    path = tmp_path / "good.pb"
    gd = text_format.Parse(GRAPH, GraphDef())
    path.write_bytes(gd.SerializeToString(deterministic=True))
    return path


def test_roundtrip_is_byte_identical(good_pb: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.pb"
    model_io.save(model_io.load(good_pb), out, inputs=(good_pb,))
    assert out.read_bytes() == good_pb.read_bytes()
    txt = tmp_path / "out.pbtxt"
    model_io.save(model_io.load(out), txt)
    again = tmp_path / "again.pbtxt"
    model_io.save(model_io.load(txt), again)
    assert again.read_bytes() == txt.read_bytes()


def test_truncated_pb(good_pb: Path, tmp_path: Path) -> None:
    bad = tmp_path / "trunc.pb"
    bad.write_bytes(good_pb.read_bytes()[:-3])
    with pytest.raises(ModelLoadError, match=r"trunc\.pb: not a binary GraphDef"):
        model_io.load(bad)


def test_protobuf_that_is_not_a_graphdef(tmp_path: Path) -> None:
    other = tmp_path / "summary.pb"
    # a Summary's field numbers collide with GraphDef's: it parses, but into a nameless node
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=1.0)])
    other.write_bytes(summary.SerializeToString())
    with pytest.raises(ModelLoadError, match=r"summary\.pb: protobuf is not a GraphDef"):
        model_io.load(other)


def test_pbtxt_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pbtxt"
    bad.write_text('node { name: "x" op: "Placeholder" }\nnode { name: "y" op: }\n')
    with pytest.raises(ModelLoadError, match=r"bad\.pbtxt:2:\d+: \.pbtxt syntax error"):
        model_io.load(bad)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        model_io.load(tmp_path / "missing.pb")
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is a directory.*surgery freeze"):
        model_io.load(tmp_path / "sm")


def test_output_equal_to_input_is_refused(good_pb: Path) -> None:
    before = good_pb.read_bytes()
    with pytest.raises(OutputPathError, match="overwrite the input"):
        model_io.save(model_io.load(good_pb), good_pb, inputs=(good_pb,))
    alias = good_pb.parent / "." / good_pb.name
    with pytest.raises(OutputPathError):
        model_io.save(model_io.load(good_pb), alias, inputs=(good_pb,))
    assert good_pb.read_bytes() == before


def test_cli_errors_are_one_line_with_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "junk.pb"
    bad.write_bytes(b"\xff\xff\xff\xff garbage")
    assert main(["inspect", "--no-tf", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "junk.pb" in err


def test_failed_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.pb"

    def boom(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(model_io.os, "fsync", boom)
    with pytest.raises(OSError):
        model_io.write_atomic(target, b"data")
    assert list(tmp_path.iterdir()) == []


def test_inspect_lists_ops_namespaces_and_unknown_ops(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "g.pbtxt"
    path.write_text(
        'node { name: "x" op: "Placeholder" }\n'
        'node { name: "ns/a" op: "Relu" input: "x" }\n'
        'node { name: "ns/b" op: "LReLU_TRT" input: "ns/a" }\n'
    )
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "nodes: 3" in out and "ns/  2" in out
    assert "ops unknown to TensorFlow: LReLU_TRT x1" in out
