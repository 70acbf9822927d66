"""Numeric validation: run an original and a rewritten graph on the same inputs and compare.

The original runs in TensorFlow, once. TensorFlow cannot import a graph holding plugin ops, so
the rewritten graph is evaluated region by region (`surgery.backends.validate_regions`): its TF
nodes in one session, its plugins by their NumPy references, in waves. The nodes it shares with the
original (same NodeDef, same inputs all the way up) are not computed twice: the original's run
also fetches the shared tensors the rewritten regions read.

Where the rewrite changed the graph's interface, `input_map` feeds a new placeholder from an
original tensor (optionally transposed), `exclude` names tensors not to compare (with the reason
in the caller's hands), and outputs whose plugin port replaced several original tensors (an NMS
output standing for boxes, scores and classes) are compared at the plugin boundaries instead.
Side inputs the plugins dropped are fed to the original with the values the plugins imply
(`surgery.backends.validate_inputs.implied_feeds`); plugin outputs are compared under their schemas'
contracts, and failures downstream of a known plugin deviation name it
(`surgery.backends.validate_compare`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surgery.backends.validate_compare import (
    Comparison,
    channels_last,
    compare,
    compare_padded,
    deviation_notes,
    padding_contract,
)  # fmt: skip
from surgery.backends.validate_inputs import (
    ImpliedFeed,
    InputMapping,
    InputSpec,
    Provenance,
    ValidationError,
    implied_feeds,
    input_specs,
    load_inputs,
    mapped_input,
    merged_ports,
    parse_input_map,
    parse_shape_flag,
    provenance_by_tensor,
    provenance_map,
    provenance_sources,
    random_inputs,
    side_inputs,
    side_placeholders,
    sources_from_changes,
)  # fmt: skip
from surgery.backends.validate_regions import (
    PluginRun,
    RegionEvaluator,
    evaluate,
    known_tensors,
    plugin_nodes,
    shared_nodes,
)  # fmt: skip
from surgery.errors import SurgeryError
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef, parse_tensor

__all__ = [
    "DEFAULT_ATOL", "DEFAULT_RTOL", "LAYOUT_ATOL", "LAYOUT_RTOL", "layout_change",
    "Boundary", "Comparison", "ImpliedFeed", "InputMapping", "InputSpec", "PluginRun",
    "RegionEvaluator", "ValidationError", "ValidationReport", "compare", "evaluate",
    "graph_output_tensors", "implied_feeds", "input_specs", "load_inputs", "merged_ports",
    "output_ports", "parse_input_map", "parse_shape_flag", "plugin_boundaries", "plugin_nodes",
    "provenance_map", "provenance_sources", "random_inputs", "side_inputs", "side_placeholders",
    "sources_from_changes", "validate",
]  # fmt: skip

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5
# When the rewrite runs its convolutions in another layout than the original (`layout nchw`),
# TensorFlow sums in another order: through a ResNet-101 backbone outputs move by ~1e-4..1e-3.
LAYOUT_RTOL = 1e-3
LAYOUT_ATOL = 1e-3
_LAYOUT_OPS = frozenset((
    "Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "MaxPool", "AvgPool", "BiasAdd",
    "FusedBatchNormV3",
))  # fmt: skip


def layout_change(original: Graph, rewritten: Graph) -> str:
    """Why the two graphs compute in different layouts ('' when they do not): the number of
    layout-sensitive ops in each data format."""

    def formats(graph: Graph) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in graph:
            if node.op in _LAYOUT_OPS and "data_format" in node.attr:
                key = node.attr["data_format"].s.decode() or "NHWC"
                out[key] = out.get(key, 0) + 1
        return out

    before, after = formats(original), formats(rewritten)
    if before.get("NCHW", 0) == after.get("NCHW", 0):
        return ""
    show = lambda f: ", ".join(f"{n} {k}" for k, n in sorted(f.items())) or "none"  # noqa: E731
    return f"the rewrite changed the layout (original: {show(before)}; rewritten: {show(after)})"
_NOT_OUTPUTS = {"NoOp", "Placeholder", "PlaceholderWithDefault", "Const", "Assert"}


# --------------------------------------------------------------------------- boundaries
def output_ports(node: Any) -> list[int]:
    """Every output port of `node` by its op's definition (port 0 where the count is unknown)."""
    from surgery.ops.opdefs import output_roles

    try:
        roles = output_roles(node.op, node.attr)
    except SurgeryError:
        return [0]
    if any(role.endswith("[*]") for role in roles):
        return [0]
    return list(range(len(roles)))


