"""Plugin nodes: find them in a graph, check their fields, encode them as ONNX attributes.

A plugin node has `op` = creator name and one attr per schema field (which nodes are plugin
nodes: `surgery.ops.plugin_identity`; TensorFlow's own `CropAndResize` is none). In ONNX it becomes
a node of domain `PLUGIN_DOMAIN` whose op type is the creator name and whose attributes are the
fields plus `plugin_version`/`plugin_namespace`, the two keys TensorRT's ONNX parser uses to look
the creator up in its plugin registry. Types are exact: int32 -> INT(S), float32 -> FLOAT(S),
string -> STRING; int8/int16/float16/float64 travel as TENSOR attributes of that dtype (the parser
maps a tensor attribute's dtype to the plugin field type), bool as INT 0/1.

For a TensorRT target (`surgery.ops.targets`) the op type and version are those that target's plugin
library registers (TensorRT 11 has CropAndResize only as `CropAndResizeDynamic` version 2);
without one, or where the library lacks the plugin, the catalog's, which surgery's own creators
register.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from surgery.errors import RuleError, SurgeryError
from surgery.ir.attrs import attr_value
from surgery.ir.graph import Graph
from surgery.ir.node import Node
from surgery.ops.plugin_identity import plugin_schema_of
from surgery.ops.plugin_schema import Catalog, PluginSchema, coerce_field
from surgery.ops.targets import creator_versions, export_creator

VERSION_ATTR = "plugin_version"
NAMESPACE_ATTR = "plugin_namespace"
_TENSOR_TYPES = {"int8": np.int8, "int16": np.int16, "float16": np.float16, "float64": np.float64}


class PluginFieldError(SurgeryError):
    """A plugin node whose fields do not fit its schema; the message names node and field."""


@dataclass(frozen=True)
class PluginNode:
    """One plugin node of a graph: its name, schema and coerced field values (defaults filled),
    and the creator name and version its ONNX node carries."""

    name: str
    schema: PluginSchema
    fields: dict[str, Any]
    creator: str = ""  # "": the schema's name
    version: str = ""  # "": the schema's version

    @property
    def onnx_op(self) -> str:
        """The ONNX op type: the creator name TensorRT looks up."""
        return self.creator or self.schema.name

    @property
    def onnx_version(self) -> str:
        """The `plugin_version` attribute."""
        return self.version or self.schema.version


def plugin_fields(node: Node, schema: PluginSchema) -> dict[str, Any]:
    """The node's field values coerced by the schema; PluginFieldError naming node and field.

    Attrs starting with `_` are not fields and are ignored: TF's own (`_output_shapes`) and the
    side inputs a collapse recorded (`_side_<role>`, `surgery.ir.ports.SIDE_ATTR_PREFIX`), which
    only validate reads. Any other attr that is not a field is an error.
    """
    values: dict[str, Any] = {}
    known = {f.name for f in schema.fields}
    for key in node.attr:
        if key.startswith("_") or key in known:
            continue
        raise PluginFieldError(
            f"node {node.name!r} ({schema.name}): attr {key!r} is not a field of the plugin "
            f"(fields: {', '.join(sorted(known)) or 'none'})"
        )
    for spec in schema.fields:
        if spec.name in node.attr:
            raw = attr_value(node.attr[spec.name])
            if not spec.is_scalar and not isinstance(raw, list):
                raw = [raw]  # a one-element list stored as a scalar attr
        elif spec.default is not None:
            raw = spec.default
        elif spec.required:
            raise PluginFieldError(
                f"node {node.name!r} ({schema.name}): required field {spec.name!r} "
                f"({spec.describe()}) is missing"
            )
        else:
            continue
        try:
            values[spec.name] = coerce_field(schema, spec, raw)
        except RuleError as exc:
            raise PluginFieldError(f"node {node.name!r}: {exc}") from None
    return values


def find_plugin_nodes(
    graph: Graph, catalog: Catalog, target: str | None = None, *, use_tf: bool = True
) -> list[PluginNode]:
    """Every plugin node (`plugin_schema_of`: a catalog op, and not TensorFlow's op of the same
    name, such as `CropAndResize` with attrs `T`, `method`), in graph order, fields checked,
    with the creator name and version `target` expects (`surgery.ops.targets.export_creator`)."""
    found = []
    for node in graph:
        schema = plugin_schema_of(node, catalog, use_tf=use_tf)
        if schema is not None:
            creator, version = export_creator(schema, target)
            found.append(PluginNode(node.name, schema, plugin_fields(node, schema), creator,
                                    version))  # fmt: skip
    return found


def onnx_attributes(plugin: PluginNode) -> list[Any]:
    """ONNX AttributeProtos for the plugin's fields plus plugin_version/plugin_namespace."""
    from surgery.ir.onnx_pb import AttributeProto as A

    attrs = []
    for spec in plugin.schema.fields:
        if spec.name not in plugin.fields:
            continue
        value = plugin.fields[spec.name]
        if spec.type in _TENSOR_TYPES:  # onnx's converter (and `import onnx`) only for these
            from onnx import helper, numpy_helper

            array = np.asarray(value, dtype=_TENSOR_TYPES[spec.type])
            attrs.append(helper.make_attribute(spec.name, numpy_helper.from_array(array)))
            continue
        kind = _attr_kind(spec.type, spec.is_scalar)
        if spec.type == "bool":
            value = int(value) if spec.is_scalar else [int(v) for v in value]
        attrs.append(_attribute(spec.name, value, kind))
    attrs.append(_attribute(VERSION_ATTR, plugin.onnx_version, A.STRING))
    attrs.append(_attribute(NAMESPACE_ATTR, plugin.schema.namespace, A.STRING))
    return attrs


