"""GPU kernels (CuPy/NVRTC) for the plugins our Python IPluginV3 hosts, on raw device pointers.

`launch(name, fields, in_shape, out_shape, dtype, x_ptr, y_ptr, stream)` is the one entry point:
`IPluginV3.enqueue` calls it with TensorRT's pointers and stream, the tests with CuPy arrays'.
CuPy is imported at first use only; without it, or without a CUDA device, `launch` raises
`GpuUnavailable` saying which is missing, and importing this package needs neither.
"""

from __future__ import annotations

from plugins.gpu.kernels import (
    DTYPES,
    GPU_KERNELS,
    GpuKernelError,
    GpuUnavailable,
    gpu_unavailable_reason,
    launch,
    load_cupy,
)

__all__ = ["DTYPES", "GPU_KERNELS", "GpuKernelError", "GpuUnavailable", "gpu_unavailable_reason",
           "launch", "load_cupy"]  # fmt: skip
