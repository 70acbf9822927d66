"""Every stage of the Mask R-CNN pipeline on the full config: time and peak memory.

build + freeze (ResNet101, 1024x1024, 81 classes) -> apply rules/maskrcnn.rules -> report ->
validate -> export ONNX -> build the engine. Each stage is the real `surgery` command in its own
process, so its peak RSS is its own (read with wait4). A stage that fails or passes its time limit
is reported as such and the stages that need its output are skipped.
"""

from __future__ import annotations

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


def main(config: str = "full") -> dict:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, out = work / "maskrcnn.pb", work / "maskrcnn.trt.pb"
        print(f"Mask R-CNN pipeline, {config} config, one process per stage:", flush=True)
        built = run_config(config, keep=model)
        print(f"  build + freeze done: {built['nodes']} nodes", flush=True)
        rows["build model"] = (0, built["build_s"], built["build_rss_mb"], "")
        rows["freeze"] = (0, built["freeze_s"] + built["write_s"], built["peak_rss_mb"],
                          f"{built['nodes']} nodes, {built['bytes'] / 2**20:.0f} MiB")
        stages = [
            ("apply", ["apply", RULES, str(model), "-o", str(out),
                       "--log", str(work / "changes.json")]),
            ("report", ["diff", str(model), str(out), "-o", str(work / "report.html")]),
            ("validate", ["validate", str(model), str(out)]),
            ("export", ["export", str(out), "-o", str(work / "m.onnx")]),
            ("build", ["build", str(work / "m.onnx"), "-o", str(work / "m.engine")]),
        ]
        failed = False
        for name, argv in stages:
            if failed:
                rows[name] = ("skipped", 0.0, 0.0, "an earlier stage failed")
                continue
            rows[name] = measure(argv)
            failed = name in ("apply", "export") and rows[name][0] != 0
            code, seconds, peak, last = rows[name]
            print(f"  {name:12s} exit {code!s:8s} {seconds:8.1f} s  peak RSS {peak:7.0f} MB"
                  f"  {last[:300]}", flush=True)
    print("summary:")
    for name, (code, seconds, peak, last) in rows.items():
        print(f"  {name:12s} {seconds:8.1f} s  {peak:7.0f} MB  exit {code}  {last[:70]}")
    return rows


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["full"]))
