"""Structural diff of two graphs, node by node name: added, removed, op, inputs, attrs, controls.

Nodes whose NodeDef protos compare equal are skipped at C speed, so a diff of two 10k-node
graphs that differ in a few places costs one pass of proto comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from surgery.ir.graph import Graph
from surgery.ir.node import Node
from surgery.ir.onnx_io import DOMAIN_ATTR as ONNX_DOMAIN
from surgery.ir.onnx_io import MODEL_OP as ONNX_MODEL_OP
from surgery.ir.onnx_io import shown_attrs
from surgery.ir.ports import TensorRef

ONNX_SHOWN = {ONNX_DOMAIN: "domain", "model": "opsets"}
"""ONNX bookkeeping attrs a diff shows, under these names (the `_OnnxModel` header's `model`
attr as the opsets it imports)."""


@dataclass
class SlotChange:
    """Input `slot` of a node read `before` and now reads `after` (None: slot absent)."""

    slot: int
    before: str | None
    after: str | None


@dataclass
class NodeChange:
    """How one node present in both graphs differs."""

    name: str
    op_before: str
    op_after: str
    rewired: list[SlotChange] = field(default_factory=list)
    attrs: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    controls_added: list[str] = field(default_factory=list)
    controls_removed: list[str] = field(default_factory=list)
    device: tuple[str, str] | None = None

    @property
    def op_changed(self) -> bool:
        return self.op_before != self.op_after


@dataclass
class GraphDiff:
    """Everything that differs between `before` and `after` (lists in graph order)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, NodeChange] = field(default_factory=dict)
    functions_added: list[str] = field(default_factory=list)
    functions_removed: list[str] = field(default_factory=list)
    functions_changed: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.changed
            or self.functions_added
            or self.functions_removed
            or self.functions_changed
        )

    @property
    def rewired(self) -> list[str]:
        return [n for n, c in self.changed.items() if c.rewired]

    def counts(self) -> dict[str, int]:
        """Headline numbers for summaries."""
        changes = self.changed.values()
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "rewired": sum(1 for c in changes if c.rewired),
            "op_changed": sum(1 for c in changes if c.op_changed),
            "attrs_changed": sum(1 for c in changes if c.attrs),
            "controls_changed": sum(1 for c in changes if c.controls_added or c.controls_removed),
        }

    def touched(self) -> set[str]:
        """Names of every node added, removed or changed."""
        return set(self.added) | set(self.removed) | set(self.changed)

    def summary_line(self) -> str:
        """One line for the terminal."""
        if self.identical:
            return "graphs are identical"
        c = self.counts()
        parts = [
            f"{c['added']} added",
            f"{c['removed']} removed",
            f"{c['rewired']} rewired",
            f"{c['op_changed']} op changed",
            f"{c['attrs_changed']} attrs changed",
            f"{c['controls_changed']} control edges changed",
        ]
        if self.functions_added or self.functions_removed or self.functions_changed:
            parts.append(
                f"functions +{len(self.functions_added)} -{len(self.functions_removed)}"
                f" ~{len(self.functions_changed)}"
            )
        return ", ".join(parts)


def _attr_text(key: str, value: Any) -> str:
    from surgery.views.node_style import format_attr

    return format_attr(value)


def _onnx_text(key: str, value: Any) -> str:
    """An ONNX node's domain, or the opsets of an ONNX model's header."""
    if key == ONNX_DOMAIN:
        return repr(value.s.decode())
    from onnx import ModelProto

    header = ModelProto.FromString(value.s)
    return ", ".join(f"{e.domain or 'ai.onnx'} {e.version}" for e in header.opset_import)


def compare_nodes(a: Node, b: Node) -> NodeChange | None:
    """The difference between two same-named nodes, or None when they are equal."""
    pa, pb = a.proto, b.proto
    if pa == pb:
        return None
    change = NodeChange(pa.name, pa.op, pb.op)
    ins_a: tuple[TensorRef, ...] = a.inputs
    ins_b: tuple[TensorRef, ...] = b.inputs
    if ins_a != ins_b:
        for slot in range(max(len(ins_a), len(ins_b))):
            x = ins_a[slot] if slot < len(ins_a) else None
            y = ins_b[slot] if slot < len(ins_b) else None
            if x != y:
                change.rewired.append(
                    SlotChange(slot, None if x is None else str(x), None if y is None else str(y))
                )
    ctl_a, ctl_b = a.controls, b.controls
    if ctl_a != ctl_b:
        set_a, set_b = set(ctl_a), set(ctl_b)
        change.controls_added = [c for c in ctl_b if c not in set_a]
        change.controls_removed = [c for c in ctl_a if c not in set_b]
    if pa.attr != pb.attr:
        for key in sorted(set(shown_attrs(a)) | set(shown_attrs(b))):  # not ONNX bookkeeping
            va = pa.attr[key] if key in pa.attr else None
            vb = pb.attr[key] if key in pb.attr else None
            if va != vb:
                onnx = key == ONNX_DOMAIN or (key == "model" and b.op == ONNX_MODEL_OP)
                shown = _onnx_text if onnx else _attr_text
                change.attrs.append(
                    (
                        ONNX_SHOWN[key] if onnx else key,
                        None if va is None else shown(key, va),
                        None if vb is None else shown(key, vb),
                    )
                )
    if pa.device != pb.device:
        change.device = (pa.device, pb.device)
    empty = not (
        change.op_changed
        or change.rewired
        or change.attrs
        or change.controls_added
        or change.controls_removed
        or change.device
    )
    return None if empty else change


def diff_graphs(before: Graph, after: Graph) -> GraphDiff:
    """Compare two graphs by node name (plus their function libraries)."""
    out = GraphDiff()
    for node in before:
        other = after.get(node.name)
        if other is None:
            out.removed.append(node.name)
            continue
        change = compare_nodes(node, other)
        if change is not None:
            out.changed[node.name] = change
    names_before = set(before.names)
    out.added = [n for n in after.names if n not in names_before]
    lib_a = {f.signature.name: f for f in before.library.function}
    lib_b = {f.signature.name: f for f in after.library.function}
    out.functions_added = [n for n in lib_b if n not in lib_a]
    out.functions_removed = [n for n in lib_a if n not in lib_b]
    out.functions_changed = [n for n in lib_a if n in lib_b and lib_a[n] != lib_b[n]]
    return out
