"""Graph pictures: a networkx view of (part of) a Graph, laid out by Graphviz `dot`.

`view_graph` picks the nodes (whole graph, or a neighbourhood of a node or scope), `to_dot`
writes the layered DAG (namespaces as nested clusters, ports on edges, control edges dashed,
nodes coloured by op category) and `render_dot` runs Graphviz. `write_view` produces the
`.svg`, `.png`, `.dot` or interactive `.html` that `surgery view` writes.
"""

from __future__ import annotations

import functools
import html
import json
import re
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import networkx as nx

from surgery.errors import OutputPathError, SurgeryError
from surgery.ir.graph import Graph, Node
from surgery.ir.onnx_io import MODEL_OP as ONNX_MODEL_OP
from surgery.ir.onnx_io import shown_attrs

DEFAULT_MAX_NODES = 600  # above this a whole-graph view collapses namespaces
DOT_TIMEOUT_S = 180
HUB_CONTROLS = 8  # control edges above which a node's control edges are counted, not drawn


class LayoutError(SurgeryError):
    """Graphviz is missing, failed, or took too long on a picture."""


# --------------------------------------------------------------------------- op categories
# category -> (fill colour, legend label); the order is the legend's order.
CATEGORIES: dict[str, tuple[str, str]] = {
    "plugin": ("#f2a7e8", "plugin (TensorRT)"),
    "conv": ("#9ecae1", "convolution"),
    "matmul": ("#a1d99b", "matmul / dense"),
    "activation": ("#fdd0a2", "activation"),
    "norm": ("#dadaeb", "normalisation"),
    "pool": ("#c6dbef", "pooling / resize"),
    "math": ("#fff3b0", "elementwise / reduce"),
    "shape": ("#e5f5e0", "shape / layout"),
    "const": ("#eeeeee", "constant / weight"),
    "io": ("#fcbba1", "input / output"),
    "control": ("#d9d9d9", "control flow"),
    "namespace": ("#ffffff", "collapsed namespace"),
    "other": ("#ffffff", "other"),
}

_OPS: dict[str, str] = {}
for _cat, _ops in {
    "conv": "Conv2D Conv3D DepthwiseConv2dNative Conv2DBackpropInput Conv3DBackpropInputV2 "
    "Conv2DTranspose FusedConv2D _FusedConv2D",
    "matmul": "MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 _FusedMatMul Einsum",
    "activation": "Relu Relu6 LeakyRelu Elu Selu Sigmoid Tanh Softmax LogSoftmax Softplus "
    "Softsign Gelu Swish",
    "norm": "FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 BatchNormWithGlobalNormalization "
    "LRN L2Normalize",
    "pool": "MaxPool AvgPool MaxPool3D AvgPool3D MaxPoolV2 ResizeNearestNeighbor ResizeBilinear "
    "CropAndResize NonMaxSuppressionV2 NonMaxSuppressionV3 NonMaxSuppressionV4 "
    "NonMaxSuppressionV5 TopKV2",
    "math": "Add AddV2 AddN Sub Mul RealDiv Div FloorDiv Maximum Minimum Neg Exp Log Sqrt Rsqrt "
    "Square Pow Abs BiasAdd Mean Sum Max Min Prod ArgMax ArgMin Greater GreaterEqual Less "
    "LessEqual Equal NotEqual LogicalAnd LogicalOr LogicalNot Cast Round Floor Ceil Select "
    "SelectV2 SquaredDifference ClipByValue Where",
    "shape": "Reshape Transpose Squeeze ExpandDims ConcatV2 Concat Split SplitV Slice "
    "StridedSlice Pack Unpack Gather GatherV2 GatherNd Tile Pad PadV2 MirrorPad Shape Size "
    "Rank Fill Range ZerosLike OnesLike BroadcastTo Identity IdentityN StopGradient "
    "DepthToSpace SpaceToDepth",
    "const": "Const VariableV2 VarHandleOp ReadVariableOp",
    "io": "Placeholder PlaceholderWithDefault",
    "control": "NoOp Switch Merge Enter Exit NextIteration LoopCond While StatelessWhile If "
    "StatelessIf ControlTrigger",
}.items():
    for _op in _ops.split():
        _OPS[_op] = _cat


@functools.lru_cache(maxsize=1)
def plugin_catalog() -> dict[str, Any]:
    """Plugin schemas by op name from `surgery.ops.plugin_schema`, or {} while it is unavailable."""
    try:
        from surgery.ops import plugin_schema

        catalog = plugin_schema.load_catalog()
    except (ImportError, AttributeError, OSError, SurgeryError):
        return {}
    if isinstance(catalog, Mapping):
        return dict(catalog)
    return {getattr(item, "name", str(item)): item for item in catalog}


