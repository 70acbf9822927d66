"""Numeric validation: run an original and a rewritten graph on the same inputs and compare.

TensorFlow cannot import a graph holding plugin ops, so the rewritten graph is evaluated region by
region: plugin nodes are taken in waves (a plugin is ready once every plugin upstream of it has
run); each wave fetches the inputs of its plugins with one TF run of the graph pruned to what those
inputs need, with every plugin already run standing in as Placeholders fed its reference outputs;
then the NumPy references run. A last TF run fetches the requested outputs the same way.

Where the rewrite changed the graph's interface, `input_map` feeds a new placeholder from an
original tensor (optionally transposed), `exclude` names tensors not to compare (with the reason
in the caller's hands), and outputs whose plugin port replaced several original tensors (an NMS
output standing for boxes, scores and classes) are compared at the plugin boundaries instead.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surgery.errors import SurgeryError
from surgery.graph import Graph
from surgery.ports import TensorRef, parse_tensor
from surgery.protos import GraphDef, NodeDef

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5
_NOT_OUTPUTS = {"NoOp", "Placeholder", "PlaceholderWithDefault", "Const", "Assert"}
_STANDIN = "{node}/__surgery_port_{port}"


class ValidationError(SurgeryError):
    """Inputs that do not fit the graph, an op nobody can run, or graphs that cannot be paired."""


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class InputSpec:
    """A graph input: Placeholder name, dtype (numpy name) and shape (None: unknown dim)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None


def input_specs(graph: Graph) -> list[InputSpec]:
    """The Placeholders of `graph` with their declared dtype and shape."""
    from surgery.tf_reference import input_specs as specs_of

    return [InputSpec(s.name, s.dtype, s.shape) for s in specs_of(graph)]


def parse_shape_flag(text: str) -> tuple[str, tuple[int, ...]]:
    """`name=1,3,64,64` -> ("name", (1, 3, 64, 64))."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.split(",") if d.strip())
    except ValueError:
        shape = ()
    if not sep or not name or (dims.strip() and not shape) or any(d < 0 for d in shape):
        raise ValidationError(f"--shape {text!r}: expected NAME=D1,D2,... with whole numbers")
    return name.split(":")[0], shape


def _concrete_shape(spec: InputSpec, given: tuple[int, ...] | None) -> tuple[int, ...]:
    """The shape to feed: `given`, else the declared one with an unknown batch dim as 1."""
    if given is not None:
        if spec.shape is not None and (
            len(given) != len(spec.shape)
            or any(d is not None and d != g for d, g in zip(spec.shape, given, strict=True))
        ):
            raise ValidationError(
                f"--shape for {spec.name!r}: {given} does not fit declared {_show(spec.shape)}"
            )
        return given
    if spec.shape is None or any(d is None for d in spec.shape[1:]):
        raise ValidationError(
            f"placeholder {spec.name!r} has shape {_show(spec.shape)} with unknown dims; "
            f"give --shape {spec.name}=D1,D2,..."
        )
    return tuple(1 if d is None else d for d in spec.shape)


def _show(shape: tuple[int | None, ...] | None) -> str:
    """`(?, 64, 64, 3)`; `<unknown rank>`."""
    if shape is None:
        return "<unknown rank>"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def random_inputs(
    graph: Graph, shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded random values for every Placeholder of `graph`, keyed by node name."""
    shapes = dict(shapes or {})
    specs = input_specs(graph)
    unknown = sorted(set(shapes) - {s.name for s in specs})
    if unknown:
        raise ValidationError(
            f"--shape names {', '.join(unknown)}, which is not a placeholder "
            f"(placeholders: {', '.join(s.name for s in specs) or 'none'})"
        )
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = _concrete_shape(spec, shapes.get(spec.name))
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 10, shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.random(shape) < 0.5
        else:
            raise ValidationError(f"placeholder {spec.name!r}: cannot make random {spec.dtype}")
    return feeds


