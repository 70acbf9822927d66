"""NHWC -> NCHW: layout ops switched to NCHW inside Transpose pairs, then Transposes pushed
through layout-agnostic ops and cancelled.

Phase 1 wraps every NHWC layout op (convolutions, pools, bias, batch norm) as
`Transpose(to NCHW) -> op(NCHW) -> Transpose(to NHWC)`; graphs that TF on CPU already wrapped
(`Transpose -> Conv2D(NHWC) -> Transpose`) thereby get adjacent inverse pairs. Phase 2 moves each
to-NHWC Transpose down through elementwise ops, concat, pad, split and keep-dims reductions (their
axes and Const operands re-laid out) and removes Transposes that meet their inverse. Ops that only
exist in NHWC (ResizeNearestNeighbor, CropAndResize) and shape-dependent ops (Reshape, Flatten)
stop the push, so they keep reading NHWC inside a Transpose pair: correct by construction. After
an NHWC-only op a pinned identity pair is inserted whose second half is pushed on like the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from surgery.errors import SurgeryError, TensorFlowMissing
from surgery.ir.attrs import const_attrs, make_attr
from surgery.ir.graph import Graph
from surgery.ir.node import Node
from surgery.ir.ports import TensorRef
from surgery.ir.protos import AttrValue
from surgery.ir.tensor_values import from_numpy, to_numpy

TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)

# op -> data input slots that carry the image tensor
LAYOUT_OPS = {
    "Conv2D": (0,),
    "DepthwiseConv2dNative": (0,),
    "Conv2DBackpropInput": (2,),
    "MaxPool": (0,),
    "AvgPool": (0,),
    "BiasAdd": (0,),
    "FusedBatchNorm": (0,),
    "FusedBatchNormV2": (0,),
    "FusedBatchNormV3": (0,),
}
LIST_ATTRS = ("strides", "ksize", "dilations")
UNARY = {
    "Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Identity", "Softplus",
    "Neg", "Abs", "Exp", "Log", "Sqrt", "Rsqrt", "Square", "Cast", "Floor", "Erf", "Swish",
}
BINARY = {
    "Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum", "SquaredDifference", "Pow",
}
REDUCTIONS = {"Mean", "Sum", "Max", "Min", "Prod"}
# ops TensorFlow only has in NHWC: they stay NHWC, inside a Transpose pair
NHWC_ONLY = ("ResizeNearestNeighbor", "ResizeBilinear", "CropAndResize")


class LayoutError(SurgeryError):
    """A graph the layout pass cannot convert; the message names the node."""


@dataclass
class LayoutReport:
    """What the pass did: ops switched, transposes before/after, per-kind counts."""

    converted: list[str] = field(default_factory=list)
    transposes_before: int = 0
    transposes_after: int = 0
    inserted: int = 0
    cancelled: int = 0
    pushed: int = 0


class _Pass:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.report = LayoutReport()
        self._serial = 0
        self.pinned: set[str] = set()

    # ------------------------------------------------------------ helpers
    def fresh(self, base: str) -> str:
        while True:
            self._serial += 1
            name = f"{base}/layout_{self._serial}"
            if name not in self.graph:
                return name

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.fresh(base)
        tensor = from_numpy(value)
        self.graph.add_node(name, "Const", attrs=const_attrs(tensor))
        return name

    def transpose(self, source: TensorRef, perm: tuple[int, ...], base: str, dtype: int) -> str:
        perm_name = self.const(base, np.array(perm, dtype=np.int32))
        name = self.fresh(base)
        self.graph.add_node(name, "Transpose", [source, perm_name], attrs={
            "T": AttrValue(type=dtype), "Tperm": AttrValue(type=3)})
        self.report.inserted += 1
        return name

    def const_value(self, ref: TensorRef) -> np.ndarray | None:
        node = self.graph.get(ref.node)
        while node is not None and node.op == "Identity" and node.inputs:
            node = self.graph.get(node.inputs[0].node)
        if node is None or node.op != "Const":
            return None
        return to_numpy(node.attr["value"].tensor)

    def perm_of(self, node: Node) -> tuple[int, ...] | None:
        if node.op != "Transpose" or len(node.inputs) != 2:
            return None
        value = self.const_value(node.inputs[1])
        return None if value is None else tuple(int(v) for v in value.reshape(-1))

    def dtype(self, node: Node) -> int:
        return node.attr["T"].type if "T" in node.attr else 1

    def drop_if_dead(self, name: str) -> None:
        stack = [name]
        while stack:
            current = stack.pop()
            node = self.graph.get(current)
            if node is None or node.op in ("Placeholder", "PlaceholderWithDefault"):
                continue
            if self.graph.consumer_names(current):
                continue
            producers = [p.name for p in self.graph.producers(current)]
            if node.op not in ("Transpose", "Const", "Identity"):
                continue  # only clean up what this pass makes dead
            self.graph.remove_nodes([current])
            stack.extend(producers)

    def permuted_sizes(self, node: Node) -> str:
        """Conv2DBackpropInput's NHWC `input_sizes` in NCHW order (a Const, or a Gather)."""
        sizes = self.const_value(node.inputs[0])
        if sizes is not None:
            return self.const(node.name, sizes[list(TO_NCHW)])
        index = self.const(node.name, np.array(TO_NCHW, dtype=np.int32))
        axis = self.const(node.name, np.array(0, dtype=np.int32))
        name = self.fresh(node.name)
        self.graph.add_node(name, "GatherV2", [node.inputs[0], index, axis], attrs={
            "Tparams": AttrValue(type=3), "Tindices": AttrValue(type=3),
            "Taxis": AttrValue(type=3), "batch_dims": AttrValue(i=0)})
        return name

    # ------------------------------------------------------------ phase 1
    def wrap(self, node: Node) -> None:
        fmt = node.attr["data_format"].s.decode() if "data_format" in node.attr else "NHWC"
        if fmt == "NCHW":
            return
        if fmt != "NHWC":
            raise LayoutError(f"{node.name}: data_format {fmt!r} is neither NHWC nor NCHW")
        graph, dtype = self.graph, self.dtype(node)
        for slot in LAYOUT_OPS[node.op]:
            src = node.inputs[slot]
            graph.set_input(node.name, slot, self.transpose(src, TO_NCHW, node.name, dtype))
        if node.op == "Conv2DBackpropInput":
            graph.set_input(node.name, 0, self.permuted_sizes(node))
        for key in LIST_ATTRS:
            if key in node.attr and len(node.attr[key].list.i) == 4:
                values = list(node.attr[key].list.i)
                node.attr[key].CopyFrom(make_attr([values[i] for i in TO_NCHW], "list(int)"))
        if "explicit_paddings" in node.attr and len(node.attr["explicit_paddings"].list.i) == 8:
            pads = np.array(node.attr["explicit_paddings"].list.i).reshape(4, 2)[list(TO_NCHW)]
            node.attr["explicit_paddings"].CopyFrom(make_attr(pads.reshape(-1), "list(int)"))
        node.attr["data_format"].s = b"NCHW"
        out = TensorRef(node.name, 0)
        back = self.transpose(out, TO_NHWC, node.name, dtype)
        graph.replace_uses(out, back, exclude=[back])
        self.report.converted.append(node.name)

    def pin_after(self, node: Node) -> None:
        """NHWC-only op: its NHWC output goes through Transpose(to NCHW) -> Transpose(to NHWC),
        so the second half can be pushed on and the op ends up inside a Transpose pair."""
        out = node.output()
        dtype = self.dtype(node)
        to_nchw = self.transpose(out, TO_NCHW, node.name, dtype)
        back = self.transpose(TensorRef(to_nchw, 0), TO_NHWC, node.name, dtype)
        self.graph.replace_uses(out, back, exclude=[to_nchw])
        self.pinned.add(to_nchw)

    # ------------------------------------------------------------ phase 2
    def cancel(self, node: Node, *, keep_pins: bool = True) -> bool:
        """Transpose(Transpose(x, p0), p1) with p0 then p1 = identity: readers take x.

        The pair placed after an NHWC-only op is pinned while pushing: its second half has to
        travel down first, and only what is left behind is cancelled at the end.
        """
        perm = self.perm_of(node)
        if perm is None or not self.graph.consumers(node.output()):
            return False  # a Transpose nothing reads is a graph output: leave it
        if perm == tuple(range(len(perm))):
            self.graph.replace_uses(node.output(), node.inputs[0])
            self.drop_if_dead(node.name)
            self.report.cancelled += 1
            return True
        inner = self.graph.get(node.inputs[0].node)
        inner_perm = self.perm_of(inner) if inner is not None and node.inputs[0].port == 0 else None
        if inner is None or inner_perm is None or len(inner_perm) != len(perm):
            return False
        composed = tuple(inner_perm[p] for p in perm)
        if composed != tuple(range(len(perm))):
            return False
        if keep_pins and inner.name in self.pinned:
            return False
        self.graph.replace_uses(node.output(), inner.inputs[0])
        self.drop_if_dead(node.name)
        self.report.cancelled += 1
        return True

    def push(self, node: Node) -> bool:
        """Move a to-NHWC Transpose below the op reading it, when that op is layout-agnostic."""
        if self.perm_of(node) != TO_NHWC:
            return False
        for user, _slot in self.graph.consumers(node.output()):
            if self._push_into(node, user):
                self.report.pushed += 1
                return True
        return False

    def _push_into(self, tnode: Node, user: Node) -> bool:
        if not self.graph.consumer_names(user.name):
            return False  # a graph output keeps the layout its readers outside expect
        op = user.op
        if op in UNARY and len(user.inputs) == 1:
            return self._rebuild(tnode, user, {})
        if op in BINARY and len(user.inputs) == 2:
            return self._push_binary(tnode, user)
        if op == "ConcatV2":
            axis = self.const_value(user.inputs[-1])
            if axis is None or not all(self._is_nhwc_t(t) for t in user.inputs[:-1]):
                return False
            new_axis = TO_NHWC[int(axis) % 4]
            return self._rebuild(tnode, user, {len(user.inputs) - 1: np.array(
                new_axis, dtype=axis.dtype)}, all_inputs=True)
        if op in ("Pad", "PadV2", "MirrorPad") and user.inputs[0] == tnode.output():
            pads = self.const_value(user.inputs[1])
            if pads is None or pads.shape != (4, 2):
                return False
            return self._rebuild(tnode, user, {1: pads[list(TO_NCHW)]})
        if op in REDUCTIONS and user.inputs[0] == tnode.output():
            axes = self.const_value(user.inputs[1])
            if axes is None or not user.attr["keep_dims"].b:
                return False
            new = np.array([TO_NHWC[int(a) % 4] for a in axes.reshape(-1)], dtype=axes.dtype)
            return self._rebuild(tnode, user, {1: new.reshape(axes.shape)})
        return False

    def _is_nhwc_t(self, ref: TensorRef) -> bool:
        node = self.graph.get(ref.node)
        return node is not None and ref.port == 0 and self.perm_of(node) == TO_NHWC

    def _push_binary(self, tnode: Node, user: Node) -> bool:
        consts: dict[int, np.ndarray] = {}
        for slot, ref in enumerate(user.inputs):
            if self._is_nhwc_t(ref):
                continue
            value = self.const_value(ref)
            if value is None:
                return False
            if value.ndim == 4:
                consts[slot] = value.transpose(TO_NCHW)
            elif value.ndim == 1 and value.size > 1:
                consts[slot] = value.reshape(-1, 1, 1)  # [C] broadcast over W -> over C
            elif value.ndim > 1:
                return False
        return self._rebuild(tnode, user, consts, all_inputs=True)

    def _rebuild(
        self, tnode: Node, user: Node, consts: dict[int, np.ndarray], all_inputs: bool = False
    ) -> bool:
        """`user` reads the untransposed tensors (re-laid Consts); its readers get a Transpose."""
        graph = self.graph
        for port in graph.used_ports(user.name):
            if port != 0:
                return False
        new_inputs = list(user.inputs)
        for slot, ref in enumerate(user.inputs):
            if slot in consts:
                new_inputs[slot] = TensorRef(self.const(user.name, consts[slot]), 0)
            elif ref == tnode.output() or (all_inputs and self._is_nhwc_t(ref)):
                new_inputs[slot] = graph.node(ref.node).inputs[0]
        old = [ref.node for ref in user.inputs]
        out = user.output()
        graph.set_inputs(user.name, new_inputs)
        back = self.transpose(out, TO_NHWC, user.name, self.dtype(user))
        graph.replace_uses(out, back, exclude=[back])
        for name in old:
            self.drop_if_dead(name)
        return True


