"""GPU kernels (plugins.gpu) against the NumPy references, through the pointer-level `launch`.

The kernel tests need CuPy and a CUDA GPU and skip without them (as in CI); the error-path tests
run everywhere. Runnable as a script too: `python tests/test_gpu_kernels.py`.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from plugins.gpu import GpuKernelError, GpuUnavailable, launch
from plugins.registry import reference
from plugins.trt.creators import _plugin_class
from surgery.ops.plugin_schema import load_catalog


def expected(name: str, x: np.ndarray, fields: dict[str, Any]) -> np.ndarray:
    """The NumPy reference's output for `x` (computed in float32), in x's dtype."""
    (y,) = reference(name)([x.astype(np.float32)], fields)
    return y.astype(x.dtype)


def run_gpu(cp: Any, name: str, x: np.ndarray, fields: dict[str, Any], out_shape: tuple,
            stream: Any = None, offset: int = 0) -> np.ndarray:  # fmt: skip
    """`launch` on device copies of `x`; `offset` elements shift both pointers off alignment."""
    flat = cp.zeros(x.size + offset, dtype=x.dtype)
    flat[offset:] = cp.asarray(x.ravel())
    out = cp.full(int(np.prod(out_shape)) + offset, np.nan, dtype=x.dtype)
    stream = stream if stream is not None else cp.cuda.get_current_stream()
    cp.cuda.Device().synchronize()
    shift = offset * x.itemsize
    launch(name, fields, x.shape, out_shape, np.dtype(x.dtype).name,
           flat.data.ptr + shift, out.data.ptr + shift, stream.ptr)  # fmt: skip
    stream.synchronize()
    return cp.asnumpy(out[offset:]).reshape(out_shape)


def rand(shape: tuple, dtype: Any, seed: int) -> np.ndarray:
    """Seeded standard-normal values of `dtype`."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32).astype(dtype)


