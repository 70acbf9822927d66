"""DOT for a networkx view (namespaces as nested clusters, ports on edges, control edges
dashed, nodes coloured by category) and Graphviz `dot` to lay it out and render it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

import networkx as nx

from surgery.errors import SurgeryError
from surgery.views.node_style import CATEGORIES, namespace_of

DOT_TIMEOUT_S = 180
HUB_CONTROLS = 8  # control edges above which a node's control edges are counted, not drawn


class LayoutError(SurgeryError):
    """Graphviz is missing, failed, or took too long on a picture."""


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _short(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


STATUS_COLOURS = {
    "added": "#1a9850",
    "removed": "#d73027",
    "changed": "#f46d43",
    "focus": "#2166ac",
}


def to_dot(
    view: nx.MultiDiGraph,
    *,
    title: str = "graph",
    prefix: str = "",
    status: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """DOT text for a view and the id -> data map the HTML front end reads.

    Element ids are `<prefix>n<i>` for nodes and `<prefix>c<i>` for clusters; `status` maps node
    names to added/removed/changed (drawn with a coloured border).
    """
    status = status or {}
    ids = {name: f"{prefix}n{i}" for i, name in enumerate(view.nodes)}
    data: dict[str, Any] = {"nodes": {}, "clusters": {}, "edges": {}}
    stack: list[str] = []  # ids of the clusters being written
    lines = [
        f"digraph {_q(title)} {{",
        '  graph [rankdir=TB, nodesep=0.25, ranksep=0.35, fontname="DejaVu Sans", fontsize=10,'
        " compound=true, newrank=true, outputorder=edgesfirst];",
        '  node [shape=box, style="rounded,filled", fontname="DejaVu Sans", fontsize=10,'
        ' height=0.3, margin="0.08,0.03", penwidth=1];',
        '  edge [fontname="DejaVu Sans", fontsize=8, arrowsize=0.6, color="#555555"];',
    ]
    # namespace tree of visible nodes (collapsed `ns/` nodes live in their parent namespace)
    children: dict[str, list[str]] = {}
    members: dict[str, list[str]] = {}
    for name in view.nodes:
        ns = namespace_of(name.rstrip("/"))
        members.setdefault(ns, []).append(name)
        while ns:
            parent = namespace_of(ns)
            kids = children.setdefault(parent, [])
            if ns in kids:
                break
            kids.append(ns)
            ns = parent

    def size(ns: str) -> int:
        return len(members.get(ns, ())) + sum(size(k) for k in children.get(ns, ()))

    counter = [0]
    # Control fans (a NoOp ordering every weight read) would cross the whole picture and make
    # Graphviz crawl: a node with more than HUB_CONTROLS control edges gets a count instead.
    fan: dict[str, int] = {}
    for src, dst, edge in view.edges(data=True):
        if edge.get("control"):
            fan[src] = fan.get(src, 0) + 1
            fan[dst] = fan.get(dst, 0) + 1
    hubs = {name for name, count in fan.items() if count > HUB_CONTROLS}

    def emit_node(name: str, indent: str, ns: str) -> None:
        attrs = view.nodes[name]
        cat = attrs.get("cat", "other")
        info = attrs.get("info", {"name": name, "op": attrs.get("op", "")})
        local = name[len(ns) + 1 :] if ns and name.startswith(ns + "/") else name
        fill = CATEGORIES.get(cat, CATEGORIES["other"])[0]
        style = "rounded,filled"
        extra = ""
        if cat == "namespace":
            label = f"{_short(local)}\n({info['op'].split('(', 1)[-1].rstrip(')')})"
            style = "filled"
            extra = ", shape=folder"
        else:
            op = attrs.get("op", "")
            label = _short(op, 24) if local == op else f"{_short(op, 24)}\n{_short(local)}"
        if name in hubs:
            label += f"\n(+{fan[name]} control edges)"
        if cat == "plugin":
            extra += ', peripheries=2, penwidth=1.6, color="#8e0152", fontcolor="#40004b"'
        if cat == "const":
            extra += ", fontsize=8, height=0.2"
        if attrs.get("cut"):
            style += ",dashed"
        state = status.get(name) or ("focus" if attrs.get("focus") else None)
        classes = f"cat-{cat}"
        if state:
            extra += f', color="{STATUS_COLOURS[state]}", penwidth=3'
            classes += f" st-{state}"
        tip = [name, attrs.get("op", "")]
        tip += [f"{k} = {v}" for k, v in list(info.get("attrs", {}).items())[:12]]
        if attrs.get("cut"):
            tip.append(f"({attrs['cut']} edges to nodes not shown)")
        nid = ids[name]
        lines.append(
            f"{indent}{nid} [id={_q(nid)}, class={_q(classes)}, label={_q(label)},"
            f" style={_q(style)}, fillcolor={_q(fill)}, tooltip={_q(chr(10).join(tip))}{extra}];"
        )
        data["nodes"][nid] = dict(info, cut=attrs.get("cut", 0), state=state, cl=list(stack))

    def emit_ns(ns: str, indent: str) -> None:
        kids = children.get(ns, [])
        own = members.get(ns, [])
        cluster = bool(ns) and size(ns) >= 2
        inner = indent
        if cluster:
            cid = f"{prefix}c{counter[0]}"
            counter[0] += 1
            data["clusters"][cid] = {"name": ns, "count": size(ns), "parents": list(stack)}
            lines.append(f"{indent}subgraph cluster_{cid} {{")
            lines.append(
                f'{indent}  id={_q(cid)}; class="ns";'
                f" label={_q(_short(ns.rsplit('/', 1)[-1], 40))};"
                f' tooltip={_q(ns)}; style="rounded,filled"; fillcolor="#f7f7f7"; color="#bbbbbb";'
                ' labeljust=l; fontcolor="#444444";'
            )
            inner = indent + "  "
            stack.append(cid)
        for name in own:
            emit_node(name, inner, ns if cluster else _enclosing_cluster(ns))
        for kid in kids:
            emit_ns(kid, inner)
        if cluster:
            stack.pop()
            lines.append(f"{indent}}}")

    def _enclosing_cluster(ns: str) -> str:
        while ns and size(ns) < 2:
            ns = namespace_of(ns)
        return ns

    emit_ns("", "  ")
    for index, (src, dst, edge) in enumerate(view.edges(data=True)):
        if edge.get("control") and (src in hubs or dst in hubs):
            continue
        eid = f"{prefix}e{index}"
        data["edges"][eid] = [ids[src], ids[dst]]
        attrs = [f"id={_q(eid)}"]
        if edge.get("control"):
            attrs.append('style=dashed, color="#999999", arrowhead=odot')
        else:
            if edge.get("port", 0) > 0:
                attrs.append(f'label={_q(":" + str(edge["port"]))}, fontcolor="#b2182b"')
            if view.nodes[dst].get("cat") == "plugin" and edge.get("slot", -1) >= 0:
                attrs.append(f'headlabel={_q(str(edge["slot"]))}, fontcolor="#b2182b"')
        text = f"{src}:{edge['port']}" if edge.get("port", 0) > 0 else src
        tip = f"^{src} -> {dst}" if edge.get("control") else f"{text} -> {dst}[{edge.get('slot')}]"
        attrs.append(f"tooltip={_q(tip)}")
        lines.append(f"  {ids[src]} -> {ids[dst]} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n", data


def dot_binary() -> str:
    """Path of Graphviz `dot`, or a LayoutError saying how to install it."""
    found = shutil.which("dot")
    if not found:
        raise LayoutError(
            "Graphviz `dot` is not installed (run `make setup`, or `apt-get install graphviz`)"
        )
    return found


def render_dot(sources: list[str], fmt: str = "svg", timeout: float = DOT_TIMEOUT_S) -> list[bytes]:
    """Lay out and render several DOT graphs with one `dot` process; one output per graph."""
    if not sources:
        return []
    if fmt != "svg" and len(sources) != 1:
        raise LayoutError("only SVG output can batch several graphs")
    try:
        done = subprocess.run(
            [dot_binary(), f"-T{fmt}"],
            input="".join(sources).encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LayoutError(
            f"Graphviz took more than {timeout:.0f} s; draw less (--focus, --radius, --collapse)"
        ) from None
    if done.returncode != 0:
        raise LayoutError(
            f"Graphviz failed: {done.stderr.decode('utf-8', 'replace').strip()[:400]}"
        )
    if fmt != "svg":
        return [done.stdout]
    parts = done.stdout.split(b"<?xml")[1:]
    if len(parts) != len(sources):
        raise LayoutError(f"Graphviz returned {len(parts)} pictures for {len(sources)} graphs")
    return [b"<?xml" + part for part in parts]


def inline_svg(svg: bytes) -> str:
    """SVG document -> an `<svg>` element to place inside HTML (prolog and comments dropped)."""
    text = svg.decode("utf-8")
    start = text.find("<svg")
    return text[start:] if start >= 0 else text