def _attribute(name: str, value: Any, kind: int) -> Any:
    """An AttributeProto of a number, a string or a list of them, of type `kind`: what
    `onnx.helper.make_attribute(name, value, attr_type=kind)` makes (the type follows the value:
    an integral number INT, a real one FLOAT, str or bytes STRING (UTF-8), any other iterable the
    list `kind`), without importing onnx's helpers (and ml_dtypes) on every `surgery apply`.
    TypeError where the value's type is not `kind`, as there."""
    from surgery.ir.onnx_pb import AttributeProto as A

    attr = A(name=name)
    if isinstance(value, numbers.Integral):
        attr.i, attr.type = int(value), A.INT
    elif isinstance(value, numbers.Real):
        attr.f, attr.type = float(value), A.FLOAT
    elif isinstance(value, (str, bytes)):
        attr.s, attr.type = _utf8(value), A.STRING
    elif isinstance(value, Iterable) and kind in (A.INTS, A.FLOATS, A.STRINGS):
        if kind == A.INTS:
            attr.ints.extend(value)
            attr.type = A.INTS
        elif kind == A.FLOATS:
            attr.floats.extend(value)
            attr.type = A.FLOATS
        else:
            attr.strings.extend(_utf8(v) for v in value)
            attr.type = A.STRINGS
    else:
        raise TypeError(f"plugin attribute {name!r}: {value!r} is no {A.AttributeType.Name(kind)}")
    if attr.type != kind:
        raise TypeError(
            f"plugin attribute {name!r}: a {A.AttributeType.Name(attr.type)} value ({value!r}) "
            f"where the field is {A.AttributeType.Name(kind)}"
        )
    return attr


def _utf8(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _attr_kind(field_type: str, scalar: bool) -> int:
    """The ONNX AttributeProto type that carries a field of `field_type`."""
    from surgery.ir.onnx_pb import AttributeProto as A

    if field_type in ("int32", "bool"):
        return A.INT if scalar else A.INTS
    if field_type == "float32":
        return A.FLOAT if scalar else A.FLOATS
    return A.STRING if scalar else A.STRINGS


def decode_attributes(node: Any) -> dict[str, Any]:
    """An ONNX node's attributes as Python values (tensors as arrays)."""
    from onnx import helper, numpy_helper

    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if hasattr(value, "dims"):
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode("utf-8", "replace") for v in value]
        out[attr.name] = value
    return out


def check_onnx_plugin_node(node: Any, schema: PluginSchema) -> dict[str, Any]:
    """Check an ONNX custom node's attributes against the schema; the coerced field values."""
    from onnx import AttributeProto as A

    label = f"ONNX node {node.name or node.op_type!r} ({schema.name})"
    values = decode_attributes(node)
    versions = creator_versions(schema, node.op_type)  # the catalog's, its targets' libraries'
    version = values.pop(VERSION_ATTR, versions[0] if versions else schema.version)
    values.pop(NAMESPACE_ATTR, None)
    if str(version) not in versions:
        raise PluginFieldError(
            f"{label}: plugin_version {version!r} of {node.op_type}, but the catalog knows "
            f"version(s) {', '.join(versions) or 'none'} of it (plugins/catalog/{schema.name}.json)"
        )
    kinds = {a.name: a.type for a in node.attribute}
    fields: dict[str, Any] = {}
    known = {f.name for f in schema.fields}
    for key in values:
        if key not in known:
            raise PluginFieldError(f"{label}: attribute {key!r} is not a field of the plugin")
    for spec in schema.fields:
        if spec.name not in values:
            if spec.required and spec.default is None:
                raise PluginFieldError(
                    f"{label}: required field {spec.name!r} ({spec.describe()}) is missing"
                )
            continue
        value = values[spec.name]
        kind = kinds[spec.name]
        expected = None if spec.type in _TENSOR_TYPES else _attr_kind(spec.type, spec.is_scalar)
        if expected is not None and kind != expected:
            raise PluginFieldError(
                f"{label}: field {spec.name!r} expects {spec.describe()} "
                f"(ONNX {A.AttributeType.Name(expected)}), got {A.AttributeType.Name(kind)}"
            )
        if expected is None and kind != A.TENSOR:
            raise PluginFieldError(
                f"{label}: field {spec.name!r} expects a {spec.describe()} tensor attribute, "
                f"got {A.AttributeType.Name(kind)}"
            )
        try:
            fields[spec.name] = coerce_field(schema, spec, value)
        except RuleError as exc:
            raise PluginFieldError(f"{label}: {exc}") from None
    return fields
