"""Dynamic input shapes: `--input NAME=D0,D1,...` pins a placeholder and folds shape arithmetic.

Real frozen models keep `?` dims (Matterport's Mask R-CNN: `input_image [?,?,?,3]`), so their
shape arithmetic stays graph computation: FPN upsample sizes are `Mul(StridedSlice(Shape(x)),
Const)`, Reshapes read `Pack`s of `Shape` slices. Rules (and TensorRT's parsers) need Consts
there. `pin_inputs` writes the given shape into the Placeholder; `fold_shape_arithmetic` then
asks TensorFlow's shape inference which `Shape`/`Size`/`Rank` results became static, evaluates
the small computations built only from those and from Consts, and turns each of them into a
Const of the same name (consumers unchanged), removing what only it read.

TensorFlow is imported lazily (folding only): `surgery --help` stays TF-free.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surgery.errors import GraphError, TensorFlowMissing
from surgery.ir.graph import Graph
from surgery.ir.node import Node
from surgery.ir.ports import TensorRef
from surgery.ir.protos import GraphDef, NodeDef
from surgery.ir.tensor_values import from_numpy, shape_proto, to_numpy
from surgery.passes.shapes import ShapeError, format_shape, remove_if_dead

InputShapes = Mapping[str, tuple[int, ...]]

PLACEHOLDER_OPS = ("Placeholder", "PlaceholderWithDefault")
SHAPE_OPS = frozenset({"Shape", "Size", "Rank"})  # where a static shape becomes a value
ENTER_OPS = frozenset({"Enter", "RefEnter"})
EXIT_OPS = frozenset({"Exit", "RefExit"})
MERGE_OPS = frozenset({"Merge", "RefMerge"})
SWITCH_OPS = frozenset({"Switch", "RefSwitch"})
CONTROL_FLOW_OPS = ENTER_OPS | EXIT_OPS | MERGE_OPS | SWITCH_OPS | {
    "NextIteration", "RefNextIteration", "LoopCond", "ControlTrigger",
}  # fmt: skip
MAX_FOLDED_ELEMENTS = 64  # a folded value is shape arithmetic, not weights
MAX_EVALUATED_ELEMENTS = 1 << 16  # intermediate values evaluated on the way (bounds the work)
_UNFOLDABLE_DTYPES = frozenset({"resource", "variant", "string"})


class InputShapeError(ShapeError):
    """A bad `--input`: malformed, naming no Placeholder, or contradicting the graph."""


@dataclass
class InputReport:
    """What `pin_and_fold` did: the pinned shapes, the folded and removed nodes, warnings."""

    pinned: dict[str, tuple[int, ...]] = field(default_factory=dict)
    folded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fold_tried: bool = False

    def summary(self) -> str:
        """One line for the command's output: what was pinned, how much was folded."""
        pins = ", ".join(f"{name}={format_shape(dims)}" for name, dims in self.pinned.items())
        text = f"pinned {pins}"
        if self.fold_tried:
            text += (
                f"; folded {len(self.folded)} shape-arithmetic node"
                f"{'s' if len(self.folded) != 1 else ''} into Consts"
                f" ({len(self.removed)} removed)"
            )
        return text


# --------------------------------------------------------------------------- the flag
def parse_input_flag(text: str) -> tuple[str, tuple[int, ...]]:
    """`input_image=1,128,128,3` -> ("input_image", (1, 128, 128, 3)); `NAME:0=...` is accepted
    (the placeholder's tensor) and `NAME=` pins a scalar. InputShapeError on anything else, so
    that a typo is one line, not a traceback."""
    name, sep, dims = text.partition("=")
    name = name.strip()
    if name.endswith(":0"):
        name = name[:-2]
    try:
        if not sep or not name or ":" in name or "," in name:
            raise ValueError
        parsed = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
        if any(d < 0 for d in parsed):
            raise ValueError
    except ValueError:
        raise InputShapeError(
            f"--input {text!r}: expected NAME=D0,D1,... with whole numbers "
            "(e.g. input_image=1,128,128,3)"
        ) from None
    return name, parsed


