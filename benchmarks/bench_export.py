"""ONNX export of each model fixture, and of a synthetic model over 2 GiB: time and peak memory.

Each export runs in a fresh subprocess, so its peak RSS is that export's alone (TensorFlow's
import included, reported separately as the baseline after `import tensorflow, tf2onnx`). With
`--engine`, the exported model is also built with TensorRT(-RTX) and the build time reported.

The synthetic model (`--large GB`, 2.2 by default, 0 to skip) is a chain of dense layers whose
weights total GB gigabytes, built in memory (protobuf cannot parse a GraphDef file over 2 GiB,
and TensorFlow cannot import one): its export must go to ONNX external data, and the bytes in the
data file are compared with the Consts'. Its base column is the RSS once the graph is built.
"""

from __future__ import annotations

import argparse
import json
import mmap
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = ("box3d", "unet", "resnet50", "detector", "resnet50_full")
WIDTH = 8192  # the synthetic layers' width: 256 MiB of float32 weights each


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, engine: bool) -> dict:
    """Run in this process: export fixture `name` (and optionally build it)."""
    import tensorflow  # noqa: F401
    import tf2onnx  # noqa: F401

    from surgery.backends.onnx_export import export_onnx
    from surgery.models import fixture_info

    info = fixture_info(name)
    base = _peak_mb()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.onnx"
        start = time.perf_counter()
        result = export_onnx(info.path, out, outputs=list(info.outputs))
        seconds = time.perf_counter() - start
        row = {
            "fixture": name, "pb_mb": info.size / 1e6, "nodes": info.nodes,
            "onnx_nodes": result.nodes, "onnx_mb": out.stat().st_size / 1e6,
            "export_s": seconds, "base_mb": base, "peak_mb": _peak_mb(),
        }  # fmt: skip
        if engine:
            from surgery.backends.trt_backend import build_engine, load_trt

            if load_trt() is not None:
                built = build_engine(out, Path(tmp) / f"{name}.engine")
                row["build_s"] = built.seconds
    return row


def large_graph(gigabytes: float):
    """A Graph of dense layers (MatMul, BiasAdd, Relu) with `gigabytes` of float32 weights."""
    import numpy as np

    from surgery.ir.graph import Graph
    from surgery.ir.protos import GraphDef

    graph_def = GraphDef()
    graph_def.versions.producer = 1882
    x = graph_def.node.add(name="x", op="Placeholder")
    x.attr["dtype"].type = 1
    x.attr["shape"].shape.dim.add(size=1)
    x.attr["shape"].shape.dim.add(size=WIDTH)
    layers = max(1, round(gigabytes * 1e9 / (WIDTH * WIDTH * 4)))
    previous = "x"
    for i in range(layers):
        for name, shape in ((f"dense_{i}/kernel", (WIDTH, WIDTH)), (f"dense_{i}/bias", (WIDTH,))):
            const = graph_def.node.add(name=name, op="Const")
            const.attr["dtype"].type = 1
            tensor = const.attr["value"].tensor
            tensor.dtype = 1
            for size in shape:
                tensor.tensor_shape.dim.add(size=size)
            values = np.arange(np.prod(shape), dtype=np.float32)
            values *= np.float32(1.0 / (i + 2))  # distinct bytes in every tensor
            tensor.tensor_content = values.tobytes()
        matmul = graph_def.node.add(name=f"dense_{i}/MatMul", op="MatMul",
                                    input=[previous, f"dense_{i}/kernel"])  # fmt: skip
        matmul.attr["T"].type = 1
        bias = graph_def.node.add(name=f"dense_{i}/BiasAdd", op="BiasAdd",
                                  input=[f"dense_{i}/MatMul", f"dense_{i}/bias"])  # fmt: skip
        bias.attr["T"].type = 1
        relu = graph_def.node.add(name=f"dense_{i}/Relu", op="Relu", input=[f"dense_{i}/BiasAdd"])
        relu.attr["T"].type = 1
        previous = relu.name
    return Graph(graph_def)


