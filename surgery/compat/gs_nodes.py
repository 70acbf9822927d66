"""graphsurgeon's free functions: create_node, create_plugin_node, update_node, shape, numpy values.

Attributes are typed through `surgery.ir.attrs` (a bool is a bool, never an int); plugin fields get
the type suffixes UFF's parser expected (`_u_int`, `_u_float`, `_u_bool`, `_u_str`, `_u_ilist`,
`_u_flist`), so old configs produce the same field names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from surgery.errors import GraphError
from surgery.ir import tensor_values
from surgery.ir.attrs import AttrError, infer_kind, make_attr
from surgery.ir.protos import AttrValue, NodeDef

#: attribute kind -> field-name suffix a TensorRT plugin field carried for UFF.
PLUGIN_SUFFIX = {
    "int": "_u_int",
    "float": "_u_float",
    "bool": "_u_bool",
    "string": "_u_str",
    "list(int)": "_u_ilist",
    "list(float)": "_u_flist",
    "list(string)": "_u_slist",
    "list(bool)": "_u_blist",
}


def is_node_def(obj: Any) -> bool:
    """True for our NodeDef and for TensorFlow's own NodeDef class (duck-typed, no TF import)."""
    return isinstance(obj, NodeDef) or (
        type(obj).__name__ == "NodeDef" and hasattr(obj, "SerializeToString")
    )


def as_node_def(obj: Any) -> NodeDef:
    """Our NodeDef for `obj` (TensorFlow's NodeDef is converted through its bytes)."""
    if isinstance(obj, NodeDef):
        return obj
    if is_node_def(obj):
        out = NodeDef()
        out.ParseFromString(obj.SerializeToString())
        return out
    raise GraphError(f"expected a NodeDef, got {type(obj).__name__} {obj!r:.60}")


def _set_attr(node: Any, key: str, attr: AttrValue) -> None:
    """Store `attr` under `key`, whether `node` is our NodeDef or TensorFlow's."""
    target = node.attr[key]
    if isinstance(target, AttrValue):
        target.CopyFrom(attr)
    else:
        target.Clear()
        target.ParseFromString(attr.SerializeToString())


def _is_dtype(value: Any) -> bool:
    return isinstance(getattr(value, "as_datatype_enum", None), int) or isinstance(value, np.dtype)


def _input_names(value: Any, node_name: str) -> list[str]:
    if isinstance(value, str) or is_node_def(value):
        value = [value]
    if not isinstance(value, Iterable):
        raise AttrError(f"node {node_name!r}: inputs must be a list of nodes or names")
    names = []
    for item in value:
        if is_node_def(item):
            names.append(item.name)
        elif isinstance(item, str):
            names.append(item)
        else:
            raise AttrError(
                f"node {node_name!r}: input {item!r} is neither a NodeDef nor a name string"
            )
    return names


def update_node(
    node: Any,
    name: str | None = None,
    op: str | None = None,
    trt_plugin: bool = False,
    **kwargs: Any,
) -> Any:
    """Set name, op, inputs and typed attributes of an existing NodeDef; returns the node."""
    node.name = name or node.name
    node.op = op or node.op or node.name
    for key, value in kwargs.items():
        if key == "inputs":
            node.input.extend(_input_names(value, node.name))
            continue
        if key == "dtype" or _is_dtype(value):
            _set_attr(node, key, make_attr(value, "type", field=f"{node.name}.{key}"))
            continue
        if key == "shape":
            _set_attr(node, key, make_attr(value, "shape", field=f"{node.name}.{key}"))
            continue
        if isinstance(value, np.ndarray):
            _set_attr(node, key, make_attr(value, "tensor", field=f"{node.name}.{key}"))
            continue
        field = f"{node.name}.{key}"
        kind = infer_kind(list(value) if isinstance(value, tuple) else value, field=field)
        attr_name = key
        if trt_plugin:
            suffix = PLUGIN_SUFFIX.get(kind)
            if suffix is None:
                raise AttrError(f"field {field!r}: a plugin field cannot hold a {kind}")
            attr_name = key + suffix
        _set_attr(node, attr_name, make_attr(value, kind, field=field))
    return node


def create_node(
    name: str, op: str | None = None, trt_plugin: bool = False, **kwargs: Any
) -> NodeDef:
    """A free-standing NodeDef (not yet in any graph) with typed attributes."""
    return update_node(NodeDef(), name, op, trt_plugin, **kwargs)


def create_plugin_node(name: str, op: str | None = None, **kwargs: Any) -> NodeDef:
    """A free-standing plugin NodeDef: fields carry UFF type suffixes; dtype/shape stay plain."""
    return create_node(name, op, trt_plugin=True, **kwargs)


def shape(node: Any) -> tuple[int, ...] | None:
    """The `shape` attribute of a node (e.g. a Placeholder) as a tuple; None for unknown rank."""
    if "shape" not in node.attr:
        raise GraphError(f"node {node.name!r} ({node.op}) has no 'shape' attribute")
    return tensor_values.shape_of(node.attr["shape"].shape)


def extract_numpy_array(node: Any) -> np.ndarray:
    """The value of a Const node as a numpy array of its declared shape and dtype."""
    if "value" not in node.attr or node.attr["value"].WhichOneof("value") != "tensor":
        raise GraphError(f"node {node.name!r} ({node.op}) has no tensor 'value' attribute")
    tensor = node.attr["value"].tensor
    try:
        return tensor_values.to_numpy(tensor)
    except tensor_values.TensorValueError as exc:
        raise GraphError(f"node {node.name!r}: {exc}") from None
