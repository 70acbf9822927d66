"""Time the plugins' GPU kernels (plugins.gpu.launch, the path enqueue takes) on the local GPU.

Per case: GPU time per kernel (launches captured into a CUDA graph and replayed, so Python's
launch overhead is out), host time per `launch` call (Python: pointer wrapping + launch), the
effective bandwidth (minimum bytes moved: input read once, output written once) as a share of a
device-to-device copy measured in the same run (the bandwidth a memory-bound kernel can reach)
and of the device's theoretical peak, and the same op written as CuPy array expressions for
comparison. Cases whose bytes fit in the L2 cache are marked: replayed back to back they may be
served partly from L2 and exceed the copy. Without CuPy or a GPU it says so and returns. `main()`
is what `make bench` would call; `--json PATH` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from plugins.gpu import gpu_unavailable_reason, launch


@dataclass(frozen=True)
class Case:
    """One benchmark case: plugin, fields, input shape, output shape, dtype."""

    label: str
    plugin: str
    fields: dict[str, Any]
    shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    dtype: str = "float32"


def _up(shape: tuple[int, ...], scale: int) -> tuple[int, ...]:
    """`shape` with its last two axes multiplied by `scale`."""
    return shape[:-2] + (shape[-2] * scale, shape[-1] * scale)


CASES = [
    Case("LReLU [1,256,128,128]", "LReLU_TRT", {"negSlope": 0.1}, (1, 256, 128, 128),
         (1, 256, 128, 128)),
    Case("LReLU [1,256,128,128] fp16", "LReLU_TRT", {"negSlope": 0.1}, (1, 256, 128, 128),
         (1, 256, 128, 128), "float16"),
    Case("LReLU [8,256,128,128]", "LReLU_TRT", {"negSlope": 0.1}, (8, 256, 128, 128),
         (8, 256, 128, 128)),
    Case("Resize x2 [1,256,64,64]", "ResizeNearest_TRT", {"scale": 2.0}, (1, 256, 64, 64),
         _up((1, 256, 64, 64), 2)),
    Case("Resize x2 [1,256,64,64] fp16", "ResizeNearest_TRT", {"scale": 2.0}, (1, 256, 64, 64),
         _up((1, 256, 64, 64), 2), "float16"),
    Case("Resize x2 [8,256,64,64]", "ResizeNearest_TRT", {"scale": 2.0}, (8, 256, 64, 64),
         _up((8, 256, 64, 64), 2)),
    Case("Resize x2 [8,256,64,64] fp16", "ResizeNearest_TRT", {"scale": 2.0}, (8, 256, 64, 64),
         _up((8, 256, 64, 64), 2), "float16"),
    Case("L2Norm C [1,512,64,64]", "L2Norm_Surgery", {"axis": 1, "epsilon": 1e-12},
         (1, 512, 64, 64), (1, 512, 64, 64)),
    Case("L2Norm C [1,512,64,64] fp16", "L2Norm_Surgery", {"axis": 1, "epsilon": 1e-12},
         (1, 512, 64, 64), (1, 512, 64, 64), "float16"),
    Case("L2Norm C [8,512,64,64]", "L2Norm_Surgery", {"axis": 1, "epsilon": 1e-12},
         (8, 512, 64, 64), (8, 512, 64, 64)),
    Case("L2Norm C [8,512,64,64] fp16", "L2Norm_Surgery", {"axis": 1, "epsilon": 1e-12},
         (8, 512, 64, 64), (8, 512, 64, 64), "float16"),
    Case("L2Norm last [4096,1024]", "L2Norm_Surgery", {"axis": -1, "epsilon": 1e-12},
         (4096, 1024), (4096, 1024)),
    Case("L2Norm last [16384,1024]", "L2Norm_Surgery", {"axis": -1, "epsilon": 1e-12},
         (16384, 1024), (16384, 1024)),
    Case("L2Norm last [16384,1024] fp16", "L2Norm_Surgery", {"axis": -1, "epsilon": 1e-12},
         (16384, 1024), (16384, 1024), "float16"),
]  # fmt: skip


def peak_bandwidth(cp: Any) -> float | None:
    """The device's theoretical memory bandwidth in GB/s (memory clock x bus width x 2 for
    double data rate), if known: from CUDA's attributes, else NVML, else nvidia-smi's clock."""
    attrs = cp.cuda.Device().attributes
    bits = attrs.get("GlobalMemoryBusWidth")
    if "MemoryClockRate" in attrs and bits:
        return attrs["MemoryClockRate"] * 1e3 * 2 * bits / 8 / 1e9
    try:  # CUDA 13 dropped the clock attribute: ask NVML
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(cp.cuda.Device().id)
        mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        return mhz * 1e6 * 2 * pynvml.nvmlDeviceGetMemoryBusWidth(handle) / 8 / 1e9
    except Exception:  # no pynvml here
        pass
    try:
        query = ["nvidia-smi", "--query-gpu=clocks.max.memory", "--format=csv,noheader,nounits",
                 "-i", str(cp.cuda.Device().id)]  # fmt: skip
        mhz = float(subprocess.run(query, capture_output=True, text=True, timeout=20).stdout)
        return mhz * 1e6 * 2 * bits / 8 / 1e9 if bits else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _event_time(cp: Any, fn: Any, repeats: int) -> float:
    """Seconds per call of `fn` on the current stream, by CUDA events."""
    fn()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(repeats):
        fn()
    stop.record()
    stop.synchronize()
    return cp.cuda.get_elapsed_time(start, stop) / 1e3 / repeats


def copy_bandwidth(cp: Any, nbytes: int = 1 << 30) -> float:
    """Measured device-to-device copy, GB/s counting bytes read and written."""
    a = cp.empty(nbytes // 4, dtype=cp.float32)
    b = cp.empty_like(a)
    seconds = _event_time(cp, lambda: cp.copyto(b, a), 20)
    return 2 * nbytes / seconds / 1e9


def _baseline(cp: Any, case: Case, x: Any) -> Any:
    """The same op as CuPy array expressions (allocating its output)."""
    if case.plugin == "LReLU_TRT":
        slope = x.dtype.type(case.fields["negSlope"])
        return lambda: cp.where(x > 0, x, x * slope)
    if case.plugin == "ResizeNearest_TRT":
        s = int(case.fields["scale"])
        return lambda: x.repeat(s, axis=-2).repeat(s, axis=-1)
    axis, eps = case.fields["axis"], x.dtype.type(case.fields["epsilon"])
    return lambda: x / cp.sqrt(cp.maximum((x * x).sum(axis=axis, keepdims=True), eps))


def bench_case(cp: Any, case: Case, peak: float | None, copy_gbs: float,
               l2_bytes: int) -> dict[str, Any]:  # fmt: skip
    """Time one case; the row of the table."""
    dtype = np.dtype(case.dtype)
    x = cp.asarray(np.random.default_rng(0).standard_normal(case.shape).astype(dtype))
    y = cp.empty(case.out_shape, dtype=dtype)
    stream = cp.cuda.Stream(non_blocking=True)

    def call() -> None:
        launch(case.plugin, case.fields, case.shape, case.out_shape, case.dtype,
               x.data.ptr, y.data.ptr, stream.ptr)  # fmt: skip

    with stream:
        for _ in range(3):
            call()
        stream.synchronize()
        calls = 200
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        host_s = (time.perf_counter() - t0) / calls
        stream.synchronize()
        per_graph = 20
        try:
            stream.begin_capture()
            for _ in range(per_graph):
                call()
            graph = stream.end_capture()
            gpu_s = _event_time(cp, graph.launch, 10) / per_graph
            timing = "graph"
        except Exception:  # no graph capture here: event-timed stream of launches instead
            gpu_s = _event_time(cp, call, 100)
            timing = "events"
        base_s = _event_time(cp, _baseline(cp, case, x), 50)
    nbytes = (math.prod(case.shape) + math.prod(case.out_shape)) * dtype.itemsize
    gbs = nbytes / gpu_s / 1e9
    return {
        **asdict(case),
        "mib_moved": nbytes / 2**20,
        "fits_l2": nbytes <= l2_bytes,
        "gpu_us": gpu_s * 1e6,
        "timing": timing,
        "host_us_per_launch": host_s * 1e6,
        "gb_per_s": gbs,
        "pct_of_peak": 100 * gbs / peak if peak else None,
        "pct_of_copy": 100 * gbs / copy_gbs,
        "cupy_ops_us": base_s * 1e6,
        "speedup_vs_cupy_ops": base_s / gpu_s,
    }


def main(argv: list[str] | None = None) -> int:
    """Print the table (and write JSON when asked); a message and 0 without a GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv if argv is not None else [])
    reason = gpu_unavailable_reason()
    if reason is not None:
        print(f"bench_gpu_kernels: skipped, no CUDA GPU / CuPy on this machine ({reason})")
        return 0
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    peak = peak_bandwidth(cp)
    copy_gbs = copy_bandwidth(cp)
    l2_bytes = int(cp.cuda.Device().attributes.get("L2CacheSize", 0))
    runtime = cp.cuda.runtime.runtimeGetVersion()
    print(f"device: {name}, CuPy {cp.__version__}, CUDA runtime {runtime}, "
          f"L2 {l2_bytes / 2**20:.0f} MiB")  # fmt: skip
    share = f", {100 * copy_gbs / peak:.1f} % of peak" if peak else ""
    print(f"memory bandwidth: peak {peak:.0f} GB/s" if peak else "memory bandwidth: peak unknown",
          f"| measured D2D copy of 1 GiB {copy_gbs:.0f} GB/s (read + write{share})")  # fmt: skip
    print("GB/s counts the input read once and the output written once; GPU us from a replayed "
          "CUDA graph of launch() calls; %copy: of the measured copy; *: fits in L2")  # fmt: skip
    head = (f"{'case':32} {'MiB':>6} {'GPU us':>8} {'GB/s':>7} {'%peak':>6} {'%copy':>6} "
            f"{'host us':>8} {'cupy-ops us':>11} {'x faster':>8}")  # fmt: skip
    print(head)
    print("-" * len(head))
    rows = []
    for case in CASES:
        row = bench_case(cp, case, peak, copy_gbs, l2_bytes)
        rows.append(row)
        pct = f"{row['pct_of_peak']:6.1f}" if row["pct_of_peak"] is not None else f"{'?':>6}"
        label = case.label + (" *" if row["fits_l2"] else "")
        print(f"{label:32} {row['mib_moved']:6.1f} {row['gpu_us']:8.1f} "
              f"{row['gb_per_s']:7.0f} {pct} {row['pct_of_copy']:6.1f} "
              f"{row['host_us_per_launch']:8.1f} {row['cupy_ops_us']:11.1f} "
              f"{row['speedup_vs_cupy_ops']:8.2f}", flush=True)  # fmt: skip
    big = [row for row in rows if not row["fits_l2"]]
    if big:
        worst = min(big, key=lambda row: row["pct_of_copy"])
        print(
            f"larger than L2: {len(big)} cases, the lowest {worst['pct_of_copy']:.1f} % of the "
            f"copy ({worst['label']}); copy measured again: {copy_bandwidth(cp):.0f} GB/s"
        )
    if args.json:
        meta = {"device": name, "peak_gb_per_s": peak, "copy_gb_per_s": copy_gbs,
                "l2_bytes": l2_bytes}  # fmt: skip
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
