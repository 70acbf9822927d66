"""BatchedNMS_Surgery's GPU kernel against its NumPy reference (which
tests/test_batched_nms_reference.py proves equal to onnxruntime on the exported graph), and
against torchvision where it is installed.

The kernel tests need CuPy and a CUDA GPU and skip without them (the `cp` fixture); outputs start
at -7, so an element the kernel leaves unwritten fails. The build-time check tests run everywhere.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from plugins.gpu import GpuKernelError, check, run_arrays
from plugins.registry import reference
from plugins.trt.creators import _plugin_class
from surgery.ops.plugin_schema import load_catalog
from tests.test_gpu_nms_family import desc, fake_trt, run_gpu

NAME = "BatchedNMS_Surgery"


def inputs_of(boxes: Any, scores: Any, classes: Any) -> list[np.ndarray]:
    """The plugin's three inputs: boxes [N, 4] and scores [N] float32, classes [N] int32."""
    return [np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(scores, dtype=np.float32).reshape(-1),
            np.asarray(classes, dtype=np.int32).reshape(-1)]  # fmt: skip


def compare(cp: Any, inputs: list[np.ndarray], iou: float) -> list[int]:
    """Run kernel and reference; assert identical keep and count; the kept indices."""
    fields = {"iou_threshold": iou}
    want = reference(NAME)([x.copy() for x in inputs], fields)
    got = run_gpu(cp, NAME, inputs, fields, want)
    count = int(want[1][0])
    assert got[1].tolist() == [count], (got[1], count)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[0].dtype == np.int32 and (got[0][count:] == -1).all()
    return want[0][:count].tolist()


def random_case(rng: np.random.Generator, n: int, classes: int, *, scale: float = 1000.0,
                shift: float = 0.0, pixels: bool = False, flip: bool = False,
                levels: int = 0) -> list[np.ndarray]:  # fmt: skip
    """n boxes, corners in [shift, shift + 1.1 * scale] (whole pixels or fractional), sides up
    to a tenth of the scale; `flip`: some corners swapped; scores uniform or on `levels` values."""
    corner = rng.random((n, 2)) * scale + shift
    size = rng.random((n, 2)) * scale * 0.1
    if pixels:
        corner, size = np.floor(corner), np.floor(size) + 1
    boxes = np.concatenate([corner, corner + size], axis=1)
    if flip:
        swap = rng.random(n) < 0.5
        boxes[swap] = boxes[swap][:, [2, 3, 0, 1]]
        swap = rng.random(n) < 0.3
        boxes[swap] = boxes[swap][:, [0, 3, 2, 1]]
    scores = rng.random(n) if not levels else rng.integers(0, levels, n) / levels
    return inputs_of(boxes, scores, rng.integers(0, classes, n))


@pytest.mark.parametrize(("n", "classes", "iou", "options"), [
    (1000, 1, 0.5, {}),
    (1000, 80, 0.5, {}),
    (5000, 1, 0.5, {"pixels": True}),
    (20000, 80, 0.5, {"pixels": True}),
    (20000, 1, 0.7, {}),
    (3000, 3, 0.3, {"flip": True}),
    (2000, 5, 0.6, {"levels": 7}),  # ties: lower index first
    (2000, 4, 0.5, {"shift": -60.0, "scale": 50.0}),  # corners below -1: classes overlap
    (1500, 1, 0.0, {}),  # any positive overlap suppresses
    (1500, 9, 1.0, {"pixels": True}),  # IoU never exceeds 1: all kept
    (3000, 300, 0.45, {"scale": 1e4}),  # large offsets: the moved boxes round in float32
    (4000, 2, 0.5, {"scale": 1.0}),  # normalised coordinates
    (64, 1, 0.1, {"scale": 10.0}),  # exactly one 64-box tile (a low IoU: some suppressed)
    (65, 2, 0.1, {"scale": 10.0}),  # one box into a second tile
])  # fmt: skip
def test_batched_nms_random(cp: Any, n: int, classes: int, iou: float,
                            options: dict[str, Any]) -> None:  # fmt: skip
    rng = np.random.default_rng(n + classes)
    kept = compare(cp, random_case(rng, n, classes, **options), iou)
    if iou == 1.0:
        assert len(kept) == n
    elif classes < 10:
        assert 0 < len(kept) < n


