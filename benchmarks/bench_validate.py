"""`surgery validate` of the full Mask R-CNN alone: wall time and peak RSS against issue 17's goal.

The model is the full config (ResNet-101, 1024x1024, 81 classes) built and frozen by
`bench_maskrcnn_build.run_config`, rewritten by `surgery apply rules/maskrcnn.rules`; then
`surgery validate MODEL REWRITTEN` runs in its own process, `--repeat` times, each read with
wait4 (`bench_maskrcnn_pipeline.measure`). The goal: at most 20 s and 3 GB on the development
machine (2 cores, shared). On a shared machine other work only ever adds time, so the fastest
run is the one compared with the goal; every run is printed.

    python -m benchmarks.bench_validate [--repeat N] [--model M.pb --rewritten T.pb]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.bench_maskrcnn_build import run_config
from benchmarks.bench_maskrcnn_pipeline import RULES, measure

GOAL_SECONDS = 20.0
GOAL_RSS_MB = 3 * 1024


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="validate runs (default 3)")
    parser.add_argument("--model", type=Path, help="a frozen full Mask R-CNN (else built here)")
    parser.add_argument("--rewritten", type=Path, help="its rewrite (else made with apply)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model, rewritten = args.model, args.rewritten
        if model is None:
            model = Path(tmp) / "maskrcnn.pb"
            built = run_config("full", keep=model)
            print(f"full Mask R-CNN built: {built['nodes']} nodes, "
                  f"{built['bytes'] / 2**20:.0f} MiB", flush=True)  # fmt: skip
        if rewritten is None:
            rewritten = Path(tmp) / "maskrcnn.trt.pb"
            code, seconds, _, last = measure(["apply", RULES, str(model), "-o", str(rewritten)])
            if code != 0:
                raise SystemExit(f"apply failed ({code}): {last}")
            print(f"apply: {seconds:.1f} s", flush=True)
        runs = []
        for index in range(args.repeat):
            code, seconds, peak, last = measure(["validate", str(model), str(rewritten)])
            runs.append((seconds, peak))
            print(f"  validate run {index + 1}: exit {code}  {seconds:6.1f} s  peak RSS "
                  f"{peak:6.0f} MB  {last}", flush=True)  # fmt: skip
            if code not in (0, 1):
                raise SystemExit(f"validate failed ({code}): {last}")
    seconds = min(s for s, _ in runs)
    peak = max(p for _, p in runs)
    verdict = "meets" if seconds <= GOAL_SECONDS and peak <= GOAL_RSS_MB else "MISSES"
    print(f"validate, full Mask R-CNN: fastest {seconds:.1f} s (goal {GOAL_SECONDS:.0f} s), "
          f"peak RSS at most {peak:.0f} MB (goal {GOAL_RSS_MB} MB): {verdict} the goal")
    return {"seconds": [s for s, _ in runs], "peak_rss_mb": [p for _, p in runs],
            "meets_goal": verdict == "meets"}  # fmt: skip


if __name__ == "__main__":
    main()
