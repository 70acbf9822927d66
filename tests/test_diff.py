"""Structural graph diff and the HTML report (content checks; the browser tests are apart)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from google.protobuf import text_format

from surgery.cli import main
from surgery.ir import model_io
from surgery.ir.graph import Graph
from surgery.ir.protos import AttrValue, GraphDef
from surgery.views.graph_diff import diff_graphs
from surgery.views.report import write_report
from viz import samples

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz `dot` is not installed (make setup installs it)"
)

BASE = """
node { name: "x" op: "Placeholder" }
node { name: "dim" op: "Const" }
node { name: "split" op: "Split" input: "dim" input: "x" attr { key: "num_split" value { i: 2 } } }
node { name: "a" op: "AddV2" input: "split:1" input: "split" input: "^x" }
node { name: "act" op: "LeakyRelu" input: "a" attr { key: "alpha" value { f: 0.2 } } }
"""


def base() -> Graph:
    return Graph(text_format.Parse(BASE, GraphDef()))


def test_identical_graphs() -> None:
    diff = diff_graphs(base(), base())
    assert diff.identical and diff.summary_line() == "graphs are identical"


def test_every_kind_of_change_is_reported() -> None:
    before, after = base(), base()
    after.set_input("a", 0, "split:0")
    after.set_input("a", 1, "split:1")
    after.remove_control("a", "x")
    after.add_control("act", "dim")
    after.set_op("act", "Relu")
    after.node("act").attr["alpha"].f = 0.3
    after.add_node("extra", "Identity", ["act"])
    after.remove_nodes(["extra"])
    after.add_node("y", "Identity", ["act"])
    diff = diff_graphs(before, after)
    assert diff.added == ["y"] and diff.removed == []
    a = diff.changed["a"]
    assert [(s.slot, s.before, s.after) for s in a.rewired] == [
        (0, "split:1", "split"),
        (1, "split", "split:1"),
    ]
    assert a.controls_removed == ["x"] and not a.op_changed
    act = diff.changed["act"]
    assert act.op_changed and (act.op_before, act.op_after) == ("LeakyRelu", "Relu")
    assert act.controls_added == ["dim"]
    assert act.attrs == [("alpha", "0.2", "0.3")]
    assert diff.counts() == {
        "added": 1,
        "removed": 0,
        "rewired": 1,
        "op_changed": 1,
        "attrs_changed": 1,
        "controls_changed": 2,
    }


def test_removed_and_function_library_changes() -> None:
    before, after = base(), base()
    after.remove_nodes(["act"])
    after.library.function.add().signature.name = "body"
    diff = diff_graphs(before, after)
    assert diff.removed == ["act"] and diff.functions_added == ["body"] and not diff.identical


@needs_dot
def test_cli_diff_identical_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.pb"
    model_io.save(samples.leaky_graph(2), src)
    copy = tmp_path / "b.pb"
    copy.write_bytes(src.read_bytes())
    report = tmp_path / "same.html"
    assert main(["diff", str(src), str(copy), "-o", str(report), "--exit-code"]) == 0
    out = capsys.readouterr().out
    assert "graphs are identical" in out
    page = report.read_text()
    assert 'id="identical"' in page and "The two graphs are identical" in page
    assert "<details" not in page  # no sections


@needs_dot
def test_cli_diff_lists_changes_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    g = samples.leaky_graph(2)
    after, _ = samples.leaky_rewrite(g)
    a, b = tmp_path / "a.pb", tmp_path / "b.pb"
    model_io.save(g, a)
    model_io.save(after, b)
    assert main(["diff", str(a), str(b), "--exit-code"]) == 3
    out = capsys.readouterr().out
    assert "+ conv0/LeakyRelu_trt (LReLU_TRT)" in out and "- conv1/LeakyRelu (LeakyRelu)" in out
    assert "~ conv1/Conv2D: input 0: conv0/LeakyRelu -> conv0/LeakyRelu_trt" in out
    assert main(["diff", str(a), str(b), "-o", str(a)]) == 1


def _self_contained(page: str) -> None:
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert not re.search(r"url\((?!#)", page), "no external CSS resources"
    assert "@import" not in page


@needs_dot
def test_report_with_provenance(tmp_path: Path) -> None:
    before = samples.roi_graph()
    after, changes = samples.roi_collapse(before)
    path = tmp_path / "roi.html"
    diff = write_report(
        before, after, path, changes=changes, rules_meta={"collapse_roi": {"matches": 1}}
    )
    assert not diff.identical
    page = path.read_text()
    _self_contained(page)
    assert "collapse_roi" in page and "rules/sample.rules:7" in page
    assert 'class="app"' in page and "ProposalLayer_TRT" in page
    # the plugin's fields, input slots with roles, and output-port mapping
    assert "prenms_topk" in page and "int32[3]" in page
    assert "rpn_class/concat" in page and "ROI:1" in page and "ROI/top:1" in page
    assert not list(tmp_path.glob(".*.tmp")), "written atomically (no temp file left)"


@needs_dot
def test_report_without_provenance_groups_regions(tmp_path: Path) -> None:
    before = samples.leaky_graph(3)
    after, _ = samples.leaky_rewrite(before)
    page_path = tmp_path / "r.html"
    write_report(before, after, page_path)
    page = page_path.read_text()
    assert page.count('<details class="app"') == 3  # one region per rewritten block
    assert page.count("<tr><td data-sort=") == 9  # 3 added, 3 removed, 3 rewired


@needs_dot
def test_report_on_10k_nodes_draws_neighbourhoods_only(tmp_path: Path) -> None:
    before = samples.leaky_graph(1700)  # 10,202 nodes
    after, changes = samples.leaky_rewrite(before)
    start = time.perf_counter()
    write_report(before, after, tmp_path / "big.html", changes=changes)
    took = time.perf_counter() - start
    page = (tmp_path / "big.html").read_text()
    assert page.count("<svg") <= 2 * 60 + 1
    assert "pictures are drawn for the first 60" in page
    assert took < 120  # generous: the benchmark reports the real number


def test_attr_value_protos_in_samples() -> None:
    after, changes = samples.leaky_rewrite(samples.leaky_graph(1))
    node = after.node("conv0/LeakyRelu_trt")
    assert node.attr["negSlope"] == AttrValue(f=node.attr["negSlope"].f)
    assert {c["kind"] for c in changes} == {"add", "rewire", "remove"}