def test_batched_nms_edges(cp: Any) -> None:
    rng = np.random.default_rng(5)
    assert compare(cp, inputs_of(np.zeros((0, 4)), [], []), 0.5) == []  # N = 0: count 0
    assert compare(cp, inputs_of([[1, 2, 3, 4]], [0.5], [0]), 0.5) == [0]  # N = 1
    same = np.tile([[10.0, 20.0, 30.5, 40.25]], (300, 1))  # identical boxes: the best survives
    scores = rng.random(300)
    assert compare(cp, inputs_of(same, scores, np.zeros(300)), 0.5) == [int(np.argmax(scores))]
    assert compare(cp, inputs_of(same, np.full(300, 0.25), np.zeros(300)), 0.9) == [0]  # ties
    kept = compare(cp, inputs_of(same, scores, np.arange(300) % 7), 0.5)  # one per class
    assert sorted(np.arange(300)[kept] % 7) == list(range(7))
    flat = [[0, 0, 10, 10], [0, 0, 10, 0], [5, 5, 5, 5], [0, 0, 0, 10], [1, 1, 9, 9]]
    assert compare(cp, inputs_of(flat, [0.9, 0.8, 0.7, 0.6, 0.5], np.zeros(5)), 0.0) == [
        0, 1, 2, 3]  # degenerate boxes neither suppress nor are suppressed  # fmt: skip
    flipped = [[0, 0, 10, 10], [10, 10, 0, 0], [10, 0, 0, 10]]
    assert compare(cp, inputs_of(flipped, [0.3, 0.9, 0.6], np.zeros(3)), 0.5) == [1]
    touch = [[0, 0, 1, 1], [1, 0, 2, 1], [0, 1, 1, 2]]  # shared edges: no overlap at IoU 0
    assert compare(cp, inputs_of(touch, [0.1, 0.2, 0.3], np.zeros(3)), 0.0) == [2, 1, 0]
    half = [[0, 0, 2, 1], [0, 0, 1, 1]]  # IoU exactly 0.5: suppressed only above it
    assert compare(cp, inputs_of(half, [0.9, 0.8], [0, 0]), 0.5) == [0, 1]
    assert compare(cp, inputs_of(half, [0.9, 0.8], [0, 0]), 0.49) == [0]
    cross = [[0, 0, 10, 10], [-11, -11, -1, -1]]  # moved onto each other across classes
    assert compare(cp, inputs_of(cross, [0.9, 0.8], [0, 1]), 0.5) == [0]
    spread = [[k * 10, 0, k * 10 + 5, 5] for k in range(4)]  # -0.0 == +0.0: index order
    assert compare(cp, inputs_of(spread, [0.0, -0.0, -1.0, 0.0], np.zeros(4)), 0.5) == [0, 1, 3, 2]
    # all suppressed but one: nested boxes around one centre, IoU with the best above 0.3
    nest = [[50 - s, 50 - s, 50 + s, 50 + s] for s in np.linspace(20, 23, 400)]
    assert len(compare(cp, inputs_of(nest, rng.random(400), np.zeros(400)), 0.3)) == 1


def test_batched_nms_on_a_side_stream_and_strided_inputs(cp: Any) -> None:
    """CuPy's current stream is honoured, and non-contiguous / unaligned inputs are copied."""
    rng = np.random.default_rng(8)
    boxes, scores, classes = random_case(rng, 3000, 4)
    fields = {"iou_threshold": 0.5}
    want = reference(NAME)([boxes, scores, classes], fields)
    wide = cp.zeros((3000, 5), dtype=cp.float32)
    wide[:, 1:] = cp.asarray(boxes)  # boxes = wide[:, 1:]: strided, 4 bytes past alignment
    keep = cp.full((3000,), -7, dtype=cp.int32)
    count = cp.full((1,), -7, dtype=cp.int32)
    stream = cp.cuda.Stream(non_blocking=True)
    cp.cuda.Device().synchronize()
    with stream:
        run_arrays(NAME, fields, [wide[:, 1:], cp.asarray(scores), cp.asarray(classes)],
                   [keep, count])  # fmt: skip
    stream.synchronize()
    assert cp.asnumpy(count).tolist() == want[1].tolist()
    np.testing.assert_array_equal(cp.asnumpy(keep), want[0])


def test_batched_nms_matches_torchvision(cp: Any) -> None:
    """On whole-pixel corners at or above 0 (every overlap exact up to its division, offsets
    exact) and distinct scores, the export's semantics are torchvision's own batched_nms (which
    above 5000 boxes on CUDA runs a per-class NMS instead of the offsets, and sorts unstably)."""
    torch = pytest.importorskip("torch", reason="torch is not installed here")
    ops = pytest.importorskip("torchvision.ops", reason="torchvision is not installed here")
    for n, classes in ((1000, 1), (1000, 80), (5000, 1), (20000, 80)):
        rng = np.random.default_rng(n * classes)
        boxes, _, labels = random_case(rng, n, classes, pixels=True)
        scores = (rng.permutation(n) / n).astype(np.float32)  # distinct: torch's sort order
        keep = cp.full((n,), -7, dtype=cp.int32)
        count = cp.full((1,), -7, dtype=cp.int32)
        run_arrays(NAME, {"iou_threshold": 0.5},
                   [cp.asarray(boxes), cp.asarray(scores), cp.asarray(labels)], [keep, count])
        ours = cp.asnumpy(keep[: int(count[0])])
        theirs = ops.batched_nms(torch.from_numpy(boxes).cuda(), torch.from_numpy(scores).cuda(),
                                 torch.from_numpy(labels).long().cuda(), 0.5).cpu().numpy()
        np.testing.assert_array_equal(ours, theirs)  # fmt: skip