def measure_large(gigabytes: float) -> dict:
    """Run in this process: build the synthetic model, export it, check the external data."""
    import onnx
    import tensorflow  # noqa: F401
    import tf2onnx  # noqa: F401

    from surgery.backends.onnx_export import export_onnx

    graph = large_graph(gigabytes)
    weights = sum(n.attr["value"].ByteSize() for n in graph.nodes_by_op("Const"))
    base = _peak_mb()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "large.onnx"
        start = time.perf_counter()
        result = export_onnx(graph, out)
        seconds, peak = time.perf_counter() - start, _peak_mb()
        if result.external_data is None:
            raise SystemExit("the synthetic model was not written with external data")
        model = onnx.load(str(out), load_external_data=False)
        consts = {f"{n.name}:0": n for n in graph.nodes_by_op("Const")}
        checked = 0
        with open(result.external_data, "rb") as handle, mmap.mmap(
            handle.fileno(), 0, access=mmap.ACCESS_READ
        ) as data:
            for tensor in model.graph.initializer:
                where = {e.key: int(e.value) for e in tensor.external_data if e.key != "location"}
                if tensor.name not in consts or not where:
                    continue
                stored = data[where["offset"]:where["offset"] + where["length"]]
                if stored != consts[tensor.name].attr["value"].tensor.tensor_content:
                    raise SystemExit(f"{tensor.name}: the data file's bytes differ from the Const")
                checked += 1
        return {
            "fixture": f"dense {weights / 2**30:.1f}GiB", "pb_mb": weights / 1e6,
            "nodes": len(graph), "onnx_nodes": result.nodes,
            "onnx_mb": (out.stat().st_size + result.external_data.stat().st_size) / 1e6,
            "export_s": seconds, "base_mb": base, "peak_mb": peak, "checked": checked,
        }  # fmt: skip


def _row(code: str) -> dict | str:
    """Run `code` (printing one JSON row) in a fresh interpreter; the row or the error line."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Print one line per fixture, then the synthetic model's."""
    parser = argparse.ArgumentParser(prog="bench_export", description=__doc__)
    parser.add_argument("fixtures", nargs="*", default=list(FIXTURES))
    parser.add_argument("--engine", action="store_true", help="also build each with TensorRT")
    parser.add_argument("--large", type=float, default=2.2, metavar="GB",
                        help="weights of the synthetic model in GB (0: skip it)")  # fmt: skip
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    print(f"{'fixture':<14}{'nodes':>7}{'pb MB':>8}{'onnx MB':>9}{'export s':>10}"
          f"{'base MB':>9}{'peak MB':>9}{'build s':>9}")  # fmt: skip
    codes = [(name, f"import json; from benchmarks.bench_export import measure; "
                    f"print(json.dumps(measure({name!r}, {args.engine})))")  # fmt: skip
             for name in args.fixtures]  # fmt: skip
    if args.large > 0:
        codes.append((f"dense {args.large}G", "import json; from benchmarks.bench_export import "
                      f"measure_large; print(json.dumps(measure_large({args.large})))"))
    for name, code in codes:
        row = _row(code)
        if isinstance(row, str):
            print(f"{name:<14} failed: {row}")
            continue
        build = f"{row['build_s']:9.2f}" if "build_s" in row else f"{'-':>9}"
        print(f"{row['fixture']:<14}{row['nodes']:>7}{row['pb_mb']:8.1f}{row['onnx_mb']:9.1f}"
              f"{row['export_s']:10.2f}{row['base_mb']:9.0f}{row['peak_mb']:9.0f}{build}",
              flush=True)  # fmt: skip
        if "checked" in row:
            print(f"{'':14}external data: {row['checked']} weights byte-identical to the Consts")


if __name__ == "__main__":
    main()
