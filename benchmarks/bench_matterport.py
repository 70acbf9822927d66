"""Matterport's own Mask R-CNN at its COCO config: layout, apply and validate, time and peak memory.

The user's three commands on the published architecture (PyPI mrcnn-colab; ResNet101,
1024x1024, 81 classes, randomised weights), each in its own process so its peak RSS is its own:
`layout nchw --input`, `apply rules/maskrcnn.rules --input`, `validate --input`. The fixture is
built once and cached (`matterport_coco`); its build time is printed when it is built here.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_maskrcnn_pipeline import RULES, measure


def main(config: str = "coco") -> dict:
    from surgery.models import fixture_info
    from surgery.models.matterport import matterport_config

    name = f"matterport_{config}"
    start = time.perf_counter()
    info = fixture_info(name)
    print(f"{name}: {info.nodes} nodes, {info.size / 2**20:.0f} MiB "
          f"(fixture ready in {time.perf_counter() - start:.1f} s; built in "
          f"{info.build_seconds:.1f} s)", flush=True)  # fmt: skip
    side = int(matterport_config(config).IMAGE_MAX_DIM)
    pin = ["--input", f"input_image=1,{side},{side},3"]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nchw, out = str(work / "n.pb"), str(work / "t.pb")
        stages = [
            ("layout nchw", ["layout", "nchw", str(info.path), "-o", nchw, *pin]),
            ("apply", ["apply", RULES, nchw, "-o", out, *pin]),
            ("validate", ["validate", str(info.path), out, *pin]),
        ]
        for stage, argv in stages:
            rows[stage] = measure(argv)
            code, seconds, peak, last = rows[stage]
            print(f"  {stage:12s} exit {code!s:8s} {seconds:8.1f} s  peak RSS {peak:7.0f} MB"
                  f"  {last[:200]}", flush=True)  # fmt: skip
            if code != 0:
                break
    return rows


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["coco"]))