def parse_input_flags(texts: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Every `--input` value, by placeholder name; the same name twice with different shapes is
    refused (the second would silently win otherwise)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for text in texts:
        name, dims = parse_input_flag(text)
        if shapes.get(name, dims) != dims:
            raise InputShapeError(
                f"--input {name}: given twice, as {format_shape(shapes[name])} and "
                f"{format_shape(dims)}"
            )
        shapes[name] = dims
    return shapes


# --------------------------------------------------------------------------- pinning
def _missing_placeholder(name: str, placeholders: Sequence[str]) -> InputShapeError:
    """The error for `--input NAME` naming no node: the closest placeholders, else all of them."""
    close = difflib.get_close_matches(name, placeholders, n=3, cutoff=0.6)
    if close:
        hint = f"did you mean {', '.join(repr(c) for c in close)}?"
    else:
        shown = ", ".join(placeholders[:8]) + (" ..." if len(placeholders) > 8 else "")
        hint = f"placeholders: {shown or 'none'}"
    return InputShapeError(f"--input {name}: no Placeholder named {name!r} in the graph ({hint})")


def declared_shape(proto: NodeDef) -> tuple[int | None, ...] | None:
    """A Placeholder's `shape` attr as dims (None: unknown dim), or None for an unknown rank."""
    if "shape" not in proto.attr or proto.attr["shape"].shape.unknown_rank:
        return None
    return tuple(None if d.size < 0 else int(d.size) for d in proto.attr["shape"].shape.dim)


def check_pin(proto: NodeDef, dims: tuple[int, ...]) -> None:
    """Refuse `dims` for the graph input `proto`: not a Placeholder, another rank, or a dim that
    contradicts a static one. The message names the node and gives the declared shape."""
    if proto.op not in PLACEHOLDER_OPS:
        raise InputShapeError(f"--input {proto.name}: is a {proto.op} node, not a Placeholder")
    declared = declared_shape(proto)
    if declared is None:
        return
    if len(declared) != len(dims):
        raise InputShapeError(
            f"--input {proto.name}: {len(dims)} dims given {format_shape(dims)}, but the "
            f"placeholder is rank {len(declared)}: {format_shape(declared)}"
        )
    for axis, (have, want) in enumerate(zip(declared, dims, strict=True)):
        if have is not None and have != want:
            raise InputShapeError(
                f"--input {proto.name}: dim {axis} is {have} in the graph, {want} given "
                f"(declared {format_shape(declared)})"
            )


def pin_node(proto: NodeDef, dims: tuple[int, ...]) -> None:
    """Write `dims` into a checked Placeholder: its `shape` attr, and its `_output_shapes` when it
    has one (rules read that), so that TF's shape inference starts from them."""
    check_pin(proto, dims)
    shape = proto.attr["shape"].shape
    shape.CopyFrom(shape_proto(list(dims)))
    if "_output_shapes" in proto.attr:
        recorded = proto.attr["_output_shapes"].list
        del recorded.shape[:]
        recorded.shape.add().CopyFrom(shape_proto(list(dims)))


def pin_graph_def(graph_def: GraphDef, input_shapes: InputShapes) -> None:
    """`pin_node` on a GraphDef's placeholders by name (what `shapes.infer_shapes` imports into
    TensorFlow); a name with no node raises with the closest placeholder names."""
    if not input_shapes:
        return
    by_name = {n.name: n for n in graph_def.node}
    placeholders = [n.name for n in graph_def.node if n.op in PLACEHOLDER_OPS]
    for name, dims in input_shapes.items():
        proto = by_name.get(name)
        if proto is None:
            raise _missing_placeholder(name, placeholders)
        pin_node(proto, dims)


def pin_inputs(
    graph: Graph, input_shapes: InputShapes, *, missing_ok: bool = False
) -> dict[str, tuple[int, ...]]:
    """Pin placeholders of `graph` in place and return those pinned. All are checked before any
    is written, so a refused flag leaves the graph as it was. With `missing_ok` names the graph
    lacks are skipped (validate: the rewritten graph may have renamed an input)."""
    placeholders = [n.name for n in graph.graph_inputs()]
    todo: dict[str, tuple[int, ...]] = {}
    for name, dims in input_shapes.items():
        node = graph.get(name)
        if node is None:
            if missing_ok:
                continue
            raise _missing_placeholder(name, placeholders)
        check_pin(node.proto, dims)
        todo[name] = dims
    for name, dims in todo.items():
        pin_node(graph.node(name).proto, dims)
    return todo


# --------------------------------------------------------------------------- control flow
def _frame_nodes(graph: Graph) -> set[str]:
    """Nodes inside TF1 while-loop frames: reached from an `Enter` before its `Exit` (nesting
    counted; data and control edges). A Const made there would sit outside the frame."""
    depth_of: dict[str, int] = {}
    stack = [(node.name, 1) for node in graph.nodes_by_op(*ENTER_OPS)]
    while stack:
        name, depth = stack.pop()
        if depth_of.get(name, 0) >= depth:
            continue
        depth_of[name] = depth
        out = depth - 1 if graph.node(name).op in EXIT_OPS else depth
        if out <= 0:
            continue
        for reader in graph.readers(name):
            stack.append((reader.name, out + 1 if reader.op in ENTER_OPS else out))
    return set(depth_of)


def _is_loop_merge(graph: Graph, node: Node) -> bool:
    """A while loop's Merge (it reads a NextIteration), as opposed to a cond's."""
    return any(
        (src := graph.get(ref.node)) is not None and src.op.endswith("NextIteration")
        for ref in node.inputs
    )


def _cond_nodes(graph: Graph) -> set[str]:
    """Nodes inside TF1 cond branches: reached from a cond `Switch` (one whose predicate is not
    a LoopCond) before the matching `Merge`. They may be dead at run time; a Const is not."""
    seeds = []
    for switch in graph.nodes_by_op(*SWITCH_OPS):
        pred = graph.get(switch.inputs[1].node) if len(switch.inputs) > 1 else None
        if pred is None or pred.op != "LoopCond":
            seeds.append(switch.name)
    depth_of: dict[str, int] = {}
    stack = [(name, 1) for name in seeds]
    while stack:
        name, depth = stack.pop()
        if depth_of.get(name, 0) >= depth:
            continue
        depth_of[name] = depth
        for reader in graph.readers(name):
            out = depth
            if reader.op in MERGE_OPS and not _is_loop_merge(graph, reader):
                out -= 1
            elif reader.op in SWITCH_OPS and reader.name in seeds:
                out += 1
            if out > 0:
                stack.append((reader.name, out))
    return set(depth_of)


# --------------------------------------------------------------------------- folding
class _Folder:
    """Decides which nodes hold compile-time constants once shapes are static, and whether each
    depends on a static shape (`derived`): only those are folded, never weights."""

    def __init__(self, graph: Graph, tf_graph: Any, excluded: set[str]) -> None:
        """`tf_graph`: `graph` imported into TensorFlow (its tensors carry the static shapes)."""
        self.graph = graph
        self.tf_graph = tf_graph
        self.excluded = excluded
        self.memo: dict[str, bool | None] = {}  # name -> derived (known) or None (not constant)
        self.static: dict[str, np.ndarray] = {}  # the values read off static shapes

    def tf_op(self, name: str) -> Any:
        """The TensorFlow operation of node `name`."""
        return self.tf_graph.get_operation_by_name(name)

    def _const(self, ref: TensorRef) -> np.ndarray | None:
        """The value of `ref` when a Const (outside loops and conds) produces it."""
        node = self.graph.get(ref.node)
        if node is None or node.op != "Const" or node.name in self.excluded:
            return None
        return to_numpy(node.attr["value"].tensor)

    def _shape_value(self, node: Node) -> np.ndarray | None:
        """`Shape`/`Size`/`Rank` of a tensor whose static shape TF knows well enough."""
        op = self.tf_op(node.name)
        dims = op.inputs[0].shape
        dtype = op.outputs[0].dtype.as_numpy_dtype
        if node.op == "Rank":
            return None if dims.rank is None else np.array(dims.rank, dtype=dtype)
        if not dims.is_fully_defined():
            return None
        value = dims.num_elements() if node.op == "Size" else dims.as_list()
        return np.array(value, dtype=dtype)

    def _slice_value(self, node: Node) -> np.ndarray | None:
        """`StridedSlice(Shape(x), Const, Const, Const)` that picks only dims TF knows, when the
        others are still `?` (e.g. `[?, 7, 7, 32][1:]`): what TF's grappler folds as well."""
        src = self.graph.get(node.inputs[0].node)
        if src is None or src.op != "Shape" or node.inputs[0].port != 0 or len(node.inputs) != 4:
            return None
        if src.name in self.excluded:
            return None
        if node.attr["ellipsis_mask"].i or node.attr["new_axis_mask"].i:
            return None
        dims = self.tf_op(src.name).inputs[0].shape
        params = [self._const(ref) for ref in node.inputs[1:]]
        if dims.rank is None or any(p is None or p.shape != (1,) for p in params):
            return None
        begin, end, stride = (int(p[0]) for p in params)  # type: ignore[index]
        known = dims.as_list()
        if stride == 0:
            return None
        if node.attr["shrink_axis_mask"].i & 1:
            if not -len(known) <= begin < len(known):
                return None
            picked: Any = known[begin]
        else:
            picked = known[
                None if node.attr["begin_mask"].i & 1 else begin:
                None if node.attr["end_mask"].i & 1 else end:
                stride
            ]
        if picked is None or (isinstance(picked, list) and None in picked):
            return None
        return np.array(picked, dtype=self.tf_op(node.name).outputs[0].dtype.as_numpy_dtype)

    def _quick(self, node: Node | None) -> bool | None | str:
        """The answer without looking at inputs, or "inputs" when they decide."""
        if node is None or node.name in self.excluded or node.op in CONTROL_FLOW_OPS:
            return None
        if node.op == "Const":
            return False
        if node.op in SHAPE_OPS or node.op == "StridedSlice":
            value = self._shape_value(node) if node.op in SHAPE_OPS else self._slice_value(node)
            if value is not None:
                self.static[node.name] = value
                return True
            if node.op in SHAPE_OPS:
                return None
        if node.op in PLACEHOLDER_OPS or not node.inputs:
            return None
        if any(v.HasField("func") or len(v.list.func) for v in node.attr.values()):
            return None  # calls a function (While, If, PartitionedCall ...)
        try:
            op = self.tf_op(node.name)
            if op.op_def.is_stateful or not op.outputs:
                return None
        except (KeyError, ValueError):
            return None
        for out in op.outputs:
            if out.dtype.name in _UNFOLDABLE_DTYPES or not out.shape.is_fully_defined():
                return None
            if out.shape.num_elements() > MAX_EVALUATED_ELEMENTS:
                return None
        return "inputs"

    def resolve(self, root: str) -> bool | None:
        """Memoised, iterative: known and derived (True), known (False), not constant (None)."""
        stack: list[tuple[str, bool]] = [(root, False)]
        active: set[str] = set()
        while stack:
            name, expanded = stack.pop()
            if name in self.memo:
                continue
            node = self.graph.get(name)
            quick = self._quick(node)
            if node is None or quick != "inputs":
                self.memo[name] = quick  # type: ignore[assignment]
                continue
            deps = list(dict.fromkeys(ref.node for ref in node.inputs))
            if not expanded:
                active.add(name)
                stack.append((name, True))
                for dep in deps:
                    if dep in active and dep not in self.memo:
                        self.memo[name] = None  # a cycle: not a constant
                    elif dep not in self.memo:
                        stack.append((dep, False))
                continue
            active.discard(name)
            values = [self.memo.get(dep) for dep in deps]
            self.memo[name] = None if any(v is None for v in values) else any(values)
        return self.memo.get(root)

    def candidates(self) -> dict[str, None]:
        """Derived constant nodes reachable from a `Shape`/`Size`/`Rank` (or a slice of a
        partly known `Shape`), in discovery order."""
        found: dict[str, None] = {}
        shapes = self.graph.nodes_by_op(*SHAPE_OPS)
        stack = [n.name for n in shapes]
        stack += [r.name for n in shapes for r in self.graph.readers(n.name)
                  if r.op == "StridedSlice"]  # fmt: skip
        seen: set[str] = set(stack)
        while stack:
            name = stack.pop()
            if self.resolve(name) is not True:
                continue
            found[name] = None
            for reader in self.graph.readers(name):
                if reader.name not in seen:
                    seen.add(reader.name)
                    stack.append(reader.name)
        return found

    def foldable(self, name: str, limit: int) -> bool:
        """A candidate is folded when it has one output of at most `limit` elements."""
        outs = self.tf_op(name).outputs
        return len(outs) == 1 and outs[0].shape.num_elements() <= limit


def _fold_targets(graph: Graph, folder: _Folder, limit: int) -> list[str]:
    """The outermost foldable nodes: read by something that is not folded (or read by nothing,
    a graph output). What only they read is removed after folding."""
    eligible = {n for n in folder.candidates() if folder.foldable(n, limit)}
    targets = []
    for name in eligible:
        readers = graph.readers(name)
        if not readers or any(r.name not in eligible for r in readers):
            targets.append(name)
    return sorted(targets, key=graph.position)


def _evaluation_graph(graph: Graph, folder: _Folder, targets: list[str]) -> GraphDef:
    """A small GraphDef that computes `targets` from Consts only: each value read off a static
    shape on the way is a Const; control inputs and private attrs (colocation, `_output_shapes`)
    are dropped, they name nodes not copied."""
    out = GraphDef()
    seen: set[str] = set()
    stack = list(targets)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = graph.node(name)
        if name in folder.static:
            value = folder.static[name]
            dtype = folder.tf_op(name).outputs[0].dtype.as_datatype_enum
            proto = out.node.add(name=name, op="Const")
            proto.attr["dtype"].type = dtype
            proto.attr["value"].tensor.CopyFrom(from_numpy(value, dtype))
            continue
        proto = out.node.add()
        proto.CopyFrom(node.proto)
        proto.device = ""
        del proto.input[:]
        proto.input.extend(str(ref) for ref in node.inputs)
        for key in [k for k in proto.attr if k.startswith("_")]:
            del proto.attr[key]
        if node.op != "Const":
            stack.extend(ref.node for ref in node.inputs)
    return out


def _evaluate(graph_def: GraphDef, targets: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Run the evaluation graph once for all targets; if that fails, target by target, so that
    one shape computation TF refuses (a pinned shape the model cannot take) skips only itself."""
    from surgery.passes.freeze import import_tensorflow
    from surgery.passes.tf_reference import import_graph

    tf = import_tensorflow("fold shape arithmetic")
    tf_graph = import_graph(graph_def, "fold shape arithmetic")
    values: dict[str, Any] = {}
    warnings: list[str] = []
    with tf.compat.v1.Session(graph=tf_graph) as session:
        try:
            results = session.run([f"{t}:0" for t in targets])
            values = dict(zip(targets, results, strict=True))
        except Exception:  # retried one by one: which target fails, and why
            for target in targets:
                try:
                    values[target] = session.run(f"{target}:0")
                except Exception as exc:  # TF's runtime errors, whatever their class
                    first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                    warnings.append(f"{target}: not folded, TensorFlow cannot evaluate it: {first}")
    return values, warnings


def _make_const(graph: Graph, name: str, value: Any, dtype: int) -> None:
    """Turn node `name` into a Const holding `value` (same name, so readers are unchanged); its
    control inputs stay (they keep its place in frames and ordering), its data inputs go."""
    node = graph.node(name)
    tensor = from_numpy(np.asarray(value), dtype)
    recorded = "_output_shapes" in node.attr
    graph.set_inputs(name, [], node.controls)
    graph.set_op(name, "Const")
    for key in list(node.attr):
        del node.attr[key]
    node.attr["dtype"].type = tensor.dtype
    node.attr["value"].tensor.CopyFrom(tensor)
    if recorded:
        node.attr["_output_shapes"].list.shape.add().CopyFrom(shape_proto(list(np.shape(value))))


def fold_shape_arithmetic(graph: Graph, *, limit: int = MAX_FOLDED_ELEMENTS) -> InputReport:
    """Fold, in place, every node whose value became a compile-time constant because it derives
    only from Consts and from static shapes (`Shape`, `Size`, `Rank` of tensors whose shape TF's
    inference now knows), holds at most `limit` elements and depends on at least one such shape
    (shape arithmetic, never weights). Nodes in while frames and cond branches, stateful ops and
    function calls are left alone; the function library is not touched. The inputs that only a
    folded node read are removed (never placeholders, nor anything still read)."""
    from surgery.passes.shapes import import_with_shapes

    tf_graph = import_with_shapes(graph)
    excluded = _frame_nodes(graph) | _cond_nodes(graph)
    folder = _Folder(graph, tf_graph, excluded)
    targets = _fold_targets(graph, folder, limit)
    report = InputReport(fold_tried=True)
    if not targets:
        return report
    values, report.warnings = _evaluate(_evaluation_graph(graph, folder, targets), targets)
    feeders: dict[str, None] = {}
    for name in targets:
        if name not in values:
            continue
        feeders.update((ref.node, None) for ref in graph.node(name).inputs)
        dtype = folder.tf_op(name).outputs[0].dtype.as_datatype_enum
        _make_const(graph, name, values[name], dtype)
        report.folded.append(name)
    for name in feeders:
        report.removed.extend(remove_if_dead(graph, name))
    return report


def pin_and_fold(graph: Graph, texts: Iterable[str], *, fold: bool = True) -> InputReport:
    """What `--input` does on a command: parse the flags, pin the placeholders of `graph` in
    place, then (with `fold`) fold the shape arithmetic that became constant. A graph TF cannot
    import (plugin nodes of a rewritten graph), or no TensorFlow at all, pins only, with a
    warning: the pinned shapes are still worth having."""
    shapes = parse_input_flags(texts)
    pinned = pin_inputs(graph, shapes)
    if not fold or not pinned:
        return InputReport(pinned=pinned)
    try:
        report = fold_shape_arithmetic(graph)
    except (GraphError, TensorFlowMissing) as exc:  # unknown (plugin) ops, TF not installed
        report = InputReport(warnings=[f"shape arithmetic not folded: {exc}"])
    report.pinned = pinned
    return report


def print_report(report: InputReport, *, stream: Any = None) -> None:
    """Print the summary line and any warnings (warnings on stderr)."""
    import sys

    print(report.summary(), file=stream or sys.stdout)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)

