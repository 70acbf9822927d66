"""Graph -> ONNX ModelProto: the saving half of `surgery.onnx_io` (its docstring has the mapping).

Tensor names are settled before any node is written: graph inputs and initializers keep theirs,
then every node output its recorded name (unless a graph output that reads another tensor now
needs it), then a new node's tensor read by a graph output takes the output's name, and the
remaining tensors are named `<node>` (port 0) or `<node>:<port>`, made unique.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from onnx import (
    AttributeProto,
    ModelProto,
    NodeProto,
    TensorProto,
    TensorShapeProto,
    ValueInfoProto,
)

from surgery import onnx_io as io
from surgery.atomic_files import write_atomic
from surgery.graph import Graph, Node
from surgery.model_io import check_output_path
from surgery.onnx_load import tf_tensor
from surgery.ports import TensorRef
from surgery.protos import AttrValue
from surgery.protos import TensorProto as TfTensor
from surgery.tensor_values import shape_of, to_numpy

_SOURCES = ("Const", "Placeholder", io.SPARSE_OP)
_NOT_NODES = (*_SOURCES, io.MODEL_OP, io.NONE_OP, io.OUTPUT_OP)
# Initializer bytes past which every tensor of 1 KiB or more goes to external data (one
# protobuf message holds at most 2 GiB).
EXTERNAL_ABOVE = 3 << 29
EXTERNAL_MIN_TENSOR = 1024
ALIGN = 64


def save_model(
    graph: Graph, path: str | os.PathLike, *, inputs: tuple = (),
    encoded: Mapping[str, NodeProto] | None = None,
) -> Path:  # fmt: skip
    """`encoded`: nodes written as given (op type, domain, attributes) rather than from their
    attrs; the plugin nodes, which `surgery.onnx_plugins` encodes as TensorRT's parser reads
    them. Their inputs and outputs are still the graph's."""
    out = check_output_path(path, *inputs)
    model = _Saver(graph, encoded or {}).model()
    external = _externalize(graph, model)
    if external:
        data_path = out.with_name(out.name + ".data")
        sources = [n.attr[io.EXTERNAL_ATTR].s.decode() for n in graph.nodes_by_op("Const")
                   if io.EXTERNAL_ATTR in n.attr]  # fmt: skip
        check_output_path(data_path, *inputs, *sources)
        write_atomic(data_path, list(_place(external, data_path.name)))
    write_atomic(out, model.SerializeToString(deterministic=True))
    return out


# --------------------------------------------------------------------------- tensors
def onnx_tensor(value: TfTensor, name: str = "") -> TensorProto:
    """A TF TensorProto as an ONNX one holding raw (or string) data."""
    data_type = io.TF_TO_ONNX.get(value.dtype)
    dims = shape_of(value.tensor_shape)
    if data_type is None or dims is None or any(d < 0 for d in dims):
        raise io.OnnxSaveError(
            f"tensor {name or '(attribute)'}: type {value.dtype} of shape {dims} has no ONNX "
            "initializer form"
        )
    out = TensorProto(dims=dims, data_type=data_type)
    if name:
        out.name = name
    if data_type == TensorProto.STRING:
        out.string_data.extend(to_numpy(value).reshape(-1).tolist())
        return out
    array = None if value.tensor_content else to_numpy(value)
    if array is None:
        out.raw_data = value.tensor_content
    else:
        out.raw_data = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
    return out


def _initializer(node: Node, name: str) -> TensorProto:
    """The Const's initializer: the kept original while `value` still matches it."""
    attrs = node.attr
    kept = None
    if io.TENSOR_ATTR in attrs:
        kept = TensorProto()
        kept.ParseFromString(attrs[io.TENSOR_ATTR].s)
        kept.name = name
        if "value" not in attrs or tf_tensor(kept) == attrs["value"].tensor:
            return kept
    if "value" not in attrs:
        raise io.OnnxSaveError(f"Const {node.name!r} has no value attr")
    return onnx_tensor(attrs["value"].tensor, name)


def _externalize(graph: Graph, model: ModelProto) -> list[TensorProto]:
    """Initializers to write as external data: those loaded from it, and every one of 1 KiB or
    more when the model would be too large for one protobuf message."""
    marked = {
        n.attr[io.NAME_ATTR].s.decode() if io.NAME_ATTR in n.attr else n.name
        for n in graph.nodes_by_op("Const")
        if io.EXTERNAL_ATTR in n.attr
    }
    tensors = [t for t in model.graph.initializer if t.HasField("raw_data")]
    big = sum(len(t.raw_data) for t in tensors) > EXTERNAL_ABOVE
    return [
        t for t in tensors if t.name in marked or (big and len(t.raw_data) >= EXTERNAL_MIN_TENSOR)
    ]


