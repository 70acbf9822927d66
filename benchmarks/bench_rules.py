"""Rule-engine benchmark: 10 rules on synthetic graphs of 10k, 100k and 1M nodes.

Reports time (the fastest of `--repeat` runs; building the IR from the GraphDef included, the
harness's copy of it not), the rewrites made and the time per rewrite (matching included), peak
memory per size and the ratio t(1M)/t(100k) (goal: <= 12, 1M <= 30 s),
and beside it the LeakyRelu -> LReLU_TRT rewrite done by rule and through the graphsurgeon-
compatible API (`surgery.compat.graphsurgeon`) when that module is present.

    python -m benchmarks.bench_rules [--sizes 10000 100000 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from benchmarks.synthetic import conv_graph
from surgery import native
from surgery.engine.run import apply_rules
from surgery.ir.graph import Graph
from surgery.lang.rule_parser import parse_rules
from surgery.ops.plugin_schema import load_catalog

RULES = """
use plugins "trt-8.6"

# 1 attribute predicate + typed set
rule layout:
    match c = Conv2D(_, _) where c.data_format == "NHWC"
    set c.data_format: string = "NCHW"

# 2 bypass the weight reads (Identity <- Const)
rule weight_reads:
    match r = Identity(k = Const())
    forward r

# 3 plugin replace with a field from each node's attribute
rule leaky:
    match y = LeakyRelu(x) where y.alpha < 1
    replace y with LReLU_TRT(x) { negSlope: float = y.alpha }

# 4 bypass the block outputs
rule block_out:
    match o = Identity(a = AddV2(_, _))
    forward o

# 5 ports and commutativity: AddV2(split:1, split:0) written the other way round
rule split_sum:
    match a = AddV2(s:0, s:1); s = Split(d, x) where d.op == "Const" and s.num_split == 2
    replace a with SplitSum(x) { axis: int = 3 }

# 6 operands by role, interior MatMul-style fusion
rule bias_conv:
    match y = BiasAdd(bias: b, value: c = Conv2D(filter: w, input: x))
    replace y with FusedConv2D(x, w, b) { data_format: string = c.data_format }

# 7 insert a Transpose (with a new Const) in front of each fused conv
rule to_nchw:
    match y = FusedConv2D(x, _, _) where x.op != "Transpose"
    insert t = Transpose(x, const(int32, [0, 3, 1, 2])) { T: type = float32 }
    connect t -> y[0]

# 8 collapse every tenth block namespace into one node
rule blocks:
    scope r = "block_*5" enters 1 leaves 1
    collapse r into Block(r.in[0]) { T: type = float32 }
        outputs { r.out[0] -> 0 }

# 9 drop Consts nobody reads any more
rule dead_consts:
    match d = Const() where d.consumers == 0 and d.dtype == "int32"
    remove d

# 10 nothing to do here: must cost nothing and warn
rule resize:
    match y = ResizeNearestNeighbor(x, _)
    replace y with ResizeNearest_TRT(x) { scale: float = 2.0 }
"""

LEAKY_ONLY = """
use plugins "trt-8.6"
rule leaky:
    match y = LeakyRelu(x) where y.alpha < 1
    replace y with LReLU_TRT(x) { negSlope: float = y.alpha }
"""


def measure(fn: Callable[[Any], Any], proto: Any) -> tuple[float, float, Any]:
    """(seconds, peak MiB under tracemalloc, result) of `fn` on a fresh copy of `proto`."""
    copy = _copy(proto)
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    result = fn(copy)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def timed(fn: Callable[[Any], Any], proto: Any) -> tuple[float, Any]:
    """(seconds, result) of `fn` on a fresh copy of `proto` (the copy is not timed), without
    tracemalloc's overhead."""
    copy = _copy(proto)
    gc.collect()
    start = time.perf_counter()
    result = fn(copy)
    return time.perf_counter() - start, result


