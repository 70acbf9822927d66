"""Every stage of the Mask R-CNN pipeline on the full config: time and peak memory.

build + freeze (ResNet101, 1024x1024, 81 classes) -> apply rules/maskrcnn.rules -> report ->
validate -> export ONNX -> build the engine. Each stage is the real `surgery` command in its own
process, so its peak RSS is its own (read with wait4). A stage that fails or passes its time limit
is reported as such and the stages that need its output are skipped.

    make bench BENCH="bench_maskrcnn_pipeline --stages export --workdir /tmp/mrcnn --repeat 3"

runs only export (and the build, freeze and apply it needs, once: --workdir keeps their files
for the next run), three times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_maskrcnn_build import run_config

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 1800
# every plugin field is read from the graph: the same file serves every config
RULES = str(ROOT / "rules" / "maskrcnn.rules")

def measure(argv: list[str], limit: float = LIMIT_S) -> tuple[int | str, float, float, str]:
    """(exit code or 'timeout', seconds, peak RSS MB, last output line) of `surgery argv`."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "surgery", *argv], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        deadline = start + limit
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                status = None
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        log.seek(0)
        lines = [line for line in log.read().splitlines() if line.strip()]
    code: int | str = "timeout" if status is None else os.waitstatus_to_exitcode(status)
    return code, seconds, usage.ru_maxrss / 1024, lines[-1] if lines else ""


STAGES = ("apply", "report", "validate", "export", "build")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_maskrcnn_pipeline", description=__doc__)
    parser.add_argument("config", nargs="?", default="full", help="Mask R-CNN config (full)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated stages to run (of {','.join(STAGES)}); the ones "
                        "they need run too unless --workdir already holds their files")
    parser.add_argument("--workdir", type=Path, help="keep the files here and reuse the ones "
                        "already there (the frozen model, the rewritten model, the ONNX)")
    parser.add_argument("--repeat", type=int, default=1, help="run each chosen stage N times")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)} (stages: {', '.join(STAGES)})")
    args.stages = chosen
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the chosen stages (all by default) and print time and peak RSS of each."""
    args = _args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        return _run(args, args.workdir or Path(tmp))


def _run(args: argparse.Namespace, work: Path) -> dict:
    rows: dict[str, tuple] = {}
    work.mkdir(parents=True, exist_ok=True)
    model, out, onnx = work / "maskrcnn.pb", work / "maskrcnn.trt.pb", work / "m.onnx"
    print(f"Mask R-CNN pipeline, {args.config} config, one process per stage:", flush=True)
    if model.exists():
        print(f"  reusing {model}", flush=True)
    else:
        built = run_config(args.config, keep=model)
        print(f"  build + freeze done: {built['nodes']} nodes", flush=True)
        rows["build model"] = (0, built["build_s"], built["build_rss_mb"], "")
        rows["freeze"] = (0, built["freeze_s"] + built["write_s"], built["peak_rss_mb"],
                          f"{built['nodes']} nodes, {built['bytes'] / 2**20:.0f} MiB")
    commands = {
        "apply": ["apply", RULES, str(model), "-o", str(out), "--log", str(work / "changes.json")],
        "report": ["diff", str(model), str(out), "-o", str(work / "report.html")],
        "validate": ["validate", str(model), str(out)],
        "export": ["export", str(out), "-o", str(onnx)],
        "build": ["build", str(onnx), "-o", str(work / "m.engine")],
    }
    needs = {"report": out, "validate": out, "export": out, "build": onnx}
    makes = {"apply": out, "export": onnx}
    wanted = set(args.stages)
    for stage in reversed(STAGES):  # a chosen stage brings the ones making its missing input
        if stage in wanted and stage in needs and not needs[stage].exists():
            wanted |= {s for s, path in makes.items() if path == needs[stage]}
    failed = False
    for name in STAGES:
        if name not in wanted:
            continue
        if failed:
            rows[name] = ("skipped", 0.0, 0.0, "an earlier stage failed")
            continue
        runs = args.repeat if name in args.stages else 1
        for attempt in range(runs):
            label = name if runs == 1 else f"{name} #{attempt + 1}"
            rows[label] = measure(commands[name])
            code, seconds, peak, last = rows[label]
            failed = name in ("apply", "export") and code != 0
            print(f"  {label:12s} exit {code!s:8s} {seconds:8.1f} s  peak RSS {peak:7.0f} MB"
                  f"  {last[:300]}", flush=True)
    print("summary:")
    for name, (code, seconds, peak, last) in rows.items():
        print(f"  {name:12s} {seconds:8.1f} s  {peak:7.0f} MB  exit {code}  {last[:70]}")
    return rows


if __name__ == "__main__":
    main()
