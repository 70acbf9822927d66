"""Launch-shape sweep of `l2norm_cols` (L2Norm_Surgery over a non-last axis) on the local GPU.

    python -m benchmarks.sweep_l2norm [--top 8]

For each case it times the kernel at every block shape (TX column vectors x TY thread rows) and
per-thread register cache R that covers the axis, with launch bounds of 256 and 1024 threads,
and prints the fastest shapes as a share of a device-to-device copy measured in the same run:
the data `kernels._l2norm_cols`'s launch heuristic is tuned from. Without CuPy or a GPU it says
so and returns.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from plugins.gpu import gpu_unavailable_reason
from plugins.gpu._source import SOURCE, STORAGE

CASES = [((8, 512, 64, 64), "float16"), ((8, 512, 64, 64), "float32"),
         ((8, 256, 128, 128), "float16"), ((4, 1024, 32, 32), "float16"),
         ((1, 512, 64, 64), "float16")]  # fmt: skip
CACHES = (4, 8, 16, 32)
BOUNDS = (512, 1024)


def _module(cp: Any) -> Any:
    """The kernel source compiled with every (dtype, R) instance, once per launch bound."""
    names = [f"l2norm_cols<{arg}, {r}>" for arg in STORAGE.values() for r in CACHES]
    modules = {}
    for bound in BOUNDS:
        src = SOURCE.replace("__launch_bounds__(1024) l2norm_cols",
                             f"__launch_bounds__({bound}) l2norm_cols")  # fmt: skip
        modules[bound] = cp.RawModule(code=src, options=("--std=c++17",), name_expressions=names)
    return modules


def _time(cp: Any, launch: Any, reps: int = 50) -> float:
    """Microseconds per launch, from events around `reps` launches after a warm-up."""
    for _ in range(3):
        launch()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(reps):
        launch()
    stop.record()
    stop.synchronize()
    return cp.cuda.get_elapsed_time(start, stop) * 1000.0 / reps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args(argv)
    reason = gpu_unavailable_reason()
    if reason:
        print(f"sweep_l2norm: skipped: {reason}")
        return 0
    import cupy as cp

    modules = _module(cp)
    half = 1 << 29
    buffer = cp.empty(2 * half, dtype=cp.uint8)
    copy_gbs = 2 * half / _time(cp, lambda: cp.copyto(buffer[:half], buffer[half:]), 20) / 1e3
    buffer = None
    print(f"device-to-device copy: {copy_gbs:.0f} GB/s")
    for shape, dtype in CASES:
        x = cp.random.standard_normal(shape, dtype=cp.float32).astype(dtype)
        y = cp.empty_like(x)
        ref = x / cp.sqrt(cp.maximum((x.astype(cp.float32) ** 2).sum(1, keepdims=True), 1e-12))
        outer, size = shape[0], shape[1]
        vec = 16 // x.itemsize
        innerv = int(np.prod(shape[2:])) // vec
        moved = 2 * x.nbytes
        rows = []
        for bound, module in modules.items():
            for r in CACHES:
                kernel = module.get_function(f"l2norm_cols<{STORAGE[dtype]}, {r}>")
                ty = 1
                while ty * r < size:
                    ty *= 2
                tx = 1
                while tx <= 64:
                    if tx * ty <= bound and tx <= innerv:
                        blocks = outer * -(-innerv // tx)
                        shared = tx * ty * vec * 4
                        if shared <= 48 * 1024:
                            operands = (x, y, np.int32(size), np.int64(innerv), np.float32(1e-12))

                            def launch(k=kernel, b=blocks, t=(tx, ty), s=shared,
                                       a=operands) -> None:  # fmt: skip
                                k((b,), t, a, shared_mem=s)

                            y.fill(0)
                            launch()
                            err = float(cp.abs(y.astype(cp.float32) - ref.astype(cp.float32)).max())
                            us = _time(cp, launch)
                            gbs = moved / us / 1e3
                            rows.append((us, bound, r, tx, ty, blocks, gbs, err))
                    tx *= 2
        rows.sort()
        print(f"\n{dtype} {list(shape)}: {moved / 2**20:.0f} MiB moved; best of {len(rows)} shapes")
        print(" bound   R   TX   TY  blocks      us    GB/s  %copy  max err")
        for us, bound, r, tx, ty, blocks, gbs, err in rows[: args.top]:
            share = 100 * gbs / copy_gbs
            print(f"{bound:6d} {r:3d} {tx:4d} {ty:4d} {blocks:7d} {us:7.1f} {gbs:7.0f} "
                  f"{share:6.1f}  {err:.1e}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
