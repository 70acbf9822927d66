"""Whether a graph node is a plugin node: decided per node, never by its op name alone.

A plugin node has `op` = the creator name and one attr per schema field
(`surgery.ops.plugin_schema`). Most creator names are no TensorFlow op (`LReLU_TRT`), but the
catalog's `CropAndResize` is also TensorFlow's op (`tf.image.crop_and_resize`), which every
ROI-align model holds before any rewrite. Where a catalog name is an op that TensorFlow (or the
built-in op table) defines, the attrs tell the two apart: TensorFlow's node carries its op's attrs
(`T`, `method`, `extrapolation_value`), the plugin node only schema fields, besides the
`_`-prefixed attrs that are never fields (`_output_shapes`, a collapse's `_side_<role>`, a clamped
field's `_clamped_<field>`). Export, validate, support, the views and the rule engine's `set` all
ask `plugin_schema_of`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from surgery.ops import opdefs
from surgery.ops.plugin_schema import Catalog, PluginSchema

__all__ = ["field_attrs", "is_plugin_node", "plugin_schema_of", "tf_required_attrs"]


def field_attrs(node: Any) -> set[str]:
    """The node's attrs that could be plugin fields: all but the `_`-prefixed ones."""
    return {key for key in node.attr if not key.startswith("_")}


@functools.cache
def tf_required_attrs(op: str) -> frozenset[str]:
    """The attrs TensorFlow's definition of `op` requires (no default value: `T` of
    CropAndResize); empty when TensorFlow is not installed or does not define `op`."""
    if not opdefs.tensorflow_available():
        return frozenset()
    try:
        from tensorflow.python.framework import op_def_registry
    except ImportError:
        return frozenset()
    op_def = op_def_registry.get(op)
    if op_def is None:
        return frozenset()
    return frozenset(a.name for a in op_def.attr if not a.HasField("default_value"))


def plugin_schema_of(
    node: Any, catalog: Catalog | Mapping[str, PluginSchema], *, use_tf: bool = True
) -> PluginSchema | None:
    """The schema of the plugin `node` is (anything with `.op` and `.attr`: a graph Node, a
    NodeDef), or None when it is no plugin node.

    It is one when its op is in `catalog` and either TensorFlow does not define that op (the
    built-in op table, and TensorFlow's registry unless `use_tf` is false), or the node's attrs
    are the plugin's rather than the TF op's: every non-`_` attr is a schema field, and the node
    lacks one of the attrs TensorFlow's op requires (TensorFlow's `CropAndResize` always carries
    `T`, which the plugin has no field for).
    """
    op = node.op
    if op not in catalog:
        return None
    schema = catalog.get(op)
    if schema is None or not opdefs.is_known(op, use_tf=use_tf):
        return schema
    attrs = field_attrs(node)
    if attrs - {spec.name for spec in schema.fields}:
        return None  # attrs the plugin has no field for: TensorFlow's op
    required = tf_required_attrs(op) if use_tf else frozenset()
    if required and required <= attrs:
        return None  # everything TensorFlow's op needs, and only names the plugin shares
    return schema


def is_plugin_node(
    node: Any, catalog: Catalog | Mapping[str, PluginSchema], *, use_tf: bool = True
) -> bool:
    """Whether `node` is a plugin node of `catalog` (see `plugin_schema_of`)."""
    return plugin_schema_of(node, catalog, use_tf=use_tf) is not None
