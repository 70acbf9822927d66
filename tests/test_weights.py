"""`.wts` export: v1/v2 round trips on a real fixture, kernel re-layout, corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from surgery.cli import main
from surgery.ir import model_io
from surgery.ir.tensor_values import to_numpy
from surgery.passes import weights


def const_values(path: Path) -> dict[str, np.ndarray]:
    graph = model_io.load(path)
    return {n.name: to_numpy(n.attr["value"].tensor) for n in graph.nodes_by_op("Const")}


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_roundtrip_keeps_every_value(box3d_pb: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"box3d.{fmt}.wts"
    assert main(["weights", str(box3d_pb), "-o", str(out), "--format", fmt]) == 0
    back = weights.read(out)
    originals = const_values(box3d_pb)
    kept = {k: v for k, v in originals.items() if v.dtype in weights.TRT_TYPES}
    assert set(back) == {weights.wts_name(k) for k in kept}
    for name, value in kept.items():
        got = back[weights.wts_name(name)]
        assert got.dtype == value.dtype and got.shape == value.shape
        assert np.array_equal(got, value)


def test_oihw_layout_transposes_conv_and_dense_kernels(box3d_pb: Path, tmp_path: Path) -> None:
    out = tmp_path / "box3d.wts"
    assert main(["weights", str(box3d_pb), "-o", str(out), "--format", "v2",
                 "--layout", "oihw"]) == 0
    graph = model_io.load(box3d_pb)
    layouts = weights.kernel_layouts(graph)
    back = weights.read(out)
    originals = const_values(box3d_pb)
    conv_kernels = [n for n, p in layouts.items() if len(p) == 4]
    dense_kernels = [n for n, p in layouts.items() if len(p) == 2]
    assert conv_kernels and dense_kernels
    for name in conv_kernels:
        h, w, i, o = originals[name].shape
        assert back[weights.wts_name(name)].shape == (o, i, h, w)
        assert np.array_equal(back[weights.wts_name(name)], originals[name].transpose(3, 2, 0, 1))
    for name in dense_kernels:
        assert np.array_equal(back[weights.wts_name(name)], originals[name].T)


def test_v1_is_the_samples_text_format(box3d_pb: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.wts"
    written = weights.write(model_io.load(box3d_pb), out, version=1)
    lines = out.read_text().splitlines()
    assert int(lines[0]) == len(written) == len(lines) - 1
    name, code, size, *hexes = lines[1].split()
    first = written[0]
    assert (name, int(code), int(size)) == (first.name, 0, first.array.size)
    assert np.uint32(int(hexes[0], 16)).view(np.float32) == first.array.reshape(-1)[0]


def test_corrupt_files_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wts"
    bad.write_text("2\nconv 0 2 3f800000 40000000\nfc 0 3 3f800000\n")
    with pytest.raises(weights.WeightsError, match=r"bad\.wts:3: fc declares 3 values, has 1"):
        weights.read(bad)
    bad.write_bytes(weights.V2_MAGIC.encode() + b"\n1\nk 0 1 4 16\n\x00\x00")
    with pytest.raises(weights.WeightsError, match="corrupt v2"):
        weights.read(bad)
