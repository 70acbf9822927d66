"""Time the NMS family on the local GPU: the shared NMS and BatchedNMS_Surgery against
torchvision, and the four TensorRT NMS plugins.

Part 1, side by side on the same boxes, scores and classes (CuPy and torch share the memory through
DLPack): `plugins.gpu.nms.batched_nms` (sort + IoU bitmask + device walk, no host round trip)
against `torchvision.ops.batched_nms`, at 1k, 6k and 20k boxes, 1 and 80 classes, IoU 0.5. Both
are timed per call including a device synchronisation (what a caller waits); ours also as a
replayed CUDA graph (device time alone, when the capture works). `same` says whether both kept
the same boxes in the same order.

Part 1b: BatchedNMS_Surgery through `launch_io` (the path `enqueue` takes) against
`torchvision.ops.batched_nms` on the same boxes (whole pixels) and distinct scores: 1000 boxes of 1
and 80 classes, 5000 of 1, 20000 of 80, IoU 0.5; latency with a synchronisation for both, graph
device time for ours, and whether both kept the same indices in the same order.

Part 2: ProposalLayer_TRT and DetectionLayer_TRT at Mask R-CNN's COCO configuration (batch 1 and
2), NMS_TRT at an SSD-MobileNet size and Proposal at a Faster R-CNN size, through `launch_io` (the
path `enqueue` takes) on a non-blocking stream: per-call latency with a synchronisation, and
replayed-graph device time. Without CuPy or a GPU it says so and returns no rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from plugins.gpu import gpu_unavailable_reason, launch_io
from plugins.gpu.dispatch import full_fields

PLUGIN_CASES: list[tuple[str, str, int, dict[str, Any]]] = [
    ("ProposalLayer COCO", "ProposalLayer_TRT", 1,
     {"prenms_topk": 1024, "keep_topk": 1000, "iou_threshold": 0.7,
      "image_size": [3, 1024, 1024]}),
    ("ProposalLayer COCO", "ProposalLayer_TRT", 2,
     {"prenms_topk": 1024, "keep_topk": 1000, "iou_threshold": 0.7,
      "image_size": [3, 1024, 1024]}),
    ("DetectionLayer COCO", "DetectionLayer_TRT", 1,
     {"num_classes": 81, "keep_topk": 100, "score_threshold": 0.7, "iou_threshold": 0.3}),
    ("DetectionLayer COCO", "DetectionLayer_TRT", 2,
     {"num_classes": 81, "keep_topk": 100, "score_threshold": 0.7, "iou_threshold": 0.3}),
    ("NMS_TRT SSD 1917x91", "NMS_TRT", 1,
     {"shareLocation": 1, "varianceEncodedInTarget": 0, "backgroundLabelId": 0,
      "numClasses": 91, "topK": 100, "keepTopK": 100, "confidenceThreshold": 0.3,
      "nmsThreshold": 0.6, "codeType": 4}),
    ("Proposal 38x50x9", "Proposal", 1,
     {"input_height": 600, "input_width": 800, "rpn_stride": 16, "roi_min_size": 16.0,
      "nms_iou_threshold": 0.7, "pre_nms_top_n": 6000, "post_nms_top_n": 300,
      "anchor_sizes": [128.0, 256.0, 512.0], "anchor_ratios": [0.5, 1.0, 2.0]}),
]  # fmt: skip
"""(label, plugin, batch, fields)."""


def plugin_inputs(name: str, batch: int, fields: dict[str, Any],
                  rng: np.random.Generator) -> list[np.ndarray]:  # fmt: skip
    """Random inputs of plugin `name` at `batch` (scores spread so that NMS has work)."""
    if name == "ProposalLayer_TRT":
        from plugins.reference._mrcnn import pyramid_anchors

        count = len(pyramid_anchors(*fields["image_size"]))
        return [rng.random((batch, count, 2, 1, 1)), rng.normal(0, 0.1, (batch, count, 4, 1, 1))]
    if name == "DetectionLayer_TRT":
        rois, classes = 1000, fields["num_classes"]
        logits = rng.normal(0, 4, (batch, rois, classes))
        scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        corner = rng.random((batch, rois, 2)) * 0.8
        roi = np.concatenate([corner, corner + rng.random((batch, rois, 2)) * 0.2], -1)
        return [rng.normal(0, 0.5, (batch, rois, classes * 4, 1, 1)),
                scores[..., None, None], roi]  # fmt: skip
    if name == "NMS_TRT":
        priors, classes = 1917, fields["numClasses"]
        corner = rng.random((priors, 2)) * 0.8
        boxes = np.concatenate([corner, corner + rng.random((priors, 2)) * 0.2], -1)
        var = np.tile([0.1, 0.1, 0.2, 0.2], priors)
        return [rng.normal(0, 0.5, (batch, priors, 1, 4)), rng.random((batch, priors, classes)),
                np.stack([boxes.reshape(-1), var])[None]]  # fmt: skip
    anchors = len(fields["anchor_sizes"]) * len(fields["anchor_ratios"])
    h, w = fields["input_height"] // 16 - 1, fields["input_width"] // 16
    return [rng.random((batch, 2 * anchors, h, w)), rng.normal(0, 0.3, (batch, 4 * anchors, h, w))]


def latency_us(cp: Any, fn: Callable[[], Any], repeats: int) -> float:
    """Microseconds per `fn(); synchronize` (after three warm-up calls)."""
    for _ in range(3):
        fn()
    cp.cuda.Device().synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
        cp.cuda.Device().synchronize()
    return (time.perf_counter() - start) / repeats * 1e6


def graph_us(cp: Any, fn: Callable[[Any], Any], repeats: int) -> float | None:
    """Device microseconds per `fn(stream)` captured once into a CUDA graph and replayed (None
    when the capture fails, e.g. an allocation the pool cannot serve while capturing)."""
    stream = cp.cuda.Stream(non_blocking=True)
    try:
        with stream:
            fn(stream)  # warm: compile, fill the memory pool
            stream.synchronize()
            stream.begin_capture()
            try:
                fn(stream)
            finally:
                graph = stream.end_capture()
            graph.launch(stream)
            start, stop = cp.cuda.Event(), cp.cuda.Event()
            start.record(stream)
            for _ in range(repeats):
                graph.launch(stream)
            stop.record(stream)
            stop.synchronize()
    except Exception as exc:  # capture unsupported by something in the call
        print(f"  (no CUDA graph: {type(exc).__name__}: {str(exc)[:120]})")
        return None
    return cp.cuda.get_elapsed_time(start, stop) / repeats * 1e3


def nms_case(cp: Any, n: int, classes: int, repeats: int, tv: Any) -> dict[str, Any]:
    """One row of part 1: n random boxes of `classes` classes, IoU 0.5; `tv`: torchvision's
    batched_nms and torch, or None."""
    from plugins.gpu.nms import batched_nms

    rng = np.random.default_rng(n + classes)
    corner = rng.integers(0, 1000, (n, 2))  # whole pixels: both compute the same overlaps
    boxes = np.concatenate([corner, corner + rng.integers(10, 100, (n, 2))], axis=1)
    b = cp.asarray(boxes.astype(np.float32))
    s = cp.asarray(rng.random(n).astype(np.float32))
    label = cp.asarray(rng.integers(0, classes, n).astype(np.int32))
    ours = latency_us(cp, lambda: batched_nms(cp, b, s, label, 0.5), repeats)
    graph = graph_us(cp, lambda _: batched_nms(cp, b, s, label, 0.5), repeats)
    index, kept = batched_nms(cp, b, s, label, 0.5)
    mine = cp.asnumpy(index[: int(kept[0])])
    row: dict[str, Any] = {"boxes": n, "classes": classes, "kept": len(mine), "ours_us": ours,
                           "ours_graph_us": graph}  # fmt: skip
    if tv is not None:
        row.update(against_torchvision(cp, tv, (b, s, label), mine, ours, repeats))
    return row


def torchvision_nms(alone: str) -> Any:
    """(torchvision.ops.batched_nms, torch), or None, saying that `alone` is timed alone."""
    try:
        import torch
        from torchvision.ops import batched_nms as tv_batched_nms
    except ImportError as exc:
        print(f"torchvision not importable ({exc}): {alone} timed alone")
        return None
    return tv_batched_nms, torch


def against_torchvision(cp: Any, tv: Any, inputs: tuple[Any, Any, Any], mine: np.ndarray,
                        ours: float, repeats: int) -> dict[str, Any]:  # fmt: skip
    """torchvision's batched_nms (int64 labels, IoU 0.5) on the same (boxes, scores, labels):
    its latency, its ratio to `ours`, and whether it keeps the same indices as `mine`."""
    tv_batched_nms, torch = tv
    tb, ts, tl = (torch.from_dlpack(x) for x in inputs)
    tl = tl.long()
    theirs = latency_us(cp, lambda: tv_batched_nms(tb, ts, tl, 0.5), repeats)
    kept_tv = tv_batched_nms(tb, ts, tl, 0.5).cpu().numpy()
    return {"torchvision_us": theirs, "ratio": theirs / ours,
            "same": bool(np.array_equal(kept_tv, mine))}  # fmt: skip


def print_row(lead: str, row: dict[str, Any], compared: bool) -> None:
    """One table row: `lead` (boxes), classes, kept, our times, torchvision's when `compared`."""
    graph = row["ours_graph_us"]
    shown_graph = f"{graph:9.1f}" if graph is not None else f"{'n/a':>9}"
    theirs = (f"{row['torchvision_us']:14.1f} {row['ratio']:9.2f} {row['same']!s:>5}"
              if compared else f"{'-':>14} {'-':>9} {'-':>5}")  # fmt: skip
    print(f"{lead} {row['classes']:7d} {row['kept']:6d} {row['ours_us']:9.1f} {shown_graph} "
          f"{theirs}", flush=True)  # fmt: skip