def load_inputs(path: str | os.PathLike, graph: Graph) -> dict[str, np.ndarray]:
    """Feeds from an `.npz` (keys: placeholder names, `:0` allowed), checked against `graph`."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            raw = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: cannot read inputs as .npz: {exc}") from None
    specs = {s.name: s for s in input_specs(graph)}
    feeds: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        ref = parse_tensor(key)
        if ref.node not in specs or ref.port != 0:
            raise ValidationError(
                f"{path}: array {key!r} names no placeholder "
                f"(placeholders: {', '.join(specs) or 'none'})"
            )
        spec = specs[ref.node]
        if spec.shape is not None and (
            value.ndim != len(spec.shape)
            or any(d is not None and d != v for d, v in zip(spec.shape, value.shape, strict=True))
        ):
            raise ValidationError(
                f"{path}: array {key!r} has shape {value.shape}; placeholder {spec.name!r} "
                f"is {_show(spec.shape)}"
            )
        want = np.dtype(spec.dtype)
        if value.dtype != want and not (value.dtype.kind == want.kind or want.kind == "f"):
            raise ValidationError(
                f"{path}: array {key!r} is {value.dtype}; placeholder {spec.name!r} is {want}"
            )
        feeds[spec.name] = value.astype(want)
    missing = [name for name in specs if name not in feeds]
    if missing:
        raise ValidationError(f"{path}: no array for placeholder(s) {', '.join(missing)}")
    return feeds


@dataclass(frozen=True)
class InputMapping:
    """A placeholder of the rewritten graph fed from an original tensor, transposed by `perm`."""

    new: str
    source: TensorRef
    perm: tuple[int, ...] | None = None

    def __str__(self) -> str:
        perm = "" if self.perm is None else ":" + ",".join(str(p) for p in self.perm)
        return f"{self.new}={self.source}{perm}"


def parse_input_map(text: str) -> InputMapping:
    """`Input=image_tensor:0,3,1,2` -> Input fed image_tensor transposed by (0, 3, 1, 2).

    OLD is any tensor of the original graph (`node`, `node:1`); a last `:`-part holding a comma
    is the permutation (so `x:1:0,3,1,2` is port 1 of `x`, transposed).
    """
    new, sep, rest = text.partition("=")
    new, rest = new.strip(), rest.strip()
    perm: tuple[int, ...] | None = None
    head, colon, tail = rest.rpartition(":")
    if colon and "," in tail:
        try:
            perm = tuple(int(p) for p in tail.split(","))
        except ValueError:
            perm = ()
        rest = head
        if not perm or sorted(perm) != list(range(len(perm))):
            raise ValidationError(
                f"--input-map {text!r}: {tail!r} is not a permutation of 0..{len(perm) - 1}"
            )
    try:
        source = parse_tensor(rest) if rest else None
    except SurgeryError:
        source = None
    if not sep or not new or source is None or ":" in new:
        raise ValidationError(
            f"--input-map {text!r}: expected NEW=OLD[:PERM], e.g. Input=image_tensor:0,3,1,2 "
            "(NEW a placeholder of the rewritten graph, OLD a tensor of the original)"
        )
    return InputMapping(new, source, perm)


def _mapped_input(
    mapping: InputMapping, value: np.ndarray, spec: InputSpec | None
) -> np.ndarray:
    """`value` transposed by the mapping's perm, checked against the new placeholder."""
    if spec is None:
        raise ValidationError(f"--input-map {mapping}: the rewritten graph has no placeholder "
                              f"{mapping.new!r}")  # fmt: skip
    if mapping.perm is not None:
        if len(mapping.perm) != value.ndim:
            raise ValidationError(
                f"--input-map {mapping}: permutation of rank {len(mapping.perm)} for "
                f"{mapping.source} of shape {tuple(value.shape)}"
            )
        value = np.ascontiguousarray(np.transpose(value, mapping.perm))
    if spec.shape is not None and (
        value.ndim != len(spec.shape)
        or any(d is not None and d != v for d, v in zip(spec.shape, value.shape, strict=True))
    ):
        raise ValidationError(
            f"--input-map {mapping}: gives shape {tuple(value.shape)}; placeholder "
            f"{spec.name!r} is {_show(spec.shape)}"
        )
    return value.astype(np.dtype(spec.dtype))


# --------------------------------------------------------------------------- evaluation
def _is_tf_op(op: str) -> bool:
    """Whether TensorFlow's op registry knows `op`."""
    from surgery.opdefs import tf_signature

    return tf_signature(op) is not None


def plugin_nodes(graph: Graph) -> list[str]:
    """Names of the nodes the references must run, in topological order; errors for unknown ops."""
    from plugins.registry import has_reference
    from surgery.plugin_schema import load_catalog

    catalog = load_catalog()
    found = []
    for name in graph.topological_order():
        op = graph.node(name).op
        if has_reference(op):
            found.append(name)
        elif op in catalog:
            raise ValidationError(f"node {name!r}: plugin {op} has no reference implementation")
        elif not _is_tf_op(op):
            raise ValidationError(
                f"node {name!r}: op {op!r} is neither a TensorFlow op nor a catalog plugin"
            )
    return found


