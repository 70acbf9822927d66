"""The graphsurgeon 0.4 API on surgery's IR: what `import graphsurgeon as gs` gives old scripts.

`surgery preprocess` makes `graphsurgeon` resolve to this module while a script runs. The API
and its behaviour follow graphsurgeon where scripts rely on it; its known bugs are fixed (ports,
control edges, exclude_nodes, bool fields, errors that name the node instead of asserts).
"""

from __future__ import annotations

from surgery.compat.gs_graph import DynamicGraph, NodeNotFound, StaticGraph
from surgery.compat.gs_nodes import (
    PLUGIN_SUFFIX,
    create_node,
    create_plugin_node,
    extract_numpy_array,
    shape,
    update_node,
)

__all__ = [
    "DynamicGraph",
    "NodeNotFound",
    "PLUGIN_SUFFIX",
    "StaticGraph",
    "create_node",
    "create_plugin_node",
    "extract_numpy_array",
    "shape",
    "update_node",
]
