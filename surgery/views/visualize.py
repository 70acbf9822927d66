"""Graph pictures: a networkx view of (part of) a Graph, laid out by Graphviz `dot`.

`view_graph` picks the nodes (whole graph, or a neighbourhood of a node or scope); the view goes
to DOT and through Graphviz in `surgery.views.dot`, nodes styled by `surgery.views.node_style`.
`write_view` produces the `.svg`, `.png`, `.dot` or interactive `.html` that `surgery view`
writes; `notebook_html` the inline picture of a Graph in Jupyter.
"""

from __future__ import annotations

import html
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import networkx as nx

from surgery.errors import OutputPathError, SurgeryError
from surgery.ir.graph import Graph
from surgery.ir.onnx_io import MODEL_OP as ONNX_MODEL_OP
from surgery.views.dot import LayoutError, inline_svg, render_dot, to_dot
from surgery.views.node_style import CATEGORIES, node_info

DEFAULT_MAX_NODES = 600  # above this a whole-graph view collapses namespaces


# --------------------------------------------------------------------------- selection
def neighbours(graph: Graph, name: str) -> list[str]:
    """Producers then consumers of `name` (data and control), existing nodes only."""
    node = graph.node(name)
    seen = dict.fromkeys(r.node for r in node.inputs)
    seen.update(dict.fromkeys(node.controls))
    seen.update(dict.fromkeys(graph.consumer_names(name)))
    return [n for n in seen if n in graph]


def focus_nodes(graph: Graph, focus: str) -> list[str]:
    """A node name, or a scope (`ns` or `ns/`) whose nodes are the seeds of a neighbourhood."""
    if focus in graph and not focus.endswith("/"):
        return [focus]
    prefix = focus.rstrip("/") + "/"
    seeds = [n for n in graph.names if n.startswith(prefix)]
    if not seeds:
        graph.node(focus)  # raises with "did you mean"
    return seeds


def neighbourhood(
    graph: Graph, seeds: Iterable[str], radius: int, max_nodes: int = DEFAULT_MAX_NODES
) -> list[str]:
    """Nodes within `radius` hops of `seeds` (edges taken both ways), at most `max_nodes`.

    Hubs (a NoOp with a control input from every weight) would pull in the whole graph: nodes
    with more than 24 neighbours are shown but not expanded through, seeds excepted.
    """
    chosen: dict[str, int] = {}
    queue: deque[str] = deque()
    for seed in seeds:
        if seed not in chosen:
            chosen[seed] = 0
            queue.append(seed)
    while queue:
        name = queue.popleft()
        depth = chosen[name]
        if depth >= radius:
            continue
        around = neighbours(graph, name)
        if depth > 0 and len(around) > 24:
            continue
        for other in around:
            if other not in chosen:
                if len(chosen) >= max_nodes:
                    return list(chosen)
                chosen[other] = depth + 1
                queue.append(other)
    return list(chosen)


def to_networkx(graph: Graph, names: Iterable[str] | None = None) -> nx.MultiDiGraph:
    """The (sub)graph as a networkx MultiDiGraph.

    Node attributes: op, cat, info (hover data), cut (number of edges to nodes left out).
    Edge attributes: port (source output), slot (consumer input; -1 for control), control.
    """
    hidden = {h.name for h in graph.nodes_by_op(ONNX_MODEL_OP)}  # an ONNX model's header
    wanted = [n for n in (graph.names if names is None else names) if n not in hidden]
    keep = set(wanted)
    view = nx.MultiDiGraph()
    for name in wanted:
        node = graph.node(name)
        info = node_info(node)
        view.add_node(name, op=node.op, cat=info["cat"], info=info, cut=0)
    for name in wanted:
        node = graph.node(name)
        for slot, ref in enumerate(node.inputs):
            if ref.node in keep:
                view.add_edge(ref.node, name, port=ref.port, slot=slot, control=False)
            else:
                view.nodes[name]["cut"] += 1
        for src in node.controls:
            if src in keep:
                view.add_edge(src, name, port=-1, slot=-1, control=True)
            else:
                view.nodes[name]["cut"] += 1
    if names is not None:
        for name in wanted:
            outside = sum(1 for user in graph.consumer_names(name) if user not in keep)
            view.nodes[name]["cut"] += outside
    return view


def collapse_namespaces(view: nx.MultiDiGraph, depth: int) -> nx.MultiDiGraph:
    """Merge every namespace deeper than `depth` levels into one node named `ns/` (op `ns`)."""
    group: dict[str, str] = {}
    for name in view.nodes:
        parts = name.split("/")
        group[name] = "/".join(parts[:depth]) + "/" if len(parts) > depth else name
    out = nx.MultiDiGraph()
    members: dict[str, int] = {}
    for name, data in view.nodes(data=True):
        key = group[name]
        if key == name:
            out.add_node(name, **data)
        else:
            members[key] = members.get(key, 0) + 1
    for key, count in members.items():
        label = f"{count} nodes"
        out.add_node(
            key,
            op="namespace",
            cat="namespace",
            cut=0,
            info={
                "name": key,
                "op": f"namespace ({label})",
                "cat": "namespace",
                "attrs": {},
                "inputs": [],
                "controls": [],
            },
        )
    seen: set[tuple[str, str, int, bool]] = set()
    for src, dst, data in view.edges(data=True):
        a, b = group[src], group[dst]
        if a == b:
            continue
        port = data["port"] if a == src else 0
        slot = data["slot"] if b == dst else -1
        sig = (a, b, port if a == src else -2, data["control"])
        if (a != src or b != dst) and sig in seen:
            continue
        seen.add(sig)
        out.add_edge(a, b, port=port, slot=slot, control=data["control"])
    return out


