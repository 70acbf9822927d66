"""GPU kernels (CuPy: NVRTC kernels and array code) behind the plugins' IPluginV3 `enqueue`.

`launch_io(name, fields, inputs, outputs, stream)` is the one entry point: `enqueue` calls it
with TensorRT's pointers and stream; `run_arrays` takes CuPy arrays (the tests and the dump
check); `check` is the build-time check of shapes and dtypes. CuPy is imported at first use only;
without it, or without a CUDA device, a run raises `GpuUnavailable` saying which is missing, and
importing this package needs neither.
"""

from __future__ import annotations

from plugins.gpu.dispatch import (
           GPU_KERNELS,
           Kernel,
           check,
           kernel_of,
           launch,
           launch_io,
           run_arrays,
)
from plugins.gpu.runtime import (
           DTYPES,
           GpuKernelError,
           GpuUnavailable,
           gpu_unavailable_reason,
           load_cupy,
)

__all__ = ["DTYPES", "GPU_KERNELS", "GpuKernelError", "GpuUnavailable", "Kernel", "check",
           "gpu_unavailable_reason", "kernel_of", "launch", "launch_io", "load_cupy",
           "run_arrays"]  # fmt: skip
