"""Device plumbing every plugin kernel shares: CuPy on first use, raw pointers as arrays, streams.

Nothing here imports CuPy at import time, so the catalog, the TensorRT creators and the build-time
checks work on machines without a GPU; `load_cupy` says what is missing when a kernel must run.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Any

import numpy as np

from surgery.errors import SurgeryError

DTYPES: dict[str, Any] = {"float32": np.float32, "float16": np.float16, "int32": np.int32}
"""Tensor dtype names the kernels take -> NumPy dtype."""


class GpuUnavailable(SurgeryError):
    """CuPy or a CUDA device is missing, so a plugin's GPU kernel cannot run here."""


class GpuKernelError(SurgeryError):
    """A GPU kernel was given a plugin, dtype, shape or field value it cannot work with."""


def load_cupy(plugin: str = "plugins.gpu") -> Any:
    """The `cupy` module, or GpuUnavailable naming what is missing (CuPy itself, or a GPU)."""
    try:
        import cupy
    except ImportError as exc:
        raise GpuUnavailable(
            f"{plugin}: the GPU kernel needs CuPy (pip package cupy-cuda12x or cupy-cuda13x), "
            f"which is not importable here ({exc})"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, no device
        raise GpuUnavailable(f"{plugin}: CuPy is installed but finds no CUDA GPU ({exc})") from None
    if count < 1:
        raise GpuUnavailable(f"{plugin}: CuPy is installed but finds no CUDA GPU")
    return cupy


def gpu_unavailable_reason() -> str | None:
    """Why the GPU kernels cannot run here (None when they can)."""
    try:
        load_cupy()
    except GpuUnavailable as exc:
        return str(exc)
    return None


@lru_cache(maxsize=64)
def compiled(source: str, names: tuple[str, ...], device: int) -> Any:
    """`source` compiled by NVRTC on `device` with its template instances `names` (cached; CuPy
    also keeps the binary on disk). Look kernels up with `.get_function(name)`."""
    cupy = load_cupy()
    with cupy.cuda.Device(device):
        module = cupy.RawModule(code=source, options=("--std=c++17",), name_expressions=names)
        module.compile()
    return module


@lru_cache(maxsize=8)
def sm_count(device: int) -> int:
    """Multiprocessors on `device`."""
    return int(load_cupy().cuda.Device(device).attributes["MultiProcessorCount"])


class _StreamHandle:
    """A raw `cudaStream_t` offered through the CUDA stream protocol."""

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def __cuda_stream__(self) -> tuple[int, int]:
        """(protocol version, stream handle)."""
        return (0, self.ptr)


@lru_cache(maxsize=64)
def external_stream(ptr: int, device: int) -> Any:
    """A CuPy stream object over TensorRT's stream `ptr` (CuPy does not own it)."""
    cupy = load_cupy()
    from_external = getattr(cupy.cuda.Stream, "from_external", None)
    if from_external is not None:
        try:
            return from_external(_StreamHandle(ptr))
        except Exception:  # an older protocol spelling: use the deprecated wrapper below
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return cupy.cuda.ExternalStream(ptr, device)


def wrap(cupy: Any, ptr: int, shape: tuple[int, ...], dtype: str, device: int) -> Any:
    """A CuPy array over memory we do not own (TensorRT's), without copying."""
    nbytes = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
    memory = cupy.cuda.UnownedMemory(int(ptr), nbytes, None, device)
    return cupy.ndarray(shape, dtype=DTYPES[dtype], memptr=cupy.cuda.MemoryPointer(memory, 0))


def pow2_at_least(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(0, (int(n) - 1).bit_length())


def scalar_field(fields: Any, plugin: str, name: str) -> Any:
    """Field `name`, unwrapped from a one-element list; GpuKernelError when missing."""
    value = fields.get(name)
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if value is None:
        raise GpuKernelError(f"{plugin}: field '{name}' is missing")
    return value