def test_enqueue_runs_the_kernel(cp: Any) -> None:
    """The IPluginV3 `enqueue` path (a stand-in TensorRT module): int32 classes in, int32 out."""
    inputs = random_case(np.random.default_rng(2), 2500, 6)
    schema = load_catalog().get(NAME)
    fields = {"iou_threshold": 0.5}
    plugin = _plugin_class(fake_trt())(schema, fields)
    want = reference(NAME)([x.copy() for x in inputs], fields)
    ins = [cp.asarray(x) for x in inputs]
    outs = [cp.full(w.shape, -7, dtype=w.dtype) for w in want]
    stream = cp.cuda.Stream(non_blocking=True)
    cp.cuda.Device().synchronize()
    plugin.enqueue([desc(x.shape, x.dtype) for x in inputs], [desc(w.shape, w.dtype) for w in want],
                   [x.data.ptr for x in ins], [y.data.ptr for y in outs], 0, stream.ptr)
    stream.synchronize()
    for got, w in zip(outs, want, strict=True):
        np.testing.assert_array_equal(cp.asnumpy(got), w)


# --- build-time checks (no GPU needed) ------------------------------------------------------------

IOU = {"iou_threshold": 0.5}
DTYPES = ["float32", "float32", "int32"]


def test_check_accepts_known_and_unknown_sizes() -> None:
    check(NAME, [(20000, 4), (20000,), (20000,)], DTYPES, IOU)
    check(NAME, [(-1, 4), (-1,), (-1,)], DTYPES, IOU)
    check(NAME, [(0, 4), (0,), (0,)], DTYPES, {"iou_threshold": 0.0})
    check(NAME, [(32768, 4), (-1,), (32768,)], DTYPES, {"iou_threshold": 1.0})


@pytest.mark.parametrize(("shapes", "dtypes", "fields", "message"), [
    ([(10, 4), (10,), (10,)], ["float32", "float32", "float32"], IOU,
     "classes int32, got"),
    ([(10, 4), (10,), (10,)], ["float16", "float16", "int32"], IOU, "float32 and classes int32"),
    ([(10, 4), (10,)], ["float32", "float32"], IOU, "takes boxes and scores"),
    ([(10, 5), (10,), (10,)], DTYPES, IOU, r"input 'boxes' has shape \[10, 5\]; expected \[N, 4\]"),
    ([(10, 4, 1), (10,), (10,)], DTYPES, IOU, "input 'boxes' has shape .* expected rank 2"),
    ([(10, 4), (1, 10), (10,)], DTYPES, IOU, "input 'scores' has shape .* expected rank 1"),
    ([(10, 4), (10,), (9,)], DTYPES, IOU, "must hold the same number of boxes"),
    ([(40000, 4), (-1,), (-1,)], DTYPES, IOU, "40000 boxes; the GPU kernel takes at most 32768"),
    ([(10, 4), (10,), (10,)], DTYPES, {"iou_threshold": 1.5}, r"must be in \[0, 1\], got 1.5"),
    ([(10, 4), (10,), (10,)], DTYPES, {"iou_threshold": -0.1}, r"must be in \[0, 1\]"),
    ([(10, 4), (10,), (10,)], DTYPES, {"iou_threshold": float("nan")}, r"must be in \[0, 1\]"),
    ([(10, 4), (10,), (10,)], DTYPES, {}, "field 'iou_threshold' is missing"),
])  # fmt: skip
def test_check_refuses(shapes: list[tuple[int, ...]], dtypes: list[str], fields: dict[str, Any],
                       message: str) -> None:  # fmt: skip
    with pytest.raises(GpuKernelError, match=f"{NAME}: .*{message}"):
        check(NAME, shapes, dtypes, fields)


def test_provided_by_surgery_on_every_target() -> None:
    """No TensorRT plugin library has it: surgery's creator and kernel provide it everywhere,
    and the native alternative is ONNX NonMaxSuppression."""
    from plugins.gpu import GPU_KERNELS
    from surgery.ops.targets import TARGET_NAMES, provision

    schema = load_catalog().get(NAME)
    assert NAME in GPU_KERNELS and "surgery" in schema.catalogs
    for target in TARGET_NAMES:
        found = provision(schema, target)
        assert found.provider == "surgery" and found.entry is not None
        assert "NonMaxSuppression" in (found.entry.native or "")
    assert [s.dtype for s in schema.inputs] == ["float32", "float32", "int32"]
    assert schema.output_shapes([(7, 4), (7,), (7,)], IOU) == [(7,), (1,)]
    assert schema.output_dtypes(IOU) == ["int32", "int32"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-rs"]))