def _ranks(graph: Graph):
    """tensor -> rank: TensorFlow's shape inference when installed, else what the ops imply."""
    try:
        from surgery.passes.shapes import infer_shapes

        shapes = infer_shapes(graph)
    except TensorFlowMissing:
        shapes = None

    def rank(ref: TensorRef) -> int | None:
        if shapes is not None:
            shape = shapes.get(ref)
            return None if shape is None else len(shape)
        producer = graph.get(ref.node)
        if producer is not None and producer.op in ("MatMul", "BatchMatMulV2"):
            return 2
        if producer is not None and (producer.op in LAYOUT_OPS or producer.op == "Placeholder"):
            return 4
        return None

    return rank


def refuse_plugin_nodes(graph: Graph, shown: int = 3) -> None:
    """LayoutError if `graph` already has plugin nodes (catalog ops TensorFlow does not know;
    CropAndResize is both): the pass reads ranks through TensorFlow, which cannot import them,
    so layout comes before apply."""
    from surgery.ops.plugin_identity import is_plugin_node
    from surgery.ops.plugin_schema import load_catalog

    catalog = load_catalog()
    ops = {op for op in graph.op_types() if op in catalog}
    found = [n for n in graph if n.op in ops and is_plugin_node(n, catalog)] if ops else []
    if not found:
        return
    names = ", ".join(f"{n.name!r} ({n.op})" for n in found[:shown])
    if len(found) > shown:
        names += f" and {len(found) - shown} more"
    raise LayoutError(
        f"layout must come before apply: the graph already has {len(found)} plugin "
        f"node{'s' if len(found) != 1 else ''} ({names}), which TensorFlow cannot import; "
        "run `surgery layout` on the model before `surgery apply`"
    )


