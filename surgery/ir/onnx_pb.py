"""ONNX's protobuf message classes (ModelProto, NodeProto, ...) without `import onnx`.

`import onnx` runs the package's `__init__`, which imports its helpers and through them
ml_dtypes: 0.6-0.9 s, as long as loading a 100k-node model takes. Loading, rewriting and saving a
model need only the generated message classes, onnx's `onnx/onnx_ml_pb2.py`. While onnx is not
imported yet, this module runs that file as a private module of its own. Its classes are onnx's:
protobuf keeps one descriptor per proto file in its default pool (adding the same file again
returns it) and one class per descriptor, so a later `import onnx` gets these very classes
(tests/test_onnx_io.py checks it). Once onnx is imported, its own module is used.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING


def _messages() -> ModuleType:
    if "onnx" in sys.modules:  # imported already: its own module
        from onnx import onnx_ml_pb2

        return onnx_ml_pb2
    package = importlib.util.find_spec("onnx")  # locates the package, runs none of it
    if package is None or not package.submodule_search_locations:
        raise ImportError("onnx is not installed (`pip install onnx`); ONNX models need it")
    source = Path(next(iter(package.submodule_search_locations))) / "onnx_ml_pb2.py"
    spec = importlib.util.spec_from_file_location(f"{__name__}._onnx_ml_pb2", source)
    if spec is None or spec.loader is None:
        raise ImportError(f"onnx's message classes cannot be loaded from {source}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from onnx.onnx_ml_pb2 import (
        AttributeProto,
        GraphProto,
        ModelProto,
        NodeProto,
        TensorProto,
        TensorShapeProto,
        ValueInfoProto,
    )
else:
    _pb = _messages()
    AttributeProto = _pb.AttributeProto
    GraphProto = _pb.GraphProto
    ModelProto = _pb.ModelProto
    NodeProto = _pb.NodeProto
    TensorProto = _pb.TensorProto
    TensorShapeProto = _pb.TensorShapeProto
    ValueInfoProto = _pb.ValueInfoProto

__all__ = [
    "AttributeProto", "GraphProto", "ModelProto", "NodeProto", "TensorProto", "TensorShapeProto",
    "ValueInfoProto",
]  # fmt: skip
