"""`make demo`: the headline job on the embedded example model, end to end.

Builds Matterport's own Mask R-CNN (PyPI mrcnn-colab, its small test config, randomised weights,
frozen with dynamic input dims), converts it to NCHW, rewrites it with `rules/maskrcnn.rules`
into TensorRT plugin nodes (every field read from the graph), writes the HTML report, validates
the rewrite against TensorFlow with the plugins' reference implementations (keeping every plugin
node's inputs and reference outputs for `surgery kernels` on a GPU machine), exports ONNX and
builds a TensorRT(-RTX) engine; every step is the real `surgery` command a user would type.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

from surgery.cli import main as surgery

REPO = Path(__file__).resolve().parent.parent
MODEL = "matterport_small"


def step(title: str, argv: list[str], *, allowed: tuple[int, ...] = (0,)) -> int:
    """Run one `surgery` command, echoing it; stop the demo if it fails."""
    print(f"\n== {title}\n$ surgery {shlex.join(argv)}", flush=True)
    start = time.perf_counter()
    code = surgery(argv)
    print(f"   ({time.perf_counter() - start:.1f} s, exit {code})", flush=True)
    if code not in allowed:
        raise SystemExit(f"demo: step '{title}' failed with exit code {code}")
    return code


def run(out: Path) -> int:
    from surgery.models import fixture_info
    from surgery.models.matterport import matterport_config

    out.mkdir(parents=True, exist_ok=True)
    print(f"== building the example model ({MODEL}); cached after the first run", flush=True)
    info = fixture_info(MODEL)
    model = out / "maskrcnn_small.pb"
    shutil.copyfile(info.path, model)
    nchw = out / "maskrcnn_small.nchw.pb"
    rewritten = out / "maskrcnn_small.trt.pb"
    log = out / "changes.json"
    report = out / "report.html"
    onnx_path = out / "maskrcnn_small.onnx"
    engine = out / "maskrcnn_small.engine"
    dump = out / "plugin_dump"
    for stale in (nchw, rewritten, log, report, onnx_path, engine):
        stale.unlink(missing_ok=True)
    rules = str(REPO / "rules" / "maskrcnn.rules")
    side = int(matterport_config("small").IMAGE_MAX_DIM)
    pin = ["--input", f"input_image=1,{side},{side},3"]  # the frozen model's dims are dynamic

    step("inspect the frozen graph", ["inspect", "--no-tf", str(model)])
    step("lint the rule file", ["check", rules])
    step("convert to NCHW", ["layout", "nchw", str(model), "-o", str(nchw), *pin])
    step("rewrite into TensorRT plugin nodes",
         ["apply", rules, str(nchw), "-o", str(rewritten), *pin, "--log", str(log),
          "--report", str(report)])  # fmt: skip
    step("inspect the rewritten graph", ["inspect", "--no-tf", str(rewritten)])
    step("validate against TensorFlow (plugins run their NumPy references)",
         ["validate", str(model), str(rewritten), *pin, "--dump", str(dump)])  # fmt: skip
    step("export ONNX with plugin ops", ["export", str(rewritten), "-o", str(onnx_path), *pin])
    step("what TensorRT can take", ["support", str(onnx_path)], allowed=(0, 3))
    step("build a TensorRT engine", ["build", str(onnx_path), "-o", str(engine)])
    print("\n== outputs")
    print(f"   frozen model      {model}")
    print(f"   NCHW model        {nchw}")
    print(f"   rewritten model   {rewritten}")
    print(f"   change log        {log}")
    print(f"   HTML report       {report}")
    print(f"   ONNX              {onnx_path}")
    print(f"   engine            {engine}")
    print(f"   plugin dump       {dump}   (on a GPU machine: surgery kernels {dump} "
          f"--model {rewritten})")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_out", help="directory for every output")
    args = parser.parse_args(argv)
    return run(Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
