"""Small hand-built graphs and edits for demos, report tests and benchmarks.

`leaky_rewrite` and `collapse_scope` edit a copy of a graph the way the LeakyRelu and
namespace-collapse rules do; they stand in for the rule engine where a test needs only the
"after" graph, and they record provenance in the engine's shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from surgery.ir.graph import Graph
from surgery.ir.protos import AttrValue, GraphDef

_F32 = 1
_I32 = 3


def _const(graph_def: GraphDef, name: str, dims: list[int], dtype: int = _F32) -> None:
    node = graph_def.node.add(name=name, op="Const")
    node.attr["dtype"].type = dtype
    tensor = node.attr["value"].tensor
    tensor.dtype = dtype
    for d in dims:
        tensor.tensor_shape.dim.add(size=d)


def leaky_graph(blocks: int = 2) -> Graph:
    """input -> blocks of conv/bias/LeakyRelu (weights as Identity <- Const) -> output Identity."""
    gd = GraphDef()
    inp = gd.node.add(name="input", op="Placeholder")
    inp.attr["dtype"].type = _F32
    prev = "input"
    for i in range(blocks):
        ns = f"conv{i}"
        _const(gd, f"{ns}/kernel", [3, 3, 8, 8])
        gd.node.add(name=f"{ns}/kernel/read", op="Identity", input=[f"{ns}/kernel"])
        conv = gd.node.add(name=f"{ns}/Conv2D", op="Conv2D", input=[prev, f"{ns}/kernel/read"])
        conv.attr["data_format"].s = b"NHWC"
        conv.attr["strides"].list.i.extend([1, 1, 1, 1])
        _const(gd, f"{ns}/bias", [8])
        gd.node.add(name=f"{ns}/BiasAdd", op="BiasAdd", input=[f"{ns}/Conv2D", f"{ns}/bias"])
        act = gd.node.add(name=f"{ns}/LeakyRelu", op="LeakyRelu", input=[f"{ns}/BiasAdd"])
        act.attr["alpha"].f = 0.1
        prev = f"{ns}/LeakyRelu"
    gd.node.add(name="output", op="Identity", input=[prev])
    return Graph(gd)


def roi_graph() -> Graph:
    """A Mask R-CNN-like `ROI` namespace between two heads; `ROI/top:1` is read outside."""
    gd = GraphDef()
    for name in ("rpn_class/concat", "rpn_bbox/concat"):
        gd.node.add(name=name, op="Placeholder").attr["dtype"].type = _F32
    _const(gd, "ROI/begin", [3], _I32)
    gd.node.add(
        name="ROI/strided_slice",
        op="StridedSlice",
        input=["rpn_class/concat", "ROI/begin", "ROI/begin", "ROI/begin"],
    )
    _const(gd, "ROI/k", [], _I32)
    gd.node.add(name="ROI/top", op="TopKV2", input=["ROI/strided_slice", "ROI/k"])
    _const(gd, "ROI/axis", [], _I32)
    gd.node.add(
        name="ROI/gather", op="GatherV2", input=["rpn_bbox/concat", "ROI/top:1", "ROI/axis"]
    )
    gd.node.add(
        name="ROI/nms",
        op="NonMaxSuppressionV3",
        input=["ROI/gather", "ROI/top", "ROI/k", "ROI/k", "ROI/k"],
    )
    gd.node.add(name="ROI/packed_2", op="Pack", input=["ROI/gather", "ROI/nms"])
    gd.node.add(name="roi_align/boxes", op="Identity", input=["ROI/packed_2"])
    gd.node.add(name="roi_align/scores", op="Identity", input=["ROI/top:1"])
    gd.node.add(name="mrcnn/out", op="AddV2", input=["roi_align/boxes", "roi_align/scores"])
    return Graph(gd)


def _change(rule: str, line: int, match: str, kind: str, node: str) -> dict[str, Any]:
    return {
        "rule": rule,
        "where": f"rules/sample.rules:{line}",
        "match_id": match,
        "kind": kind,
        "node": node,
    }


def leaky_rewrite(graph: Graph) -> tuple[Graph, list[dict[str, Any]]]:
    """Replace every LeakyRelu by an `LReLU_TRT` plugin node; returns (new graph, changes)."""
    out = graph.copy()
    changes = []
    for index, node in enumerate(out.nodes_by_op("LeakyRelu"), 1):
        name, match = node.name, f"leaky_relu#{index}"
        alpha = AttrValue(f=node.attr["alpha"].f)
        plugin = out.add_node(
            f"{name}_trt", "LReLU_TRT", [node.inputs[0]], attrs={"negSlope": alpha}
        )
        changes.append(_change("leaky_relu", 3, match, "add", plugin.name))
        for user, _ in out.consumers(name):
            changes.append(_change("leaky_relu", 3, match, "rewire", user.name))
        out.replace_uses(name, plugin.name)
        out.remove_nodes([name])
        changes.append(_change("leaky_relu", 3, match, "remove", name))
    return out, changes


def collapse_scope(
    graph: Graph,
    scope: str,
    op: str,
    inputs: list[str],
    outputs: Mapping[str, int],
    fields: Mapping[str, AttrValue],
) -> tuple[Graph, list[dict[str, Any]]]:
    """Collapse `scope` into one plugin node named `scope`; `outputs` maps tensor -> port."""
    out = graph.copy()
    members = [n for n in out.names if n.startswith(scope + "/")]
    match = f"{scope}#1"
    plugin = out.add_node(scope, op, inputs, attrs=fields)
    changes = [_change("collapse_" + scope.lower(), 7, match, "add", plugin.name)]
    for tensor, port in outputs.items():
        for user, _ in out.consumers(tensor):
            if not user.name.startswith(scope + "/"):
                changes.append(_change("collapse_" + scope.lower(), 7, match, "rewire", user.name))
        out.replace_uses(tensor, (plugin.name, port), exclude=members)
    out.remove_nodes(members)
    changes += [_change("collapse_" + scope.lower(), 7, match, "remove", n) for n in members]
    return out, changes


def roi_collapse(graph: Graph) -> tuple[Graph, list[dict[str, Any]]]:
    """The ROI namespace as a `ProposalLayer_TRT` plugin: packed_2 -> :0, top:1 -> :1."""
    fields = {
        "prenms_topk": AttrValue(i=1024),
        "keep_topk": AttrValue(i=1000),
        "iou_threshold": AttrValue(f=0.7),
    }
    fields["image_size"] = AttrValue()
    fields["image_size"].list.i.extend([3, 1024, 1024])
    return collapse_scope(
        graph,
        "ROI",
        "ProposalLayer_TRT",
        ["rpn_class/concat", "rpn_bbox/concat"],
        {"ROI/packed_2": 0, "ROI/top:1": 1},
        fields,
    )
