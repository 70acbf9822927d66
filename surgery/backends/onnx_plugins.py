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


def encode_plugins(graph: Graph, target: str | None = None) -> dict[str, Any]:
    """{node name: NodeProto with op type, domain and attributes} for every plugin node that
    does not already carry its ONNX form (a domain from the loaded model)."""
    from onnx import NodeProto

    from surgery.backends.export.plugin_nodes import (
        find_plugin_nodes,
        onnx_attributes,
    )
    from surgery.ir.onnx_io import DOMAIN_ATTR, PLUGIN_DOMAIN
    from surgery.ops.plugin_schema import load_catalog

    encoded = {}
    made: dict[tuple[str, ...], Any] = {}  # plugins of equal fields share one (most do)
    for plugin in find_plugin_nodes(graph, load_catalog(), target, use_tf=False):
        if DOMAIN_ATTR in graph.node(plugin.name).attr:  # loaded as it is: written back so
            continue
        key = (plugin.onnx_op, plugin.onnx_version, repr(sorted(plugin.fields.items())))
        proto = made.get(key)
        if proto is None:
            proto = made[key] = NodeProto(op_type=plugin.onnx_op, domain=PLUGIN_DOMAIN)
            proto.attribute.extend(onnx_attributes(plugin))
        encoded[plugin.name] = proto
    return encoded


def save_graph(
    graph: Graph, path: str | os.PathLike, *, inputs: tuple = (), target: str | None = None
) -> Path:
    """`surgery.ir.model_io.save`, an ONNX model's plugin nodes encoded for `target` first."""
    from surgery.ir import model_io
    from surgery.ir.onnx_io import is_onnx_graph

    encoded = encode_plugins(graph, target) if is_onnx_graph(graph) else None
    return model_io.save(graph, path, inputs=inputs, encoded=encoded)