def nms_rows(cp: Any, repeats: int) -> list[dict[str, Any]]:
    """Part 1: our batched NMS against torchvision's."""
    tv = torchvision_nms("our NMS")
    head = (f"{'boxes':>6} {'classes':>7} {'kept':>6} {'ours us':>9} {'graph us':>9} "
            f"{'torchvision us':>14} {'tv / ours':>9} {'same':>5}")  # fmt: skip
    print(head)
    print("-" * len(head))
    rows = []
    for n in (1000, 6000, 20000):
        for classes in (1, 80):
            row = nms_case(cp, n, classes, repeats, tv)
            rows.append(row)
            print_row(f"{n:6d}", row, tv is not None)
    return rows


SURGERY_NMS_CASES = ((1000, 1), (1000, 80), (5000, 1), (20000, 80))
"""BatchedNMS_Surgery rows of part 1b: (boxes, classes)."""


def surgery_nms_case(cp: Any, n: int, classes: int, repeats: int, tv: Any) -> dict[str, Any]:
    """One row of part 1b: BatchedNMS_Surgery via launch_io on a non-blocking stream, and
    torchvision's batched_nms (int64 classes, as a detector passes them) on the same boxes."""
    rng = np.random.default_rng(n * 7 + classes)
    corner = rng.integers(0, 1000, (n, 2))  # whole pixels: both compute the same overlaps
    boxes = np.concatenate([corner, corner + rng.integers(10, 100, (n, 2))], axis=1)
    b = cp.asarray(boxes.astype(np.float32))
    s = cp.asarray((rng.permutation(n) / n).astype(np.float32))  # distinct: one order
    label = cp.asarray(rng.integers(0, classes, n).astype(np.int32))
    keep = cp.empty((n,), dtype=cp.int32)
    count = cp.empty((1,), dtype=cp.int32)
    fields = {"iou_threshold": 0.5}
    ins = [(x.shape, x.dtype.name, x.data.ptr) for x in (b, s, label)]
    outs = [(y.shape, y.dtype.name, y.data.ptr) for y in (keep, count)]

    def call(stream: Any) -> None:
        launch_io("BatchedNMS_Surgery", fields, ins, outs, stream.ptr)

    stream = cp.cuda.Stream(non_blocking=True)
    ours = latency_us(cp, lambda: call(stream), repeats)
    graph = graph_us(cp, call, repeats)
    call(stream)
    stream.synchronize()
    mine = cp.asnumpy(keep[: int(count[0])])
    row: dict[str, Any] = {"plugin": "BatchedNMS_Surgery", "boxes": n, "classes": classes,
                           "kept": len(mine), "ours_us": ours, "ours_graph_us": graph}  # fmt: skip
    if tv is not None:
        row.update(against_torchvision(cp, tv, (b, s, label), mine, ours, repeats))
    return row


