"""ONNX models in the Graph IR: `load_onnx` makes a `Graph` of NodeDefs, `save_onnx` writes it back.

The rule engine edits TensorFlow NodeDefs; so that the same rules can edit ONNX models, an ONNX
ModelProto is mapped onto NodeDefs in a way that an unedited load -> save gives back the same
model (same nodes in the same order, names, attributes, initializers byte for byte, graph inputs,
outputs, value_info, opsets and model header). The mapping:

* Each NodeProto -> one NodeDef with op = op_type. Its output tensor names are the list attr
  `_onnx_outputs` (`""` for an omitted optional output); a consumer's input is `producer:port`
  where `port` indexes that list. A domain the NodeProto sets (`trt.plugins` for plugins, or
  any other, even `""`) is `_onnx_domain`. Nameless nodes are named after their first output
  tensor, else `<op_type>_<index>`; a leading `/` is stripped (exporters' `/backbone/conv/Conv`
  becomes the scope path `backbone/conv/Conv`), a trailing `:<digits>` becomes `_<digits>` (it
  would read as a port) and clashes get a `_<n>` suffix; whenever the NodeDef's name is not the
  ONNX name, `_onnx_name` keeps the ONNX one (`""` for a nameless node) for the save.
* Attributes: INT -> i, FLOAT -> f, STRING -> s, non-empty INTS/FLOATS/STRINGS -> list, an
  unnamed TENSOR in raw or string form -> tensor. Anything else (graphs of If/Loop/Scan, empty
  lists, typed-field tensors, sparse tensors, type protos, names starting with `_`, a doc string)
  is kept whole, serialized, as `_onnx_attr:<name>`. `_onnx_attr_order` keeps the attribute
  order when it is not alphabetical. Other NodeProto fields (doc_string, metadata_props, ...)
  ride in `_onnx_node_extra` (a serialized NodeProto holding only those).
* A tensor a subgraph reads from the enclosing graph is a control input of the node holding the
  subgraph (so the producer counts as read and sorts before it); saves drop control inputs.
* Empty optional inputs (`Resize(X, "", scales)`) read port 0 of one node of op `_OnnxNone`
  (named `_onnx_none`), so that later inputs keep their slots; it is made only when needed.
* Initializers -> `Const` nodes (name = initializer name) with `dtype` and `value` (a TF
  TensorProto whose tensor_content holds the raw bytes). An initializer stored other than as
  raw (or string) data keeps its original in `_onnx_tensor`, written back while `value` still
  matches it; one of a type TensorFlow lacks (float8, int4, ...) has only `_onnx_tensor`, no
  `value`. External data is read at load (relative to the model's folder; a missing file is a
  ModelLoadError naming it); such Consts carry `_onnx_external` (the source data file) and go
  back to external data, in `<output>.data`. An initializer that is also a graph input carries
  `_onnx_input` (its serialized ValueInfoProto) and `_onnx_input_index`. Sparse initializers
  are nodes of op `_OnnxSparseInitializer` holding the serialized proto in `_onnx_sparse`.
* Other graph inputs -> `Placeholder` nodes with `dtype`, `shape` (-1 for a dynamic dim) and
  `_onnx_input`, the original ValueInfoProto: symbolic dim names and doc strings come back from
  it, and edits to `dtype`/`shape` are applied to it on save.
* Graph outputs -> one sink node each, op `_OnnxOutput`, named `_onnx_output/<name>`, whose
  only input is the producing tensor and whose `_onnx_output` attr is the output's serialized
  ValueInfoProto. Sinks are never read, so `Graph.graph_outputs()` lists them (and the header).
  On save a new node's tensor read by a sink takes the output's name; any other tensor with
  another name gets an `Identity` to the output's name, so a rule that replaces a producer keeps
  the model's interface.
* value_info -> `_output_shapes` (one TensorShapeProto per port, unknown rank where none) on the
  producing node, plus `_onnx_value_info` (serialized ValueInfoProto per port, `b""` where
  none); save writes those back, with shapes edited in `_output_shapes` applied. Output shapes
  also fill `_output_shapes` (but add no value_info).
* The model header (ir_version, opset_import, producer, domain, model_version, doc_string,
  metadata_props, functions, and the graph's name, doc_string and other non-list fields) is
  the serialized ModelProto, emptied of the graph's node/initializer/input/output/value_info
  lists, in attr `model` of one node of op `_OnnxModel` named `_onnx_model`; its attr
  `value_info_order` keeps the order of value_info. A node survives `Graph.copy()`.

Save sorts nodes topologically only where edits put a producer after its consumer (otherwise it
keeps graph order) and imports opset 1 of any domain a node uses that the model does not import
(a plugin node a rule inserted). Not kept: control inputs, and ModelProto fields the installed
onnx does not know.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from surgery.errors import SurgeryError
from surgery.ir.graph import Graph
from surgery.ir.protos import types_pb2

MODEL_OP = "_OnnxModel"
NONE_OP = "_OnnxNone"
OUTPUT_OP = "_OnnxOutput"
SPARSE_OP = "_OnnxSparseInitializer"
PLUGIN_DOMAIN = "trt.plugins"

OUTPUTS_ATTR = "_onnx_outputs"
DOMAIN_ATTR = "_onnx_domain"
NAME_ATTR = "_onnx_name"
ATTR_PREFIX = "_onnx_attr:"
ATTR_ORDER_ATTR = "_onnx_attr_order"
NODE_EXTRA_ATTR = "_onnx_node_extra"
TENSOR_ATTR = "_onnx_tensor"
EXTERNAL_ATTR = "_onnx_external"
INPUT_ATTR = "_onnx_input"
INPUT_INDEX_ATTR = "_onnx_input_index"
OUTPUT_ATTR = "_onnx_output"
SPARSE_ATTR = "_onnx_sparse"
VALUE_INFO_ATTR = "_onnx_value_info"
SHAPES_ATTR = "_output_shapes"

BOOKKEEPING_ATTRS = frozenset({
    OUTPUTS_ATTR, NAME_ATTR, ATTR_ORDER_ATTR, NODE_EXTRA_ATTR, VALUE_INFO_ATTR,
    "value_info_order",
})  # fmt: skip
"""Attrs that record how an ONNX node was written (names, orders, value_info): not the node's
meaning, so diffs and reports leave them out."""


def shown_attrs(node: Any) -> list[str]:
    """The attr keys of `node` a person reads (sorted): not the bookkeeping above, nor the
    serialized protos the save writes back (inputs', outputs' and initializers' own records);
    attributes kept whole (`_onnx_attr:body`) by their ONNX name's key."""
    hidden = BOOKKEEPING_ATTRS | {INPUT_ATTR, INPUT_INDEX_ATTR, OUTPUT_ATTR, TENSOR_ATTR,
                                  EXTERNAL_ATTR, SPARSE_ATTR}  # fmt: skip
    return sorted(k for k in node.attr if k not in hidden)

_DT = types_pb2.DataType
# ONNX TensorProto.DataType -> TensorFlow DataType, for the types both have.
ONNX_TO_TF: dict[int, int] = {
    1: _DT.Value("DT_FLOAT"),
    2: _DT.Value("DT_UINT8"),
    3: _DT.Value("DT_INT8"),
    4: _DT.Value("DT_UINT16"),
    5: _DT.Value("DT_INT16"),
    6: _DT.Value("DT_INT32"),
    7: _DT.Value("DT_INT64"),
    8: _DT.Value("DT_STRING"),
    9: _DT.Value("DT_BOOL"),
    10: _DT.Value("DT_HALF"),
    11: _DT.Value("DT_DOUBLE"),
    12: _DT.Value("DT_UINT32"),
    13: _DT.Value("DT_UINT64"),
    14: _DT.Value("DT_COMPLEX64"),
    15: _DT.Value("DT_COMPLEX128"),
    16: _DT.Value("DT_BFLOAT16"),
}
TF_TO_ONNX: dict[int, int] = {tf: onnx_type for onnx_type, tf in ONNX_TO_TF.items()}


class OnnxSaveError(SurgeryError):
    """A graph that cannot be written as an ONNX model (no ONNX header, an unmappable attr)."""


def load_onnx(path: str | os.PathLike) -> Graph:
    """Read an `.onnx` file into a Graph (see the module docstring for the mapping)."""
    from surgery.ir.onnx_load import load_model

    return load_model(Path(path))


def save_onnx(
    graph: Graph, path: str | os.PathLike, *, inputs: tuple = (), encoded: Any = None
) -> Path:
    """Write a Graph made by `load_onnx` as an ONNX model, atomically and deterministically;
    `inputs` are paths the output must not overwrite; `encoded`: {node name: NodeProto} for
    nodes written as given (plugin nodes: `surgery.backends.onnx_plugins.encode_plugins`)."""
    from surgery.ir.onnx_save import save_model

    return save_model(graph, path, inputs=inputs, encoded=encoded)


def is_onnx_graph(graph: Graph) -> bool:
    """Whether `graph` was loaded from an ONNX model (it holds the model header node)."""
    return bool(graph.nodes_by_op(MODEL_OP))


def opset_warning(domain: str, version: int) -> str | None:
    """A message when the installed onnx knows an older opset of `domain` than `version` (its
    schemas, and so checks against them, may be missing or out of date), else None."""
    known = known_opset(domain)
    if known is None or version <= known:
        return None
    from onnx import __version__

    label = domain or "ai.onnx"
    return (
        f"the model imports opset {version} of {label}; the installed onnx {__version__} "
        f"knows up to {known}: its schemas may miss or misdescribe newer operators"
    )


def known_opset(domain: str) -> int | None:
    """The newest opset of `domain` the installed onnx knows (None: no schema of it).

    Asking onnx means `import onnx`, which imports ml_dtypes (0.6-0.9 s, as long as loading a
    100k-node model): the answer is kept in surgery's cache (`surgery.cache`), keyed by which
    onnx is installed, so a plain `surgery apply` asks once per onnx install."""
    from surgery import cache

    identity = cache.package_identity("onnx", "__init__.py", "onnx_cpp2py*")
    entry = cache.key("onnx-opset", (identity, domain))
    found = cache.load("onnx-opset", entry)
    if isinstance(found, tuple) and len(found) == 1:
        return found[0]
    from onnx import defs

    known = defs.onnx_opset_version() if domain in ("", "ai.onnx") else None
    if known is None:
        known = max(
            (s.since_version for s in defs.get_all_schemas_with_history() if s.domain == domain),
            default=None,
        )
    cache.store("onnx-opset", entry, (known,))
    return known


def onnx_name(node: Any) -> str:
    """The name `node` has in its ONNX model (`load_onnx` renames `input:0` to `input_0`, and
    names nameless nodes)."""
    return node.attr[NAME_ATTR].s.decode() if NAME_ATTR in node.attr else node.name


def constant_value(node: Any) -> Any:
    """The value of an ONNX `Constant` node as a numpy array (its `value` tensor, whichever way
    the load kept it; `value_float(s)`/`value_int(s)` too), or None for another kind."""
    from surgery.ir.tensor_values import to_numpy

    attrs = node.attr
    if "value" in attrs and attrs["value"].HasField("tensor"):
        return to_numpy(attrs["value"].tensor)
    import numpy as np
    from onnx import AttributeProto, helper, numpy_helper

    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        kept = attrs.get(ATTR_PREFIX + key)
        plain = attrs.get(key)
        if kept is not None:
            found = helper.get_attribute_value(AttributeProto.FromString(kept.s))
        elif plain is not None and key != "value":
            from surgery.ir.attrs import attr_value

            found = attr_value(plain)
        else:
            continue
        if key == "value":
            return numpy_helper.to_array(found)
        return np.asarray(found, dtype=np.float32 if "float" in key else np.int64)
    return None


def interface_names(graph: Graph) -> tuple[dict[str, str], dict[str, str]]:
    """({Placeholder node: ONNX input name}, {output sink node: ONNX output name}): the model's
    own names, which node names can only approximate (`input_1:0` is node `input_1_0`)."""
    from surgery.ir.onnx_pb import ValueInfoProto

    inputs = {n.name: onnx_name(n) for n in graph.nodes_by_op("Placeholder")}
    outputs = {n.name: ValueInfoProto.FromString(n.attr[OUTPUT_ATTR].s).name
               for n in graph.nodes_by_op(OUTPUT_OP) if OUTPUT_ATTR in n.attr}  # fmt: skip
    return inputs, outputs


def model_header(graph: Graph) -> Any:
    """The model's header (a ModelProto without the graph's lists) kept by `load_onnx`."""
    from surgery.ir.onnx_pb import ModelProto

    nodes = graph.nodes_by_op(MODEL_OP)
    if not nodes:
        raise OnnxSaveError(
            "the graph has no _OnnxModel header node: it was not loaded with load_onnx "
            "(export TensorFlow graphs with `surgery export`)"
        )
    model = ModelProto()
    model.ParseFromString(nodes[0].attr["model"].s)
    return model


def graph_opset(graph: Graph, domain: str = "") -> int | None:
    """The opset version `graph`'s model imports for `domain`, or None."""
    for entry in model_header(graph).opset_import:
        if entry.domain == domain or {entry.domain, domain} == {"", "ai.onnx"}:
            return int(entry.version)
    return None
