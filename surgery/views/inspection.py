"""What is in a graph: node and op counts, inputs/outputs, namespace tree, ops TF cannot run,
structural defects (`surgery.ops.graph_check`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from surgery.ir.graph import Graph
from surgery.ops.graph_check import Defect, find_defects


@dataclass
class Summary:
    """The facts `surgery inspect` prints (also the data the reports reuse)."""

    nodes: int
    ops: list[tuple[str, int]]
    inputs: list[tuple[str, str]]
    outputs: list[str]
    namespaces: list[tuple[str, int, int]]  # (namespace, depth, node count)
    functions: list[str]
    unknown_ops: list[tuple[str, int]] | None = None  # None: TensorFlow not installed
    op_set: str = "TensorFlow"  # whose ops `unknown_ops` are not: TensorFlow's or ONNX's
    dangling: list[tuple[str, str]] = field(default_factory=list)
    defects: list[Defect] = field(default_factory=list)  # cycles, self-loops, bad ports, ...


def namespace_tree(
    graph: Graph, depth: int = 2, children: int = 6
) -> list[tuple[str, int, int]]:
    """Namespaces down to `depth` levels with node counts, largest first; the `children` largest
    sub-namespaces of each top level are listed, the rest summed in one `…` row."""
    counts: Counter[str] = Counter()
    for node in graph:
        parts = node.name.split("/")[:-1]
        for level in range(1, min(depth, len(parts)) + 1):
            counts["/".join(parts[:level])] += 1
    top = sorted((ns for ns in counts if "/" not in ns), key=lambda ns: (-counts[ns], ns))
    below: dict[str, list[str]] = {}  # top level -> its second-level namespaces
    for ns in counts:
        if ns.count("/") == 1:
            below.setdefault(ns.split("/", 1)[0], []).append(ns)
    rows = []
    for ns in top:
        rows.append((ns, 1, counts[ns]))
        subs = sorted(below.get(ns, ()), key=lambda c: (-counts[c], c))
        rows.extend((c, 2, counts[c]) for c in subs[:children])
        if len(subs) > children:
            rest = sum(counts[c] for c in subs[children:])
            rows.append((f"{ns}/… {len(subs) - children} more", 2, rest))
    return rows


def unknown_ops(ops: list[str]) -> list[str] | None:
    """Ops TensorFlow's registry does not know (plugin nodes), or None without TensorFlow."""
    try:
        from tensorflow.python.framework import op_def_registry
    except ImportError:
        return None
    return [op for op in ops if op_def_registry.get(op) is None]


def summarize(graph: Graph, *, with_tf: bool = True) -> Summary:
    from surgery.ir.onnx_io import (
        MODEL_OP,
        NONE_OP,
        OUTPUT_OP,
        SPARSE_OP,
        interface_names,
        is_onnx_graph,
    )  # fmt: skip

    onnx = is_onnx_graph(graph)
    # an ONNX model's own input and output names, not the IR's nodes
    onnx_names: tuple[dict[str, str], dict[str, str]] = interface_names(graph) if onnx else ({}, {})
    hist = sorted(graph.op_types().items(), key=lambda kv: (-kv[1], kv[0]))
    inputs = []
    for node in graph.graph_inputs():
        dtype = node.attr["dtype"].type if "dtype" in node.attr else 0
        shape = node.attr["shape"].shape if "shape" in node.attr else None
        dims = "?" if shape is None or shape.unknown_rank else (
            "[" + ", ".join("?" if d.size < 0 else str(d.size) for d in shape.dim) + "]"
        )
        inputs.append((onnx_names[0].get(node.name, node.name), f"{_dtype_name(dtype)}{dims}"))
    if onnx:
        from surgery.ops.opdefs import ONNX_GRAPH_OPS, onnx_op_names

        known = onnx_op_names() | ONNX_GRAPH_OPS | {MODEL_OP, NONE_OP, OUTPUT_OP, SPARSE_OP}
        unknown: list[str] | None = [op for op, _ in hist if op not in known]
    else:
        unknown = unknown_ops([op for op, _ in hist]) if with_tf else None
    counts = dict(hist)
    return Summary(
        nodes=len(graph),
        ops=hist,
        inputs=inputs,
        outputs=[onnx_names[1].get(n.name, n.name) for n in graph.graph_outputs()
                 if n.op != MODEL_OP],  # fmt: skip
        namespaces=namespace_tree(graph),
        functions=[f.signature.name for f in graph.library.function],
        unknown_ops=None if unknown is None else [(op, counts[op]) for op in unknown],
        op_set="ONNX" if onnx else "TensorFlow",
        dangling=graph.dangling_inputs(),
        defects=find_defects(graph, use_tf=with_tf),
    )


def _dtype_name(enum: int) -> str:
    from surgery.ir.protos import types_pb2

    if enum == 0:
        return ""
    return types_pb2.DataType.Name(enum).removeprefix("DT_").lower()


def format_summary(summary: Summary, *, max_ops: int = 40, max_defects: int = 50) -> str:
    """Human-readable text of a Summary."""
    lines = [f"nodes: {summary.nodes}"]
    lines.append("inputs: " + (", ".join(f"{n} {t}" for n, t in summary.inputs) or "(none)"))
    lines.append("outputs: " + (", ".join(summary.outputs) or "(none)"))
    lines.append(f"op histogram ({len(summary.ops)} op types):")
    lines.extend(f"  {count:>7}  {op}" for op, count in summary.ops[:max_ops])
    if len(summary.ops) > max_ops:
        lines.append(f"  ... {len(summary.ops) - max_ops} more op types")
    lines.append("namespaces:")
    for ns, depth, count in summary.namespaces:
        slash = "" if "…" in ns else "/"
        lines.append(f"  {'  ' * (depth - 1)}{ns}{slash}  {count}")
    if summary.functions:
        lines.append("function library: " + ", ".join(summary.functions))
    if summary.unknown_ops is None:
        lines.append("ops unknown to TensorFlow: (TensorFlow not installed; not checked)")
    else:
        shown = ", ".join(f"{op} x{n}" for op, n in summary.unknown_ops) or "none"
        lines.append(f"ops unknown to {summary.op_set}: {shown}")
    if not summary.defects:
        lines.append("defects: none")
    else:
        lines.append(f"defects ({len(summary.defects)}; apply, layout and export refuse the "
                     "graph without --allow-invalid):")  # fmt: skip
        lines.extend(f"  {d.text}" for d in summary.defects[:max_defects])
        if len(summary.defects) > max_defects:
            lines.append(f"  ... {len(summary.defects) - max_defects} more")
    return "\n".join(lines)
