"""The weights tf2onnx never saw, attached to its ONNX model as initializers.

Each weight stood in as a Placeholder (`surgery.backends.export.weight_standins`) is a graph input
of tf2onnx's model. What tf2onnx did to such an input, where a constant would have been folded, is
done here: the layout-only nodes it put on the input (the Transpose that turns a TensorFlow
HWIO kernel into ONNX's OIHW, a Reshape or Unsqueeze that shapes a bias for broadcasting) are
folded away, and the input becomes an initializer whose bytes are the GraphDef's, permuted where
a Transpose was folded. Values are moved as unsigned integers of the dtype's width, so no bit
changes; the bytes are produced one tensor at a time when the file is written.

An initializer keeps the Const's tensor name (`conv1/kernel:0`, as tf2onnx names a Const) when
the model reads the weight in one layout only; a second layout of the same weight is named after
the node that made it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from surgery.backends.export.weight_standins import Weight

# A layout step on the way from the Const to the initializer: ("T", perm) or ("R", dims).
Step = tuple[str, tuple[int, ...]]


@dataclass(frozen=True)
class Initializer:
    """One ONNX initializer made from a weight: `steps` applied to the Const's values."""

    name: str
    weight: Weight
    steps: tuple[Step, ...]
    dims: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return self.weight.nbytes

    def data(self) -> memoryview:
        """The raw little-endian bytes (one copy of the tensor, made now)."""
        array = self.weight.raw()
        for kind, arg in self.steps:
            array = array.transpose(arg) if kind == "T" else array.reshape(arg)
        return np.ascontiguousarray(array).data.cast("B")

    def header(self) -> Any:
        """A TensorProto with the name, dims and dtype, and no data."""
        from onnx import TensorProto

        return TensorProto(name=self.name, dims=self.dims, data_type=self.weight.onnx_dtype)


@dataclass(frozen=True)
class _Lazy:
    """A tensor of tf2onnx's graph that is a weight in some layout (not computed yet)."""

    weight: Weight
    steps: tuple[Step, ...]
    dims: tuple[int, ...]

    def key(self) -> tuple[str, tuple[Step, ...], tuple[int, ...]]:
        return self.weight.name, self.steps, self.dims


def attach_weights(model: Any, weights: Mapping[str, Weight]) -> list[Initializer]:
    """Turn the stand-ins' graph inputs of `model` into initializers (edited in place: inputs
    removed, layout nodes folded, readers renamed); the initializers to write, in order."""
    graph = model.graph
    by_input = {w.tensor_name: w for w in weights.values()}
    lazy: dict[str, _Lazy] = {}
    kept_inputs = []
    for value in graph.input:
        weight = by_input.get(value.name)
        if weight is None:
            kept_inputs.append(value)
        else:
            lazy[value.name] = _Lazy(weight, (), weight.shape)
    if not lazy:
        return []
    _replace(graph.input, kept_inputs)
    small = {t.name: t for t in graph.initializer}
    kept_nodes = []
    for node in graph.node:
        folded = _fold(node, lazy, small)
        if folded is None:
            kept_nodes.append(node)
        else:
            lazy[node.output[0]] = folded
    _replace(graph.node, kept_nodes)
    names = _initializer_names(graph, lazy)
    _rename(graph, names)
    _drop_unread(graph)
    gone = set(lazy) - set(names.values())  # folded away: their value_info describes nothing
    if any(v.name in gone for v in graph.value_info):
        _replace(graph.value_info, [v for v in graph.value_info if v.name not in gone])
    made: dict[str, Initializer] = {}
    for tensor, name in names.items():
        if name not in made:
            item = lazy[tensor]
            made[name] = Initializer(name, item.weight, item.steps, item.dims)
    return list(made.values())


def _replace(field: Any, items: list[Any]) -> None:
    """Set a repeated message field to `items` (copies taken first: clearing frees them)."""
    copies = []
    for item in items:
        copy = type(item)()
        copy.CopyFrom(item)
        copies.append(copy)
    del field[:]
    field.extend(copies)