def surgery_nms_rows(cp: Any, repeats: int) -> list[dict[str, Any]]:
    """Part 1b: BatchedNMS_Surgery's kernel against torchvision's batched_nms."""
    tv = torchvision_nms("BatchedNMS_Surgery")
    head = (f"{'BatchedNMS_Surgery':>18} {'classes':>7} {'kept':>6} {'ours us':>9} "
            f"{'graph us':>9} {'torchvision us':>14} {'tv / ours':>9} {'same':>5}")  # fmt: skip
    print(head)
    print("-" * len(head))
    rows = []
    for n, classes in SURGERY_NMS_CASES:
        row = surgery_nms_case(cp, n, classes, repeats, tv)
        rows.append(row)
        print_row(f"{n:18d}", row, tv is not None)
    return rows


def plugin_rows(cp: Any, repeats: int) -> list[dict[str, Any]]:
    """Part 2: the plugins through launch_io."""
    from plugins.registry import reference

    head = f"{'case':26} {'batch':>5} {'latency us':>10} {'graph us':>9} {'matches ref':>11}"
    print(head)
    print("-" * len(head))
    rows = []
    for label, name, batch, fields in PLUGIN_CASES:
        full = full_fields(name, fields)
        host = [x.astype(np.float32) for x in plugin_inputs(name, batch, full,
                                                            np.random.default_rng(batch))]
        want = reference(name)([x.copy() for x in host], full)
        ins = [cp.asarray(x) for x in host]
        outs = [cp.empty(w.shape, dtype=w.dtype) for w in want]

        def call(stream: Any, ins: list[Any] = ins, outs: list[Any] = outs, name: str = name,
                 full: dict[str, Any] = full) -> None:  # fmt: skip
            launch_io(name, full, [(x.shape, x.dtype.name, x.data.ptr) for x in ins],
                      [(y.shape, y.dtype.name, y.data.ptr) for y in outs], stream.ptr)  # fmt: skip

        stream = cp.cuda.Stream(non_blocking=True)
        latency = latency_us(cp, lambda stream=stream: call(stream), repeats)
        graph = graph_us(cp, call, repeats)
        call(stream)
        stream.synchronize()
        ok = all(np.allclose(cp.asnumpy(y), w, rtol=1e-5, atol=1e-5)
                 for y, w in zip(outs, want, strict=True))
        rows.append({"case": label, "plugin": name, "batch": batch, "latency_us": latency,
                     "graph_us": graph, "matches_reference": ok})  # fmt: skip
        shown = f"{graph:9.1f}" if graph is not None else f"{'n/a':>9}"
        print(f"{label:26} {batch:5d} {latency:10.1f} {shown} {ok!s:>11}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Print both tables (and write JSON when asked); the rows, none without a GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per case")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv if argv is not None else [])
    reason = gpu_unavailable_reason()
    if reason is not None:
        print(f"bench_gpu_nms: skipped, no CUDA GPU / CuPy on this machine ({reason})")
        return []
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    print(f"device: {name}, CuPy {cp.__version__}; us per call including a synchronisation, "
          "graph us: device time of a replayed CUDA graph")  # fmt: skip
    rows = nms_rows(cp, args.repeat) + surgery_nms_rows(cp, args.repeat) + plugin_rows(
        cp, args.repeat)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": name, "rows": rows}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