def is_plugin_op(op: str) -> bool:
    """TensorRT plugin ops: in the plugin catalog, named `*_TRT`, or (when TensorFlow is already
    imported, never importing it for a picture) unknown to TensorFlow's op registry. By name
    only: `CropAndResize` is also TensorFlow's op, so ask `is_plugin_node` about a node."""
    if op in plugin_catalog() or op.endswith("_TRT"):
        return True
    if op in _OPS or "tensorflow" not in sys.modules:
        return False
    try:
        from surgery.ops.opdefs import is_known
    except ImportError:
        return False
    return not is_known(op)


def op_category(op: str) -> str:
    """The colour category of an op type (`plugin` before anything else); `node_category` for a
    node."""
    if is_plugin_op(op):
        return "plugin"
    return _OPS.get(op, "other")


def is_plugin_node(node: Node) -> bool:
    """Whether `node` is a plugin node: a catalog op is one unless the node is TensorFlow's op of
    that name (`surgery.ops.plugin_identity`: `CropAndResize` with attrs `T`, `method` is TF's);
    other ops as `is_plugin_op`. TensorFlow is consulted only when already imported."""
    catalog = plugin_catalog()
    if node.op in catalog:
        from surgery.ops.plugin_identity import is_plugin_node as in_catalog

        return in_catalog(node, catalog, use_tf="tensorflow" in sys.modules)
    return is_plugin_op(node.op)


def node_category(node: Node) -> str:
    """The colour category of a node: `plugin` for a plugin node, else its op's category
    (TensorFlow's `CropAndResize` is `pool`, the plugin of that name `plugin`)."""
    if is_plugin_node(node):
        return "plugin"
    return _OPS.get(node.op, "other")


# --------------------------------------------------------------------------- attribute text
def _dtype_name(enum: int) -> str:
    from surgery.ir.protos import types_pb2

    try:
        return types_pb2.DataType.Name(enum).removeprefix("DT_").lower()
    except ValueError:
        return f"dtype{enum}"


def _shape_text(shape: Any) -> str:
    if shape.unknown_rank:
        return "?"
    return "[" + ", ".join("?" if d.size < 0 else str(d.size) for d in shape.dim) + "]"


def format_attr(value: Any, limit: int = 160) -> str:
    """A short, human-readable rendering of one AttrValue (tensors summarised, not dumped)."""
    kind = value.WhichOneof("value")
    if kind == "tensor":
        tensor = value.tensor
        dims = [d.size for d in tensor.tensor_shape.dim]
        count = 1
        for d in dims:
            count *= max(d, 0)
        text = f"{_dtype_name(tensor.dtype)} {_shape_text(tensor.tensor_shape)}"
        if count <= 8:
            text += " = " + _python_text(value)
        return text[:limit]
    if kind == "type":
        return _dtype_name(value.type)
    if kind == "shape":
        return _shape_text(value.shape)
    if kind == "s":
        return repr(value.s.decode("utf-8", "replace"))[:limit]
    if kind == "f":
        return f"{value.f:.7g}"
    if kind in ("i", "b"):
        return str(getattr(value, kind))
    return _python_text(value)[:limit]


def _plain_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.7g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_plain_text(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    if hasattr(value, "tolist"):
        return _plain_text(value.tolist())
    return repr(value)


def _python_text(value: Any) -> str:
    try:
        from surgery.ir.attrs import attr_value

        return _plain_text(attr_value(value))
    except (ImportError, ValueError, TypeError, SurgeryError):
        from google.protobuf import text_format

        return text_format.MessageToString(value, as_one_line=True)


def node_info(node: Node) -> dict[str, Any]:
    """What the hover panel shows for a node: op, attrs, inputs by slot, plugin fields."""
    attrs = {key: format_attr(node.attr[key]) for key in shown_attrs(node)}
    info: dict[str, Any] = {
        "name": node.name,
        "op": node.op,
        "cat": node_category(node),
        "attrs": attrs,
        "inputs": [str(ref) for ref in node.inputs],
        "controls": list(node.controls),
    }
    if node.device:
        info["device"] = node.device
    if info["cat"] == "plugin":
        info["fields"] = plugin_fields(node)
    return info


def plugin_fields(node: Node) -> list[list[str]]:
    """[field, declared type, value] rows for a plugin node (type '' when no schema is known)."""
    schema = plugin_catalog().get(node.op)
    declared: dict[str, str] = {}
    for spec in getattr(schema, "fields", None) or ():
        describe = getattr(spec, "describe", None)
        declared[spec.name] = describe() if callable(describe) else str(getattr(spec, "type", ""))
    rows = [[key, declared.get(key, ""), format_attr(node.attr[key])] for key in shown_attrs(node)]
    rows += [[name, kind, "(missing)"] for name, kind in declared.items() if name not in node.attr]
    return rows


# --------------------------------------------------------------------------- selection
def namespace_of(name: str) -> str:
    """`a/b/c` -> `a/b`; top-level names have the namespace ''."""
    return name.rpartition("/")[0]


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


# --------------------------------------------------------------------------- DOT
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
