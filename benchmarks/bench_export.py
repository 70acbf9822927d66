"""ONNX export (tf2onnx underneath) of each model fixture: time and peak memory.

Each fixture exports in a fresh subprocess, so its peak RSS is that export's alone (TensorFlow's
import included, reported separately as the baseline after `import tensorflow, tf2onnx`). With
`--engine`, the exported model is also built with TensorRT(-RTX) and the build time reported.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = ("box3d", "unet", "resnet50", "detector", "resnet50_full")


def measure(name: str, engine: bool) -> dict:
    """Run in this process: export fixture `name` (and optionally build it)."""
    import tensorflow  # noqa: F401
    import tf2onnx  # noqa: F401

    from surgery.models import fixture_info
    from surgery.onnx_export import export_onnx

    info = fixture_info(name)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.onnx"
        start = time.perf_counter()
        result = export_onnx(info.path, out, outputs=list(info.outputs))
        seconds = time.perf_counter() - start
        row = {
            "fixture": name, "pb_mb": info.size / 1e6, "nodes": info.nodes,
            "onnx_nodes": result.nodes, "onnx_mb": out.stat().st_size / 1e6,
            "export_s": seconds, "base_mb": base / 1024,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }  # fmt: skip
        if engine:
            from surgery.trt_backend import build_engine, load_trt

            if load_trt() is not None:
                built = build_engine(out, Path(tmp) / f"{name}.engine")
                row["build_s"] = built.seconds
    return row


def main(argv: list[str] | None = None) -> None:
    """Print one line per fixture."""
    args = list(sys.argv[1:] if argv is None else argv)
    engine = "--engine" in args
    names = [a for a in args if not a.startswith("-")] or list(FIXTURES)
    print(f"{'fixture':<14}{'nodes':>7}{'pb MB':>8}{'onnx MB':>9}{'export s':>10}"
          f"{'base MB':>9}{'peak MB':>9}{'build s':>9}")  # fmt: skip
    for name in names:
        code = f"import json; from benchmarks.bench_export import measure; " \
               f"print(json.dumps(measure({name!r}, {engine})))"  # fmt: skip
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{name:<14} failed: {tail}")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        build = f"{row['build_s']:9.2f}" if "build_s" in row else f"{'-':>9}"
        print(f"{name:<14}{row['nodes']:>7}{row['pb_mb']:8.1f}{row['onnx_mb']:9.1f}"
              f"{row['export_s']:10.2f}{row['base_mb']:9.0f}{row['peak_mb']:9.0f}{build}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