def _fold(node: Any, lazy: dict[str, _Lazy], small: Mapping[str, Any]) -> _Lazy | None:
    """The weight `node` outputs, when it only changes the layout of one; else None."""
    if len(node.output) != 1 or not node.input or node.input[0] not in lazy or node.domain:
        return None
    source = lazy[node.input[0]]
    dims = source.dims
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "Identity" and len(node.input) == 1:
        return source
    if node.op_type == "Transpose" and len(node.input) == 1:
        perm = tuple(attrs["perm"].ints) if "perm" in attrs else tuple(reversed(range(len(dims))))
        if sorted(perm) != list(range(len(dims))):
            return None
        new_dims = tuple(dims[p] for p in perm)
        return _Lazy(source.weight, (*source.steps, ("T", perm)), new_dims)
    target = _reshaped(node, dims, attrs, small)
    if target is None:
        return None
    if source.steps and source.steps[-1][0] == "R":  # two reshapes in a row are one
        return _Lazy(source.weight, (*source.steps[:-1], ("R", target)), target)
    return _Lazy(source.weight, (*source.steps, ("R", target)), target)


def _reshaped(
    node: Any, dims: tuple[int, ...], attrs: Mapping[str, Any], small: Mapping[str, Any]
) -> tuple[int, ...] | None:
    """The dims after a Reshape/Unsqueeze/Squeeze with constant arguments; else None."""
    from onnx import numpy_helper

    def const(index: int) -> list[int] | None:
        if len(node.input) <= index or node.input[index] not in small:
            return None
        return [int(v) for v in numpy_helper.to_array(small[node.input[index]]).ravel()]

    if node.op_type == "Reshape" and len(node.input) == 2:
        shape = const(1)
        if shape is None or (attrs.get("allowzero") is not None and attrs["allowzero"].i):
            return None
        shape = [dims[i] if d == 0 and i < len(dims) else d for i, d in enumerate(shape)]
        total = int(np.prod(dims, dtype=np.int64))
        if shape.count(-1) == 1:
            rest = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
            if rest == 0 or total % rest:
                return None
            shape[shape.index(-1)] = total // rest
        if -1 in shape or int(np.prod(shape, dtype=np.int64)) != total:
            return None
        return tuple(shape)
    if node.op_type in ("Unsqueeze", "Squeeze"):
        axes = const(1) if len(node.input) > 1 else (
            list(attrs["axes"].ints) if "axes" in attrs else None
        )  # fmt: skip
        if node.op_type == "Unsqueeze":
            if axes is None:
                return None
            rank = len(dims) + len(axes)
            axes = sorted(a % rank for a in axes)
            out = list(dims)
            for axis in axes:
                out.insert(axis, 1)
            return tuple(out)
        if axes is None:
            return tuple(d for d in dims if d != 1)
        drop = {a % len(dims) for a in axes}
        if any(dims[a] != 1 for a in drop):
            return None
        return tuple(d for i, d in enumerate(dims) if i not in drop)
    return None


def _initializer_names(graph: Any, lazy: Mapping[str, _Lazy]) -> dict[str, str]:
    """Tensor name -> initializer name for every weight tensor the graph still reads: one name
    per distinct layout, the Const's own for a weight read in one layout only."""
    outputs = {o.name for o in graph.output}
    read = [o.name for o in graph.output if o.name in lazy]  # first: their names must stay
    read += [name for name in _reads(graph) if name in lazy]
    by_key: dict[tuple, str] = {}
    layouts: dict[str, set[tuple]] = {}
    for name in read:
        by_key.setdefault(lazy[name].key(), name)
        layouts.setdefault(lazy[name].weight.name, set()).add(lazy[name].key())
    names: dict[str, str] = {}
    for name in read:
        item = lazy[name]
        chosen = by_key[item.key()]
        if len(layouts[item.weight.name]) == 1 and chosen not in outputs:
            chosen = item.weight.tensor_name
        names[name] = chosen
    return names


def _rename(graph: Any, names: Mapping[str, str]) -> None:
    """Point every read of a tensor in `names` (at any depth) at its new name."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in names:
                node.input[i] = names[name]
        for sub in _subgraphs(node):
            for value in sub.output:
                value.name = names.get(value.name, value.name)
            _rename(sub, names)


def _subgraphs(node: Any) -> Iterator[Any]:
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def _reads(graph: Any) -> Iterator[str]:
    """Every tensor name read in `graph`: node inputs and subgraph outputs, at any depth."""
    for node in graph.node:
        yield from node.input
        for sub in _subgraphs(node):
            yield from (o.name for o in sub.output)
            yield from _reads(sub)


def _drop_unread(graph: Any) -> None:
    """Remove tf2onnx's small initializers only the folded nodes read (reshape targets)."""
    read = set(_reads(graph))
    read |= {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in read]
    if len(kept) != len(graph.initializer):
        _replace(graph.initializer, kept)
