"""Synthetic GraphDefs of any size, shaped like real CNN graphs (namespaces, weights, ports)."""

from __future__ import annotations

from surgery.ir.protos import GraphDef


def conv_graph(num_nodes: int, block: int = 10) -> GraphDef:
    """Blocks of Const->Identity weights, Conv2D, BiasAdd, LeakyRelu, Split (:1 consumed), AddV2.

    Every block lives in its own namespace `block_<i>/` so namespace operations have work to do.
    """
    graph = GraphDef()
    graph.versions.producer = 1882
    nodes = graph.node
    inp = nodes.add(name="input", op="Placeholder")
    inp.attr["dtype"].type = 1
    prev = "input"
    blocks = max(1, (num_nodes - 1) // block)
    for i in range(blocks):
        ns = f"block_{i}"
        nodes.add(name=f"{ns}/kernel", op="Const").attr["dtype"].type = 1
        nodes.add(name=f"{ns}/kernel/read", op="Identity", input=[f"{ns}/kernel"])
        conv = nodes.add(name=f"{ns}/Conv2D", op="Conv2D", input=[prev, f"{ns}/kernel/read"])
        conv.attr["data_format"].s = b"NHWC"
        conv.attr["T"].type = 1
        nodes.add(name=f"{ns}/bias", op="Const").attr["dtype"].type = 1
        nodes.add(name=f"{ns}/BiasAdd", op="BiasAdd", input=[f"{ns}/Conv2D", f"{ns}/bias"])
        act = nodes.add(name=f"{ns}/act", op="LeakyRelu", input=[f"{ns}/BiasAdd"])
        act.attr["alpha"].f = 0.1
        nodes.add(name=f"{ns}/dim", op="Const").attr["dtype"].type = 3
        split = nodes.add(name=f"{ns}/split", op="Split", input=[f"{ns}/dim", f"{ns}/act"])
        split.attr["num_split"].i = 2
        nodes.add(name=f"{ns}/add", op="AddV2", input=[f"{ns}/split:1", f"{ns}/split"])
        nodes.add(name=f"{ns}/out", op="Identity", input=[f"{ns}/add", f"^{ns}/kernel/read"])
        prev = f"{ns}/out"
    return graph
