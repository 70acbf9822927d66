"""The engine against onnx-graphsurgeon on the same job: every LeakyRelu of a synthetic CNN graph
becomes an LReLU_TRT plugin node, end to end (load, edit, clean up, save).

surgery: `surgery apply rules/leaky_relu.rules model.pb -o out.pb` on the GraphDef of
`benchmarks.synthetic.conv_graph`, and `surgery apply rules/leaky_relu.rules model.onnx -o
out.onnx` on the same blocks written as ONNX. onnx-graphsurgeon 0.6 (a benchmark-only dependency,
the `bench` extra): import that ONNX model -> replace each LeakyRelu -> cleanup -> toposort ->
export -> onnx.save, the script its users write by hand. Each run is a process of its own, so its
wall time and peak RSS (wait4) are its own; the models are written once, outside the timing.
Both surgery runs are compared with onnx-graphsurgeon's. The rewritten ONNX model is checked:
one LReLU_TRT node per block, and onnx.checker accepts it (on a small model first).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.synthetic import conv_graph

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 5.0
CHECKED_BLOCKS = 100  # the small model onnx.checker runs on

OGS_SCRIPT = """
import sys, onnx, onnx_graphsurgeon as gs
graph = gs.import_onnx(onnx.load(sys.argv[1]))
count = 0
for node in [n for n in graph.nodes if n.op == "LeakyRelu"]:
    plugin = gs.Node(op="LReLU_TRT", name=node.name, attrs={"negSlope": float(node.attrs["alpha"])},
                     inputs=list(node.inputs), outputs=list(node.outputs))
    node.inputs.clear()
    node.outputs.clear()
    graph.nodes.append(plugin)
    count += 1
graph.cleanup().toposort()
onnx.save(gs.export_onnx(graph), sys.argv[2])
print(count)
"""


def onnx_model(blocks: int) -> object:
    """The blocks of `conv_graph` as an ONNX model: Identity(kernel), Conv, Add(bias), LeakyRelu,
    Split, Add(split:1, split:0), Identity, with one-element initializers for the weights."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    one = np.zeros((1, 1, 1, 1), dtype=np.float32)
    prev = "input"
    dims = ["N", "C", "H", "W"]  # symbolic: onnx.checker wants a shape on graph inputs, outputs
    for i in range(blocks):
        ns = f"block_{i}"
        inits.append(numpy_helper.from_array(one, f"{ns}/kernel"))
        inits.append(numpy_helper.from_array(one.reshape(1), f"{ns}/bias"))
        nodes += [
            helper.make_node("Identity", [f"{ns}/kernel"], [f"{ns}/kernel/read"], f"{ns}/read"),
            helper.make_node("Conv", [prev, f"{ns}/kernel/read"], [f"{ns}/conv"], f"{ns}/Conv"),
            helper.make_node("Add", [f"{ns}/conv", f"{ns}/bias"], [f"{ns}/b"], f"{ns}/bias_add"),
            helper.make_node("LeakyRelu", [f"{ns}/b"], [f"{ns}/act"], f"{ns}/act", alpha=0.1),
            helper.make_node("Split", [f"{ns}/act"], [f"{ns}/s0", f"{ns}/s1"], f"{ns}/split",
                             axis=1, num_outputs=2),
            helper.make_node("Add", [f"{ns}/s1", f"{ns}/s0"], [f"{ns}/sum"], f"{ns}/add"),
            helper.make_node("Identity", [f"{ns}/sum"], [f"{ns}/out"], f"{ns}/out"),
        ]  # fmt: skip
        prev = f"{ns}/out"
    graph = helper.make_graph(
        nodes, "synthetic", [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, dims)], initializer=inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def write_models(size: int, pb: Path, onnx_path: Path) -> int:
    """The GraphDef of `size` nodes and the same blocks as ONNX; returns the block count."""
    import onnx

    graph = conv_graph(size)
    blocks = (len(graph.node) - 1) // 10
    pb.write_bytes(graph.SerializeToString())
    del graph
    onnx.save(onnx_model(blocks), str(onnx_path))
    return blocks


def write_models_apart(size: int, pb: Path, onnx_path: Path) -> int:
    """`write_models` in a process of its own: a child's peak RSS (`ru_maxrss`) starts from the
    RSS of the process it was forked from, so had this one built the 1M-node models (about
    2 GB, kept by the allocator after they are freed), every run measured after would read at
    least that."""
    code = ("import sys\nfrom pathlib import Path\nfrom benchmarks.bench_ogs import write_models\n"
            "print(write_models(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))")
    done = subprocess.run([sys.executable, "-c", code, str(size), str(pb), str(onnx_path)],
                          cwd=ROOT, capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"bench_ogs: writing the {size}-node models failed:\n{done.stderr}")
    return int(done.stdout.split()[-1])


