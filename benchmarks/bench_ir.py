"""Load -> IR -> save of synthetic GraphDefs (100k and 1M nodes): time and peak memory.

Goal (issue 2): 1M nodes load+save <= 10 s and <= 3 GB on one core. Each size runs in a fresh
subprocess so that peak RSS belongs to that size alone.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(num_nodes: int) -> dict:
    """Run in this process: write the file, then time load and save separately."""
    from benchmarks.synthetic import conv_graph
    from surgery.ir import model_io

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.pb"
        src.write_bytes(conv_graph(num_nodes).SerializeToString(deterministic=True))
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        graph = model_io.load(src)
        t1 = time.perf_counter()
        model_io.save(graph, Path(tmp) / "out.pb", inputs=(src,))
        t2 = time.perf_counter()
        # the full IR: every input parsed into ports and the consumer index built
        graph.consumers("input")
        t3 = time.perf_counter()
        # an edit that changes the node list forces the copying save path
        graph.remove_nodes([graph.graph_outputs()[0].name])
        model_io.save(graph, Path(tmp) / "edited.pb", inputs=(src,))
        t4 = time.perf_counter()
        identical = (Path(tmp) / "out.pb").read_bytes() == src.read_bytes()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "nodes": len(graph),
            "file_mb": round(src.stat().st_size / 2**20, 1),
            "load_s": round(t1 - t0, 2),
            "save_s": round(t2 - t1, 2),
            "total_s": round(t2 - t0, 2),
            "index_s": round(t3 - t2, 2),
            "edit_save_s": round(t4 - t3, 2),
            "peak_rss_mb": round(peak / 1024),
            "rss_growth_mb": round((peak - base_rss) / 1024),
            "byte_identical": identical,
        }


def main(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> list[dict]:
    rows = []
    for size in sizes:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_ir", str(size)],
            check=True, capture_output=True, text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("== IR load -> save (goal: 1M nodes <= 10 s, <= 3 GB) ==")
    print("   (edge index: parse every input into ports + build the consumer index, on first use)")
    for row in rows:
        print(
            f"  {row['nodes']:>9} nodes  {row['file_mb']:>6} MB  load {row['load_s']:>5} s"
            f"  save {row['save_s']:>5} s  total {row['total_s']:>5} s"
            f"  | edge index {row['index_s']:>5} s  edit+save {row['edit_save_s']:>5} s"
            f"  peak RSS {row['peak_rss_mb']} MB  identical={row['byte_identical']}"
        )
    if len(rows) == 2:
        ratio = rows[1]["total_s"] / max(rows[0]["total_s"], 1e-9)
        print(f"  t({rows[1]['nodes']})/t({rows[0]['nodes']}) = {ratio:.1f}")
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(measure(int(sys.argv[1]))))
    else:
        main()
