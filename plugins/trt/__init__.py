"""Python `IPluginV3` creators for catalog plugins, registered with TensorRT's plugin registry.

They give TensorRT's ONNX parser and builder what they need to place a plugin layer: output
types and shapes, supported formats, fields to serialize. `enqueue` runs the plugin's CuPy
kernel (`plugins.gpu`) on TensorRT's stream; where CuPy or a CUDA GPU is missing it raises
`plugins.gpu.GpuUnavailable` saying which, so engines still build (on CPU with TensorRT-RTX).
A creator TensorRT already has (libnvinfer_plugin's LReLU_TRT, ...) is not replaced.
"""

from __future__ import annotations

from typing import Any

from plugins.trt.creators import SHAPES, make_creator

__all__ = ["IMPLEMENTED", "register"]

IMPLEMENTED = tuple(sorted(SHAPES))


def register(trt: Any, names: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """Register our creators for `names` (default: all implemented); the names registered."""
    from surgery.plugin_schema import load_catalog

    catalog = load_catalog()
    registry = trt.get_plugin_registry()
    done = []
    for name in names if names is not None else IMPLEMENTED:
        if name not in SHAPES:
            continue
        schema = catalog.get(name)
        if registry.get_creator(schema.name, schema.version, schema.namespace) is not None:
            continue
        creator = make_creator(trt, schema)
        if registry.register_creator(creator, schema.namespace):
            _KEEP.append(creator)  # the registry holds a raw pointer: keep the Python object
            done.append(name)
    return done


_KEEP: list[Any] = []
