"""Everything a GPU machine without TensorFlow needs to check the plugin kernels, in one folder.

    python -m benchmarks.gpu_bundle [--out gpu_bundle]

Here (TensorFlow installed) it rewrites real models with the rule library and validates them with
`--dump` (each plugin node's inputs and reference outputs), one dump per model: our small Mask
R-CNN in NCHW (maskrcnn.rules), Matterport's own small Mask R-CNN (the demo's steps), the SSD-like
and Faster R-CNN-like detectors at two configurations each (ssd.rules, faster_rcnn.rules), box3d
(leaky_relu.rules, l2_normalize.rules), the SSD-like detector with SSD's conv4_3_norm
(l2_normalize.rules: Normalize_TRT), the U-Net (upsample_nearest.rules) and torchvision's
Faster R-CNN exported to ONNX at two configurations (torchvision_detection.rules): every catalog
plugin a rule file emits. It copies the pure-Python protobuf and tensorboard packages the
GraphDef reader needs, and writes `run.sh`: on the GPU machine, from the repository root,
`bash gpu_bundle/run.sh` runs the GPU tests, `surgery kernels` on every dump, and the GPU
benchmarks. The folder is git-ignored; the `device` tool carries it (`carry: ["gpu_bundle"]`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
BOUNDARIES = ["--per-boundary", "--input-map", "Input=Preprocessor/sub", "--exclude", "NMS:1"]
# (dump name, fixture, rule files, validate flags): the rules read shapes (--infer-shapes)
JOBS = [
    ("ssd_like", "ssd_like", ["ssd.rules"], BOUNDARIES),
    ("ssd_like_b", "ssd_like_b", ["ssd.rules"], BOUNDARIES),
    ("faster_rcnn_like", "faster_rcnn_like", ["faster_rcnn.rules"], []),
    ("faster_rcnn_like_b", "faster_rcnn_like_b", ["faster_rcnn.rules"], []),
    ("box3d", "box3d", ["leaky_relu.rules", "l2_normalize.rules"], []),
    ("unet", "unet", ["upsample_nearest.rules"], []),
    ("ssd_like_l2norm", "ssd_like_l2norm", ["l2_normalize.rules"], []),
]
# (dump name, ONNX model in tests/data/onnx, rule files): ONNX models rewritten as they are
ONNX_JOBS = [
    ("tv_fasterrcnn_fpn2", "tv_fasterrcnn_fpn2_op17.onnx", ["torchvision_detection.rules"]),
    ("tv_fasterrcnn_fpn3", "tv_fasterrcnn_fpn3_op16.onnx", ["torchvision_detection.rules"]),
]
RUN = """#!/bin/bash
# On the GPU machine, from the repository root: GPU tests, kernels on every dump, GPU benchmarks.
B=$(dirname "$0")
export PYTHONPATH=$PWD/$B/deps:$PWD PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
nvidia-smi -L
SURGERY_PLUGIN_DUMP=$B/maskrcnn_small SURGERY_PLUGIN_MODEL=$B/maskrcnn_small.t.pb timeout 250 \\
  python3 -m pytest -q -p no:cacheprovider tests/test_gpu_*.py 2>&1 \\
  | tee $OUT/gpu_tests.log | tail -30
for dump in $B/*/manifest.json; do
  d=$(dirname "$dump")
  model=""; [ -f "$d.t.pb" ] && model="--model $d.t.pb"
  [ -f "$d.t.onnx" ] && model="--model $d.t.onnx"
  timeout 60 python3 -m surgery kernels "$d" $model 2>&1 | tail -3
done 2>&1 | tee $OUT/gpu_kernels.log
timeout 150 python3 -m benchmarks.bench_gpu_nms 2>&1 | tee $OUT/bench_gpu_nms.log
timeout 60 python3 -m benchmarks.bench_gpu_kernels 2>&1 | tee $OUT/bench_gpu_kernels.log
timeout 180 python3 -m benchmarks.bench_gpu_roi 2>&1 | tee $OUT/bench_gpu_roi.log
"""


def _run(name: str, argv: list[str], must_pass: bool = True) -> None:
    from surgery.cli import main

    if main(argv) != 0 and must_pass:
        raise SystemExit(f"gpu_bundle: {name}: `surgery {' '.join(argv)}` failed")


def _dump(out: Path, name: str, original: str, model: str, rules: list[str],
          apply_flags: list[str], validate_flags: list[str]) -> None:  # fmt: skip
    """Rewrite `model` (the original, or its NCHW form) by `rules`, then validate against the
    original with --dump (the dump is written pass or fail: it holds the reference outputs)."""
    rewritten = str(out / f"{name}.t{Path(model).suffix}")
    _run(name, ["apply", *(str(RULES / r) for r in rules), model, "-o", rewritten, *apply_flags])
    _run(name, ["validate", original, rewritten, *validate_flags, "--dump", str(out / name)],
         must_pass=False)  # fmt: skip
    print(f"gpu_bundle: {name}: dump in {out / name}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Write the bundle; 0 when every dump was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "gpu_bundle"))
    args = parser.parse_args(argv if argv is not None else [])
    from surgery.models import fixture_info
    from surgery.models.matterport import matterport_config

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    small = str(fixture_info("maskrcnn_small_nhwc").path)
    nchw = str(out / "nchw.pb")
    _run("maskrcnn_small", ["layout", "nchw", small, "-o", nchw])
    _dump(out, "maskrcnn_small", small, nchw, ["maskrcnn.rules"], [], [])
    side = int(matterport_config("small").IMAGE_MAX_DIM)
    pin = ["--input", f"input_image=1,{side},{side},3"]
    matterport = str(fixture_info("matterport_small").path)
    _run("matterport_small", ["layout", "nchw", matterport, "-o", nchw, *pin])
    _dump(out, "matterport_small", matterport, nchw, ["maskrcnn.rules"], pin, pin)
    (out / "matterport_small.t.pb").unlink()  # 100 MiB: its dump is checked without it
    Path(nchw).unlink()
    for name, fixture, rules, flags in JOBS:
        original = str(fixture_info(fixture).path)
        _dump(out, name, original, original, rules, ["--infer-shapes"], flags)
    for name, onnx_model, rules in ONNX_JOBS:
        original = str(ROOT / "tests" / "data" / "onnx" / onnx_model)
        _dump(out, name, original, original, rules, [], [])
    import google.protobuf
    import tensorboard

    copies = ((google.protobuf, "deps/google/protobuf"), (tensorboard, "deps/tensorboard"))
    for package, dest in copies:  # pure Python: the GPU machine's Python may be another
        shutil.copytree(Path(package.__file__).parent, out / dest,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.pyc"))  # fmt: skip
    (out / "run.sh").write_text(RUN)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"gpu_bundle: {out} ({size / 2**20:.1f} MiB); on the GPU machine: bash {out.name}/run.sh")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