class RegionEvaluator:
    """Evaluates a graph holding plugin nodes: TF for the TF regions, references for plugins."""

    def __init__(self, graph: Graph, feeds: Mapping[str, np.ndarray]):
        self.graph = graph
        self.feeds = {parse_tensor(k).node: np.asarray(v) for k, v in feeds.items()}
        self.plugins = plugin_nodes(graph)
        self.values: dict[TensorRef, np.ndarray] = {}  # plugin outputs and fetched plugin inputs
        self._graph_def = graph.to_graph_def()
        self._protos = {n.name: n for n in self._graph_def.node}
        self._done: set[str] = set()

    def run(self, fetches: Iterable[str | TensorRef] = ()) -> dict[TensorRef, np.ndarray]:
        """Run every plugin, then fetch `fetches`; returns every value computed, by tensor."""
        pending = list(self.plugins)
        while pending:
            ready = [p for p in pending if not (self._plugin_ancestors(p) - self._done)]
            needed = {ref for p in ready for ref in self.graph.node(p).inputs}
            self.values.update(self._tf_fetch(needed))
            for name in ready:
                node = self.graph.node(name)
                outputs = self._run_plugin(node)
                for port, value in enumerate(outputs):
                    self.values[TensorRef(name, port)] = value
                self._done.add(name)
            pending = [p for p in pending if p not in self._done]
        wanted = [parse_tensor(f) if isinstance(f, str) else f for f in fetches]
        self.values.update(self._tf_fetch(set(wanted)))
        return self.values

    def _run_plugin(self, node: Any) -> list[np.ndarray]:
        """The reference outputs of one plugin node."""
        from plugins.registry import run_node

        inputs = [self.values[ref] for ref in node.inputs]
        try:
            return run_node(node, inputs)
        except SurgeryError as exc:
            shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
            raise ValidationError(
                f"plugin node {node.name!r} ({node.op}) on {shapes}: {exc}"
            ) from None

    def _plugin_ancestors(self, name: str) -> set[str]:
        """Plugin nodes upstream of `name` (through data and control edges)."""
        plugins = set(self.plugins)
        seen: set[str] = set()
        stack = [r.node for r in self.graph.node(name).inputs] + list(
            self.graph.node(name).controls
        )
        found = set()
        while stack:
            current = stack.pop()
            if current in seen or current not in self.graph:
                continue
            seen.add(current)
            if current in plugins:
                found.add(current)
                if current in self._done:
                    continue
            node = self.graph.node(current)
            stack.extend(r.node for r in node.inputs)
            stack.extend(node.controls)
        return found

    def _tf_fetch(self, refs: set[TensorRef]) -> dict[TensorRef, np.ndarray]:
        """Values of `refs` not yet known: one TF run of the pruned graph with plugin stand-ins."""
        from surgery.tf_reference import run_graph_def

        todo = sorted(r for r in refs if r not in self.values and r.node not in self._done)
        if not todo:
            return {}
        graph_def = self._pruned({r.node for r in todo})
        present = {n.name for n in graph_def.node}
        feeds = {f"{name}:0": value for name, value in self.feeds.items() if name in present}
        feeds.update(
            {f"{_STANDIN.format(node=r.node, port=r.port)}:0": v for r, v in self.values.items()
             if r.node in self._done and _STANDIN.format(node=r.node, port=r.port) in present}
        )  # fmt: skip
        missing = [
            n.name for n in graph_def.node
            if n.op == "Placeholder" and f"{n.name}:0" not in feeds
        ]  # fmt: skip
        if missing:
            raise ValidationError(f"no value for placeholder(s) {', '.join(missing)}")
        try:
            result = run_graph_def(graph_def, feeds, [str(r) for r in todo])
        except SurgeryError:
            raise
        except Exception as exc:  # TF runtime errors (bad shapes after a wrong rewrite, ...)
            raise ValidationError(
                f"TensorFlow failed on the rewritten graph: {_tf_error_summary(exc)}"
            ) from None
        return {r: result[str(r)] for r in todo}

    def _pruned(self, roots: set[str]) -> GraphDef:
        """The nodes `roots` need, run plugins replaced by one Placeholder per output port."""
        from surgery.tensor_values import dtype_enum

        keep: dict[str, None] = {}
        standins: dict[TensorRef, None] = {}
        stack = list(roots)
        while stack:
            name = stack.pop()
            if name in keep or name in self._done:
                continue
            if name not in self._protos:
                raise ValidationError(f"the graph reads missing node {name!r}")
            keep[name] = None
            node = self.graph.node(name)
            for ref in node.inputs:
                if ref.node in self._done:
                    standins[ref] = None
                else:
                    stack.append(ref.node)
            stack.extend(c for c in node.controls if c not in self._done)
        out = GraphDef()
        out.versions.CopyFrom(self._graph_def.versions)
        out.library.CopyFrom(self._graph_def.library)
        for ref in standins:
            stand = NodeDef(name=_STANDIN.format(node=ref.node, port=ref.port), op="Placeholder")
            stand.attr["dtype"].type = dtype_enum(self.values[ref].dtype)
            out.node.append(stand)
        for name in self._protos:
            if name not in keep:
                continue
            proto = out.node.add()
            proto.CopyFrom(self._protos[name])
            del proto.input[:]
            node = self.graph.node(name)
            for ref in node.inputs:
                if ref.node in self._done:
                    proto.input.append(_STANDIN.format(node=ref.node, port=ref.port))
                else:
                    proto.input.append(str(ref))
            proto.input.extend(f"^{c}" for c in node.controls if c not in self._done)
        return out


