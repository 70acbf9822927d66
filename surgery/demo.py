"""`make demo`: the headline job on the embedded example model, end to end.

Builds the small Mask R-CNN (NCHW, randomised weights, frozen), rewrites it with
`rules/maskrcnn.rules` into TensorRT plugin nodes, writes the HTML report, validates the rewrite
against TensorFlow with the plugins' reference implementations, exports ONNX and builds a
TensorRT(-RTX) engine; every step is the real `surgery` command a user would type.
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
MODEL = "maskrcnn_small_nchw"


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

    out.mkdir(parents=True, exist_ok=True)
    print(f"== building the example model ({MODEL}); cached after the first run", flush=True)
    info = fixture_info(MODEL)
    model = out / "maskrcnn_small.pb"
    shutil.copyfile(info.path, model)
    rewritten = out / "maskrcnn_small.trt.pb"
    log = out / "changes.json"
    report = out / "report.html"
    onnx_path = out / "maskrcnn_small.onnx"
    engine = out / "maskrcnn_small.engine"
    for stale in (rewritten, log, report, onnx_path, engine):
        stale.unlink(missing_ok=True)
    rules = str(REPO / "rules" / "maskrcnn.rules")

    step("inspect the frozen graph", ["inspect", "--no-tf", str(model)])
    step("lint the rule file", ["check", rules])
    step("rewrite into TensorRT plugin nodes",
         ["apply", rules, str(model), "-o", str(rewritten), "--log", str(log),
          "--report", str(report)])
    step("inspect the rewritten graph", ["inspect", "--no-tf", str(rewritten)])
    step("validate against TensorFlow (plugins run their NumPy references)",
         ["validate", str(model), str(rewritten)])
    step("export ONNX with plugin ops", ["export", str(rewritten), "-o", str(onnx_path)])
    step("what TensorRT can take", ["support", str(onnx_path)], allowed=(0, 3))
    step("build a TensorRT engine", ["build", str(onnx_path), "-o", str(engine)])
    print("\n== outputs")
    print(f"   frozen model      {model}")
    print(f"   rewritten model   {rewritten}")
    print(f"   change log        {log}")
    print(f"   HTML report       {report}")
    print(f"   ONNX              {onnx_path}")
    print(f"   engine            {engine}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_out", help="directory for every output")
    args = parser.parse_args(argv)
    return run(Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