def run_rules(graph_def: Any, text: str, catalog: Any) -> tuple[Any, float]:
    """Parse the rules, build the IR from `graph_def` (taken over) and apply them: (the result,
    seconds spent building the IR, which `surgery apply` pays before any rule runs)."""
    rules = parse_rules(text, "bench.rules")
    start = time.perf_counter()
    graph = Graph(graph_def)
    load_s = time.perf_counter() - start
    return apply_rules(graph, [rules], catalog), load_s


def run_graphsurgeon(graph_def: Any) -> int:
    """The LeakyRelu rewrite as an old script would write it."""
    from surgery.compat import graphsurgeon as gs

    dynamic = gs.DynamicGraph(graph_def)
    mapping = {}
    for node in dynamic.find_nodes_by_op("LeakyRelu"):
        mapping[node.name] = gs.create_plugin_node(
            name=node.name, op="LReLU_TRT", negSlope=float(node.attr["alpha"].f)
        )
    dynamic.collapse_namespaces(mapping)
    return len(mapping)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--repeat", type=int, default=2,
                        help="timed runs per size; the fastest is reported (a shared machine "
                        "only ever adds time)")  # fmt: skip
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    catalog = load_catalog(["trt-8.6"])
    print(f"engine modules: {native.state()} (SURGERY_PURE=1 runs them from source); "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}", flush=True)
    have_gs = importlib.util.find_spec("surgery.compat.graphsurgeon") is not None
    rows = []
    for size in args.sizes:
        print(f"{size:>9} nodes: building the graph and running (time, then peak memory, then "
              "LeakyRelu by rule and by graphsurgeon)...", file=sys.stderr, flush=True)
        proto = conv_graph(size)
        nodes = len(proto.node)
        seconds, (result, load_s) = min(
            (timed(lambda g: run_rules(g, RULES, catalog), proto) for _ in range(args.repeat)),
            key=lambda run: run[0],
        )
        peak = None
        if not args.no_memory:
            _, peak, _ = measure(lambda g: run_rules(g, RULES, catalog), proto)
        leaky_s, (leaky, _) = timed(lambda g: run_rules(g, LEAKY_ONLY, catalog), proto)
        rewrites = sum(result.per_rule_counts.values())
        rules_s = seconds - load_s
        row = {
            "nodes": nodes, "seconds": round(seconds, 3), "load_s": round(load_s, 3),
            "rules_s": round(rules_s, 3), "rewrites": rewrites,
            "us_per_rewrite": round(rules_s / max(rewrites, 1) * 1e6, 1),
            "peak_mib": None if peak is None else round(peak, 1),
            "nodes_after": len(result.graph), "per_rule_counts": result.per_rule_counts,
            "warnings": len(result.warnings), "changes": len(result.changes),
            "leaky_rule_s": round(leaky_s, 3), "leaky_matches": leaky.per_rule_counts["leaky"],
        }  # fmt: skip
        if have_gs:
            gs_s, count = timed(run_graphsurgeon, proto)
            row["leaky_graphsurgeon_s"] = round(gs_s, 3)
            row["leaky_graphsurgeon_matches"] = count
        rows.append(row)
        peak_text = "-" if peak is None else f"{peak:8.1f} MiB"
        gs_text = f", graphsurgeon {row['leaky_graphsurgeon_s']:.2f} s" if have_gs else ""
        print(f"{nodes:>9} nodes: 10 rules {seconds:7.2f} s (load {load_s:.2f} s, "
              f"{rewrites} rewrites, {row['us_per_rewrite']} us each), peak {peak_text}; "
              f"LeakyRelu only: rule {leaky_s:.2f} s{gs_text}", flush=True)  # fmt: skip
    by_size = {r["nodes"]: r["seconds"] for r in rows}
    sizes = sorted(by_size)
    if len(sizes) >= 2:
        big, mid = sizes[-1], sizes[-2]
        ratio = by_size[big] / max(by_size[mid], 1e-9)
        print(f"ratio t({big})/t({mid}) = {ratio:.2f} (goal <= {12 if big >= 10 * mid else '-'})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0


def _copy(proto: Any) -> Any:
    out = type(proto)()
    out.CopyFrom(proto)
    return out


if __name__ == "__main__":
    sys.exit(main())
