"""LReLU, ResizeNearest and L2Norm: NVRTC kernels over one input and one output of one dtype."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from plugins.gpu._source import (
    COLS_CACHE,
    COLS_THREADS,
    INT_SCALES,
    L2NORM_CACHE,
    ROWS_CACHE,
    ROWS_THREADS,
    SOURCE,
    STORAGE,
    name_expressions,
)
from plugins.gpu.dispatch import Kernel
from plugins.gpu.runtime import GpuKernelError, compiled, pow2_at_least, scalar_field, sm_count

_THREADS = 256
ROWS_TARGET = 8
"""`l2norm_rows`: a row gets enough threads that each keeps at most this many 16-byte vectors."""


def _lrelu(get: Callable[..., Any], x: Any, y: Any, fields: Mapping[str, Any], sms: int) -> None:
    """LReLU_TRT over all elements."""
    slope = np.float32(scalar_field(fields, "LReLU_TRT", "negSlope"))
    if y.shape != x.shape:
        raise GpuKernelError(f"LReLU_TRT: output {y.shape} differs from input {x.shape}")
    n = x.size
    vec = int(x.data.ptr % 16 == 0 and y.data.ptr % 16 == 0)
    work = -(-n // (16 // x.itemsize)) if vec else n
    blocks = max(1, min(-(-work // _THREADS), sms * 16))
    get("lrelu")((blocks,), (_THREADS,), (x, y, np.int64(n), slope, np.int32(vec)))


def _resize(get: Callable[..., Any], x: Any, y: Any, fields: Mapping[str, Any], sms: int) -> None:
    """ResizeNearest_TRT over the last two axes."""
    scale = np.float32(scalar_field(fields, "ResizeNearest_TRT", "scale"))
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
    if (factor in INT_SCALES and w % (vec // factor) == 0 and x.data.ptr % (16 // factor) == 0
            and y.data.ptr % 16 == 0 and max(oh, ow) < 2**24):  # fmt: skip
        # One item per 16-byte output vector of the first of the S rows an input row makes.
        n = y.size // (vec * factor)
        blocks = max(1, min(-(-n // _THREADS), sms * 16))
        kernel = get("resize_nearest_int", f", {factor}")
        kernel((blocks,), (_THREADS,), (x, y, np.int64(n), np.int32(ow // vec)))
        return
    rows = y.size // ow
    bx = min(_THREADS, 32 * -(-ow // 32))
    by = _THREADS // bx
    grid = (max(1, min(-(-ow // bx), 1024)), max(1, min(-(-rows // by), 65535)))
    args = (x, y, np.int64(rows), np.int32(h), np.int32(w), np.int32(oh), np.int32(ow), scale)
    get("resize_nearest")(grid, (bx, by), args)


def _l2norm(get: Callable[..., Any], x: Any, y: Any, fields: Mapping[str, Any], sms: int) -> None:
    """L2Norm_Surgery along the schema's axis."""
    axis = int(scalar_field(fields, "L2Norm_Surgery", "axis"))
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
    vec = 16 // x.itemsize
    aligned = x.data.ptr % 16 == 0 and y.data.ptr % 16 == 0
    if aligned and inner == 1 and size % vec == 0 and size <= vec * ROWS_THREADS * ROWS_CACHE[-1]:
        _l2norm_rows(get, x, y, outer, size // vec, eps)
    elif aligned and inner > 1 and inner % vec == 0 and size <= COLS_CACHE * COLS_THREADS:
        _l2norm_cols(get, x, y, (outer, size, inner // vec), eps, sms)
    else:
        _l2norm_scalar(get, x, y, (outer, size, inner), eps, sms)


def _l2norm_rows(get: Callable[..., Any], x: Any, y: Any, rows: int, nvec: int,
                 eps: np.float32) -> None:  # fmt: skip
    """`l2norm_rows`: `rows` contiguous rows of `nvec` 16-byte vectors each."""
    # Threads per row: enough that each keeps at most ROWS_TARGET vectors, a warp at least.
    tpr = min(ROWS_THREADS, max(32, pow2_at_least(-(-nvec // ROWS_TARGET))))
    per_thread = pow2_at_least(-(-nvec // tpr))
    rows_per_block = max(1, _THREADS // tpr)
    blocks = -(-rows // rows_per_block)
    if blocks >= 2**31:
        raise GpuKernelError(f"L2Norm_Surgery: {x.shape} needs too many blocks")
    get("l2norm_rows", f", {per_thread}")((blocks,), (tpr, rows_per_block),
                                          (x, y, np.int64(rows), np.int32(nvec), eps))  # fmt: skip


def _l2norm_cols(get: Callable[..., Any], x: Any, y: Any, dims: tuple[int, int, int],
                 eps: np.float32, sms: int) -> None:  # fmt: skip
    """`l2norm_cols`: x as [outer, size, innerv 16-byte vectors], normalised along `size`."""
    outer, size, innerv = dims
    ty = pow2_at_least(-(-size // COLS_CACHE))  # thread rows: at most COLS_CACHE values each
    tx = max(1, min(pow2_at_least(innerv), COLS_THREADS // ty))
    while tx > 1 and tx * ty > 64 and outer * -(-innerv // tx) < 2 * sms:  # more, smaller
        tx //= 2
    blocks = outer * -(-innerv // tx)
    if blocks >= 2**31:
        raise GpuKernelError(f"L2Norm_Surgery: {x.shape} needs too many blocks")
    get("l2norm_cols", f", {COLS_CACHE}")((blocks,), (tx, ty),
                                          (x, y, np.int32(size), np.int64(innerv), eps),
                                          shared_mem=tx * ty * (16 // x.itemsize) * 4)  # fmt: skip


def _l2norm_scalar(get: Callable[..., Any], x: Any, y: Any, dims: tuple[int, int, int],
                   eps: np.float32, sms: int) -> None:  # fmt: skip
    """`l2norm_cached` or `l2norm` element by element: any shape and alignment."""
    outer, size, inner = dims
    # Block: tx adjacent inner columns x ty rows splitting the axis (both powers of two).
    cached = size <= L2NORM_CACHE * 1024  # then ty >= size / 16: x stays in registers
    ty = min(pow2_at_least(size), _THREADS // min(32, pow2_at_least(inner)))
    if cached:
        ty = max(ty, pow2_at_least(-(-size // L2NORM_CACHE)))
    tx = max(1, min(pow2_at_least(inner), _THREADS // ty))  # a short axis: more columns
    while tx > 8 and outer * -(-inner // tx) < 2 * sms:  # too few blocks: narrower ones
        tx //= 2
    blocks = outer * -(-inner // tx)
    if blocks >= 2**31:
        raise GpuKernelError(f"L2Norm_Surgery: {x.shape} needs too many blocks")
    kernel = get("l2norm_cached" if cached else "l2norm")
    kernel((blocks,), (tx, ty), (x, y, np.int64(outer), np.int32(size), np.int64(inner), eps),
           shared_mem=tx * ty * 4)  # fmt: skip


def _one_in_one_out(launcher: Callable[..., None]) -> Kernel:
    """A Kernel over `launcher(get, x, y, fields, sms)` for a plugin of one float tensor in and
    one out, compiled from `_source`."""

    def run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
        (x,), (y,) = inputs, outputs
        if x.dtype != y.dtype or x.dtype.name not in STORAGE:
            raise GpuKernelError(f"no GPU kernel for {x.dtype.name} -> {y.dtype.name}")
        device = cp.cuda.runtime.getDevice()
        module = compiled(SOURCE, tuple(name_expressions()), device)

        def get(name: str, extra: str = "") -> Any:
            return module.get_function(f"{name}<{STORAGE[x.dtype.name]}{extra}>")

        if x.size:
            launcher(get, x, y, fields, sm_count(device))

    return Kernel(run)


LRELU = _one_in_one_out(_lrelu)
RESIZE_NEAREST = _one_in_one_out(_resize)
L2NORM = _one_in_one_out(_l2norm)
