"""Python `IPluginV3` creators for every catalog plugin, registered with TensorRT's registry.

They give TensorRT's ONNX parser and builder what they need to place a plugin layer: output
types and shapes (from the schema's shape expressions), supported formats, fields to serialize.
`enqueue` runs the plugin's CuPy kernel (`plugins.gpu`) on TensorRT's stream; where CuPy or a
CUDA GPU is missing it raises `plugins.gpu.GpuUnavailable` saying which, so engines still build
(on CPU with TensorRT-RTX). Plugins without a kernel are build-only: engines build, and
`enqueue` raises "no GPU kernel for ... yet". A creator TensorRT already has (libnvinfer_plugin's
LReLU_TRT, ProposalLayer_TRT, ...) is not replaced.
"""

from __future__ import annotations

from typing import Any

from plugins.trt.creators import has_gpu_kernel, make_creator
from surgery.ops.plugin_schema import load_catalog

__all__ = ["IMPLEMENTED", "plugin_status", "register"]

IMPLEMENTED = tuple(sorted(s.name for s in load_catalog()))
"""Plugins we have a Python creator for (every catalog plugin): engines using them build."""


def plugin_status() -> dict[str, str]:
    """Plugin name -> "gpu kernel" (the engine runs) or "build only" (enqueue raises)."""
    return {n: "gpu kernel" if has_gpu_kernel(n) else "build only" for n in IMPLEMENTED}


def register(trt: Any, names: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """Register our creators for `names` (default: all implemented); the names registered."""
    catalog = load_catalog()
    registry = trt.get_plugin_registry()
    done = []
    for name in names if names is not None else IMPLEMENTED:
        if name not in catalog:
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
