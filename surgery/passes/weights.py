"""Const weights to TensorRT's `.wts` files (v1 hex text, v2 shaped raw bytes) and back.

v1 is the format TensorRT's network-API samples read: a count line, then one line per weight,
`name type size hex...` (type as nvinfer1::DataType: 0 float, 1 half, 2 int8, 3 int32; each value
the hex of its bit pattern). It has no shapes, so a JSON name map beside it keeps the TF node name
and shape of each entry. v2 is ours: a magic line, a count line, then per weight a header line
`name type rank dims... nbytes` followed by the raw little-endian bytes and a newline.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from surgery.errors import SurgeryError
from surgery.ir.atomic_files import write_atomic
from surgery.ir.graph import Graph
from surgery.ir.node import Node
from surgery.ir.tensor_values import to_numpy
from surgery.ops import opdefs

V2_MAGIC = "surgery-wts 2"
TRT_TYPES: dict[np.dtype, int] = {np.dtype("float32"): 0, np.dtype("float16"): 1,
                                  np.dtype("int8"): 2, np.dtype("int32"): 3}
NUMPY_TYPES = {code: dtype for dtype, code in TRT_TYPES.items()}
BITS = {0: np.uint32, 1: np.uint16, 2: np.uint8, 3: np.uint32}

# Which input of which op holds a kernel, and the permutation that gives TensorRT's layout:
# conv filters HWIO -> OIHW (KCRS); deconv filters HW(out)(in) -> (in)(out)HW; dense [in, out]
# -> [out, in].
KERNEL_ROLES = {
    "Conv2D": ("filter", (3, 2, 0, 1)),
    "DepthwiseConv2dNative": ("filter", (2, 3, 0, 1)),
    "Conv2DBackpropInput": ("filter", (3, 2, 0, 1)),
    "MatMul": ("b", (1, 0)),
}


class WeightsError(SurgeryError):
    """A `.wts` file that does not parse, or weights that cannot be written."""


@dataclass
class Weight:
    """One named array, with the TF node it came from and whether it was re-laid out."""

    name: str
    array: np.ndarray
    source: str
    layout: str = ""


def _through_identity(graph: Graph, node: Node) -> Node:
    """Frozen graphs read weights as `Identity <- Const`: follow Identity chains to the Const."""
    while node.op == "Identity" and node.inputs and node.inputs[0].node in graph:
        node = graph.node(node.inputs[0].node)
    return node


def kernel_layouts(graph: Graph) -> dict[str, tuple[int, ...]]:
    """Const name -> permutation to TensorRT's kernel layout, for every conv/deconv/dense kernel."""
    perms: dict[str, tuple[int, ...]] = {}
    for op, (role, perm) in KERNEL_ROLES.items():
        for node in graph.nodes_by_op(op):
            slot = opdefs.role_slot(op, role, node.attr, len(node.inputs))
            if slot >= len(node.inputs) or node.inputs[slot].node not in graph:
                continue
            const = _through_identity(graph, graph.node(node.inputs[slot].node))
            if const.op != "Const":
                continue
            if op == "MatMul" and node.attr["transpose_b"].b:
                continue  # already [out, in]
            # TF filters are HWIO whatever the data_format of the convolution is
            perms[const.name] = perm
    return perms


def wts_name(node_name: str) -> str:
    """TensorRT-friendly entry name: no spaces; '/' kept (the samples look names up verbatim)."""
    return re.sub(r"\s+", "_", node_name)


def collect(graph: Graph, *, layout: str = "tf") -> list[Weight]:
    """Every Const of a type `.wts` can hold, in graph order; `layout="oihw"` re-lays kernels."""
    if layout not in ("tf", "oihw"):
        raise WeightsError(f"unknown layout {layout!r} (expected 'tf' or 'oihw')")
    perms = kernel_layouts(graph) if layout == "oihw" else {}
    weights = []
    for node in graph.nodes_by_op("Const"):
        array = to_numpy(node.attr["value"].tensor)
        if array.dtype not in TRT_TYPES:
            continue
        perm = perms.get(node.name)
        if perm is not None and array.ndim == len(perm):
            weights.append(Weight(wts_name(node.name), np.ascontiguousarray(
                array.transpose(perm)), node.name, "oihw"))
        else:
            weights.append(Weight(wts_name(node.name), array, node.name))
    return weights


