"""The visualizer: networkx view, neighbourhoods, namespace collapse, DOT/SVG/HTML/PNG output."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from surgery.cli import main
from surgery.errors import GraphError, OutputPathError
from surgery.ir import model_io
from surgery.ir.graph import Graph
from surgery.views.dot import LayoutError, to_dot
from surgery.views.node_style import op_category
from surgery.views.visualize import (
    collapse_namespaces,
    neighbourhood,
    to_networkx,
    view_graph,
    write_view,
)
from viz import samples

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz `dot` is not installed (make setup installs it)"
)


def split_graph() -> Graph:
    """A Split whose port 1 and port 0 feed an AddV2, and a control edge."""
    from google.protobuf import text_format

    from surgery.ir.protos import GraphDef

    text = """
    node { name: "x" op: "Placeholder" }
    node { name: "ns/dim" op: "Const" }
    node { name: "ns/split" op: "Split" input: "ns/dim" input: "x" }
    node { name: "ns/add" op: "AddV2" input: "ns/split:1" input: "ns/split" input: "^x" }
    node { name: "out" op: "LReLU_TRT" input: "ns/add" }
    """
    return Graph(text_format.Parse(text, GraphDef()))


def test_op_categories_and_plugins() -> None:
    assert op_category("Conv2D") == "conv"
    assert op_category("MatMul") == "matmul"
    assert op_category("LeakyRelu") == "activation"
    assert op_category("FusedBatchNormV3") == "norm"
    assert op_category("Reshape") == "shape"
    assert op_category("Const") == "const"
    assert op_category("Merge") == "control"
    assert op_category("LReLU_TRT") == "plugin"
    assert op_category("ProposalLayer_TRT") == "plugin"


def test_networkx_view_keeps_ports_slots_and_control_edges() -> None:
    view = to_networkx(split_graph())
    edges = {(a, b, d["port"], d["slot"], d["control"]) for a, b, d in view.edges(data=True)}
    assert ("ns/split", "ns/add", 1, 0, False) in edges
    assert ("ns/split", "ns/add", 0, 1, False) in edges
    assert ("x", "ns/add", -1, -1, True) in edges
    assert view.nodes["out"]["cat"] == "plugin"


def test_neighbourhood_radius_and_scope_focus() -> None:
    g = samples.leaky_graph(4)
    near = neighbourhood(g, ["conv2/LeakyRelu"], 1)
    assert set(near) == {"conv2/LeakyRelu", "conv2/BiasAdd", "conv3/Conv2D"}
    view, caption = view_graph(g, focus="conv1", radius=1)
    assert "conv1/Conv2D" in view and "conv0/LeakyRelu" in view and "conv3/Conv2D" not in view
    assert "within 1 hops of conv1" in caption
    with pytest.raises(GraphError, match="no node named"):
        view_graph(g, focus="nowhere")


def test_collapse_namespaces_merges_edges() -> None:
    g = samples.leaky_graph(3)
    small = collapse_namespaces(to_networkx(g), 1)
    assert set(small.nodes) == {"input", "conv0/", "conv1/", "conv2/", "output"}
    assert small.has_edge("conv0/", "conv1/") and small.has_edge("conv2/", "output")
    assert small.nodes["conv1/"]["info"]["op"] == "namespace (6 nodes)"


def test_dot_text_has_ports_dashed_controls_clusters_and_plugin_style() -> None:
    dot, data = to_dot(to_networkx(split_graph()))
    assert 'label=":1"' in dot
    assert "style=dashed" in dot
    assert "subgraph cluster_" in dot and data["clusters"]
    assert "peripheries=2" in dot  # the plugin node
    names = {info["name"] for info in data["nodes"].values()}
    assert names == {"x", "ns/dim", "ns/split", "ns/add", "out"}


@needs_dot
def test_view_focus_svg_and_html(tmp_path: Path) -> None:
    src = tmp_path / "model.pb"
    model_io.save(samples.leaky_graph(6), src)
    svg = tmp_path / "focus.svg"
    assert (
        main(["view", str(src), "--focus", "conv3/LeakyRelu", "--radius", "1", "-o", str(svg)]) == 0
    )
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "LeakyRelu" in text and "conv4/Conv2D" in text.replace("&#47;", "/")
    assert "conv0/" not in text
    page = tmp_path / "focus.html"
    assert main(["view", str(src), "--focus", "conv3", "-o", str(page)]) == 0
    html = page.read_text()
    assert "<svg" in html and 'id="surgery-data"' in html
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html), "page must be self-contained"


@needs_dot
def test_view_whole_graph_png_dot_and_auto_collapse(tmp_path: Path) -> None:
    g = samples.leaky_graph(40)
    out, caption = write_view(g, tmp_path / "all.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out, caption = write_view(g, tmp_path / "all.dot", max_nodes=60)
    assert "collapsed to fit 60" in caption and "folder" in out.read_text()
    with pytest.raises(LayoutError, match="--focus"):
        write_view(g, tmp_path / "x.svg", max_nodes=10)
    with pytest.raises(OutputPathError, match="unknown picture format"):
        write_view(g, tmp_path / "x.txt")


@needs_dot
def test_repr_html_inline_svg() -> None:
    html = samples.leaky_graph(2)._repr_html_()
    assert "<svg" in html and "conv1" in html and "<script" not in html


@needs_dot
@pytest.mark.slow
def test_view_real_model_focus(resnet50_pb: Path, tmp_path: Path) -> None:
    g = model_io.load(resnet50_pb)
    conv = g.nodes_by_op("Conv2D")[len(g.nodes_by_op("Conv2D")) // 2].name
    out, caption = write_view(g, tmp_path / "resnet.html", focus=conv, radius=2)
    assert conv in out.read_text() and "of" in caption
    out, caption = write_view(g, tmp_path / "resnet_all.svg")
    assert out.stat().st_size > 0
