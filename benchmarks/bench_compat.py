"""graphsurgeon-compatible `collapse_namespaces` on a synthetic 100k-node graph vs a naive one.

The naive version is written here only, the way graphsurgeon 0.4 worked: every node is matched
against every namespace key, nodes are deleted from the GraphDef's repeated field one by one,
plugin inputs are deduplicated by list scans, and the name/consumer indexes are rebuilt from
scratch after each collapse call. Each variant runs in a forked child so that its peak RSS is
its own. Prints times, the ratio and peak memory; `main()` is what `make bench` calls.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import sys
import time
from collections import defaultdict

from benchmarks.synthetic import conv_graph
from surgery.ir.protos import GraphDef, NodeDef


def _namespace_map(num_namespaces: int, stride: int) -> dict[str, NodeDef]:
    """Every `stride`-th block namespace -> its own plugin node."""
    out = {}
    for k in range(num_namespaces):
        plugin = NodeDef(name=f"plugin_{k}", op="Custom_TRT")
        plugin.attr["k_u_int"].i = k
        out[f"block_{k * stride}"] = plugin
    return out


def _rebuild_indexes(graph_def: GraphDef) -> tuple[dict, dict]:
    """graphsurgeon's analysis data: node_map and node_outputs, rebuilt from scratch."""
    node_map = {node.name: node for node in graph_def.node}
    node_outputs: dict[str, list] = defaultdict(list)
    for node in graph_def.node:
        node_outputs.setdefault(node.name, [])
        for text in node.input:
            node_outputs[text.split(":")[0]].append(node)
    return node_map, node_outputs


def naive_collapse(graph_def: GraphDef, namespace_map: dict[str, NodeDef]) -> GraphDef:
    """graphsurgeon 0.4's algorithm (ports ignored), for comparison only."""
    nodes = graph_def.node
    plugins = {key: NodeDef(name=p.name, op=p.op) for key, p in namespace_map.items()}

    def plugin_of(name: str):
        best, depth = None, -1
        for key, plugin in plugins.items():  # every key, for every lookup
            cut = len(key.split("/"))
            if "/".join(name.split("/")[:cut]) == key and cut > depth:
                best, depth = plugin, cut
        return best

    index = 0
    while index < len(nodes):
        node = nodes[index]
        plugin = plugin_of(node.name)
        if plugin is not None:
            for text in node.input:
                source = plugin_of(text.lstrip("^").split(":")[0])
                name = source.name if source is not None else text
                if name != plugin.name and name not in plugin.input:  # list scan
                    plugin.input.append(name)
            del nodes[index]  # shifts the rest of the repeated field
            continue
        position = 0
        while position < len(node.input):
            source = plugin_of(node.input[position].lstrip("^").split(":")[0])
            if source is not None:
                del node.input[position]
                if source.name not in node.input:
                    node.input.insert(position, source.name)
                    position += 1
                continue
            position += 1
        index += 1
    nodes.extend({p.name: p for p in plugins.values()}.values())
    _rebuild_indexes(graph_def)
    return graph_def


def ours_collapse(graph_def: GraphDef, namespace_map: dict[str, NodeDef]) -> GraphDef:
    """surgery.compat: IR built once (indexes included), then one linear collapse pass."""
    from surgery.compat import graphsurgeon as gs

    graph = gs.DynamicGraph(graph_def)
    graph.collapse_namespaces(namespace_map)
    return graph.graph


def _in_child(func, *args) -> dict:
    """Run func in a forked child; return its result with the child's peak RSS."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        result = func(*args)
        with os.fdopen(write, "wb") as pipe:
            pickle.dump(result, pipe)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        result = pickle.load(pipe)
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        raise RuntimeError(f"benchmark child failed with status {status}")
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def _timed(variant: str, num_nodes: int, num_namespaces: int, stride: int) -> dict:
    graph_def = conv_graph(num_nodes)
    namespace_map = _namespace_map(num_namespaces, stride)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    func = ours_collapse if variant == "surgery" else naive_collapse
    start = time.perf_counter()
    out = func(graph_def, namespace_map)
    seconds = time.perf_counter() - start
    count = len(out.node) if isinstance(out, GraphDef) else len(out)
    return {"seconds": seconds, "nodes_after": count, "rss_before_mb": base}


def main(argv: list[str] | None = None) -> int:
    """Run both variants and print a small table (seconds, ratio, peak RSS)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--namespaces", type=int, default=500, help="namespaces collapsed")
    args = parser.parse_args(argv)
    blocks = max(1, (args.nodes - 1) // 10)
    stride = max(1, blocks // args.namespaces)
    print(f"collapse_namespaces: {args.nodes} nodes, {args.namespaces} namespaces of 10 nodes")
    results = {}
    for variant in ("surgery", "naive"):
        results[variant] = _in_child(_timed, variant, args.nodes, args.namespaces, stride)
        r = results[variant]
        print(
            f"  {variant:8s} {r['seconds']:8.3f} s   peak RSS {r['peak_rss_mb']:7.0f} MB "
            f"(graph built: {r['rss_before_mb']:.0f} MB)   nodes after: {r['nodes_after']}"
        )
    if results["surgery"]["nodes_after"] != results["naive"]["nodes_after"]:
        print("  warning: the two variants left different node counts", file=sys.stderr)
    ratio = results["naive"]["seconds"] / max(results["surgery"]["seconds"], 1e-9)
    print(f"  naive / surgery: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