DTYPES = [np.float32, np.float16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 64, 32, 32), (1000003,), (4, 1)])
@pytest.mark.parametrize("offset", [0, 1])
def test_lrelu(cp: Any, shape: tuple, dtype: Any, offset: int) -> None:
    x = rand(shape, dtype, seed=len(shape))
    x.flat[:3] = [0.0, -0.0, 1.0]
    fields = {"negSlope": 0.1}
    got = run_gpu(cp, "LReLU_TRT", x, fields, shape, offset=offset)
    np.testing.assert_array_equal(got, expected("LReLU_TRT", x, fields))


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of a float array, so NaN payloads and -0.0 compare exactly."""
    return a.view(np.uint32 if a.itemsize == 4 else np.uint16)


# Scale 2 and 4 take the vectorised kernel when W is a multiple of 4 / scale (float32) or
# 8 / scale (float16) and the pointers are aligned (offset 0); the rest the element-wise one.
# (8, 128, 64, 64) x2 has more vectors than threads launched, so threads loop.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "scale"),
    [((1, 3, 5, 7), 2.0), ((2, 16, 33, 17), 2.0), ((1, 8, 9, 300), 3.0), ((1, 4, 6, 6), 1.0),
     ((2, 5, 7, 11), 1.5), ((3, 4, 4), 4.0), ((2, 8, 5, 16), 2.0), ((1, 4, 6, 24), 4.0),
     ((3, 7, 32), 2.0), ((2, 3, 5, 6), 2.0), ((1, 2, 3, 5), 4.0), ((2, 3, 7, 2), 4.0),
     ((8, 128, 64, 64), 2.0)],  # fmt: skip
)
@pytest.mark.parametrize("offset", [0, 1])
def test_resize_nearest(cp: Any, shape: tuple, scale: float, dtype: Any, offset: int) -> None:
    x = rand(shape, dtype, seed=7)
    x.flat[:4] = [np.nan, -0.0, np.inf, -np.inf]
    bits(x).flat[4] = 0x7FC00000 + 0x1234 if x.itemsize == 4 else 0x7E12  # a NaN with a payload
    fields = {"scale": scale}
    want = expected("ResizeNearest_TRT", x, fields)
    got = run_gpu(cp, "ResizeNearest_TRT", x, fields, want.shape, offset=offset)
    np.testing.assert_array_equal(bits(got), bits(want))


# Aligned (offset 0), the last axis a multiple of 16 bytes takes `l2norm_rows` (one or more warps
# per row: (37, 256) leaves a block part empty, (5, 4096) has rows of several warps); an inner
# extent a multiple of 16 bytes with K <= 4096 takes `l2norm_cols` ((3, 40, 6, 8): a partial
# tile; (2, 4096, 8): the largest K); the rest, and offset 1, the element-wise kernels.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "axis"),
    [((2, 16, 5, 7), 1), ((1, 512, 32, 32), 1), ((4, 3, 64, 64), 1), ((3, 1000), -1),
     ((3, 1000), 0), ((2, 5, 7, 9), 3), ((2, 5, 7, 9), -2), ((6, 3), 1), ((7,), 0),
     ((2, 20000), 1), ((1, 17000, 3), 1), ((2, 300, 1, 1), 1), ((37, 256), 1),
     ((5, 4096), -1), ((3, 40, 6, 8), 1), ((2, 4096, 8), 1), ((2, 4097, 8), 1),
     ((2, 1, 4, 8), 1), ((8, 512, 16, 16), 1)],  # fmt: skip
)
@pytest.mark.parametrize("offset", [0, 1])
def test_l2norm(cp: Any, shape: tuple, axis: int, dtype: Any, offset: int) -> None:
    x = rand(shape, dtype, seed=11)
    index = tuple(0 if d != axis % len(shape) else slice(None) for d in range(len(shape)))
    if len(shape) > 1:
        x[index] = 0  # one all-zero line along the axis: the epsilon floor
    fields = {"axis": axis, "epsilon": 1e-12}
    got = run_gpu(cp, "L2Norm_Surgery", x, fields, shape, offset=offset)
    want = expected("L2Norm_Surgery", x, fields)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-3, "atol": 1e-3}
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), **tol)
    if len(shape) > 1:
        assert np.all(got[index] == 0)


@pytest.mark.parametrize(("shape", "axis"), [((4, 64), 1), ((2, 8, 4, 8), 1), ((2, 8, 3, 3), 1)])
def test_l2norm_nan_spreads_over_its_line_only(cp: Any, shape: tuple, axis: int) -> None:
    x = rand(shape, np.float32, seed=2)
    x[(1,) * len(shape)] = np.nan
    got = run_gpu(cp, "L2Norm_Surgery", x, {"axis": axis, "epsilon": 1e-12}, shape)
    want = expected("L2Norm_Surgery", x, {"axis": axis, "epsilon": 1e-12})
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert 0 < np.isnan(got).sum() < got.size
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_l2norm_default_epsilon_and_large_epsilon(cp: Any) -> None:
    x = rand((2, 8, 3, 3), np.float32, seed=3) * 1e-3
    for fields in ({"axis": 1}, {"axis": 1, "epsilon": 1.0}):
        got = run_gpu(cp, "L2Norm_Surgery", x, fields, x.shape)
        want = expected("L2Norm_Surgery", x, fields)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_runs_on_the_given_stream(cp: Any) -> None:
    stream = cp.cuda.Stream(non_blocking=True)
    x = rand((4, 32, 64, 64), np.float32, seed=5)
    got = run_gpu(cp, "ResizeNearest_TRT", x, {"scale": 2.0}, (4, 32, 128, 128), stream=stream)
    np.testing.assert_array_equal(got, expected("ResizeNearest_TRT", x, {"scale": 2.0}))


def test_external_stream_wraps_the_given_handle(cp: Any) -> None:
    from plugins.gpu.runtime import external_stream

    stream = cp.cuda.Stream(non_blocking=True)
    assert external_stream(stream.ptr, cp.cuda.Device().id).ptr == stream.ptr


def test_bad_shapes_are_refused(cp: Any) -> None:
    x = cp.zeros((1, 2, 4, 4), dtype=cp.float32)
    with pytest.raises(GpuKernelError, match="does not match"):
        launch("ResizeNearest_TRT", {"scale": 2.0}, (1, 2, 4, 4), (1, 2, 4, 4), "float32",
               x.data.ptr, x.data.ptr)  # fmt: skip
    with pytest.raises(GpuKernelError, match="axis 4 is out of range"):
        launch("L2Norm_Surgery", {"axis": 4}, (1, 2, 4, 4), (1, 2, 4, 4), "float32",
               x.data.ptr, x.data.ptr)  # fmt: skip


def test_unknown_plugin_and_dtype_are_refused() -> None:
    with pytest.raises(GpuKernelError, match="NoSuchPlugin_TRT has no GPU kernel"):
        launch("NoSuchPlugin_TRT", {}, (1,), (1,), "float32", 0, 0)
    with pytest.raises(GpuKernelError, match="dtype int8"):
        launch("LReLU_TRT", {"negSlope": 0.1}, (1,), (1,), "int8", 0, 0)


# --- the IPluginV3 enqueue path, with a stand-in for the TensorRT module -------------------------


def fake_trt() -> types.ModuleType:
    """Just what SchemaPlugin needs from TensorRT: its base classes and DataType."""
    trt = types.ModuleType("fake_tensorrt")
    for base in ("IPluginV3", "IPluginV3OneCore", "IPluginV3OneBuild", "IPluginV3OneRuntime"):
        setattr(trt, base, type(base, (), {"__init__": lambda self: None}))
    trt.DataType = types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", INT8="INT8")
    return trt


@pytest.fixture(scope="module")
def plugin_class() -> Iterator[type]:
    """SchemaPlugin built over the stand-in TensorRT module."""
    yield _plugin_class(fake_trt())


def desc(shape: tuple, data_type: str) -> types.SimpleNamespace:
    """A PluginTensorDesc stand-in."""
    return types.SimpleNamespace(dims=shape, type=data_type)


@pytest.mark.parametrize("name", ["LReLU_TRT", "ResizeNearest_TRT", "L2Norm_Surgery"])
def test_enqueue_runs_the_kernel(cp: Any, plugin_class: type, name: str) -> None:
    fields = {"LReLU_TRT": {"negSlope": 0.2}, "ResizeNearest_TRT": {"scale": 2.0},
              "L2Norm_Surgery": {"axis": 1, "epsilon": 1e-12}}[name]  # fmt: skip
    plugin = plugin_class(load_catalog().get(name), fields)
    x = rand((2, 8, 6, 5), np.float32, seed=1)
    want = expected(name, x, fields)
    x_dev, y_dev = cp.asarray(x), cp.zeros(want.shape, dtype=cp.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    plugin.enqueue([desc(x.shape, "FLOAT")], [desc(want.shape, "FLOAT")], [x_dev.data.ptr],
                   [y_dev.data.ptr], 0, stream.ptr)  # fmt: skip
    stream.synchronize()
    np.testing.assert_allclose(cp.asnumpy(y_dev), want, rtol=1e-5, atol=1e-6)


def test_enqueue_without_cupy_names_what_is_missing(
    plugin_class: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    plugin = plugin_class(load_catalog().get("LReLU_TRT"), {"negSlope": 0.1})
    with pytest.raises(GpuUnavailable, match="LReLU_TRT: the GPU kernel needs CuPy"):
        plugin.enqueue([desc((4,), "FLOAT")], [desc((4,), "FLOAT")], [0], [0], 0, 0)


def test_enqueue_refuses_other_data_types(plugin_class: type) -> None:
    plugin = plugin_class(load_catalog().get("LReLU_TRT"), {"negSlope": 0.1})
    with pytest.raises(GpuKernelError, match="TensorRT data type INT8"):
        plugin.enqueue([desc((4,), "INT8")], [desc((4,), "INT8")], [0], [0], 0, 0)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-rs"]))
