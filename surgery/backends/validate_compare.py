"""Validation comparisons: tolerances, layout, and the plugins' comparison contracts.

`compare` checks |got - want| <= atol + rtol * |want| (a channels-first plugin tensor transposed
first, equal-size tensors of other shapes flat where allowed). A plugin output whose schema
declares padding rows (`"compare": {"padding": ...}`, see `surgery.ops.plugin_schema`) is compared
by `compare_padded`: valid rows as usual, padding rows must be padding in both graphs, and the
padding marker differs (DetectionLayer_TRT class -1 where Matterport writes 0). A failure
downstream of a plugin with a known deviation (`"deviations"`) that applies to its inputs names
it and its size (`deviation_notes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef
from surgery.ops.plugin_contracts import PaddingSpec
from surgery.ops.plugin_schema import load_catalog

# Ops that pass a tensor through unchanged: a graph output read through them is the plugin's.
_PASSTHROUGH = {"Identity", "IdentityN", "Snapshot", "StopGradient", "PreventGradient"}


@dataclass
class Comparison:
    """One pair of tensors compared: what, where, errors, verdict."""

    label: str
    original: str
    rewritten: str
    shape: tuple[int, ...] | None
    max_abs: float
    max_rel: float
    passed: bool
    note: str = ""
    deviation: str = ""  # on a failure: the known plugin deviations upstream that apply

    def line(self) -> str:
        """One report line."""
        verdict = "ok  " if self.passed else "FAIL"
        if not self.passed and self.deviation:
            verdict = f"FAIL ({self.deviation})"
        shape = "" if self.shape is None else f" {tuple(self.shape)}"
        extra = f"  ({self.note})" if self.note else ""
        return (
            f"{verdict} {self.label}{shape}: max abs {self.max_abs:.3g}, "
            f"max rel {self.max_rel:.3g}{extra}"
        )


# A plugin that works channels-first reads and writes NCHW (or [N, B, C, h, w]) where the TF
# graph it replaced had NHWC: these permutations take the rewritten tensor to the original's
# layout, tried only when the shapes say the tensor was laid out the other way.
_LAYOUT_PERMS = {4: (0, 2, 3, 1), 5: (0, 1, 3, 4, 2)}


def _layout_perm(
    got: tuple[int, ...], want: tuple[int, ...], *, force: bool = False
) -> tuple[int, ...] | None:
    """The channels-first -> channels-last permutation that turns shape `got` into `want`;
    with `force` (the original is known channels-last) also when both shapes read the same."""
    perm = _LAYOUT_PERMS.get(len(got))
    if perm is None or len(got) != len(want) or (got == want and not force):
        return None
    return perm if tuple(got[p] for p in perm) == tuple(want) else None


# TF ops that only exist channels-last: a tensor they produce is NHWC
_NHWC_ONLY = {"ResizeNearestNeighbor", "ResizeBilinear", "CropAndResize"}


def channels_last(graph: Graph, ref: TensorRef) -> bool:
    """Whether the original graph's tensor `ref` is known to be NHWC (by its producer)."""
    node = graph.get(ref.node)
    if node is None:
        return False
    if node.op in _NHWC_ONLY:
        return True
    return "data_format" in node.attr and node.attr["data_format"].s == b"NHWC"