def _place(tensors: list[TensorProto], location: str) -> Iterator[bytes]:
    """Point each tensor at its (aligned) place in `location`; yield the file's bytes."""
    offset = 0
    for tensor in tensors:
        pad = -offset % ALIGN
        if pad:
            yield bytes(pad)
        offset += pad
        data = tensor.raw_data
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)),
                           ("length", str(len(data)))):  # fmt: skip
            tensor.external_data.add(key=key, value=value)
        offset += len(data)
        yield data


# --------------------------------------------------------------------------- value infos
def _refit(value_type: Any, shape: Any) -> None:
    """Give a tensor TypeProto the dims of a TensorShapeProto when they differ, keeping the
    symbolic names of dims that stay unknown."""
    if value_type.WhichOneof("value") != "tensor_type":
        return
    tensor = value_type.tensor_type
    new = shape_of(shape)
    old = list(tensor.shape.dim) if tensor.HasField("shape") else None
    old_dims = None if old is None else tuple(d.dim_value if d.HasField("dim_value") else -1
                                             for d in old)  # fmt: skip
    if new == old_dims:
        return
    if new is None:
        tensor.ClearField("shape")
        return
    dims = TensorShapeProto()
    for index, size in enumerate(new):
        dim = dims.dim.add()
        if size >= 0:
            dim.dim_value = size
        elif old is not None and len(old) == len(new) and not old[index].HasField("dim_value"):
            dim.CopyFrom(old[index])
    tensor.shape.CopyFrom(dims)


def _graph_input(node: Node, name: str) -> ValueInfoProto:
    """A Placeholder's ValueInfoProto: the loaded one with `dtype` and `shape` edits applied."""
    attrs = node.attr
    info = ValueInfoProto()
    if io.INPUT_ATTR in attrs:
        info.ParseFromString(attrs[io.INPUT_ATTR].s)
    else:
        info.type.tensor_type.SetInParent()
    info.name = name
    elem = io.TF_TO_ONNX.get(attrs["dtype"].type) if "dtype" in attrs else None
    if info.type.HasField("tensor_type") and elem is not None:
        if info.type.tensor_type.elem_type != elem:
            info.type.tensor_type.elem_type = elem
    elif io.INPUT_ATTR not in attrs:
        raise io.OnnxSaveError(f"Placeholder {node.name!r} has no dtype ONNX can hold")
    if "shape" in attrs:
        _refit(info.type, attrs["shape"].shape)
    return info


# --------------------------------------------------------------------------- attributes
def _onnx_attribute(key: str, value: AttrValue, node: str) -> AttributeProto:
    kind = value.WhichOneof("value")
    out = AttributeProto(name=key)
    if kind in ("i", "b"):
        out.type, out.i = AttributeProto.INT, int(getattr(value, kind))
    elif kind == "f":
        out.type, out.f = AttributeProto.FLOAT, value.f
    elif kind == "s":
        out.type, out.s = AttributeProto.STRING, value.s
    elif kind == "tensor":
        out.type = AttributeProto.TENSOR
        out.t.CopyFrom(onnx_tensor(value.tensor))
    elif kind == "list" and not (value.list.type or value.list.shape or value.list.func):
        items = value.list
        if items.f:
            out.type = AttributeProto.FLOATS
            out.floats.extend(items.f)
        elif items.s:
            out.type = AttributeProto.STRINGS
            out.strings.extend(items.s)
        elif items.tensor:
            out.type = AttributeProto.TENSORS
            out.tensors.extend(onnx_tensor(t) for t in items.tensor)
        else:  # ints, or an empty list: INTS (the commonest list attribute)
            out.type = AttributeProto.INTS
            out.ints.extend(items.i)
    else:
        raise io.OnnxSaveError(
            f"node {node!r}: attribute {key!r} holds a {kind or 'nothing'}, which no ONNX "
            "attribute type holds"
        )
    return out


def _attributes(node: Node) -> list[AttributeProto]:
    attrs = node.attr
    found: dict[str, AttributeProto] = {}
    for key in sorted(attrs):
        if key.startswith(io.ATTR_PREFIX):
            kept = AttributeProto()
            kept.ParseFromString(attrs[key].s)
            found[key[len(io.ATTR_PREFIX) :]] = kept
        elif not key.startswith("_"):
            found[key] = _onnx_attribute(key, attrs[key], node.name)
    order = []
    if io.ATTR_ORDER_ATTR in attrs:
        order = [k.decode() for k in attrs[io.ATTR_ORDER_ATTR].list.s if k.decode() in found]
    order.extend(k for k in found if k not in order)
    return [found[k] for k in order]


