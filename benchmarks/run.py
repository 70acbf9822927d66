"""`make bench`: run every benchmark in turn; each prints its own times, sizes and ratios.

    python -m benchmarks.run [NAME ...] [--option ...]

Names select benchmarks (all when none); everything from the first `-` option on is passed to
each selected benchmark, e.g. `make bench BENCH="bench_rules --sizes 100000 1000000"`.

Several benchmarks run one after another, each in a process of its own: a child's peak RSS (what
wait4 reports) starts from the RSS of the process it was forked from, so a benchmark that keeps
a million-node graph in memory would inflate every later benchmark's memory figures.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import time

from surgery.launch import relaunch

BENCHMARKS = [
    "bench_startup",
    "bench_ir",
    "bench_compat",
    "bench_rules",
    "bench_ogs",
    "bench_view",
    "bench_export",
    "bench_gpu_kernels",
    "bench_gpu_nms",
    "bench_gpu_roi",
    "bench_maskrcnn_build",
    "bench_maskrcnn_pipeline",
    "bench_validate",
    "bench_matterport",
]


def main(argv: list[str]) -> int:
    cut = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    wanted, options = argv[:cut] or BENCHMARKS, argv[cut:]
    if len(wanted) > 1:  # each in a fresh process (see the module docstring)
        failed = []
        for name in wanted:
            done = subprocess.run([sys.executable, "-m", "benchmarks.run", name, *options])
            if done.returncode:
                failed.append(name)
        if failed:
            print(f"benchmarks.run: failed: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    modules = [importlib.import_module(f"benchmarks.{name}") for name in wanted]
    for name, module in zip(wanted, modules, strict=True):
        if options and "argv" not in inspect.signature(module.main).parameters:
            raise SystemExit(f"benchmarks.run: {name} takes no options (given {options})")
    for name, module in zip(wanted, modules, strict=True):
        start = time.perf_counter()
        print(f"\n##### {name}", flush=True)
        sys.argv = [f"benchmarks.{name}", *options]  # their argparse sees only the options
        module.main()
        print(f"##### {name} done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    relaunch("benchmarks.run")  # the allocator setting the `surgery` command runs with
    sys.exit(main(sys.argv[1:]))