def graph_output_tensors(graph: Graph) -> list[str]:
    """Every output port of the nodes nothing reads, less NoOps, Consts and Placeholders."""
    return [
        f"{n.name}:{port}"
        for n in graph.graph_outputs()
        if n.op not in _NOT_OUTPUTS
        for port in output_ports(n)
    ]


@dataclass(frozen=True)
class Boundary:
    """A rewritten-graph tensor at a plugin's edge and the original tensor it stands for."""

    label: str
    original: TensorRef
    rewritten: TensorRef
    order: tuple[int, int]


def plugin_boundaries(
    original: Graph, rewritten: Graph, plugins: list[str], provenance: Provenance | None
) -> list[Boundary]:
    """Inputs and outputs of every plugin node paired with original tensors, upstream first.

    A plugin port that replaced several original tensors (see `merged_ports`) is no boundary.
    """
    sources = provenance_by_tensor(provenance)
    position = {name: i for i, name in enumerate(rewritten.topological_order())}
    found: dict[TensorRef, Boundary] = {}
    for name in plugins:
        node = rewritten.node(name)
        for slot, ref in enumerate(node.inputs):
            if ref.node in original and ref.node not in plugins:
                label = f"input {slot} of plugin {name} ({node.op}): {ref}"
                found.setdefault(ref, Boundary(label, ref, ref, (position[ref.node], 1)))
        ports = set(rewritten.used_ports(name)) | {0}
        for port in sorted(ports):
            ref = TensorRef(name, port)
            olds = sources.get(str(ref))
            if olds is not None and len(olds) > 1:
                continue
            if olds is not None:
                before = parse_tensor(olds[0])
            elif name in original:
                before = ref
            else:
                continue
            if before.node not in original:
                continue
            label = f"output {port} of plugin {name} ({node.op}) vs original {before}"
            found[ref] = Boundary(label, before, ref, (position[name], 2))
    return sorted(found.values(), key=lambda b: b.order)


def _upstream(rewritten: Graph, ref: TensorRef, plugins: set[str]) -> list[TensorRef]:
    """`ref` and the tensors it is computed from, up to (and including) plugin outputs."""
    stack, seen = [ref], {ref}
    while stack:
        current = stack.pop()
        if current.node not in rewritten or current.node in plugins:
            continue
        for source in rewritten.node(current.node).inputs:
            if source not in seen:
                seen.add(source)
                stack.append(source)
    return sorted(seen)


def _excluded(patterns: Sequence[str], *tensors: str | TensorRef) -> str | None:
    """The first glob of `patterns` that names one of `tensors` (as `node`, `node:k`)."""
    for pattern in patterns:
        for tensor in tensors:
            ref = parse_tensor(tensor) if isinstance(tensor, str) else tensor
            if any(fnmatch.fnmatchcase(name, pattern)
                   for name in (ref.node, f"{ref.node}:{ref.port}")):  # fmt: skip
                return pattern
    return None


# --------------------------------------------------------------------------- validate
@dataclass
class ValidationReport:
    """Per-output (and per-boundary) comparisons, the first divergent boundary, the verdict."""

    outputs: list[Comparison]
    boundaries: list[Comparison] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    skipped: list[str] = field(default_factory=list)  # what was not compared, and why
    input_map: list[str] = field(default_factory=list)
    implied: list[ImpliedFeed] = field(default_factory=list)  # side inputs fed to the original

    @property
    def passed(self) -> bool:
        """Whether every comparison made is within tolerance, and at least one was made."""
        compared = [*self.outputs, *self.boundaries]
        return bool(compared) and all(c.passed for c in compared)

    @property
    def first_divergent(self) -> Comparison | None:
        """The most upstream boundary that fails, if any."""
        return next((c for c in self.boundaries if not c.passed), None)

    @property
    def compared(self) -> list[Comparison]:
        """Every comparison made: outputs, then boundaries."""
        return [*self.outputs, *self.boundaries]

    def format(self) -> str:
        """The human-readable report."""
        lines = [
            f"plugins run by reference: {len(self.plugins)}; rtol {self.rtol:g}, atol {self.atol:g}"
        ]
        lines.extend(f"input map: {m}" for m in self.input_map)
        lines.extend(f"implied feed: {f.line()}" for f in self.implied)
        lines.append("outputs:")
        lines.extend("  " + c.line() for c in self.outputs)
        if self.boundaries:
            lines.append("boundaries (upstream first):")
            lines.extend("  " + c.line() for c in self.boundaries)
            first = self.first_divergent
            if first is not None:
                known = f" ({first.deviation})" if first.deviation else ""
                lines.append(f"first divergence: {first.label}{known}")
        if self.skipped:
            lines.append("not compared:")
            lines.extend("  " + why for why in self.skipped)
        if not self.compared:
            lines.append("nothing was compared")
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)


