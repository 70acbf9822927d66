"""Helpers shared by the plugin references: errors, input checks, greedy NMS, box overlap."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from surgery.errors import SurgeryError

F32 = np.float32


class PluginReferenceError(SurgeryError):
    """A plugin reference got inputs or fields it cannot work with, or has no reference."""


class PluginFields(NamedTuple):
    """A plugin node of a graph: name, op (creator name), field values (defaults filled)."""

    name: str
    op: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class SideContext:
    """What a side input's reference function gets: the plugin node, the tensor's shape (given
    with `--input`/`--shape`, else declared; None dims unknown; None: unknown rank), the batch
    to use where dim 0 is unknown, and every plugin node of the graph (a value may depend on
    another plugin's fields, e.g. the image size)."""

    node: str
    op: str
    fields: Mapping[str, Any]
    shape: tuple[int | None, ...] | None
    batch: int
    plugins: tuple[PluginFields, ...] = ()

    def peers(self, op: str) -> list[PluginFields]:
        """The graph's plugin nodes of creator `op`, in graph order."""
        return [p for p in self.plugins if p.op == op]


@dataclass(frozen=True)
class SideValue:
    """A side input's implied value and how it was derived (one phrase, for reports)."""

    value: np.ndarray
    how: str


def field(plugin: str, fields: Mapping[str, Any], name: str) -> Any:
    """Field `name` of `fields`, or PluginReferenceError naming the plugin."""
    if name not in fields or fields[name] is None:
        raise PluginReferenceError(f"{plugin}: field '{name}' is missing")
    return fields[name]


def inputs_exactly(plugin: str, inputs: Sequence[np.ndarray], count: int) -> list[np.ndarray]:
    """The inputs as float32 arrays, after checking there are `count` of them."""
    if len(inputs) != count:
        raise PluginReferenceError(f"{plugin}: expected {count} input(s), got {len(inputs)}")
    return [np.asarray(x, dtype=F32) for x in inputs]


def need_rank(plugin: str, role: str, array: np.ndarray, ranks: Sequence[int]) -> None:
    """Raise unless `array` has one of `ranks`."""
    if array.ndim not in ranks:
        shown = " or ".join(str(r) for r in ranks)
        raise PluginReferenceError(
            f"{plugin}: input '{role}' has shape {array.shape}; expected rank {shown}"
        )


def reshape_to(plugin: str, role: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`array` viewed as `shape` (same number of elements), or an error naming the role."""
    if int(np.prod(shape)) != array.size:
        raise PluginReferenceError(
            f"{plugin}: input '{role}' has shape {array.shape} ({array.size} values); "
            f"expected {int(np.prod(shape))} values as {shape}"
        )
    return array.reshape(shape)


def stable_desc(scores: np.ndarray) -> np.ndarray:
    """Indices sorting `scores` high to low, ties kept in index order (as cub's radix sort)."""
    return np.argsort(-scores.astype(np.float64), kind="stable")


def greedy_nms(
    boxes: np.ndarray,
    order: np.ndarray,
    overlap: Callable[[np.ndarray, np.ndarray], np.ndarray],
    threshold: float,
    limit: int | None = None,
) -> list[int]:
    """Visit `order`; keep a box unless a kept one overlaps it by more than `threshold`."""
    kept: list[int] = []
    alive = np.ones(len(order), dtype=bool)
    for pos, index in enumerate(order):
        if not alive[pos]:
            continue
        kept.append(int(index))
        if limit is not None and len(kept) >= limit:
            break
        rest = order[pos + 1 :]
        if len(rest):
            hit = overlap(boxes[index], boxes[rest]) > threshold
            alive[pos + 1 :] &= ~hit
    return kept


def iou_corners(ref: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one [a1, b1, a2, b2] box with many, no +1, zero when the overlap is empty."""
    lo = np.maximum(ref[:2], others[:, :2])
    hi = np.minimum(ref[2:], others[:, 2:])
    size = hi - lo
    inter = size[:, 0] * size[:, 1]
    area_ref = (ref[2] - ref[0]) * (ref[3] - ref[1])
    area = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_ref + area - inter)
    return np.where((size < 0).any(axis=1), F32(0), iou).astype(F32)
