"""Launchers: check shapes and fields, wrap raw pointers as CuPy arrays, launch on a stream."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache, partial
from typing import Any

import numpy as np

from plugins.gpu._source import INT_SCALES, L2NORM_CACHE, SOURCE, STORAGE, name_expressions
from surgery.errors import SurgeryError

DTYPES: dict[str, Any] = {"float32": np.float32, "float16": np.float16}
"""dtype names the kernels take -> NumPy dtype."""

_THREADS = 256


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


@lru_cache(maxsize=8)
def _module(device: int) -> Any:
    """The compiled RawModule on `device` (CuPy also caches the binary on disk)."""
    cupy = load_cupy()
    with cupy.cuda.Device(device):
        module = cupy.RawModule(
            code=SOURCE, options=("--std=c++17",), name_expressions=name_expressions()
        )
        module.compile()
    return module


@lru_cache(maxsize=8)
def _sm_count(device: int) -> int:
    """Multiprocessors on `device`."""
    return int(load_cupy().cuda.Device(device).attributes["MultiProcessorCount"])


def _kernel(device: int, dtype: str, name: str, extra: str = "") -> Any:
    """The compiled `name<T extra>` for `dtype` (extra: further template arguments)."""
    return _module(device).get_function(f"{name}<{STORAGE[dtype]}{extra}>")


class _StreamHandle:
    """A raw `cudaStream_t` offered through the CUDA stream protocol."""

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def __cuda_stream__(self) -> tuple[int, int]:
        """(protocol version, stream handle)."""
        return (0, self.ptr)


@lru_cache(maxsize=64)
def _external_stream(ptr: int, device: int) -> Any:
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


def _wrap(cupy: Any, ptr: int, shape: tuple[int, ...], dtype: str, device: int) -> Any:
    """A CuPy array over memory we do not own (TensorRT's), without copying."""
    nbytes = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
    memory = cupy.cuda.UnownedMemory(int(ptr), nbytes, None, device)
    return cupy.ndarray(shape, dtype=DTYPES[dtype], memptr=cupy.cuda.MemoryPointer(memory, 0))


def _pow2_at_least(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(0, (int(n) - 1).bit_length())


def _lrelu(get: Callable[..., Any], x: Any, y: Any, fields: Mapping[str, Any], sms: int) -> None:
    """LReLU_TRT over all elements."""
    slope = np.float32(_field(fields, "LReLU_TRT", "negSlope"))
    if y.shape != x.shape:
        raise GpuKernelError(f"LReLU_TRT: output {y.shape} differs from input {x.shape}")
    n = x.size
    vec = int(x.data.ptr % 16 == 0 and y.data.ptr % 16 == 0)
    work = -(-n // (16 // x.itemsize)) if vec else n
    blocks = max(1, min(-(-work // _THREADS), sms * 16))
    get("lrelu")((blocks,), (_THREADS,), (x, y, np.int64(n), slope, np.int32(vec)))


def _resize(get: Callable[..., Any], x: Any, y: Any, fields: Mapping[str, Any], sms: int) -> None:
    """ResizeNearest_TRT over the last two axes."""
    scale = np.float32(_field(fields, "ResizeNearest_TRT", "scale"))
    if not scale > 0:
        raise GpuKernelError(f"ResizeNearest_TRT: scale must be > 0, got {scale}")
    if x.ndim < 2 or y.ndim != x.ndim or x.shape[:-2] != y.shape[:-2]:
        raise GpuKernelError(f"ResizeNearest_TRT: cannot resize {x.shape} into {y.shape}")
    h, w = x.shape[-2:]
    want = (int(np.float32(h) * scale), int(np.float32(w) * scale))
    if y.shape[-2:] != want:
        raise GpuKernelError(
            f"ResizeNearest_TRT: output {y.shape} does not match input {x.shape} x scale {scale} "
            f"(want [..., {want[0]}, {want[1]}])"
        )
    oh, ow = want
    vec = 16 // x.itemsize
    factor = int(scale) if float(scale).is_integer() else 0
    if (factor in INT_SCALES and w % vec == 0 and x.data.ptr % 16 == 0 and y.data.ptr % 16 == 0
            and max(oh, ow) < 2**24):  # fmt: skip
        nvec = x.size // vec
        blocks = max(1, min(-(-nvec // _THREADS), sms * 16))
        kernel = get("resize_nearest_int", f", {factor}")
        kernel((blocks,), (_THREADS,), (x, y, np.int64(nvec), np.int32(w // vec)))
        return
    rows = y.size // ow
    bx = min(_THREADS, 32 * -(-ow // 32))
    by = _THREADS // bx
    grid = (max(1, min(-(-ow // bx), 1024)), max(1, min(-(-rows // by), 65535)))
    args = (x, y, np.int64(rows), np.int32(h), np.int32(w), np.int32(oh), np.int32(ow), scale)
    get("resize_nearest")(grid, (bx, by), args)


def _l2norm(get: Callable[..., Any], x: Any, y: Any, fields: Mapping[str, Any], sms: int) -> None:
    """L2Norm_Surgery along the schema's axis."""
    axis = int(_field(fields, "L2Norm_Surgery", "axis"))
    rank = x.ndim
    if not -rank <= axis < max(rank, 1):
        raise GpuKernelError(f"L2Norm_Surgery: axis {axis} is out of range for {x.shape}")
    if y.shape != x.shape:
        raise GpuKernelError(f"L2Norm_Surgery: output {y.shape} differs from input {x.shape}")
    epsilon = fields.get("epsilon")
    eps = np.float32(1e-12 if epsilon is None else epsilon)
    if rank == 0:
        outer, size, inner = 1, 1, 1
    else:
        axis %= rank
        outer = math.prod(x.shape[:axis])
        size = x.shape[axis]
        inner = math.prod(x.shape[axis + 1 :])
    if size >= 2**31:
        raise GpuKernelError(f"L2Norm_Surgery: axis of {size} values is too long")
    # Block: tx adjacent inner columns x ty rows splitting the axis (both powers of two).
    cached = size <= L2NORM_CACHE * 1024  # then ty >= size / 16: x stays in registers
    ty = min(_pow2_at_least(size), _THREADS // min(32, _pow2_at_least(inner)))
    if cached:
        ty = max(ty, _pow2_at_least(-(-size // L2NORM_CACHE)))
    tx = max(1, min(_pow2_at_least(inner), _THREADS // ty))  # a short axis: more columns
    while tx > 8 and outer * -(-inner // tx) < 2 * sms:  # too few blocks: narrower ones
        tx //= 2
    blocks = outer * -(-inner // tx)
    if blocks >= 2**31:
        raise GpuKernelError(f"L2Norm_Surgery: {x.shape} needs too many blocks")
    kernel = get("l2norm_cached" if cached else "l2norm")
    kernel((blocks,), (tx, ty), (x, y, np.int64(outer), np.int32(size), np.int64(inner), eps),
           shared_mem=tx * ty * 4)  # fmt: skip


_LAUNCHERS: dict[str, Callable[..., None]] = {
    "LReLU_TRT": _lrelu,
    "ResizeNearest_TRT": _resize,
    "L2Norm_Surgery": _l2norm,
}
GPU_KERNELS = tuple(sorted(_LAUNCHERS))
"""Plugins that have a GPU kernel."""


def _field(fields: Mapping[str, Any], plugin: str, name: str) -> Any:
    """Field `name`, unwrapped from a one-element list; GpuKernelError when missing."""
    value = fields.get(name)
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if value is None:
        raise GpuKernelError(f"{plugin}: field '{name}' is missing")
    return value


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
    """Run plugin `name`'s kernel from device pointer `x_ptr` into `y_ptr` on CUDA `stream`.

    Asynchronous like any launch on `stream`; the pointers must stay valid until it has run.
    """
    run = _LAUNCHERS.get(name)
    if run is None:
        raise GpuKernelError(f"plugin {name} has no GPU kernel (have: {', '.join(GPU_KERNELS)})")
    if dtype not in DTYPES:
        raise GpuKernelError(f"{name}: no GPU kernel for dtype {dtype} (have: float32, float16)")
    in_dims, out_dims = tuple(int(d) for d in in_shape), tuple(int(d) for d in out_shape)
    if any(d < 0 for d in in_dims + out_dims):
        raise GpuKernelError(f"{name}: shapes {in_dims} -> {out_dims} are not fully known")
    cupy = load_cupy(name)
    device = cupy.cuda.runtime.getDevice()
    if math.prod(in_dims) == 0 or math.prod(out_dims) == 0:
        return
    get = partial(_kernel, device, dtype)  # get(name, extra="") -> compiled kernel
    with _external_stream(int(stream), device):
        x = _wrap(cupy, x_ptr, in_dims, dtype, device)
        y = _wrap(cupy, y_ptr, out_dims, dtype, device)
        run(get, x, y, fields, _sm_count(device))