def _tf_error_summary(exc: Exception) -> str:
    """The node and message of a TF runtime error (its first line alone often says nothing)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    node = next((i for i, line in enumerate(lines) if line.startswith("Node: ")), None)
    if node is not None and node + 1 < len(lines):
        return f"{lines[node]}: {lines[node + 1]}"
    return lines[0]


def evaluate(
    graph: Graph, feeds: Mapping[str, np.ndarray], fetches: Iterable[str | TensorRef]
) -> dict[str, np.ndarray]:
    """Values of `fetches` (tensor names) in `graph`, plugins run by their references."""
    wanted = [parse_tensor(f) if isinstance(f, str) else f for f in fetches]
    values = RegionEvaluator(graph, feeds).run(wanted)
    return {str(ref): values[ref] for ref in wanted}


# --------------------------------------------------------------------------- comparison
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

    def line(self) -> str:
        """One report line."""
        verdict = "ok  " if self.passed else "FAIL"
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


def _channels_last(graph: Graph, ref: TensorRef) -> bool:
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
        diff = (
            0.0 if same else float(np.max(np.abs(want.astype(np.float64) - got.astype(np.float64))))
        )
        return Comparison(label, original, rewritten, tuple(want.shape), diff, diff, same)
    a, b = want.astype(np.float64), got.astype(np.float64)
    err = np.abs(a - b)
    both_nan = np.isnan(a) & np.isnan(b)
    err = np.where(both_nan, 0.0, err)
    err = np.where(np.isnan(err), np.inf, err)
    scale = np.abs(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(scale > atol, err / scale, 0.0)
    passed = bool(np.all(err <= atol + rtol * np.where(np.isfinite(scale), scale, 0.0)))
    return Comparison(
        label, original, rewritten, tuple(want.shape), float(err.max()), float(rel.max()), passed
    )


# --------------------------------------------------------------------------- boundaries
def output_ports(node: Any) -> list[int]:
    """Every output port of `node` by its op's definition (port 0 where the count is unknown)."""
    from surgery.opdefs import output_roles

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


def provenance_map(log_path: str | os.PathLike) -> dict[str, str]:
    """From `surgery apply --log` JSON: rewritten tensor (`plugin:k`) -> original tensor."""
    return {new: olds[0] for new, olds in provenance_sources(log_path).items()}