def dumps_v1(weights: list[Weight]) -> bytes:
    out = io.StringIO()
    out.write(f"{len(weights)}\n")
    for w in weights:
        code = TRT_TYPES[w.array.dtype]
        width = np.dtype(BITS[code]).itemsize * 2
        bits = w.array.reshape(-1).view(BITS[code])
        hexes = " ".join(format(int(b), f"0{width}x") for b in bits)
        out.write(f"{w.name} {code} {w.array.size}{' ' if hexes else ''}{hexes}\n")
    return out.getvalue().encode("ascii")


def dumps_v2(weights: list[Weight]) -> bytes:
    out = io.BytesIO()
    out.write(f"{V2_MAGIC}\n{len(weights)}\n".encode())
    for w in weights:
        data = w.array.astype(w.array.dtype.newbyteorder("<"), copy=False).tobytes()
        dims = " ".join(str(d) for d in w.array.shape)
        header = f"{w.name} {TRT_TYPES[w.array.dtype]} {w.array.ndim}"
        out.write(f"{header}{' ' + dims if dims else ''} {len(data)}\n".encode())
        out.write(data + b"\n")
    return out.getvalue()


def name_map(weights: list[Weight]) -> dict:
    return {w.name: {"node": w.source, "shape": list(w.array.shape), "layout": w.layout or "tf",
                     "dtype": str(w.array.dtype)} for w in weights}


def write(graph: Graph, path: str | Path, *, version: int = 1, layout: str = "tf") -> list[Weight]:
    """Write `path` and `path.names.json` atomically; return what was written."""
    weights = collect(graph, layout=layout)
    if version not in (1, 2):
        raise WeightsError(f"unknown .wts version {version} (expected 1 or 2)")
    data = dumps_v1(weights) if version == 1 else dumps_v2(weights)
    target = Path(path)
    write_atomic(target, data)
    write_atomic(target.with_name(target.name + ".names.json"),
                 json.dumps(name_map(weights), indent=1, sort_keys=True).encode())
    return weights


def read(path: str | Path) -> dict[str, np.ndarray]:
    """Read a v1 or v2 `.wts` file; v1 entries come back flat unless a name map gives shapes."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{p}: cannot read ({exc.strerror})") from None
    if data.startswith(V2_MAGIC.encode()):
        return _read_v2(p, data)
    arrays = _read_v1(p, data)
    names = p.with_name(p.name + ".names.json")
    if names.exists():
        shapes = json.loads(names.read_text())
        for key, meta in shapes.items():
            if key in arrays:
                arrays[key] = arrays[key].reshape(meta["shape"])
    return arrays


def _read_v1(path: Path, data: bytes) -> dict[str, np.ndarray]:
    lines = data.decode("ascii", errors="replace").splitlines()
    try:
        count = int(lines[0])
    except (IndexError, ValueError):
        raise WeightsError(f"{path}:1: expected the number of weights") from None
    arrays = {}
    for lineno, line in enumerate(lines[1 : count + 1], start=2):
        parts = line.split()
        try:
            name, code, size = parts[0], int(parts[1]), int(parts[2])
            bits = np.array([int(h, 16) for h in parts[3:]], dtype=BITS[code])
        except (IndexError, ValueError, KeyError):
            raise WeightsError(f"{path}:{lineno}: expected 'name type size hex...'") from None
        if bits.size != size:
            raise WeightsError(f"{path}:{lineno}: {name} declares {size} values, has {bits.size}")
        arrays[name] = bits.view(NUMPY_TYPES[code])
    if len(arrays) != count:
        raise WeightsError(f"{path}: declares {count} weights, holds {len(arrays)}")
    return arrays


def _read_v2(path: Path, data: bytes) -> dict[str, np.ndarray]:
    stream = io.BytesIO(data)
    stream.readline()
    try:
        count = int(stream.readline())
        arrays = {}
        for _ in range(count):
            fields = stream.readline().decode().split()
            name, code, rank = fields[0], int(fields[1]), int(fields[2])
            shape = tuple(int(d) for d in fields[3 : 3 + rank])
            nbytes = int(fields[3 + rank])
            raw = stream.read(nbytes)
            if len(raw) != nbytes or stream.read(1) != b"\n":
                raise ValueError("truncated")
            dtype = NUMPY_TYPES[code].newbyteorder("<")
            arrays[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(NUMPY_TYPES[code])
    except (ValueError, IndexError, KeyError):
        raise WeightsError(f"{path}: corrupt v2 .wts (at byte {stream.tell()})") from None
    return arrays
