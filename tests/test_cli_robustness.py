"""The CLI trusts no input: invalid graphs refused in one line (unless --allow-invalid), a 0-byte
file named, a reader gone away (`| head`) ends the command quietly with 141, several rule files
for match and explain, layout after apply answered in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_matcher import make_graph

from surgery.cli import EXIT_BROKEN_PIPE, main
from surgery.ir import model_io

ROOT = Path(__file__).resolve().parents[1]
LEAKY = str(ROOT / "rules" / "leaky_relu.rules")
LEAKY_AT = next(  # where `rule leaky_relu:` is in it
    i for i, text in enumerate(Path(LEAKY).read_text().splitlines(), 1) if text.startswith("rule ")
)
L2 = str(ROOT / "rules" / "l2_normalize.rules")
X = ("x", "Placeholder", [], {"dtype": ("float32", "type")})
ALPHA = {"alpha": (0.1, "float"), "T": ("float32", "type")}


def save(tmp_path: Path, name: str, spec: list[tuple]) -> Path:
    path = tmp_path / name
    model_io.save(make_graph(spec), path)
    return path


@pytest.fixture
def bad_port(tmp_path: Path) -> Path:
    return save(tmp_path, "port.pb", [X, ("a", "LeakyRelu", ["x:99"], ALPHA)])


@pytest.fixture
def self_loop(tmp_path: Path) -> Path:
    return save(tmp_path, "loop.pb", [X, ("a", "AddV2", ["a", "x"])])


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_apply_refuses_a_port_beyond_the_outputs(bad_port: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.pb"
    assert main(["apply", LEAKY, str(bad_port), "-o", str(out)]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"surgery apply: error: {bad_port}: invalid graph (1 defect): "
                           "'a' reads x:99, but Placeholder 'x' has only 1 output")  # fmt: skip
    assert "--allow-invalid" in line and not out.exists()


def test_apply_refuses_a_self_loop(self_loop: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.pb"
    assert main(["apply", LEAKY, str(self_loop), "-o", str(out)]) == 1
    assert "'a' reads its own output a (a self-loop)" in one_line(capsys.readouterr().err)
    assert not out.exists()


def test_allow_invalid_lets_the_brave_through(bad_port: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.pb"
    assert main(["apply", LEAKY, str(bad_port), "-o", str(out), "--allow-invalid"]) == 0
    captured = capsys.readouterr()
    assert "going on (--allow-invalid)" in one_line(captured.err)
    assert "leaky_relu: 1 match applied" in captured.out
    assert model_io.load(out).node("a").op == "LReLU_TRT"


def test_layout_and_export_refuse_invalid_graphs(tmp_path: Path, capsys) -> None:
    cycle = save(tmp_path, "cycle.pb", [X, ("a", "AddV2", ["c", "x"]), ("b", "Relu", ["a"]),
                                        ("c", "Relu", ["b"])])  # fmt: skip
    for argv in (["layout", "nchw", str(cycle), "-o", str(tmp_path / "n.pb")],
                 ["export", str(cycle), "-o", str(tmp_path / "m.onnx")]):  # fmt: skip
        assert main(argv) == 1
        line = one_line(capsys.readouterr().err)
        assert f"error: {cycle}: invalid graph (1 defect): cycle a -> b -> c -> a" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cycle.pb"]


def test_inspect_lists_defects_and_exits_0(bad_port: Path, tmp_path: Path, capsys) -> None:
    graph = save(tmp_path, "two.pb", [X, ("a", "AddV2", ["a", "x:1"]), ("b", "Relu", ["gone"])])
    assert main(["inspect", "--no-tf", str(graph)]) == 0
    out = capsys.readouterr().out
    section = out[out.index("defects (3;"):].splitlines()
    assert section[1:] == [
        "  'a' reads its own output a (a self-loop)",
        "  'a' reads x:1, but Placeholder 'x' has only 1 output",
        "  'b' reads gone from missing node 'gone'",
    ]
    assert main(["inspect", "--no-tf", "--json", str(bad_port)]) == 0
    doc = json.loads(capsys.readouterr().out)
    text = "'a' reads x:99, but Placeholder 'x' has only 1 output"
    assert doc["defects"] == [{"kind": "port", "nodes": ["a", "x"], "text": text}]


def test_inspect_of_a_valid_graph_says_no_defects(box3d_pb: Path, capsys) -> None:
    assert main(["inspect", "--no-tf", str(box3d_pb)]) == 0
    assert "defects: none" in capsys.readouterr().out


def test_zero_byte_file_and_empty_graph(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.pb"
    empty.write_bytes(b"")
    for argv in (["inspect", "--no-tf", str(empty)],
                 ["apply", LEAKY, str(empty), "-o", str(tmp_path / "o.pb")]):  # fmt: skip
        assert main(argv) == 1
        assert one_line(capsys.readouterr().err).endswith(
            f"error: {empty}: empty file (0 bytes), not a GraphDef")
    comments = tmp_path / "comments.pbtxt"
    comments.write_text("# no nodes\n")  # it would save as an empty file: refused like one
    assert main(["inspect", "--no-tf", str(comments)]) == 1
    assert one_line(capsys.readouterr().err).endswith(
        f"error: {comments}: no graph in it (only blanks and comments)")
    nothing = tmp_path / "nothing.pbtxt"
    nothing.write_text("versions { producer: 1 }\n")
    assert main(["inspect", "--no-tf", str(nothing)]) == 0
    assert "  the graph has no nodes" in capsys.readouterr().out
    assert main(["apply", LEAKY, str(nothing), "-o", str(tmp_path / "o.pb")]) == 1
    assert "invalid graph (1 defect): the graph has no nodes" in capsys.readouterr().err
    assert not (tmp_path / "o.pb").exists()


# ---------------------------------------------------------------------------- broken pipe
def _long_graph(tmp_path: Path, count: int) -> Path:
    """`count` LeakyRelus, each in its own namespace: long `match` and `inspect` outputs."""
    spec: list[tuple] = [X]
    for i in range(count):
        spec.append((f"ns{i}/act", "LeakyRelu", [spec[-1][0]], ALPHA))
    return save(tmp_path, "long.pb", spec)


def _piped(command: str, tmp_path: Path) -> tuple[int, str, str]:
    """Run `python -m surgery COMMAND | head -n 1` in a shell: (surgery's exit status, what head
    printed, surgery's stderr)."""
    err = tmp_path / "stderr.txt"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    script = (f"{sys.executable} -m surgery {command} 2>{err} | head -n 1; "
              "exit ${PIPESTATUS[0]}")  # fmt: skip
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    return done.returncode, done.stdout, err.read_text()


def test_match_into_head_exits_quietly(tmp_path: Path) -> None:
    model = _long_graph(tmp_path, 4000)  # ~170 KB of matches: more than a pipe holds
    code, out, err = _piped(f"match {LEAKY} {model}", tmp_path)
    assert out.startswith("rule leaky_relu (") and "4000 matches" in out
    assert "Traceback" not in err and "BrokenPipeError" not in err and err == ""
    assert code == EXIT_BROKEN_PIPE == 141


def test_inspect_into_head_exits_quietly(tmp_path: Path) -> None:
    model = _long_graph(tmp_path, 12000)  # one namespace line each
    code, out, err = _piped(f"inspect --no-tf {model}", tmp_path)
    assert out == "nodes: 12001\n"
    assert "Traceback" not in err and err == ""
    assert code == 141


# ---------------------------------------------------------------------------- rule files
def test_match_takes_several_rule_files(box3d_pb: Path, capsys) -> None:
    assert main(["match", LEAKY, L2, str(box3d_pb)]) == 0
    lines = capsys.readouterr().out.splitlines()
    heads = [line for line in lines if not line.startswith(" ")]
    assert heads == [
        f"{LEAKY}: 1 rule", f"rule leaky_relu ({LEAKY}:{LEAKY_AT}:1): 5 matches",
        f"{L2}: 2 rules", f"rule l2_normalize ({L2}:13:1): 1 match",
        # l2_normalize_scaled reads what l2_normalize makes: on the unrewritten model, nothing
        f"rule l2_normalize_scaled ({L2}:25:1): 0 matches",
    ]  # fmt: skip
    assert main(["match", LEAKY, L2, str(box3d_pb), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(d["file"], d["rule"], len(d["matches"])) for d in doc] == [
        (LEAKY, "leaky_relu", 5), (L2, "l2_normalize", 1), (L2, "l2_normalize_scaled", 0)]


def test_match_with_one_file_prints_as_before(box3d_pb: Path, capsys) -> None:
    assert main(["match", LEAKY, str(box3d_pb)]) == 0
    head = f"rule leaky_relu ({LEAKY}:{LEAKY_AT}:1): 5 matches\n"
    assert capsys.readouterr().out.startswith(head)


def test_match_without_a_rule_file_is_a_usage_error(box3d_pb: Path, capsys) -> None:
    assert main(["match", str(box3d_pb)]) == 2
    assert one_line(capsys.readouterr().err) == (
        "surgery match: error: give at least one rule file and a model")


def test_explain_finds_the_rule_in_whichever_file(box3d_pb: Path, capsys) -> None:
    node = "box3d/orientation/l2_normalize"
    assert main(["explain", LEAKY, L2, str(box3d_pb), "--rule", "l2_normalize",
                 "--node", node]) == 0  # fmt: skip
    assert f"rule l2_normalize matches at {node!r}" in capsys.readouterr().out
    assert main(["explain", LEAKY, L2, str(box3d_pb), "--rule", "nope", "--node", node]) == 1
    err = capsys.readouterr().err
    assert "no rule named 'nope' (rules: leaky_relu, l2_normalize, l2_normalize_scaled)" in err


def test_explain_refuses_an_ambiguous_rule_name(box3d_pb: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "again.rules"
    copy.write_text(Path(LEAKY).read_text())
    argv = ["explain", LEAKY, str(copy), str(box3d_pb), "--rule", "leaky_relu", "--node", "x"]
    assert main(argv) == 1
    assert one_line(capsys.readouterr().err) == (
        f"surgery explain: error: --rule 'leaky_relu' is ambiguous: 2 files define it "
        f"({LEAKY}:{LEAKY_AT}:1, {copy}:{LEAKY_AT}:1); give only the file you mean"
    )


# ---------------------------------------------------------------------------- pass order
def test_layout_after_apply_says_layout_comes_first(box3d_pb: Path, tmp_path: Path,
                                                    capsys) -> None:  # fmt: skip
    rewritten, out = tmp_path / "t.pb", tmp_path / "n.pb"
    assert main(["apply", LEAKY, str(box3d_pb), "-o", str(rewritten)]) == 0
    capsys.readouterr()
    assert main(["layout", "nchw", str(rewritten), "-o", str(out)]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("surgery layout: error: layout must come before apply: the graph "
                           "already has 5 plugin nodes ('box3d/leaky_re_lu_1/LeakyRelu' "
                           "(LReLU_TRT), ")  # fmt: skip
    assert "and 2 more" in line and "Op type not registered" not in line
    assert not out.exists()