def auto_collapse(view: nx.MultiDiGraph, max_nodes: int) -> tuple[nx.MultiDiGraph, int | None]:
    """Collapse namespaces at the deepest level that brings the view under `max_nodes`."""
    if view.number_of_nodes() <= max_nodes:
        return view, None
    deepest = max((n.count("/") for n in view.nodes), default=0)
    for depth in range(deepest, 0, -1):
        small = collapse_namespaces(view, depth)
        if small.number_of_nodes() <= max_nodes:
            return small, depth
    raise LayoutError(
        f"{view.number_of_nodes()} nodes are too many to draw even with namespaces collapsed "
        f"(limit {max_nodes}); pick a region with --focus NODE|SCOPE --radius K"
    )


def view_graph(
    graph: Graph,
    focus: str | None = None,
    radius: int = 2,
    collapse: int | None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> tuple[nx.MultiDiGraph, str]:
    """The networkx view `surgery view` draws, and a one-line caption describing it."""
    if focus:
        seeds = focus_nodes(graph, focus)
        names = neighbourhood(graph, seeds, radius, max_nodes=max(max_nodes, len(seeds)))
        view = to_networkx(graph, names)
        for seed in seeds:
            view.nodes[seed]["focus"] = True
        caption = f"{len(names)} of {len(graph)} nodes within {radius} hops of {focus}"
    else:
        view = to_networkx(graph)
        caption = f"{len(graph)} nodes"
    if collapse is not None:
        view = collapse_namespaces(view, collapse)
        caption += f", namespaces below depth {collapse} collapsed"
    else:
        view, depth = auto_collapse(view, max_nodes)
        if depth is not None:
            caption += f", namespaces below depth {depth} collapsed to fit {max_nodes} nodes"
    return view, caption


# --------------------------------------------------------------------------- HTML
def asset(name: str) -> str:
    """A file from the `viz` package (templates, JS, CSS)."""
    return resources.files("viz").joinpath(name).read_text(encoding="utf-8")


def json_for_script(value: Any) -> str:
    """JSON safe to place inside a <script> element."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def legend_html(categories: Iterable[str]) -> str:
    """Colour chips for the categories present."""
    present = set(categories)
    chips = [
        f'<span class="chip cat-{cat}" style="background:{colour}">{html.escape(label)}</span>'
        for cat, (colour, label) in CATEGORIES.items()
        if cat in present
    ]
    return "".join(chips)


def fill_template(template: str, values: Mapping[str, str]) -> str:
    """Replace `{{KEY}}` markers in one pass (values are inserted verbatim, never rescanned)."""
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: values.get(m.group(1), m.group(0)), template)


def view_html(view: nx.MultiDiGraph, caption: str, title: str) -> str:
    """A self-contained interactive page for one view."""
    dot, data = to_dot(view, title=title)
    svg = inline_svg(render_dot([dot])[0])
    cats = {d.get("cat", "other") for _, d in view.nodes(data=True)}
    return fill_template(
        asset("view.html"),
        {
            "TITLE": html.escape(title),
            "CAPTION": html.escape(caption),
            "CSS": asset("viz.css"),
            "JS": asset("viz.js"),
            "LEGEND": legend_html(cats),
            "DATA": json_for_script({"views": {"main": data}}),
            "SVG": svg,
        },
    )


VIEW_FORMATS = (".html", ".svg", ".png", ".dot")


def write_view(
    graph: Graph,
    path: str | Path,
    *,
    focus: str | None = None,
    radius: int = 2,
    collapse: int | None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
    title: str | None = None,
) -> tuple[Path, str]:
    """Write the picture `surgery view` makes (format by suffix); returns (path, caption)."""
    from surgery.ir.atomic_files import write_atomic

    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in VIEW_FORMATS:
        raise OutputPathError(f"{out}: unknown picture format (use {', '.join(VIEW_FORMATS)})")
    view, caption = view_graph(graph, focus, radius, collapse, max_nodes)
    name = title or (focus or "graph")
    if suffix == ".html":
        data = view_html(view, caption, name).encode("utf-8")
    else:
        dot, _ = to_dot(view, title=name)
        data = dot.encode("utf-8") if suffix == ".dot" else render_dot([dot], suffix[1:])[0]
    write_atomic(out, data)
    return out, caption


def notebook_html(graph: Graph, max_nodes: int = 300) -> str:
    """Inline SVG for Jupyter (`Graph._repr_html_`): native tooltips, no script needed."""
    try:
        view, caption = view_graph(graph, max_nodes=max_nodes)
        dot, _ = to_dot(view, title="graph")
        svg = inline_svg(render_dot([dot])[0])
    except SurgeryError as exc:
        return f"<pre>{html.escape(repr(graph))}: {html.escape(str(exc))}</pre>"
    return (
        '<div class="surgery-graph" style="max-height:640px;overflow:auto;border:1px solid #ddd">'
        f'<div style="font:12px sans-serif;color:#555;padding:2px 4px">{html.escape(caption)}'
        f"</div>{svg}</div>"
    )
