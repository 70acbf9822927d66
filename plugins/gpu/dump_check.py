"""The GPU kernels on a `surgery validate --dump` folder: each plugin node's kernel run on the
inputs stored there and compared with the reference outputs stored beside them.

The dump is written where TensorFlow runs; this check needs only NumPy, CuPy and a GPU, so a user
checks the kernels on a GPU machine without TensorFlow: `surgery kernels DIR`. With the rewritten
model given too, every dumped node must be in it with the same plugin and field values, so a dump
of another model is refused, naming the plugin node that differs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.gpu.dispatch import GPU_KERNELS, run_arrays
from plugins.gpu.runtime import load_cupy
from surgery.errors import SurgeryError


class DumpMismatch(SurgeryError):
    """The dump does not belong to the model it is checked against."""


@dataclass(frozen=True)
class OutputCheck:
    """One output of one kernel run against the stored reference."""

    key: str
    max_abs: float
    worst_at: tuple[int, ...]
    ok: bool


@dataclass(frozen=True)
class KernelCheck:
    """One plugin node of the dump: its outputs' comparisons, or why it could not run."""

    node: str
    op: str
    outputs: tuple[OutputCheck, ...] = ()
    error: str | None = None

    @property
    def passed(self) -> bool:
        """Ran, and every output agrees with the reference."""
        return self.error is None and all(o.ok for o in self.outputs)

    def line(self) -> str:
        """One line for the report."""
        if self.error is not None:
            return f"FAIL  {self.op:<20} {self.node}: {self.error}"
        worst = max(self.outputs, key=lambda o: o.max_abs, default=None)
        detail = "" if worst is None else f"max |diff| {worst.max_abs:.3g} ({worst.key})"
        bad = [o for o in self.outputs if not o.ok]
        if bad:
            detail += "; differs: " + ", ".join(f"{o.key} at {list(o.worst_at)}" for o in bad)
        return f"{'pass' if self.passed else 'FAIL'}  {self.op:<20} {self.node}: {detail}"


def compare(key: str, got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> OutputCheck:
    """`got` against `want`: exact for integers, |got - want| <= atol + rtol |want| for floats
    (NaN where the reference has NaN)."""
    if got.shape != want.shape:
        return OutputCheck(key, math.inf, (), False)
    if not np.issubdtype(want.dtype, np.floating):
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
        ok = bool(np.all(diff == 0))
    else:
        g, w = got.astype(np.float64), want.astype(np.float64)
        both_nan = np.isnan(g) & np.isnan(w)
        diff = np.where(both_nan, 0.0, np.abs(g - w))
        diff = np.where(np.isnan(diff), np.inf, diff)
        ok = bool(np.all(diff <= atol + rtol * np.abs(np.nan_to_num(w))))
    if diff.size == 0:
        return OutputCheck(key, 0.0, (), ok)
    at = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return OutputCheck(key, float(diff[at]), tuple(int(i) for i in at), ok)


def check_dump(dump: Any, *, rtol: float = 1e-4, atol: float = 1e-5,
               plugins: Sequence[str] = ()) -> list[KernelCheck]:  # fmt: skip
    """Run every dumped plugin node (or those of the `plugins` ops) on the GPU and compare."""
    cupy = load_cupy("the plugin kernels")
    results = []
    for entry in dump.plugins:
        if plugins and entry.op not in plugins:
            continue
        if entry.op not in GPU_KERNELS:
            results.append(KernelCheck(entry.node, entry.op, error="no GPU kernel"))
            continue
        inputs, wants = entry.load()
        ins = [cupy.asarray(x) for x in inputs]
        outs = [cupy.full(w.shape, np.nan if w.dtype.kind == "f" else -1, dtype=w.dtype)
                for w in wants]  # fmt: skip  (NaN/-1: an element the kernel leaves unwritten)
        try:
            run_arrays(entry.op, entry.fields, ins, outs)
            cupy.cuda.get_current_stream().synchronize()
        except SurgeryError as exc:
            results.append(KernelCheck(entry.node, entry.op, error=str(exc)))
            continue
        checks = tuple(compare(f"out{k}", cupy.asnumpy(y), w, rtol, atol)
                       for k, (y, w) in enumerate(zip(outs, wants, strict=True)))  # fmt: skip
        results.append(KernelCheck(entry.node, entry.op, checks))
    return results


def match_model(dump: Any, graph: Any) -> None:
    """DumpMismatch unless every dumped node is in `graph` (a surgery Graph) with the same plugin
    op and the same field values: a dump of another model would check the wrong kernels."""
    from plugins.registry import node_fields
    from surgery.ops.plugin_schema import coerce_field, load_catalog

    catalog = load_catalog()
    for entry in dump.plugins:
        node = graph.get(entry.node)
        if node is None:
            raise DumpMismatch(f"plugin node {entry.node} ({entry.op}) of the dump is not in the "
                               "model: the dump was written for another model")  # fmt: skip
        if node.op != entry.op:
            raise DumpMismatch(f"plugin node {entry.node}: the dump has {entry.op}, the model "
                               f"{node.op}: the dump was written for another model")  # fmt: skip
        schema = catalog.get(entry.op)
        for name, value in node_fields(schema, node).items():
            dumped = entry.fields.get(name)
            if dumped is not None:
                dumped = coerce_field(schema, schema.field(name), dumped)
            if dumped != value:
                raise DumpMismatch(
                    f"plugin node {entry.node} ({entry.op}): field {name} is {value!r} in the "
                    f"model and {dumped!r} in the dump: the dump was written for another model"
                )
