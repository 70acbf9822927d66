"""Namespace collapse for the graphsurgeon API, port- and control-edge-aware, in one linear pass.

Semantics kept from graphsurgeon 0.4: a node belongs to the longest namespace key that is a path
prefix of its name; a plugin's inputs are its preset inputs, then the external inputs of its
namespaces' nodes in graph order (deduplicated when `unique_inputs`); plugins are appended at the
end of the graph, each once. Fixed: `x:k` inputs keep their port (consumers of `ns/node:k` read
`plugin:k` unless `outputs` remaps them), `^x` stays a control edge, excluded nodes stay, nothing
is left dangling, and a consumer reading two tensors of one namespace keeps both input slots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from surgery.compat.gs_nodes import as_node_def
from surgery.errors import GraphError
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef, parse_input, parse_tensor
from surgery.ir.protos import NodeDef


def _clean_key(key: str) -> str:
    """`ROI/` -> `ROI`; `x:1` and `^x` -> `x` (graphsurgeon users listed those as workarounds)."""
    key = key.strip()
    if key.startswith("^"):
        key = key[1:]
    key = key.rstrip("/")
    ref = parse_tensor(key) if key else TensorRef("", 0)
    return ref.node


def assign_members(graph: Graph, keys: Mapping[str, str], exclude: set[str]) -> dict[str, str]:
    """node name -> plugin name, by the longest namespace key that is a path prefix of the name."""
    members: dict[str, str] = {}
    for name in graph.names:
        if name in exclude:
            continue
        prefix = name
        while True:
            plugin = keys.get(prefix)
            if plugin is not None:
                members[name] = plugin
                break
            cut = prefix.rfind("/")
            if cut < 0:
                break
            prefix = prefix[:cut]
    return members


def collapse(
    graph: Graph,
    namespace_map: Mapping[str, Any],
    exclude_nodes: Iterable[str] = (),
    unique_inputs: bool = True,
    outputs: Mapping[str, int] | None = None,
) -> dict[str, NodeDef]:
    """Replace every namespace in `namespace_map` by its plugin; returns name -> plugin proto."""
    # Plugins, once per name, in the order the map first names them (graphsurgeon's order).
    keys: dict[str, str] = {}
    plugins: dict[str, NodeDef] = {}
    for key, node in namespace_map.items():
        if not isinstance(key, str) or not _clean_key(key):
            raise GraphError(f"namespace_map key {key!r} is not a namespace name")
        proto = as_node_def(node)
        if not proto.name:
            raise GraphError(f"the plugin node for namespace {key!r} has no name")
        keys[_clean_key(key)] = proto.name
        plugins.setdefault(proto.name, proto)
    exclude = set(exclude_nodes)
    members = assign_members(graph, keys, exclude)

    for name in plugins:
        if name in graph and name not in members:
            raise GraphError(
                f"plugin node {name!r} would clash with node {name!r}, which is not in a "
                "collapsed namespace (rename the plugin or add the node's namespace)"
            )

    port_map: dict[TensorRef, int] = {}
    for tensor, port in (outputs or {}).items():
        ref = parse_tensor(tensor)
        if ref.node not in members:
            raise GraphError(f"outputs: {tensor!r} is not a tensor of a collapsed namespace")
        if isinstance(port, bool) or not isinstance(port, int) or port < 0:
            raise GraphError(f"outputs: port for {tensor!r} must be an int >= 0, got {port!r}")
        port_map[ref] = port

    def mapped(ref: TensorRef) -> TensorRef:
        plugin = members.get(ref.node)
        if plugin is None:
            return ref
        return TensorRef(plugin, port_map.get(ref, ref.port))

    # Plugin inputs: preset ones, then external inputs of member nodes in graph order.
    data: dict[str, list[TensorRef]] = {}
    seen: dict[str, set[TensorRef]] = {}
    controls: dict[str, dict[str, None]] = {}
    for name, proto in plugins.items():
        data[name], controls[name] = [], {}
        for text in proto.input:
            data_ref, ctl = parse_input(text)
            if data_ref is not None:
                data[name].append(data_ref)
            elif ctl is not None:
                controls[name][ctl] = None
        seen[name] = set(data[name])
    outside: dict[str, None] = {}
    for node in graph:
        plugin = members.get(node.name)
        if plugin is None:
            continue
        own_data, own_seen, own_ctl = data[plugin], seen[plugin], controls[plugin]
        for ref in node.inputs:
            target = mapped(ref)
            if target.node == plugin:
                continue
            if unique_inputs:
                if target in own_seen:
                    continue
                own_seen.add(target)
            own_data.append(target)
        for src in node.controls:
            src = members.get(src, src)
            if src != plugin:
                own_ctl[src] = None
        for user in graph.consumer_names(node.name):
            if user not in members:
                outside[user] = None

    # Consumers outside the namespaces: rewire slot by slot; plugins sharing a name with a
    # member first go through a stand-in name so the member can be removed.
    clashing = {name for name in plugins if name in members}
    stand_in = {name: f"{name}\x00collapsing" for name in clashing}
    for user in outside:
        node = graph.node(user)
        new_inputs = []
        for ref in node.inputs:
            target = mapped(ref)
            if target.node in stand_in and ref.node in members:
                target = TensorRef(stand_in[target.node], target.port)
            new_inputs.append(target)
        new_controls = []
        for src in node.controls:
            plugin = members.get(src)
            if plugin is not None:
                src = stand_in.get(plugin, plugin)
            new_controls.append(src)
        graph.set_inputs(user, new_inputs, new_controls)

    graph.remove_nodes(list(members))
    added: dict[str, NodeDef] = {}
    for name, proto in plugins.items():
        node = NodeDef()
        node.CopyFrom(proto)
        del node.input[:]
        node.input.extend(str(ref) for ref in data[name])
        node.input.extend("^" + c for c in controls[name] if c != name)
        added[name] = graph.add_proto(node).proto
    for name, temp in stand_in.items():
        for port in graph.used_ports(temp):
            graph.replace_uses(TensorRef(temp, port), TensorRef(name, port))
        graph.replace_control_uses(temp, name)
    return added