def compare(
    label: str, original: str, rewritten: str, want: Any, got: Any, rtol: float, atol: float,
    *, flat_ok: bool = False, channels_last: bool = False,
) -> Comparison:  # fmt: skip
    """Compare `got` (rewritten) with `want` (original): |got - want| <= atol + rtol * |want|.

    With `flat_ok`, tensors of different shapes but equal size are compared element by element
    in memory order (a plugin's [N, K, 1, 1] against TF's [N, K/4, 1, 4]); the note says so.
    """
    want, got = np.asarray(want), np.asarray(got)
    perm = _layout_perm(got.shape, want.shape, force=channels_last)
    if perm is not None:
        moved = compare(label, original, rewritten, want, got.transpose(perm), rtol, atol)
        moved.note = f"channels-first in the rewritten graph, compared after transpose {perm}"
        return moved
    if want.shape != got.shape and flat_ok and want.size == got.size:
        flat = compare(label, original, rewritten, want.reshape(-1), got.reshape(-1), rtol, atol)
        flat.shape = tuple(want.shape)
        flat.note = f"compared flat: {tuple(got.shape)} in the rewritten graph"
        return flat
    if want.shape != got.shape:
        note = (
            f"shape {tuple(got.shape)} in the rewritten graph, {tuple(want.shape)} in the original"
        )
        return Comparison(
            label, original, rewritten, tuple(want.shape), np.inf, np.inf, False, note
        )
    if want.size == 0:
        return Comparison(label, original, rewritten, tuple(want.shape), 0.0, 0.0, True)
    if want.dtype.kind not in "fc" or got.dtype.kind not in "fc":
        same = bool(np.array_equal(want, got))
        diff = 0.0 if same else _max_abs_difference(want, got)
        return Comparison(label, original, rewritten, tuple(want.shape), diff, diff, same)
    max_abs, max_rel, passed = 0.0, 0.0, True
    for a, b in _chunks(want, got):
        err = np.abs(a - b)
        both_nan = np.isnan(a) & np.isnan(b)
        err = np.where(both_nan, 0.0, err)
        err = np.where(np.isnan(err), np.inf, err)
        scale = np.abs(a)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(scale > atol, err / scale, 0.0)
        bound = atol + rtol * np.where(np.isfinite(scale), scale, 0.0)
        passed = passed and bool(np.all(err <= bound))
        max_abs, max_rel = max(max_abs, float(err.max())), max(max_rel, float(rel.max()))
    return Comparison(
        label, original, rewritten, tuple(want.shape), max_abs, max_rel, passed
    )


# Elements compared at a time: the differences are taken in float64 (exact for float32
# operands), a block at a time, so that a large output costs a few MB, not eight times its size.
_CHUNK = 1 << 18


