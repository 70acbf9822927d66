"""Shape, dtype and layout checks shared by the plugin kernels (GpuKernelError each)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plugins.gpu.runtime import GpuKernelError

Shape = tuple[int, ...]
FLOATS = ("float32", "float16")


def float_dtype(name: str, dtypes: Sequence[str]) -> str:
    """The one float dtype of all of a plugin's tensors; GpuKernelError when they mix or are not
    float32/float16."""
    kinds = sorted(set(dtypes))
    if len(kinds) != 1 or kinds[0] not in FLOATS:
        raise GpuKernelError(
            f"{name}: all inputs must be float32 or all float16, got {', '.join(dtypes)}"
        )
    return kinds[0]


def float32_inputs(name: str, roles: Sequence[str], dtypes: Sequence[str]) -> None:
    """GpuKernelError unless there is one float32 input per role (the NMS-type kernels)."""
    if len(dtypes) != len(roles):
        raise GpuKernelError(f"{name}: expected {len(roles)} inputs ({', '.join(roles)}), got "
                             f"{len(dtypes)}")  # fmt: skip
    if any(d != "float32" for d in dtypes):
        raise GpuKernelError(f"{name}: the GPU kernel takes float32 inputs only, got "
                             f"{list(dtypes)}")  # fmt: skip


def need_rank(name: str, role: str, shape: Shape, ranks: Sequence[int]) -> None:
    """GpuKernelError unless `shape` has one of `ranks`."""
    if len(shape) not in ranks:
        shown = " or ".join(str(r) for r in ranks)
        raise GpuKernelError(f"{name}: {role} has shape {list(shape)}; expected rank {shown}")


def need_dim(name: str, role: str, shape: Shape, axis: int, want: int) -> None:
    """GpuKernelError when dim `axis` of `shape` and `want` are both known and differ."""
    if want >= 0 and shape[axis] >= 0 and shape[axis] != want:
        raise GpuKernelError(
            f"{name}: {role} has shape {list(shape)}; dim {axis % len(shape)} must be {want}"
        )


def need_output(name: str, out: Any, shape: Shape, dtype: str) -> None:
    """GpuKernelError unless the output array has `shape` and `dtype`."""
    if tuple(out.shape) != tuple(shape) or out.dtype.name != dtype:
        raise GpuKernelError(
            f"{name}: output is {out.dtype.name} {list(out.shape)}; expected {dtype} {list(shape)}"
        )


def need_contiguous(name: str, arrays: Sequence[Any]) -> None:
    """GpuKernelError unless every array is C-contiguous (the kernels index raw memory)."""
    for array in arrays:
        if not array.flags.c_contiguous:
            raise GpuKernelError(f"{name}: tensors must be C-contiguous, got strides "
                                 f"{array.strides} for shape {list(array.shape)}")  # fmt: skip
