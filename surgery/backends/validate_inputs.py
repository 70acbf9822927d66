"""Validation inputs: placeholders, random and `.npz` feeds, `--input-map`, the `--log`
provenance, and implied feeds.

A collapse that dropped a side input (an entering tensor the plugin does not take: Matterport's
`input_anchors`, `input_image_meta`) records it on the plugin node as attr `_side_<role>`. The
plugin computes as if that tensor held one particular value (the anchors it generates, the meta
of an unpadded image of its size); its schema's `side_inputs` name the reference function that
gives it. `implied_feeds` computes those values, and validate feeds them to the original graph in
place of random ones, so that both graphs compute the same thing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from surgery.errors import SurgeryError
from surgery.ir.graph import Graph
from surgery.ir.ports import SIDE_ATTR_PREFIX, TensorRef, parse_tensor

if TYPE_CHECKING:
    from plugins.reference._common import PluginFields


class ValidationError(SurgeryError):
    """Inputs that do not fit the graph, an op nobody can run, or graphs that cannot be paired."""


# --------------------------------------------------------------------------- placeholders
@dataclass(frozen=True)
class InputSpec:
    """A graph input: Placeholder name, dtype (numpy name) and shape (None: unknown dim)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None


def input_specs(graph: Graph) -> list[InputSpec]:
    """The Placeholders of `graph` with their declared dtype and shape."""
    from surgery.passes.tf_reference import input_specs as specs_of

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
                f"--shape for {spec.name!r}: {given} does not fit declared {show_shape(spec.shape)}"
            )
        return given
    if spec.shape is None or any(d is None for d in spec.shape[1:]):
        raise ValidationError(
            f"placeholder {spec.name!r} has shape {show_shape(spec.shape)} with unknown dims; "
            f"give --shape {spec.name}=D1,D2,..."
        )
    return tuple(1 if d is None else d for d in spec.shape)


def show_shape(shape: tuple[int | None, ...] | None) -> str:
    """`(?, 64, 64, 3)`; `<unknown rank>`."""
    if shape is None:
        return "<unknown rank>"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def random_inputs(
    graph: Graph, shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0,
    *, skip: Collection[str] = (),
) -> dict[str, np.ndarray]:  # fmt: skip
    """Seeded random values for every Placeholder of `graph` but those in `skip` (fed otherwise),
    keyed by node name."""
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
        if spec.name in skip:
            continue
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


def load_inputs(
    path: str | os.PathLike, graph: Graph, *, optional: Collection[str] = ()
) -> dict[str, np.ndarray]:
    """Feeds from an `.npz` (keys: placeholder names, `:0` allowed), checked against `graph`.

    Every placeholder needs an array but those in `optional` (side inputs of the rewritten
    graph's plugins, `side_placeholders`: validate feeds them what the plugins imply)."""
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
        if not _fits(value.shape, spec.shape):
            raise ValidationError(
                f"{path}: array {key!r} has shape {value.shape}; placeholder {spec.name!r} "
                f"is {show_shape(spec.shape)}"
            )
        want = np.dtype(spec.dtype)
        if value.dtype != want and not (value.dtype.kind == want.kind or want.kind == "f"):
            raise ValidationError(
                f"{path}: array {key!r} is {value.dtype}; placeholder {spec.name!r} is {want}"
            )
        feeds[spec.name] = value.astype(want)
    missing = [name for name in specs if name not in feeds and name not in optional]
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


def mapped_input(mapping: InputMapping, value: np.ndarray, spec: InputSpec | None) -> np.ndarray:
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
    if not _fits(value.shape, spec.shape):
        raise ValidationError(
            f"--input-map {mapping}: gives shape {tuple(value.shape)}; placeholder "
            f"{spec.name!r} is {show_shape(spec.shape)}"
        )
    return value.astype(np.dtype(spec.dtype))




def _fits(shape: tuple[int, ...], declared: tuple[int | None, ...] | None) -> bool:
    """Whether a concrete shape fits a declared one (None dims: any)."""
    return declared is None or (
        len(shape) == len(declared)
        and all(d is None or d == s for d, s in zip(declared, shape, strict=True))
    )


# --------------------------------------------------------------------------- provenance
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


Provenance = Mapping[str, "str | Sequence[str]"]


def provenance_by_tensor(provenance: Provenance | None) -> dict[str, tuple[str, ...]]:
    """Provenance with every value a tuple of original tensor names."""
    out: dict[str, tuple[str, ...]] = {}
    for new, old in (provenance or {}).items():
        olds = (old,) if isinstance(old, str) else tuple(old)
        out[str(parse_tensor(new))] = tuple(str(parse_tensor(o)) for o in olds)
    return out


