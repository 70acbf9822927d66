"""Plugin name -> NumPy reference implementation, with the plugin's schema and its field values.

`reference("LReLU_TRT")` gives a `Reference` (schema + function); `node_fields(schema, node)` reads
a plugin node's attrs as typed field values (schema defaults for optional fields left out);
`run_node(node, inputs)` does both and runs the reference.

A schema's `side_inputs` and `deviations` name functions of the plugin's reference module (the
module of its function in `REFERENCES`): `implied_value(op, role, ctx)` runs a side input's,
`deviations(node, inputs)` every deviation's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.reference._common import PluginFields, PluginReferenceError, SideContext, SideValue
from plugins.reference.batched_nms import batched_nms
from plugins.reference.crop_and_resize import crop_and_resize
from plugins.reference.detection_layer import detection_layer
from plugins.reference.flatten_concat import flatten_concat
from plugins.reference.grid_anchor import grid_anchor
from plugins.reference.l2norm import l2norm
from plugins.reference.lrelu import lrelu
from plugins.reference.nms import nms
from plugins.reference.normalize import normalize
from plugins.reference.proposal import proposal
from plugins.reference.proposal_layer import proposal_layer
from plugins.reference.pyramid_roi_align import pyramid_roi_align
from plugins.reference.resize_nearest import resize_nearest
from plugins.reference.roi_align import roi_align
from plugins.reference.special_slice import special_slice
from surgery.errors import SurgeryError
from surgery.ops.plugin_schema import PluginSchema, coerce_field, load_catalog

__all__ = ["REFERENCES", "PluginFields", "PluginReferenceError", "Reference", "SideContext",
           "SideValue", "deviations", "full_fields", "has_reference", "implied_value",
           "node_fields", "reference", "reference_function", "run_node"]  # fmt: skip

RefFn = Callable[[list[np.ndarray], dict[str, Any]], list[np.ndarray]]
SideFn = Callable[[SideContext], SideValue]
DeviationFn = Callable[[list[np.ndarray], dict[str, Any]], "str | None"]

REFERENCES: dict[str, RefFn] = {
    "LReLU_TRT": lrelu,
    "ResizeNearest_TRT": resize_nearest,
    "Normalize_TRT": normalize,
    "ProposalLayer_TRT": proposal_layer,
    "PyramidROIAlign_TRT": pyramid_roi_align,
    "DetectionLayer_TRT": detection_layer,
    "SpecialSlice_TRT": special_slice,
    "GridAnchor_TRT": grid_anchor,
    "NMS_TRT": nms,
    "FlattenConcat_TRT": flatten_concat,
    "CropAndResize": crop_and_resize,
    "Proposal": proposal,
    "L2Norm_Surgery": l2norm,
    "ROIAlign_TRT": roi_align,
    "BatchedNMS_Surgery": batched_nms,
}


@dataclass(frozen=True)
class Reference:
    """A plugin's schema and its NumPy reference function."""

    schema: PluginSchema
    fn: RefFn

    @property
    def name(self) -> str:
        """The creator name."""
        return self.schema.name

    def __call__(self, inputs: Sequence[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
        """Run the reference; missing optional fields take their schema defaults."""
        full = {spec.name: spec.default for spec in self.schema.fields}
        full.update(fields)
        missing = [s.name for s in self.schema.fields if s.required and full.get(s.name) is None]
        if missing:
            raise PluginReferenceError(
                f"{self.name}: required field(s) missing: {', '.join(missing)}"
            )
        outputs = self.fn([np.asarray(x) for x in inputs], full)
        return [np.asarray(y) for y in outputs]


def has_reference(name: str) -> bool:
    """Whether plugin `name` has a reference implementation."""
    return name in REFERENCES


def reference(name: str) -> Reference:
    """The reference of plugin `name`; PluginReferenceError if it has none or no schema."""
    fn = REFERENCES.get(name)
    if fn is None:
        known = ", ".join(sorted(REFERENCES))
        raise PluginReferenceError(f"plugin {name} has no reference implementation (have: {known})")
    try:
        schema = load_catalog().get(name)
    except SurgeryError as exc:
        raise PluginReferenceError(f"plugin {name} has a reference but no schema: {exc}") from None
    return Reference(schema, fn)


def node_fields(schema: PluginSchema, node: Any) -> dict[str, Any]:
    """A plugin node's field values, coerced by the schema; unknown attrs are ignored."""
    from surgery.ir.attrs import attr_value

    fields: dict[str, Any] = {}
    for spec in schema.fields:
        if spec.name in node.attr:
            value = attr_value(node.attr[spec.name])
            if not spec.is_scalar and not isinstance(value, list):
                value = [value]  # a one-element list stored as a scalar attr
            try:
                fields[spec.name] = coerce_field(schema, spec, value)
            except SurgeryError as exc:
                raise PluginReferenceError(f"node {node.name}: {exc}") from None
        elif spec.required:
            raise PluginReferenceError(
                f"node {node.name} ({schema.name}) lacks required field '{spec.name}'"
            )
    return fields


def run_node(node: Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run the reference of plugin node `node` (op = creator name) on its input values."""
    ref = reference(node.op)
    return ref(inputs, node_fields(ref.schema, node))


def reference_function(op: str, name: str) -> Callable[..., Any]:
    """Function `name` of plugin `op`'s reference module (a side input's or a deviation's)."""
    fn = REFERENCES.get(op)
    if fn is None:
        raise PluginReferenceError(f"plugin {op} has no reference implementation")
    found = getattr(sys.modules[fn.__module__], name, None)
    if not callable(found):
        raise PluginReferenceError(
            f"plugin {op}: its schema names {name!r}, which {fn.__module__} does not define"
        )
    return found


def full_fields(schema: PluginSchema, node: Any) -> dict[str, Any]:
    """`node_fields` with the schema's defaults filled in for optional fields left out."""
    values = {spec.name: spec.default for spec in schema.fields}
    values.update(node_fields(schema, node))
    return values


def implied_value(op: str, role: str, ctx: SideContext) -> SideValue:
    """The value plugin `op`'s side input `role` implies for the tensor it replaced."""
    schema = reference(op).schema
    side = schema.side_input(role)
    if side is None:
        declared = ", ".join(s.name for s in schema.side_inputs) or "none"
        raise PluginReferenceError(
            f"node {ctx.node}: plugin {op} declares no side input {role!r} (side inputs: "
            f"{declared})"
        )
    fn: SideFn = reference_function(op, side.reference)
    result = fn(ctx)
    return SideValue(np.asarray(result.value), result.how)


def deviations(node: Any, inputs: Sequence[np.ndarray]) -> list[tuple[str, str]]:
    """(name, what it touches) of every declared deviation of plugin node `node` that applies
    to these input values."""
    ref = reference(node.op)
    fields = full_fields(ref.schema, node)
    found = []
    for spec in ref.schema.deviations:
        fn: DeviationFn = reference_function(node.op, spec.reference)
        size = fn([np.asarray(x) for x in inputs], fields)
        if size:
            found.append((spec.name, size))
    return found
