"""`make bench`: run every benchmark in turn; each prints its own times, sizes and ratios."""

from __future__ import annotations

import importlib
import sys
import time

from surgery.launch import relaunch

BENCHMARKS = [
    "bench_ir",
    "bench_compat",
    "bench_rules",
    "bench_view",
    "bench_export",
    "bench_gpu_kernels",
    "bench_maskrcnn_build",
    "bench_maskrcnn_pipeline",
]


def main(argv: list[str]) -> int:
    wanted = argv or BENCHMARKS
    for name in wanted:
        module = importlib.import_module(f"benchmarks.{name}")
        start = time.perf_counter()
        print(f"\n##### {name}", flush=True)
        sys.argv = [f"benchmarks.{name}"]  # argparse mains: the names given here are not theirs
        module.main()
        print(f"##### {name} done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    relaunch("benchmarks.run")  # the allocator setting the `surgery` command runs with
    sys.exit(main(sys.argv[1:]))