def validate(
    original: Graph,
    rewritten: Graph,
    feeds: Mapping[str, np.ndarray] | None = None,
    *,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    per_boundary: bool = False,
    provenance: Provenance | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = 0,
    input_map: Sequence[InputMapping] = (),
    exclude: Sequence[str] = (),
    on_plugin: Callable[[PluginRun], None] | None = None,
) -> ValidationReport:
    """Run both graphs on the same inputs and compare the original's outputs (and boundaries).

    `input_map` feeds placeholders the original lacks from original tensors; `exclude` globs
    (`node` or `node:k`, original or rewritten names) are reported as not compared, and so are
    the outputs computed from an excluded tensor (up to the nearest plugins). With
    `per_boundary` and a `provenance` that shows a plugin port replacing several original
    tensors, the outputs computed from that port are not compared (no original tensor is
    equal to them); the plugin's boundaries are.

    Tensors the plugins' side inputs name (`_side_<role>` attrs) are fed to the original with
    the value the plugins imply (`implied_feeds`), unless `feeds` has them. A compared tensor
    that is a plugin output with declared padding rows is compared under that contract; a
    failed comparison downstream of a plugin whose known deviation applies names it.

    `on_plugin` is called with every plugin node run, its inputs and outputs as the reference
    saw them (`surgery.backends.plugin_dump`). Nodes both graphs share (`shared_nodes`) are
    computed once, in the original's run.
    """
    from surgery.passes.tf_reference import run_graph_def

    implied = implied_feeds(original, rewritten, shapes, feeds)
    fed = {parse_tensor(f.tensor).node: f.value for f in implied
           if f.status == "fed" and f.value is not None}  # fmt: skip
    if feeds is None:
        feeds = random_inputs(original, shapes, seed, skip=fed)
    feeds = {**{parse_tensor(k).node: v for k, v in feeds.items()}, **fed}
    rewritten_specs = {s.name: s for s in input_specs(rewritten)}
    mapped = {m.new: m for m in input_map}
    if len(mapped) != len(input_map):
        raise ValidationError("--input-map: a placeholder is mapped twice")
    for mapping in input_map:
        if mapping.new not in rewritten_specs:
            raise ValidationError(
                f"--input-map {mapping}: the rewritten graph has no placeholder {mapping.new!r} "
                f"(placeholders: {', '.join(rewritten_specs) or 'none'})"
            )
        if mapping.source.node not in original:
            raise ValidationError(
                f"--input-map {mapping}: the original graph has no node {mapping.source.node!r}"
            )
    extra = sorted(set(rewritten_specs) - set(feeds) - set(mapped))
    if extra:
        raise ValidationError(
            f"the rewritten graph has placeholder(s) {', '.join(extra)} that the original "
            f"lacks; feed them from original tensors with --input-map NEW=OLD[:PERM]"
        )
    outputs = graph_output_tensors(original)
    if not outputs:
        raise ValidationError("the original graph has no outputs to compare")
    plugins = plugin_nodes(rewritten)
    boundaries = (
        plugin_boundaries(original, rewritten, plugins, provenance) if per_boundary else []
    )
    merged = merged_ports(provenance) if per_boundary else {}
    report = ValidationReport([], plugins=list(plugins), rtol=rtol, atol=atol,
                              input_map=[str(m) for m in input_map], implied=implied)  # fmt: skip
    to_compare: list[TensorRef] = []
    for name in outputs:
        ref = parse_tensor(name)
        if _excluded(exclude, ref) is None and ref.node not in rewritten:
            report.outputs.append(
                Comparison(str(ref), name, "", None, np.inf, np.inf, False,
                           "missing from the rewritten graph")
            )  # fmt: skip
            continue
        upstream = _upstream(rewritten, ref, set(plugins))
        hit = next(
            ((t, p) for t in upstream if (p := _excluded(exclude, t)) is not None), None
        )
        if hit is not None:
            source, pattern = hit
            how = "" if source == ref else f"computed from {source}, "
            report.skipped.append(f"output {ref}: {how}excluded ({pattern})")
            continue
        via = next((t for t in upstream if t in merged), None)
        if via is not None:
            report.skipped.append(
                f"output {ref}: computed from {via}, which replaced "
                f"{', '.join(merged[via])}; compared at the plugin boundaries instead"
            )
            continue
        to_compare.append(ref)
    kept_boundaries: list[Boundary] = []
    for boundary in boundaries:
        excluded_by = _excluded(exclude, boundary.original, boundary.rewritten)
        if excluded_by is None:
            kept_boundaries.append(boundary)
        else:
            report.skipped.append(f"{boundary.label}: excluded ({excluded_by})")

    original_inputs = {s.name for s in input_specs(original)}
    mapped_sources = {
        m.source for m in input_map
        if not (m.source.node in original_inputs and m.source.port == 0)
    }  # fmt: skip
    wanted = [*to_compare, *(b.rewritten for b in kept_boundaries)]
    # placeholders fed the same array in both graphs (a mapped one is fed another)
    same_feed = {n for n in rewritten_specs if n in original_inputs and n not in mapped}
    fetched = {*(str(r) for r in to_compare), *(str(b.original) for b in kept_boundaries),
               *(str(r) for r in mapped_sources)}  # fmt: skip
    shared, known = known_tensors(original, rewritten, plugins, wanted,
                                  shared_nodes(original, rewritten, plugins, same_feed), fetched)
    original_fetch = sorted({*fetched, *(str(r) for r in known)})
    reference = (
        run_graph_def(
            original, {f"{k}:0": v for k, v in feeds.items() if k in original_inputs},
            original_fetch,
        )  # fmt: skip
        if original_fetch
        else {}
    )
    rewritten_feeds = {k: v for k, v in feeds.items() if k in rewritten_specs}
    for mapping in input_map:
        source = mapping.source
        value = (
            feeds[source.node]
            if source.node in original_inputs and source.port == 0
            else reference[str(source)]
        )
        rewritten_feeds[mapping.new] = mapped_input(
            mapping, np.asarray(value), rewritten_specs[mapping.new]
        )
    evaluator = RegionEvaluator(rewritten, rewritten_feeds, shared=shared, on_plugin=on_plugin)
    values = evaluator.run(wanted, known={ref: reference[str(ref)] for ref in known})
    for ref in to_compare:
        report.outputs.append(_compare(rewritten, plugins, str(ref), ref, ref,
                                       reference[str(ref)], values[ref], rtol, atol))  # fmt: skip
    for boundary in kept_boundaries:
        report.boundaries.append(
            _compare(rewritten, plugins, boundary.label, boundary.original, boundary.rewritten,
                     reference[str(boundary.original)], values[boundary.rewritten], rtol, atol,
                     flat_ok=True, channels_last=channels_last(original, boundary.original))
        )  # fmt: skip
    failed = [c for c in report.compared if not c.passed and c.rewritten]
    if failed:
        notes = deviation_notes(rewritten, plugins, values)
        for comparison in failed:
            comparison.deviation = notes(parse_tensor(comparison.rewritten))
    return report


def _compare(
    rewritten: Graph, plugins: list[str], label: str, original: TensorRef, ref: TensorRef,
    want: Any, got: Any, rtol: float, atol: float, **options: bool,
) -> Comparison:  # fmt: skip
    """`compare`, or `compare_padded` where `ref` is a plugin output with padding rows."""
    contract = padding_contract(rewritten, ref, plugins)
    if contract is not None:
        _, op, padding = contract
        return compare_padded(label, str(original), str(ref), want, got, rtol, atol, padding, op)
    return compare(label, str(original), str(ref), want, got, rtol, atol, **options)
