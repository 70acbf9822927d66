"""GraphDef protobuf messages without importing TensorFlow.

tensorboard ships the same messages under the `tensorboard` proto package; they load in a few
milliseconds where `import tensorflow` takes seconds, and they are wire-compatible with TF's.
"""

from __future__ import annotations

from tensorboard.compat.proto import (  # noqa: F401  (re-exported)
    attr_value_pb2,
    graph_pb2,
    node_def_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)

GraphDef = graph_pb2.GraphDef
NodeDef = node_def_pb2.NodeDef
AttrValue = attr_value_pb2.AttrValue
TensorProto = tensor_pb2.TensorProto