def surgery_apply(model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "surgery", "apply", str(ROOT / "rules" / "leaky_relu.rules"),
            str(model), "-o", str(out)]  # fmt: skip


def plugin_count(path: Path) -> int:
    """LReLU_TRT nodes in a rewritten ONNX model, none of them LeakyRelu still."""
    import onnx

    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    if "LeakyRelu" in ops:
        raise SystemExit(f"bench_ogs: {path} still holds LeakyRelu nodes")
    return ops.count("LReLU_TRT")


def check_small(work: Path) -> None:
    """`surgery apply` on a small ONNX model gives one plugin node per block, in a model that
    onnx.checker accepts."""
    import onnx

    model, out = work / "small.onnx", work / "small.out.onnx"
    onnx.save(onnx_model(CHECKED_BLOCKS), str(model))
    measure(surgery_apply(model, out))
    onnx.checker.check_model(str(out))
    if plugin_count(out) != CHECKED_BLOCKS:
        raise SystemExit(f"bench_ogs: {plugin_count(out)} LReLU_TRT nodes in {out}, "
                         f"not {CHECKED_BLOCKS}")  # fmt: skip


def measure(argv: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, last output line) of one child process; exits on failure."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        log.seek(0)
        lines = [line for line in log.read().splitlines() if line.strip()]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench_ogs: {' '.join(argv[:4])}... failed:\n" + "\n".join(lines[-10:]))
    return seconds, usage.ru_maxrss / 1024, lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="GraphDef sizes (10 nodes a block; the ONNX model has the same "
                        "blocks)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=2, help="runs per side; the fastest counts")
    args = parser.parse_args(argv)
    try:
        import onnx  # noqa: F401  (both are needed: this checks they are installed)
        import onnx_graphsurgeon  # noqa: F401
    except ImportError as exc:
        print(f"bench_ogs: skipped: onnx-graphsurgeon is not installed ({exc}); "
              "`pip install -e .[bench]` (make bench does)")  # fmt: skip
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        check_small(Path(tmp))
    print(f"{'nodes':>9} | {'pb s':>7} | {'MB':>6} | {'onnx s':>7} | {'MB':>6} | {'ogs s':>7} | "
          f"{'MB':>6} | speed-up pb, onnx (goal >= {GOAL_RATIO:.0f}x, less memory)")  # fmt: skip
    for size in args.nodes:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            pb, onnx_path = work / "model.pb", work / "model.onnx"
            blocks = write_models_apart(size, pb, onnx_path)
            runs = {
                "pb": surgery_apply(pb, work / "out.pb"),
                "onnx": surgery_apply(onnx_path, work / "out.onnx"),
                "ogs": [sys.executable, "-c", OGS_SCRIPT, str(onnx_path), str(work / "ogs.onnx")],
            }
            found = {
                side: [measure(argv) for _ in range(args.repeat)] for side, argv in runs.items()
            }
            if found["ogs"][0][2] != str(blocks):
                raise SystemExit(f"bench_ogs: onnx-graphsurgeon replaced {found['ogs'][0][2]} of "
                                 f"{blocks} LeakyRelu nodes")  # fmt: skip
            if plugin_count(work / "out.onnx") != blocks:
                raise SystemExit(f"bench_ogs: surgery wrote {plugin_count(work / 'out.onnx')} "
                                 f"LReLU_TRT nodes for {blocks} LeakyRelu nodes")  # fmt: skip
        best = {side: (min(t for t, _, _ in runs_), max(m for _, m, _ in runs_))
                for side, runs_ in found.items()}  # fmt: skip
        (pb_s, pb_mb), (onnx_s, onnx_mb), (ogs_s, ogs_mb) = best["pb"], best["onnx"], best["ogs"]
        verdicts = []
        for side, (secs, mb) in (("pb", best["pb"]), ("onnx", best["onnx"])):
            ratio = ogs_s / secs
            met = ratio >= GOAL_RATIO and mb < ogs_mb
            verdicts.append(f"{side} {ratio:.1f}x, {ogs_mb / mb:.1f}x less memory "
                            f"({'met' if met else 'NOT met'})")  # fmt: skip
        print(f"{size:>9} | {pb_s:>7.2f} | {pb_mb:>6.0f} | {onnx_s:>7.2f} | {onnx_mb:>6.0f} | "
              f"{ogs_s:>7.2f} | {ogs_mb:>6.0f} | {'; '.join(verdicts)}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
