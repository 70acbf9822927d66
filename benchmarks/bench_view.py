"""`surgery view --focus` and the diff report on a 10k-node graph: time and output size."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from surgery.cli import main as cli
from surgery.ir import model_io
from surgery.views.report import write_report
from viz import samples


def _timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main(blocks: int = 1700) -> list[dict]:
    """Run the three measurements on a ~10k-node LeakyRelu graph; print and return them."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.pb"
        graph = samples.leaky_graph(blocks)
        model_io.save(graph, src)
        focus = f"conv{blocks // 2}/LeakyRelu"
        for suffix in (".svg", ".html"):
            out = Path(tmp) / f"focus{suffix}"
            took = _timed(
                lambda o=out: cli(
                    ["view", str(src), "--focus", focus, "--radius", "3", "-o", str(o)]
                )
            )
            rows.append(
                {
                    "what": f"view --focus (cli, incl. load) {suffix}",
                    "nodes": len(graph),
                    "seconds": round(took, 2),
                    "bytes": out.stat().st_size,
                }
            )
        after, changes = samples.leaky_rewrite(graph)
        out = Path(tmp) / "report.html"
        took = _timed(lambda: write_report(graph, after, out, changes=changes))
        rows.append(
            {
                "what": f"diff report, {len(changes)} changes",
                "nodes": len(graph),
                "seconds": round(took, 2),
                "bytes": out.stat().st_size,
            }
        )
        same = Path(tmp) / "same.html"
        took = _timed(lambda: write_report(graph, graph.copy(), same))
        rows.append(
            {
                "what": "diff report, identical graphs",
                "nodes": len(graph),
                "seconds": round(took, 2),
                "bytes": same.stat().st_size,
            }
        )
    print("== view / diff report on a 10k-node graph ==")
    for row in rows:
        print(
            f"  {row['what']:<42} {row['nodes']:>6} nodes  {row['seconds']:>6} s"
            f"  {row['bytes'] / 1024:>8.1f} KiB"
        )
    return rows


if __name__ == "__main__":
    main()