def provenance_sources(log_path: str | os.PathLike) -> dict[str, tuple[str, ...]]:
    """From `surgery apply --log` JSON: rewritten tensor -> every original tensor it replaced."""
    try:
        doc = json.loads(open(log_path, encoding="utf-8").read())
        changes = list(doc["changes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValidationError(f"{log_path}: not a `surgery apply --log` file: {exc}") from None
    return sources_from_changes(changes)


def sources_from_changes(changes: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Rewritten tensor (`plugin:k`) -> the original tensors rewired to it, in change order."""
    if not all(isinstance(c, Mapping) for c in changes):
        raise ValidationError("provenance: every change must be a JSON object")
    added = {c.get("node") for c in changes if c.get("kind") == "add_node"}
    mapping: dict[str, dict[str, None]] = {}
    for change in changes:
        if change.get("kind") != "rewire":
            continue
        detail = change.get("detail", {})
        old, new = detail.get("old"), detail.get("new")
        pairs = (
            zip(old, new, strict=False)
            if isinstance(old, list) and isinstance(new, list)
            else [(old, new)]
        )
        for before, after in pairs:
            if not isinstance(before, str) or not isinstance(after, str) or after.startswith("^"):
                continue
            after_ref = parse_tensor(after)
            if after_ref.node in added and before != after:
                mapping.setdefault(str(after_ref), {})[str(parse_tensor(before))] = None
    return {new: tuple(olds) for new, olds in mapping.items()}


@dataclass(frozen=True)
class Boundary:
    """A rewritten-graph tensor at a plugin's edge and the original tensor it stands for."""

    label: str
    original: TensorRef
    rewritten: TensorRef
    order: tuple[int, int]


Provenance = Mapping[str, "str | Sequence[str]"]


def _sources(provenance: Provenance | None) -> dict[str, tuple[str, ...]]:
    """Provenance with every value a tuple of original tensor names."""
    out: dict[str, tuple[str, ...]] = {}
    for new, old in (provenance or {}).items():
        olds = (old,) if isinstance(old, str) else tuple(old)
        out[str(parse_tensor(new))] = tuple(str(parse_tensor(o)) for o in olds)
    return out


def merged_ports(provenance: Provenance | None) -> dict[TensorRef, tuple[str, ...]]:
    """Plugin ports that took over several original tensors (one NMS output for boxes, scores
    and classes): no single original tensor equals them."""
    return {
        parse_tensor(new): olds for new, olds in _sources(provenance).items() if len(olds) > 1
    }


def plugin_boundaries(
    original: Graph, rewritten: Graph, plugins: list[str], provenance: Provenance | None
) -> list[Boundary]:
    """Inputs and outputs of every plugin node paired with original tensors, upstream first.

    A plugin port that replaced several original tensors (see `merged_ports`) is no boundary.
    """
    sources = _sources(provenance)
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
        lines.append("outputs:")
        lines.extend("  " + c.line() for c in self.outputs)
        if self.boundaries:
            lines.append("boundaries (upstream first):")
            lines.extend("  " + c.line() for c in self.boundaries)
            first = self.first_divergent
            if first is not None:
                lines.append(f"first divergence: {first.label}")
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
) -> ValidationReport:
    """Run both graphs on the same inputs and compare the original's outputs (and boundaries).

    `input_map` feeds placeholders the original lacks from original tensors; `exclude` globs
    (`node` or `node:k`, original or rewritten names) are reported as not compared, and so are
    the outputs computed from an excluded tensor (up to the nearest plugins). With
    `per_boundary` and a `provenance` that shows a plugin port replacing several original
    tensors, the outputs computed from that port are not compared (no original tensor is
    equal to them); the plugin's boundaries are.
    """
    from surgery.tf_reference import run_graph_def

    if feeds is None:
        feeds = random_inputs(original, shapes, seed)
    feeds = {parse_tensor(k).node: v for k, v in feeds.items()}
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
                              input_map=[str(m) for m in input_map])  # fmt: skip
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
    original_fetch = sorted(
        {*(str(r) for r in to_compare), *(str(b.original) for b in kept_boundaries),
         *(str(r) for r in mapped_sources)}
    )  # fmt: skip
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
        rewritten_feeds[mapping.new] = _mapped_input(
            mapping, np.asarray(value), rewritten_specs[mapping.new]
        )
    evaluator = RegionEvaluator(rewritten, rewritten_feeds)
    values = evaluator.run([*to_compare, *(b.rewritten for b in kept_boundaries)])
    for ref in to_compare:
        report.outputs.append(
            compare(str(ref), str(ref), str(ref), reference[str(ref)], values[ref], rtol, atol)
        )
    for boundary in kept_boundaries:
        report.boundaries.append(
            compare(boundary.label, str(boundary.original), str(boundary.rewritten),
                    reference[str(boundary.original)], values[boundary.rewritten], rtol, atol,
                    flat_ok=True, channels_last=_channels_last(original, boundary.original))
        )  # fmt: skip
    return report