def merged_ports(provenance: Provenance | None) -> dict[TensorRef, tuple[str, ...]]:
    """Plugin ports that took over several original tensors (one NMS output for boxes, scores
    and classes): no single original tensor equals them."""
    sources = provenance_by_tensor(provenance)
    return {parse_tensor(new): olds for new, olds in sources.items() if len(olds) > 1}


# --------------------------------------------------------------------------- implied feeds
@dataclass(frozen=True)
class SideUse:
    """A plugin node's side input: the node, its op, the role reading the tensor."""

    node: str
    op: str
    role: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op})"


@dataclass
class ImpliedFeed:
    """What the rewritten graph's plugins imply for one tensor of the original graph.

    `status`: "fed" (validate feeds `value` to the original), "given" (the caller's feed for the
    placeholder wins; `note` says how it differs), "not fed" (not a placeholder of the original:
    `note` says why)."""

    tensor: str
    uses: list[SideUse]
    value: np.ndarray | None = None
    how: str = ""
    status: str = "fed"
    note: str = ""

    def sources(self) -> str:
        """`side input anchors of ROI (ProposalLayer_TRT)`, several joined."""
        roles = {u.role for u in self.uses}
        if len(roles) == 1:
            return f"side input {self.uses[0].role} of " + ", ".join(map(str, self.uses))
        return "side inputs " + ", ".join(f"{u.role} of {u}" for u in self.uses)

    def line(self) -> str:
        """One report line (after `implied feed: `)."""
        if self.status == "not fed":
            return f"none for {self.tensor} ({self.sources()}): {self.note}"
        shape = "" if self.value is None else f" {tuple(self.value.shape)}"
        if self.status == "given" and self.value is None:
            return f"{self.tensor}: the given value (--inputs) is used ({self.note})"
        if self.status == "given":
            return (
                f"{self.tensor}: the given value (--inputs) is used, not the{shape} that "
                f"{self.sources()} implies ({self.note})"
            )
        return f"{self.tensor}{shape} from {self.sources()}: {self.how}"


def side_inputs(graph: Graph) -> dict[str, list[SideUse]]:
    """Tensor name -> the plugin side inputs (`_side_<role>` attrs) that name it, graph order."""
    found: dict[str, list[SideUse]] = {}
    for node in graph:
        for key in sorted(node.attr):
            if key.startswith(SIDE_ATTR_PREFIX):
                raw = node.attr[key].s.decode("utf-8", "replace")
                role = key[len(SIDE_ATTR_PREFIX) :]
                try:
                    tensor = str(parse_tensor(raw))
                except SurgeryError:
                    raise ValidationError(
                        f"node {node.name!r}: attr {key!r} holds {raw!r}, not a tensor name"
                    ) from None
                found.setdefault(tensor, []).append(SideUse(node.name, node.op, role))
    return found


def side_placeholders(graph: Graph) -> set[str]:
    """Names of the placeholders the plugins of `graph` have side inputs for (`load_inputs`'s
    `optional`)."""
    return {ref.node for ref in map(parse_tensor, side_inputs(graph)) if ref.port == 0}


def _plugin_fields(graph: Graph) -> tuple[PluginFields, ...]:
    """`PluginFields` of every plugin node with a reference, in graph order (defaults filled)."""
    from plugins.registry import PluginFields, full_fields, has_reference, reference
    from surgery.ops.plugin_identity import is_plugin_node
    from surgery.ops.plugin_schema import load_catalog

    catalog = load_catalog()
    found = []
    for node in graph:  # TensorFlow's CropAndResize is no plugin node: surgery.ops.plugin_identity
        if has_reference(node.op) and is_plugin_node(node, catalog):
            try:
                fields = full_fields(reference(node.op).schema, node)
            except SurgeryError as exc:
                raise ValidationError(str(exc)) from None
            found.append(PluginFields(node.name, node.op, fields))
    return tuple(found)


def _batch(
    specs: Mapping[str, InputSpec], shapes: Mapping[str, tuple[int, ...]],
    feeds: Mapping[str, np.ndarray], skip: Collection[str],
) -> int:  # fmt: skip
    """The batch of the other inputs: the first placeholder (graph order, not in `skip`) with a
    known dim 0, given (`feeds`, `shapes`) or declared; 1 if none has one."""
    for name, spec in specs.items():
        if name in skip:
            continue
        if name in feeds and np.ndim(feeds[name]) >= 1:
            return int(np.shape(feeds[name])[0])
        if shapes.get(name):
            return shapes[name][0]
        if spec.shape and spec.shape[0] is not None:
            return spec.shape[0]
    return 1


