"""Build and freeze the full Mask R-CNN (ResNet101, 1024x1024): time, peak memory, node count.

Each config is built in a fresh Python process so that its peak RSS is its own. TensorRT's sample
reports 3049 nodes for its converted full-size model (after graphsurgeon collapsed the plugin
namespaces); the node count printed here is ours *before* any conversion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TRT_SAMPLE_NODES = 3049
# The namespaces TensorRT's sample collapses into one plugin node each.
PLUGIN_SCOPES = (
    "fpn_p5upsampled",
    "fpn_p4upsampled",
    "fpn_p3upsampled",
    "ROI",
    "roi_align_classifier",
    "mrcnn_detection",
    "roi_align_mask",
    "lambda_1",
)

# Runs in the child: phases timed one by one, RSS read after each.
CHILD = r"""
import collections, json, resource, sys, time
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
from surgery.passes.freeze import freeze_keras_model, import_tf_keras
import_tf_keras()
from surgery.ir.atomic_files import write_atomic
from surgery.ir.model_io import serialize
from surgery.models.maskrcnn import fixture, make_config
out = {"import_s": time.perf_counter() - t, "import_rss_mb": rss()}
cfg = make_config(sys.argv[1], data_format=sys.argv[2])
t = time.perf_counter()
model = fixture.build(cfg)
out.update(build_s=time.perf_counter() - t, build_rss_mb=rss(), params=int(model.count_params()))
t = time.perf_counter()
frozen = freeze_keras_model(fixture.Unscoped(model), "bench", lower_control_flow=False)
out.update(freeze_s=time.perf_counter() - t, freeze_rss_mb=rss())
t = time.perf_counter()
data = serialize(frozen.graph_def, text=False)
write_atomic(sys.argv[3], data)
out.update(write_s=time.perf_counter() - t, peak_rss_mb=rss(), bytes=len(data))
ops = collections.Counter(n.op for n in frozen.graph_def.node)
scopes = collections.Counter(n.name.split("/")[0] for n in frozen.graph_def.node if "/" in n.name)
out.update(
    scopes={s: scopes[s] for s in sys.argv[4].split(",")},
    nodes=len(frozen.graph_def.node),
    functions=len(frozen.graph_def.library.function),
    ops=dict(ops.most_common(12)),
    inputs=[[s.name, list(s.shape)] for s in frozen.inputs],
    outputs=frozen.outputs,
)
print("RESULT " + json.dumps(out))
"""


def run_config(
    config: str, data_format: str = "channels_first", keep: Path | None = None
) -> dict:
    """Build + freeze one config in a child process; its phase timings and peak RSS.

    With `keep`, the frozen graph is written there instead of to a temporary directory.
    """
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory() as tmp:
        target = keep or Path(tmp) / f"maskrcnn_{config}.pb"
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                config,
                data_format,
                str(target),
                ",".join(PLUGIN_SCOPES),
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"building {config} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def report(config: str, result: dict) -> None:
    """Print one config's row."""
    total = result["build_s"] + result["freeze_s"] + result["write_s"]
    print(
        f"  {config:5s} build {result['build_s']:6.1f} s  freeze {result['freeze_s']:6.1f} s  "
        f"write {result['write_s']:5.1f} s  total {total:6.1f} s  "
        f"peak RSS {result['peak_rss_mb']:6.0f} MB (after TF import {result['import_rss_mb']:.0f})"
    )
    print(
        f"        {result['nodes']} nodes, {result['functions']} library functions, "
        f"{result['params']:,} parameters, {result['bytes'] / 2**20:.1f} MiB .pb"
    )
    print(f"        inputs {result['inputs']}  outputs {result['outputs']}")
    print(f"        ops {result['ops']}")
    print(f"        nodes in the plugin namespaces {result['scopes']}")


def main(configs: tuple[str, ...] = ("small", "full")) -> dict[str, dict]:
    """Build and freeze each Mask R-CNN config (NCHW) and print time, memory and node counts."""
    results = {}
    print("Mask R-CNN build + freeze (NCHW, TF2 control flow), each in a fresh process:")
    for config in configs:
        results[config] = run_config(config)
        report(config, results[config])
    if "full" in results:
        full = results["full"]
        inside = sum(full["scopes"].values())
        collapsed = full["nodes"] - inside + len(PLUGIN_SCOPES)
        print(
            f"  full config: {full['nodes']} nodes before conversion, {inside} of them inside the "
            f"{len(PLUGIN_SCOPES)} plugin namespaces: about {collapsed} once each namespace is "
            f"one plugin node. TensorRT's sample reports {TRT_SAMPLE_NODES} for its converted "
            "model; it was frozen by TF1-era Keras, whose per-layer node spelling differs (not "
            "measurable here), so compare the orders of magnitude, not the digits."
        )
    return results


if __name__ == "__main__":
    names = tuple(sys.argv[1:]) or ("small", "full")
    main(names)