def _text(node: Node, key: str) -> str | None:
    return node.attr[key].s.decode() if key in node.attr else None


def _import_domains(model: ModelProto) -> None:
    """Add opset 1 of each domain a node uses that the model does not import (a plugin node
    inserted by a rule, say): the checker and runtimes refuse a node of an unimported domain."""
    imported = {e.domain or "ai.onnx" for e in model.opset_import}
    for node in model.graph.node:
        if (node.domain or "ai.onnx") not in imported:
            imported.add(node.domain)
            model.opset_import.add(domain=node.domain, version=1)


# --------------------------------------------------------------------------- the saver
class _Saver:
    """One save: settle the tensor names, then build the ModelProto's lists."""

    def __init__(self, graph: Graph, encoded: Mapping[str, NodeProto]):
        self.graph = graph
        self.encoded = encoded
        self.header = io.model_header(graph)
        nodes = list(graph)
        self.sources = [n for n in nodes if n.op in _SOURCES]
        self.ops = [n for n in nodes if n.op not in _NOT_NODES]
        self.sinks = [n for n in nodes if n.op == io.OUTPUT_OP]
        self.names: dict[TensorRef, str] = {}
        self.used: set[str] = set()
        self.outputs = {n.name: self.output_info(n) for n in self.sinks}
        self.settle_names()

    def output_info(self, sink: Node) -> ValueInfoProto:
        if len(sink.inputs) != 1 or io.OUTPUT_ATTR not in sink.attr:
            raise io.OnnxSaveError(f"graph output node {sink.name!r} needs one input and its "
                                   f"{io.OUTPUT_ATTR} attr")  # fmt: skip
        info = ValueInfoProto()
        info.ParseFromString(sink.attr[io.OUTPUT_ATTR].s)
        return info

    def settle_names(self) -> None:
        wanted: dict[str, TensorRef] = {}  # output name -> the tensor its sink reads
        for sink in self.sinks:
            wanted.setdefault(self.outputs[sink.name].name, sink.inputs[0])
        for node in self.sources:
            name = _text(node, io.NAME_ATTR) or node.name
            ref = TensorRef(node.name, 0)
            if wanted.get(name, ref) != ref:
                raise io.OnnxSaveError(
                    f"graph output {name!r} has the name of a graph input or initializer "
                    "but reads another tensor; rename the output"
                )
            self.names[ref] = name
            self.used.add(name)
        for node in self.ops:
            stored = node.attr[io.OUTPUTS_ATTR].list.s if io.OUTPUTS_ATTR in node.attr else []
            for port, raw in enumerate(stored):
                name, ref = raw.decode(), TensorRef(node.name, port)
                if name and name not in self.used and wanted.get(name, ref) == ref:
                    self.names[ref] = name
                    self.used.add(name)
        for name, ref in wanted.items():
            producer = self.graph.get(ref.node)
            if ref not in self.names and producer is not None and producer.op not in _NOT_NODES:
                self.names[ref] = name
            self.used.add(name)

    def tensor(self, ref: TensorRef, reader: str) -> str:
        """The ONNX name of tensor `ref` (`""` for an empty optional input)."""
        found = self.names.get(ref)
        if found is not None:
            return found
        producer = self.graph.get(ref.node)
        if producer is None or producer.op in (io.MODEL_OP, io.OUTPUT_OP):
            raise io.OnnxSaveError(f"{reader!r} reads {ref}, which no node produces")
        if producer.op == io.NONE_OP:
            return ""
        if producer.op in _SOURCES:
            raise io.OnnxSaveError(f"{reader!r} reads {ref}: {ref.node!r} has one output")
        base = str(ref)
        name, count = base, 0
        while name in self.used:
            count += 1
            name = f"{base}_{count}"
        self.used.add(name)
        self.names[ref] = name
        return name

    def model(self) -> ModelProto:
        model = self.header
        graph = model.graph
        orphans = list(graph.value_info)
        graph.ClearField("value_info")
        graph.node.extend(self.node(n) for n in self.ordered())
        graph.initializer.extend(
            _initializer(n, self.names[TensorRef(n.name, 0)])
            for n in self.sources
            if n.op == "Const"
        )
        for node in self.sources:
            if node.op == io.SPARSE_OP:
                graph.sparse_initializer.add().ParseFromString(node.attr[io.SPARSE_ATTR].s)
        graph.input.extend(self.graph_inputs())
        for sink in self.sinks:
            info = self.outputs[sink.name]
            tensor = self.tensor(sink.inputs[0], sink.name)
            if tensor != info.name:
                graph.node.add(name=sink.name, op_type="Identity", input=[tensor],
                               output=[info.name])  # fmt: skip
            graph.output.append(info)
        graph.value_info.extend(self.value_infos(orphans))
        _import_domains(model)
        return model

    def ordered(self) -> list[Node]:
        """The nodes in graph order, but producers moved before their consumers."""
        ops = {n.name: n for n in self.ops}
        done: dict[str, bool] = {}  # False: on the stack, True: placed
        out: list[Node] = []

        def before(node: Node) -> Iterator[str]:
            for name in [r.node for r in node.inputs] + list(node.controls):
                if name in ops:
                    yield name

        for start in self.ops:
            if start.name in done:
                continue
            done[start.name] = False
            stack = [(start, before(start))]
            while stack:
                node, pending = stack[-1]
                for name in pending:
                    if not done.get(name, True) and name in done:
                        raise io.OnnxSaveError(f"the graph has a cycle through {name!r}")
                    if name not in done:
                        done[name] = False
                        stack.append((ops[name], before(ops[name])))
                        break
                else:
                    stack.pop()
                    done[node.name] = True
                    out.append(node)
        return out

    def node(self, node: Node) -> NodeProto:
        out = NodeProto(op_type=node.op)
        name = _text(node, io.NAME_ATTR)
        name = node.name if name is None else name
        if name:
            out.name = name
        domain = _text(node, io.DOMAIN_ATTR)
        if domain is not None:
            out.domain = domain
        out.input.extend(self.tensor(r, node.name) for r in node.inputs)
        stored = node.attr[io.OUTPUTS_ATTR].list.s if io.OUTPUTS_ATTR in node.attr else None
        used = self.graph.used_ports(node.name)
        count = max(len(stored) if stored is not None else 1, used[-1] + 1 if used else 0)
        for port in range(count):
            ref = TensorRef(node.name, port)
            known = ref in self.names or port in used or stored is None or bool(stored[port])
            out.output.append(self.tensor(ref, node.name) if known else "")
        given = self.encoded.get(node.name)
        if given is not None:
            out.op_type, out.domain = given.op_type, given.domain
            out.attribute.extend(given.attribute)
        else:
            out.attribute.extend(_attributes(node))
        if io.NODE_EXTRA_ATTR in node.attr:
            out.MergeFromString(node.attr[io.NODE_EXTRA_ATTR].s)
        return out

    def graph_inputs(self) -> list[ValueInfoProto]:
        """Placeholders in graph order, with initializers that were inputs at their index."""
        found = [
            _graph_input(n, self.names[TensorRef(n.name, 0)])
            for n in self.sources
            if n.op == "Placeholder"
        ]
        extra = sorted(
            (n.attr[io.INPUT_INDEX_ATTR].i, n)
            for n in self.sources
            if n.op == "Const" and io.INPUT_INDEX_ATTR in n.attr
        )
        for index, node in extra:
            info = ValueInfoProto()
            info.ParseFromString(node.attr[io.INPUT_ATTR].s)
            info.name = self.names[TensorRef(node.name, 0)]
            found.insert(index, info)
        return found

    def value_infos(self, orphans: list[ValueInfoProto]) -> list[ValueInfoProto]:
        """The recorded value_info (shapes edited in `_output_shapes` applied), in the loaded
        order, then those of tensors that came later."""
        found = {v.name: v for v in orphans}
        for node in self.sources + self.ops:
            if io.VALUE_INFO_ATTR not in node.attr:
                continue
            shapes = node.attr[io.SHAPES_ATTR].list.shape if io.SHAPES_ATTR in node.attr else []
            for port, raw in enumerate(node.attr[io.VALUE_INFO_ATTR].list.s):
                if not raw:
                    continue
                info = ValueInfoProto()
                info.ParseFromString(raw)
                info.name = self.tensor(TensorRef(node.name, port), node.name)
                if port < len(shapes) and node.op not in _SOURCES:
                    _refit(info.type, shapes[port])
                found[info.name] = info
        header = self.graph.nodes_by_op(io.MODEL_OP)[0]
        order = [n.decode() for n in header.attr["value_info_order"].list.s]
        ordered = [found.pop(n) for n in order if n in found]
        return ordered + list(found.values())