def _chunks(want: np.ndarray, got: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Equal-shaped `want` and `got`, flat, in float64 blocks of _CHUNK elements."""
    flat_want, flat_got = want.reshape(-1), got.reshape(-1)
    for start in range(0, flat_want.size, _CHUNK):
        stop = start + _CHUNK
        yield (flat_want[start:stop].astype(np.float64),
               flat_got[start:stop].astype(np.float64))  # fmt: skip


def _max_abs_difference(want: np.ndarray, got: np.ndarray) -> float:
    """The largest |want - got| of two equal-shaped non-float arrays, in float64."""
    return max(float(np.max(np.abs(a - b))) for a, b in _chunks(want, got))


# --------------------------------------------------------------------------- contracts
def plugin_source(graph: Graph, ref: TensorRef, plugins: Iterable[str]) -> TensorRef | None:
    """The plugin output port that `ref` is, directly or through Identity-like ops (never
    through a Reshape or anything else that may change it); None if it is none."""
    names = set(plugins)
    seen: set[TensorRef] = set()
    while ref not in seen and ref.node in graph:
        seen.add(ref)
        if ref.node in names:
            return ref
        node = graph.node(ref.node)
        index = ref.port if node.op == "IdentityN" else 0
        if node.op not in _PASSTHROUGH or index >= len(node.inputs):
            return None
        ref = node.inputs[index]
    return None


def padding_contract(
    graph: Graph, ref: TensorRef, plugins: Iterable[str]
) -> tuple[TensorRef, str, PaddingSpec] | None:
    """(plugin port, creator, padding) where `ref` is a plugin output whose schema declares
    padding rows; None otherwise (variadic outputs declare none)."""
    source = plugin_source(graph, ref, plugins)
    if source is None:
        return None
    op = graph.node(source.node).op
    catalog = load_catalog()
    if op not in catalog:
        return None
    port = 0
    for spec in catalog.get(op).outputs:
        if spec.max != spec.min:
            return None
        if source.port < port + spec.min:
            return None if spec.compare is None else (source, op, spec.compare.padding)
        port += spec.min
    return None


def compare_padded(
    label: str, original: str, rewritten: str, want: Any, got: Any, rtol: float, atol: float,
    padding: PaddingSpec, plugin: str,
) -> Comparison:  # fmt: skip
    """`compare` under a padding contract: rows (the last axis are columns) where `column` holds
    `padding.original` in `want` and `padding.plugin` in `got` are padding in both, and the
    column counts as equal there; a row that is padding on one side only fails."""
    want, got = np.asarray(want), np.asarray(got)
    column = padding.column
    if want.shape != got.shape or want.ndim < 1 or column >= want.shape[-1]:
        return compare(label, original, rewritten, want, got, rtol, atol)
    rows = want.reshape(-1, want.shape[-1])
    pad_original = rows[:, column] == padding.original
    pad_plugin = got.reshape(-1, got.shape[-1])[:, column] == padding.plugin
    both = pad_original & pad_plugin
    adjusted = got.reshape(-1, got.shape[-1]).copy()
    adjusted[both, column] = rows[both, column]
    result = compare(label, original, rewritten, want, adjusted.reshape(got.shape), rtol, atol)
    valid = _rows(int((~pad_original & ~pad_plugin).sum()), "valid")
    note = (
        f"compared {valid}; {_rows(int(both.sum()), 'padding')} ({padding.describe()}) "
        f"by {plugin}'s contract"
    )
    one_sided = np.flatnonzero(pad_original ^ pad_plugin)
    if len(one_sided):
        first = int(one_sided[0])
        where = tuple(int(i) for i in np.unravel_index(first, want.shape[:-1]))
        side = "original" if pad_original[first] else "rewritten graph"
        note += (
            f"; {_rows(len(one_sided), 'padding')} in one graph only (first: row {where}, "
            f"padding in the {side})"
        )
        result.passed = False
    result.note = note if not result.note else f"{note}; {result.note}"
    return result


def _rows(count: int, what: str) -> str:
    """`3 valid rows`, `1 padding row`."""
    return f"{count} {what} row{'' if count == 1 else 's'}"


# --------------------------------------------------------------------------- deviations
def upstream_plugins(graph: Graph, ref: TensorRef, plugins: Iterable[str]) -> set[str]:
    """Every plugin node `ref` is computed from (its own node included), through plugins too."""
    names = set(plugins)
    found: set[str] = set()
    seen: set[str] = set()
    stack = [ref.node]
    while stack:
        name = stack.pop()
        if name in seen or name not in graph:
            continue
        seen.add(name)
        if name in names:
            found.add(name)
        node = graph.node(name)
        stack.extend(r.node for r in node.inputs)
        stack.extend(node.controls)
    return found


def deviation_notes(
    graph: Graph, plugins: list[str], values: Mapping[TensorRef, np.ndarray],
) -> Callable[[TensorRef], str]:  # fmt: skip
    """A function giving, for a failed comparison's rewritten tensor, the known deviations of
    the plugins upstream of it that apply to their inputs (`values`: the evaluator's), upstream
    first, joined by `; ` (empty if none)."""
    from plugins.registry import deviations, reference

    order = {name: i for i, name in enumerate(plugins)}
    cache: dict[str, list[str]] = {}

    def of_plugin(name: str) -> list[str]:
        if name not in cache:
            node = graph.node(name)
            inputs = [values.get(r) for r in node.inputs]
            if not reference(node.op).schema.deviations or any(v is None for v in inputs):
                cache[name] = []
            else:
                found = deviations(node, [v for v in inputs if v is not None])
                cache[name] = [
                    f"known deviation of {node.op} at {name}: {size}" for _, size in found
                ]
            cache[name] += clamped_fields(node)
        return cache[name]

    def notes(ref: TensorRef) -> str:
        names = sorted(upstream_plugins(graph, ref, plugins), key=lambda n: order[n])
        return "; ".join(text for name in names for text in of_plugin(name))

    return notes


def clamped_fields(node: Any) -> list[str]:
    """Notes for the fields a rewrite clamped to the plugin's limit on `node`: the plugin then
    computes with less than the original graph (ProposalLayer_TRT keeping 1024 boxes before NMS
    where Matterport's COCO config keeps 6000)."""
    from surgery.ir.attrs import attr_value
    from surgery.ir.ports import CLAMPED_ATTR_PREFIX

    notes = []
    for key in sorted(node.attr):
        if key.startswith(CLAMPED_ATTR_PREFIX):
            field = key[len(CLAMPED_ATTR_PREFIX) :]
            asked = attr_value(node.attr[key])
            got = attr_value(node.attr[field]) if field in node.attr else "?"
            notes.append(
                f"{node.op} at {node.name} runs with {field} {got} where the rule asked "
                f"{asked} (clamped to the plugin's limit)"
            )
    return notes
