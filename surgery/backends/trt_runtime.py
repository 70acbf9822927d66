"""Can this machine execute a TensorRT engine? The runtime half of `validate --engine`.

Executing needs three things: a TensorRT runtime module, an NVIDIA driver with a GPU, and a GPU
the runtime supports (TensorRT-RTX refuses compute capability 9.0, i.e. H100/H200). When one is
missing, the answer says which, in words a user can act on.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

from surgery.backends.trt_backend import is_rtx, load_trt
from surgery.errors import SurgeryError

RTX_UNSUPPORTED_CC = {(9, 0)}


class EngineCannotRun(SurgeryError):
    """The engine cannot execute on this machine; the message says why."""


@dataclass(frozen=True)
class Gpu:
    """One CUDA device as the driver reports it."""

    index: int
    name: str
    capability: tuple[int, int]


def cuda_devices() -> list[Gpu] | None:
    """GPUs through the CUDA driver API (libcuda); None if no driver is installed."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    if cuda.cuInit(0) != 0:
        return []
    count = ctypes.c_int()
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return []
    gpus = []
    for index in range(count.value):
        device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        cuda.cuDeviceGet(ctypes.byref(device), index)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, device)  # COMPUTE_CAPABILITY_MAJOR
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)  # COMPUTE_CAPABILITY_MINOR
        name = ctypes.create_string_buffer(128)
        cuda.cuDeviceGetName(name, 128, device)
        gpus.append(Gpu(index, name.value.decode(), (major.value, minor.value)))
    return gpus


def why_engine_cannot_run(engine: str | Path) -> str | None:
    """None if `engine` could execute here, else the plain reason it cannot."""
    if not Path(engine).is_file():
        return f"{engine}: no such engine file"
    trt = load_trt()
    if trt is None:
        return "no TensorRT runtime is installed (neither `tensorrt` nor `tensorrt_rtx_bindings`)"
    gpus = cuda_devices()
    if gpus is None:
        return "this machine has no NVIDIA driver (libcuda.so.1 not found), so no GPU to run on"
    if not gpus:
        return "the NVIDIA driver reports no usable GPU"
    if is_rtx(trt):
        usable = [g for g in gpus if g.capability not in RTX_UNSUPPORTED_CC]
        if not usable:
            shown = ", ".join(f"{g.name} (compute capability {g.capability[0]}.{g.capability[1]})"
                              for g in gpus)
            return (f"TensorRT-RTX does not run engines on {shown}; use `tensorrt` there or an "
                    "RTX-supported GPU")
    return None


def require_runnable(engine: str | Path) -> None:
    """Raise EngineCannotRun with the reason when the engine cannot execute here."""
    reason = why_engine_cannot_run(engine)
    if reason is not None:
        raise EngineCannotRun(f"cannot run the engine here: {reason}")
