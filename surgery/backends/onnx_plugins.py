"""Plugin nodes of an ONNX model as TensorRT's ONNX parser reads them.

A rule that emits a plugin into an ONNX model makes the same node it makes in a TensorFlow graph:
op = creator name, one attr per schema field. Saved as `.onnx`, each such node is written the way
`surgery export` writes plugin nodes (`surgery.backends.export.plugin_nodes`): domain
`trt.plugins`, the creator name and version the target expects, and attributes of the exact types
the parser maps to plugin fields. Nodes that were plugin nodes when loaded keep what they had
unless a rule changed them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from surgery.ir.graph import Graph
from surgery.ir.node import pos_of


def encode_plugins(graph: Graph, target: str | None = None) -> dict[str, Any]:
    """{node name: NodeProto with op type, domain and attributes} for every plugin node that
    does not already carry its ONNX form (a domain from the loaded model).

    Every plugin node's fields are checked (`plugin_fields`), those of loaded ones too. Plugin
    nodes of equal field attrs share one NodeProto, and their fields are checked and encoded
    once: the result depends on nothing else (a graph of 100k LReLU_TRT nodes has one)."""
    from surgery.backends.export.plugin_nodes import PluginNode, onnx_attributes, plugin_fields
    from surgery.ir.onnx_io import DOMAIN_ATTR, PLUGIN_DOMAIN
    from surgery.ir.onnx_pb import NodeProto
    from surgery.ir.wire import attr_values
    from surgery.ops.plugin_identity import plugin_schema_of
    from surgery.ops.plugin_schema import load_catalog
    from surgery.ops.targets import export_creator

    catalog = load_catalog()
    encoded = {}
    # (schema, the node's attrs but the `_` ones, serialized) -> NodeProto: `plugin_fields`
    # reads nothing else, and equal bytes are equal values (unequal bytes only cost a miss)
    made: dict[tuple[Any, ...], Any] = {}
    # the nodes of catalog ops, in graph order (found by op: most of a graph is no plugin)
    candidates = graph.nodes_by_op(*[op for op in graph.op_types() if op in catalog])
    for node in sorted(candidates, key=pos_of):
        schema = plugin_schema_of(node, catalog, use_tf=False)
        if schema is None:
            continue
        attrs = attr_values(node.proto.SerializeToString())  # one call, not one per attr
        key = (schema.name, *sorted((k, v) for k, v in attrs.items() if not k.startswith("_")))
        proto = made.get(key)
        if proto is None:
            plugin = PluginNode(node.name, schema, plugin_fields(node, schema),
                                *export_creator(schema, target))  # fmt: skip
            proto = made[key] = NodeProto(op_type=plugin.onnx_op, domain=PLUGIN_DOMAIN)
            proto.attribute.extend(onnx_attributes(plugin))
        if DOMAIN_ATTR in attrs:  # loaded as it is: written back so
            continue
        encoded[node.name] = proto
    return encoded


def save_graph(
    graph: Graph, path: str | os.PathLike, *, inputs: tuple = (), target: str | None = None
) -> Path:
    """`surgery.ir.model_io.save`, an ONNX model's plugin nodes encoded for `target` first."""
    from surgery.ir import model_io
    from surgery.ir.onnx_io import is_onnx_graph

    encoded = encode_plugins(graph, target) if is_onnx_graph(graph) else None
    return model_io.save(graph, path, inputs=inputs, encoded=encoded)
