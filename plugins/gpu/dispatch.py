"""Which kernel runs which plugin, and the one way in: device pointers and TensorRT's stream.

A kernel is a `Kernel(run, check)` object in its own module, listed in `KERNELS` by plugin name
and imported on first use. `run(cp, inputs, outputs, fields)` takes CuPy arrays over the plugin's
tensors and writes the outputs in place on CuPy's current stream (which `launch_io` sets to
TensorRT's); temporaries come from CuPy's memory pool. `check(shapes, dtypes, fields)` runs at
build time without a GPU (dims of -1 are not known yet) and raises GpuKernelError for inputs the
kernel cannot take, so a bad engine fails to build instead of computing a wrong result.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plugins.gpu.runtime import DTYPES, GpuKernelError, external_stream, load_cupy, wrap

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Kernel:
    """A plugin's GPU implementation: `run` on CuPy arrays, and the build-time `check`."""

    run: Callable[[Any, list[Any], list[Any], Mapping[str, Any]], None]
    check: Callable[[list[Shape], list[str], Mapping[str, Any]], None] | None = None


KERNELS: dict[str, str] = {
    "LReLU_TRT": "plugins.gpu.kernels:LRELU",
    "ResizeNearest_TRT": "plugins.gpu.kernels:RESIZE_NEAREST",
    "L2Norm_Surgery": "plugins.gpu.kernels:L2NORM",
    "ProposalLayer_TRT": "plugins.gpu.proposal_layer:PROPOSAL_LAYER",
    "DetectionLayer_TRT": "plugins.gpu.detection_layer:DETECTION_LAYER",
    "NMS_TRT": "plugins.gpu.nms_trt:NMS_TRT",
    "Proposal": "plugins.gpu.proposal:PROPOSAL",
    "PyramidROIAlign_TRT": "plugins.gpu.roi_align:PYRAMID_ROI_ALIGN",
    "CropAndResize": "plugins.gpu.roi_align:CROP_AND_RESIZE",
    "SpecialSlice_TRT": "plugins.gpu.layout_ops:SPECIAL_SLICE",
    "FlattenConcat_TRT": "plugins.gpu.layout_ops:FLATTEN_CONCAT",
    "GridAnchor_TRT": "plugins.gpu.layout_ops:GRID_ANCHOR",
    "Normalize_TRT": "plugins.gpu.layout_ops:NORMALIZE_KERNEL",
    "ROIAlign_TRT": "plugins.gpu.roi_align_trt:ROI_ALIGN_TRT",
    "BatchedNMS_Surgery": "plugins.gpu.batched_nms:BATCHED_NMS",
}
"""Plugin name -> "module:attribute" of its Kernel."""

GPU_KERNELS = tuple(sorted(KERNELS))
"""Plugins that have a GPU kernel."""


def kernel_of(name: str) -> Kernel:
    """The Kernel of plugin `name`; GpuKernelError naming the plugins that have one."""
    where = KERNELS.get(name)
    if where is None:
        raise GpuKernelError(f"plugin {name} has no GPU kernel (have: {', '.join(GPU_KERNELS)})")
    module, attr = where.split(":")
    kernel = getattr(importlib.import_module(module), attr)
    if not isinstance(kernel, Kernel):
        raise GpuKernelError(f"{where} is not a Kernel")
    return kernel


def full_fields(name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` with the schema's defaults for the ones left out."""
    from surgery.ops.plugin_schema import load_catalog

    full = {spec.name: spec.default for spec in load_catalog().get(name).fields}
    full.update(fields)
    return full


def check(name: str, shapes: Sequence[Sequence[int]], dtypes: Sequence[str],
          fields: Mapping[str, Any]) -> None:  # fmt: skip
    """Build-time check of plugin `name`'s inputs (no GPU needed); GpuKernelError if refused."""
    kernel = kernel_of(name)
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise GpuKernelError(f"{name}: no GPU kernel for dtype {dtype}")
    if kernel.check is not None:
        kernel.check([tuple(int(d) for d in s) for s in shapes], list(dtypes), fields)


def run_arrays(name: str, fields: Mapping[str, Any], inputs: Sequence[Any],
               outputs: Sequence[Any]) -> None:  # fmt: skip
    """Run plugin `name` on CuPy arrays, on CuPy's current stream (schema defaults filled)."""
    kernel = kernel_of(name)
    _checked_run(kernel, load_cupy(name), inputs, outputs, full_fields(name, fields))


def launch_io(
    name: str,
    fields: Mapping[str, Any],
    inputs: Sequence[tuple[Sequence[int], str, int]],
    outputs: Sequence[tuple[Sequence[int], str, int]],
    stream: int = 0,
) -> None:
    """Run plugin `name` on device tensors given as (shape, dtype name, pointer), on `stream`.

    Asynchronous like any launch on `stream`; the pointers must stay valid until it has run.
    """
    kernel = kernel_of(name)
    specs = [(tuple(int(d) for d in shape), dtype, int(ptr)) for shape, dtype, ptr in
             [*inputs, *outputs]]  # fmt: skip
    for shape, dtype, _ in specs:
        if dtype not in DTYPES:
            raise GpuKernelError(f"{name}: no GPU kernel for dtype {dtype}")
        if any(d < 0 for d in shape):
            raise GpuKernelError(f"{name}: shape {shape} is not fully known")
    cupy = load_cupy(name)
    device = cupy.cuda.runtime.getDevice()
    with external_stream(int(stream), device):
        arrays = [wrap(cupy, ptr, shape, dtype, device) for shape, dtype, ptr in specs]
        _checked_run(kernel, cupy, arrays[: len(inputs)], arrays[len(inputs) :], fields)


def _checked_run(kernel: Kernel, cupy: Any, inputs: Sequence[Any], outputs: Sequence[Any],
                 fields: Mapping[str, Any]) -> None:  # fmt: skip
    """The kernel's check of the input arrays, then its run unless every output is empty (an
    output that is not must be written: BatchedNMS_Surgery's count when N = 0)."""
    if kernel.check is not None:
        kernel.check([tuple(x.shape) for x in inputs], [x.dtype.name for x in inputs], fields)
    if any(y.size for y in outputs):
        kernel.run(cupy, list(inputs), list(outputs), fields)


def launch(
    name: str,
    fields: Mapping[str, Any],
    in_shape: Sequence[int],
    out_shape: Sequence[int],
    dtype: str,
    x_ptr: int,
    y_ptr: int,
    stream: int = 0,
) -> None:
    """`launch_io` for a plugin of one input and one output of the same dtype."""
    if dtype not in ("float32", "float16"):
        raise GpuKernelError(f"{name}: no GPU kernel for dtype {dtype} (have: float32, float16)")
    launch_io(name, fields, [(in_shape, dtype, x_ptr)], [(out_shape, dtype, y_ptr)], stream)