def to_nchw(graph: Graph, *, nchw_inputs: bool = False, max_rounds: int = 10_000) -> LayoutReport:
    """Convert `graph` in place; `nchw_inputs` also turns 4-D Placeholders into NCHW inputs.
    A graph with plugin nodes is refused (`refuse_plugin_nodes`)."""
    refuse_plugin_nodes(graph)
    work = _Pass(graph)
    work.report.transposes_before = len(graph.nodes_by_op("Transpose"))
    for node in graph.nodes_by_op(*LAYOUT_OPS):
        fmt = node.attr["data_format"].s.decode() if "data_format" in node.attr else "NHWC"
        if fmt not in ("NHWC", "NCHW"):
            raise LayoutError(f"{node.name}: data_format {fmt!r} is neither NHWC nor NCHW")
    ranks = _ranks(graph)
    images = []
    for node in graph.nodes_by_op(*LAYOUT_OPS):
        data = node.inputs[LAYOUT_OPS[node.op][0]]
        rank = ranks(data)
        if rank is None:
            raise LayoutError(
                f"{node.name}: the rank of its input {data} is unknown; "
                "cannot tell whether it is an image tensor"
            )
        if rank == 4:
            images.append(node)
    for node in images:
        work.wrap(node)
    for node in graph.nodes_by_op(*NHWC_ONLY):
        if ranks(node.output()) == 4 and graph.consumers(node.output()):
            work.pin_after(node)
    if nchw_inputs:
        for node in graph.graph_inputs():
            shape = node.attr["shape"].shape if "shape" in node.attr else None
            if shape is None or shape.unknown_rank or len(shape.dim) != 4:
                continue
            dims = [d.size for d in shape.dim]
            node.attr["shape"].CopyFrom(make_attr([dims[i] for i in TO_NCHW], "shape"))
            out = node.output()
            back = work.transpose(out, TO_NHWC, node.name, node.attr["dtype"].type)
            graph.replace_uses(out, back, exclude=[back])
    for _ in range(max_rounds):
        changed = False
        for node in graph.nodes_by_op("Transpose"):
            if node.name not in graph:
                continue
            if work.cancel(node) or work.push(node):
                changed = True
        if not changed:
            break
    else:
        raise LayoutError(f"transpose optimisation did not settle after {max_rounds} rounds")
    for node in graph.nodes_by_op("Transpose"):  # pinned pairs whose second half stayed put
        if node.name in graph:
            work.cancel(node, keep_pins=False)
    work.report.transposes_after = len(graph.nodes_by_op("Transpose"))
    graph.check()
    return work.report