def _difference(a: np.ndarray, b: np.ndarray) -> str:
    """`identical`, `max abs difference 0.5` or `shapes (1, 4) and (2, 4)`."""
    if a.shape != b.shape:
        return f"shapes {tuple(a.shape)} and {tuple(b.shape)}"
    if np.array_equal(a, b):
        return "identical"
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return f"max abs difference {float(np.nanmax(diff)):.3g}"


def implied_feeds(
    original: Graph, rewritten: Graph, shapes: Mapping[str, tuple[int, ...]] | None = None,
    feeds: Mapping[str, np.ndarray] | None = None,
) -> list[ImpliedFeed]:  # fmt: skip
    """For every tensor that plugin side inputs of `rewritten` name: the value they imply, by
    the schemas' reference functions, checked against the original's placeholder.

    Several plugins naming one tensor must imply the same value (else an error naming two).
    `shapes` (`--shape`) pins a placeholder's shape; a placeholder in `feeds` (the caller's
    values) keeps its value: status "given", with how it differs from the implied one (or, if
    no value could be implied, why not: then that is no error).
    """
    sides = side_inputs(rewritten)
    if not sides:
        return []
    shapes = dict(shapes or {})
    given = {parse_tensor(k).node: np.asarray(v) for k, v in (feeds or {}).items()}
    specs = {s.name: s for s in input_specs(original)}
    plugins = _plugin_fields(rewritten)
    batch = _batch(specs, shapes, given, {parse_tensor(t).node for t in sides})
    result = []
    for tensor, uses in sides.items():
        ref = parse_tensor(tensor)
        spec = specs.get(ref.node) if ref.port == 0 else None
        if spec is None:
            why = (
                f"the original graph has no node {ref.node!r}" if ref.node not in original else
                f"not a placeholder of the original graph ({original.node(ref.node).op}), "
                "which computes it"
            )  # fmt: skip
            result.append(ImpliedFeed(tensor, uses, status="not fed", note=why))
            continue
        shape = shapes.get(spec.name)
        if shape is not None and not _fits(shape, spec.shape):
            raise ValidationError(
                f"--shape for {spec.name!r}: {shape} does not fit declared {show_shape(spec.shape)}"
            )
        try:
            feed = _implied(tensor, uses, spec, shape or spec.shape, batch, plugins)
        except ValidationError as exc:
            if spec.name not in given:
                raise
            feed = ImpliedFeed(tensor, uses, status="given", note=f"none is implied: {exc}")
        if spec.name in given and feed.value is not None:
            feed.status, feed.note = "given", _difference(given[spec.name], feed.value)
        result.append(feed)
    return result


def _implied(
    tensor: str, uses: list[SideUse], spec: InputSpec, shape: tuple[int | None, ...] | None,
    batch: int, plugins: tuple[PluginFields, ...],
) -> ImpliedFeed:  # fmt: skip
    """The value `uses` imply for placeholder `spec` (all must agree), as an ImpliedFeed."""
    from plugins.registry import SideContext, implied_value

    fields_of = {p.name: p.fields for p in plugins}
    first: ImpliedFeed | None = None
    for use in uses:
        if use.node not in fields_of:
            raise ValidationError(
                f"node {use.node!r} ({use.op}) has a side input but is no plugin with a "
                "reference implementation"
            )
        ctx = SideContext(use.node, use.op, fields_of[use.node], shape, batch, plugins)
        try:
            implied = implied_value(use.op, use.role, ctx)
        except SurgeryError as exc:
            raise ValidationError(f"side input {use.role} of {use}: {exc}") from None
        value = np.asarray(implied.value)
        if not _fits(value.shape, shape):
            raise ValidationError(
                f"side input {use.role} of {use} implies shape {tuple(value.shape)} for "
                f"{spec.name!r}, which is {show_shape(shape)}"
            )
        value = value.astype(np.dtype(spec.dtype))
        if first is None or first.value is None:
            first = ImpliedFeed(tensor, [use], value, implied.how)
        elif first.value.shape != value.shape or not np.array_equal(first.value, value):
            raise ValidationError(
                f"{spec.name}: {first.uses[0]} and {use} imply different values for it "
                f"({_difference(first.value, value)}): {first.how}; {implied.how}"
            )
        else:
            first.uses.append(use)
    if first is None:
        raise ValidationError(f"{tensor}: no side input names it")
    return first

