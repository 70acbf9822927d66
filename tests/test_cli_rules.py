"""`surgery apply | match | explain` end to end on the fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_engine import postproc_graph

from surgery.cli import main
from surgery.ir import model_io

GOLDEN = Path(__file__).parent / "rules_golden"
LEAKY = str(GOLDEN / "leaky_relu.rules")


def test_apply_writes_output_counts_and_log(box3d_pb: Path, tmp_path: Path, capsys) -> None:
    out, log = tmp_path / "out.pb", tmp_path / "changes.json"
    assert main(["apply", LEAKY, str(box3d_pb), "-o", str(out), "--log", str(log)]) == 0
    text = capsys.readouterr().out
    assert "leaky_relu: 5 matches applied" in text and "nodes: 142 -> 142" in text
    graph = model_io.load(out)
    assert len(graph.nodes_by_op("LReLU_TRT")) == 5
    doc = json.loads(log.read_text())
    assert doc["per_rule_counts"] == {"leaky_relu": 5} and doc["warnings"] == []
    assert doc["nodes_before"] == doc["nodes_after"] == 142
    change = doc["changes"][1]
    assert change["kind"] == "add_node" and change["detail"]["op"] == "LReLU_TRT"
    assert change["rule"] == "leaky_relu" and change["loc"].endswith("leaky_relu.rules:4:1")
    assert change["match"] == "leaky_relu#1"
    assert {c["kind"] for c in doc["changes"]} == {"add_node", "remove_node"}  # same names


def test_apply_is_deterministic(box3d_pb: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.pb", tmp_path / "b.pb"
    assert main(["apply", LEAKY, str(box3d_pb), "-o", str(a)]) == 0
    assert main(["apply", LEAKY, str(box3d_pb), "-o", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_apply_refuses_overwriting_input(box3d_pb: Path, tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.pb"
    model.write_bytes(box3d_pb.read_bytes())
    assert main(["apply", LEAKY, str(model), "-o", str(model)]) == 1
    assert "overwrite the input" in capsys.readouterr().err
    assert model.read_bytes() == box3d_pb.read_bytes()


def test_refused_rewrite_writes_nothing(tmp_path: Path, capsys) -> None:
    model = tmp_path / "post.pb"
    model_io.save(postproc_graph(), model)
    out = tmp_path / "out.pb"
    code = main(["apply", str(GOLDEN / "nms_unsafe.rules"), str(model), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert "nms_unsafe.rules:6:5: rule 'postprocess' refused at 'postproc'" in err
    assert "postproc/split:1" in err and "'out_count'" in err


def test_unmatched_rule_warns(detector_pb: Path, tmp_path: Path, capsys) -> None:
    assert main(["apply", LEAKY, str(detector_pb), "-o", str(tmp_path / "o.pb")]) == 0
    assert "rule 'leaky_relu' matched nothing" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["apply", LEAKY])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["explain", LEAKY, "m.pb", "--rule", "x"])
    assert exc.value.code == 2


def test_match_dry_run_lists_bindings(detector_pb: Path, tmp_path: Path, capsys) -> None:
    rules = tmp_path / "ports.rules"
    rules.write_text(
        "rule decode:\n    match m = Mul(u:1, v:3); v = Unpack(_)\n"
        'rule heads:\n    scope r = "detector/detections/split_head"\n'
        "    collapse r into SpecialSlice_TRT(r.in[0])\n"
    )  # fmt: skip
    assert main(["match", str(rules), str(detector_pb)]) == 0
    text = capsys.readouterr().out
    assert "rule decode" in text and "1 match" in text
    assert "u=detector/detections/decode/unstack_1" in text
    assert "v=detector/detections/decode/unstack" in text
    assert "scope 'detector/detections/split_head'" in text
    assert "out: detector/detections/split_head/split, detector/detections/split_head/split:1, " \
           "detector/detections/split_head/split:2" in text
    assert main(["match", "--json", str(rules), str(detector_pb)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc[1]["matches"][0]["bindings"]["r"]["leaves"][1].endswith("split:1")


def test_explain_prints_first_failed_predicate(box3d_pb: Path, capsys) -> None:
    args = ["explain", LEAKY, str(box3d_pb), "--rule", "leaky_relu"]
    assert main([*args, "--node", "box3d/dense_1/MatMul"]) == 0
    text = capsys.readouterr().out
    assert "does not match at 'box3d/dense_1/MatMul'" in text
    assert "leaky_relu.rules:5:11: box3d/dense_1/MatMul is MatMul, pattern wants LeakyRelu" in text
    assert main([*args, "--node", "box3d/leaky_re_lu_1/LeakyRelu"]) == 0
    text = capsys.readouterr().out
    assert "matches at 'box3d/leaky_re_lu_1/LeakyRelu'" in text
    assert "x = box3d/dense_1/BiasAdd" in text
    assert main(["explain", LEAKY, str(box3d_pb), "--rule", "nope", "--node", "x"]) == 1
    assert "no rule named 'nope'" in capsys.readouterr().err


def test_apply_report_html(box3d_pb: Path, tmp_path: Path, capsys) -> None:
    out, report = tmp_path / "out.pb", tmp_path / "report.html"
    assert main(["apply", LEAKY, str(box3d_pb), "-o", str(out), "--report", str(report)]) == 0
    assert f"report: {report}" in capsys.readouterr().out
    page = report.read_text()
    assert "leaky_relu" in page and "LReLU_TRT" in page
    assert main(["apply", LEAKY, str(box3d_pb), "-o", str(out), "--report", str(out)]) == 1
    assert "--report and -o name the same file" in capsys.readouterr().err


def test_apply_infer_shapes_lets_rules_read_shapes(box3d_pb: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    rules = tmp_path / "shape.rules"
    rules.write_text('use plugins "trt-8.6"\nrule leaky:\n match y = LeakyRelu(x) where x.rank == 2'
                     '\n replace y with LReLU_TRT(x) { negSlope = y.alpha }\n')  # fmt: skip
    out = tmp_path / "out.pb"
    # a rule reads shapes: apply records the inferred ones first (and drops them afterwards)
    assert main(["apply", str(rules), str(box3d_pb), "-o", str(out)]) == 0
    rewritten = model_io.load(out)
    assert len(rewritten.nodes_by_op("LReLU_TRT")) == 5
    assert not any("_output_shapes" in node.attr for node in rewritten)
    assert main(["apply", str(rules), str(box3d_pb), "-o", str(out), "--infer-shapes"]) == 0
    assert len(model_io.load(out).nodes_by_op("LReLU_TRT")) == 5
    assert main(["apply", str(rules), str(box3d_pb), "-o", str(out), "--input", "x=1,2"]) == 1
