"""Evaluate a graph that holds plugin nodes: TensorFlow for the regions between the plugins,
the plugins' NumPy references for the plugins.

TensorFlow cannot import a graph holding plugin ops, so the graph's TF nodes are imported into
one session once, with every plugin output replaced by a Placeholder (a stand-in) fed the
reference's output. Plugins run in waves (a plugin is ready once every plugin upstream of it has
run): one TF run fetches the inputs of a wave's plugins, then their references run; a last run
fetches what the caller asked for.

The runs are planned before the first (`RegionPlan`): a node belongs to the first run that needs
it, and a tensor that a later run reads again is fetched by the run that computed it and fed to
the later one, so a backbone under several plugins is computed once, not once per wave. A TF1
control-flow region (a tensor inside a loop frame or an untaken branch cannot be fetched) and
what is computed from Consts alone are computed again where needed instead.

Nodes of the rewritten graph that compute exactly what the original's node of that name
computes (`shared_nodes`) need not run twice: `validate` fetches their values from the original's
run and passes them as `known`; the region graph then holds none of the weights above them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surgery.backends.validate_inputs import ValidationError
from surgery.errors import SurgeryError
from surgery.ir.graph import Graph
from surgery.ir.node import Node
from surgery.ir.ports import TensorRef, parse_tensor
from surgery.ir.protos import NodeDef

__all__ = ["PluginRun", "RegionEvaluator", "RegionPlan", "evaluate", "known_tensors",
           "plugin_nodes", "shared_nodes", "standin_name"]  # fmt: skip

_STANDIN = "{node}/__surgery_port_{port}"
# Ops whose outputs can be dead (an untaken cond branch) or live in a while loop's frame:
# TensorFlow cannot fetch such a tensor, nor feed it to a later run.
_CONTROL_FLOW = frozenset({
    "Enter", "RefEnter", "Exit", "RefExit", "Merge", "RefMerge", "Switch", "RefSwitch",
    "NextIteration", "RefNextIteration", "LoopCond", "ControlTrigger",
})  # fmt: skip


def _is_tf_op(op: str) -> bool:
    """Whether TensorFlow's op registry knows `op`."""
    from surgery.ops.opdefs import tf_signature

    return tf_signature(op) is not None


@functools.cache
def _stateful(op: str) -> bool:
    """Whether TensorFlow's registry marks `op` stateful (or does not know it): such a node may
    give another value in each run, so it is never shared between two graphs."""
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(op)
    return op_def is None or bool(op_def.is_stateful)


def plugin_nodes(graph: Graph) -> list[str]:
    """Names of the nodes the references must run, in topological order; errors for unknown ops.

    A plugin node is recognised by `plugin_schema_of`, not by its op alone: TensorFlow's own
    `CropAndResize` (attrs `T`, `method`, ...) runs in TensorFlow, the catalog plugin of that
    name (fields `crop_height`, `crop_width`) by its reference."""
    from plugins.registry import has_reference
    from surgery.ops.plugin_identity import plugin_schema_of
    from surgery.ops.plugin_schema import load_catalog

    catalog = load_catalog()
    found = []
    for name in graph.topological_order():
        node = graph.node(name)
        op = node.op
        schema = plugin_schema_of(node, catalog)
        if schema is not None and has_reference(schema.name):
            found.append(name)
        elif schema is not None:
            raise ValidationError(f"node {name!r}: plugin {op} has no reference implementation")
        elif not _is_tf_op(op):
            raise ValidationError(
                f"node {name!r}: op {op!r} is neither a TensorFlow op nor a catalog plugin"
            )
    return found


def shared_nodes(
    original: Graph, rewritten: Graph, plugins: Collection[str], placeholders: Collection[str]
) -> set[str]:
    """Nodes of `rewritten` that compute what the original's node of the same name computes
    from the graph's inputs: their values in the original's run are theirs.

    Such a node has the same NodeDef (op, attrs, inputs) as the original's, and every node it
    reads (data and control) is shared too, all the way up; it is no plugin, not stateful, and
    no TF1 control flow. A Placeholder is shared only if named in `placeholders` (the caller
    feeds it the same array in both graphs). Only nodes that read a shared Placeholder,
    directly or not, are returned: one computed from Consts alone (a weight read through an
    Identity) costs nothing to compute again, where taking its value would copy the weight."""
    same: set[str] = set()
    fed: set[str] = set()  # of those, the ones computed from a placeholder
    for name in rewritten.topological_order():
        node, before = rewritten.node(name), original.get(name)
        if before is None or name in plugins or node.op in _CONTROL_FLOW:
            continue
        if node.op == "Placeholder":
            if name in placeholders and before.proto == node.proto:
                same.add(name)
                fed.add(name)
            continue
        above = [*(ref.node for ref in node.inputs), *node.controls]
        if any(a not in same for a in above) or _stateful(node.op):
            continue
        if before.proto == node.proto:
            same.add(name)
            if any(a in fed for a in above):
                fed.add(name)
    return {name for name in fed if rewritten.node(name).op != "Placeholder"}


def _waves(graph: Graph, plugins: Sequence[str]) -> list[list[str]]:
    """`plugins` in waves: a plugin's wave is the length of the longest chain of plugins above it
    (data and control edges)."""
    names = set(plugins)
    level: dict[str, int] = {}
    for name in graph.topological_order():
        node = graph.node(name)
        above = [*(ref.node for ref in node.inputs), *node.controls]
        level[name] = max(
            (level.get(a, 0) + (a in names) for a in above if a in graph), default=0
        )
    waves: list[list[str]] = []
    for name in plugins:
        while len(waves) <= level[name]:
            waves.append([])
        waves[level[name]].append(name)
    return [wave for wave in waves if wave]


def _constant_nodes(graph: Graph) -> set[str]:
    """Nodes computed from Consts alone (a weight read through an Identity, a shape packed from
    Consts): neither stateful nor TF1 control flow, every node they read constant too."""
    found: set[str] = set()
    for name in graph.topological_order():
        node = graph.node(name)
        if node.op in _CONTROL_FLOW or _stateful(node.op):
            continue
        above = [*(ref.node for ref in node.inputs), *node.controls]
        if (node.op == "Const" or above) and all(a in found for a in above):
            found.add(name)
    return found


def _downstream_of_control_flow(graph: Graph) -> set[str]:
    """TF1 control-flow nodes and every node that reads one, directly or not."""
    stack = [node.name for node in graph if node.op in _CONTROL_FLOW]
    found: set[str] = set()
    while stack:
        name = stack.pop()
        if name in found:
            continue
        found.add(name)
        stack.extend(graph.consumer_names(name))
        stack.extend(reader.name for reader in graph.control_consumers(name))
    return found


@dataclass
class _Run:
    """One TF run of the plan: what it is for, fetches, feeds."""

    wave: list[str]  # the plugins whose inputs it fetches (none: the last run)
    wanted: list[TensorRef]  # the tensors it is for
    fetch: dict[TensorRef, None] = field(default_factory=dict)  # wanted + carried to later runs
    carried_in: dict[TensorRef, None] = field(default_factory=dict)  # fed from earlier runs
    standins: dict[TensorRef, None] = field(default_factory=dict)  # plugin or known outputs read
    placeholders: dict[str, None] = field(default_factory=dict)  # graph inputs it reads
    computed: dict[str, None] = field(default_factory=dict)  # the nodes it executes


class RegionPlan:
    """Which TF run computes which node of `graph`, planned from its structure alone.

    Run k fetches the inputs of wave k's plugins, the last run `fetches`. A node belongs to the
    first run that needs it; a later run that reads one of its tensors is fed the value the
    earlier run fetched. Two kinds are computed again instead: nodes downstream of TF1 control
    flow (which cannot be fetched), and nodes computed from Consts alone (which cost nothing,
    where fetching a weight would copy it). Outputs of plugins and of `shared` nodes are
    stand-ins: the values of the latter (`known`) come from elsewhere. A control edge from a
    plugin, a shared node or a constant one is dropped: the plugin ran before, the shared node
    in the original's run, and a constant node has no effect to wait for."""

    def __init__(
        self, graph: Graph, plugins: Sequence[str], fetches: Iterable[TensorRef],
        shared: Collection[str] = (),
    ):  # fmt: skip
        self.graph = graph
        self.plugins = set(plugins)
        self.shared = {n for n in shared if n in graph}
        self.runs = [
            _Run(wave, list(dict.fromkeys(r for p in wave for r in graph.node(p).inputs)))
            for wave in _waves(graph, plugins)
        ]
        self.runs.append(_Run([], list(dict.fromkeys(fetches))))
        self.assigned: dict[str, int] = {}  # region node -> the first run that computes it
        self.standins: dict[TensorRef, None] = {}  # plugin outputs the region reads
        self.known: dict[TensorRef, None] = {}  # shared nodes' outputs the region reads
        self._constant = _constant_nodes(graph)
        self._recomputed = _downstream_of_control_flow(graph) | self._constant
        self._dropped = self.plugins | self.shared | self._constant  # control sources
        for index in range(len(self.runs)):
            self._plan(index)

    def _plan(self, index: int) -> None:
        """Assign the nodes run `index` needs, and what it is fed and fetches."""
        run = self.runs[index]
        stack: list[str] = []

        def need(ref: TensorRef) -> bool:
            """Note where `ref` comes from in this run; True if this run computes it."""
            if ref.node in self.plugins:
                self.standins[ref] = run.standins[ref] = None
                return False
            if ref.node in self.shared:
                self.known[ref] = run.standins[ref] = None
                return False
            earlier = self.assigned.get(ref.node)
            if earlier is not None and earlier < index and ref.node not in self._recomputed:
                self.runs[earlier].fetch[ref] = run.carried_in[ref] = None
                return False
            stack.append(ref.node)
            return True

        for ref in run.wanted:
            if need(ref):
                run.fetch[ref] = None
        while stack:
            name = stack.pop()
            if name in run.computed:
                continue
            run.computed[name] = None
            node = self.graph.get(name)
            if node is None:
                raise ValidationError(f"the graph reads missing node {name!r}")
            self.assigned.setdefault(name, index)
            if node.op == "Placeholder":
                run.placeholders[name] = None
            for ref in node.inputs:
                need(ref)
            stack.extend(c for c in node.controls if c not in self._dropped)

    def region_graph(self, dtypes: Mapping[TensorRef, Any]) -> Any:
        """The TF graph every run executes a part of (a `WireGraph`): the assigned nodes, each
        read of a stand-in rewired to a Placeholder of dtype `dtypes[ref]`, the control edges
        the plan drops dropped."""
        from surgery.ir.tensor_values import dtype_enum
        from surgery.passes.tf_reference import serialize_nodes

        return serialize_nodes(list(self._region_nodes(dtypes, dtype_enum)),
                               self.graph._header_copy())

    def _region_nodes(self, dtypes: Mapping[TensorRef, Any], dtype_enum: Any) -> Iterator[NodeDef]:
        """The NodeDefs of `region_graph`: the graph's own where nothing is rewired (a copy
        only for the few that read a stand-in)."""
        for ref in (*self.standins, *self.known):
            stand = NodeDef(name=standin_name(ref), op="Placeholder")
            stand.attr["dtype"].type = dtype_enum(np.dtype(dtypes[ref]))
            yield stand
        outside = self.plugins | self.shared
        for node in self.graph:
            if node.name not in self.assigned:
                continue
            rewired = [standin_name(r) if r.node in outside else None for r in node.inputs]
            if not any(rewired) and not any(c in self._dropped for c in node.controls):
                yield node.proto
                continue
            proto = NodeDef()
            proto.CopyFrom(node.proto)
            del proto.input[:]
            proto.input.extend(new or str(ref) for new, ref in zip(rewired, node.inputs,
                                                                    strict=True))
            proto.input.extend(f"^{c}" for c in node.controls if c not in self._dropped)
            yield proto


def standin_name(ref: TensorRef) -> str:
    """The Placeholder that stands for `ref` (a plugin's or a shared node's output)."""
    return _STANDIN.format(node=ref.node, port=ref.port)


def known_tensors(
    original: Graph, rewritten: Graph, plugins: Sequence[str], fetches: Sequence[TensorRef],
    shared: Collection[str], fetched: Collection[str] = (),
) -> tuple[set[str], list[TensorRef]]:  # fmt: skip
    """(the shared nodes kept, the tensors of theirs that evaluating `fetches` in `rewritten`
    reads): the values of the latter, taken from the original's run, are `RegionEvaluator.run`'s
    `known`; `fetched` names what the original's run fetches anyway.

    A tensor is taken from the original only if it has several readers in both graphs (or, in
    the original, is fetched anyway): TensorFlow fuses an op into its only reader (a
    convolution with its bias and residual add), and fetching the tensor from the original, or
    feeding it to the rewritten graph, would undo that fusion and change the last bits of what
    follows. Its node is computed again in the rewritten graph instead, and the cut moves up."""
    kept = set(shared)
    while True:
        known = list(RegionPlan(rewritten, plugins, fetches, kept).known)
        unsafe = {
            ref.node for ref in known
            if rewritten.consumer_count(ref) < 2
            or (original.consumer_count(ref) < 2 and str(ref) not in fetched)
        }  # fmt: skip
        if not unsafe:
            return kept, known
        kept -= unsafe


@dataclass(frozen=True)
class PluginRun:
    """One plugin node run by its reference: the arrays it was given and gave back, as given."""

    node: Node
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]

    def fields(self) -> dict[str, Any]:
        """The plugin's field values as its reference read them (schema defaults filled in)."""
        from plugins.registry import full_fields, reference

        return full_fields(reference(self.node.op).schema, self.node)


class RegionEvaluator:
    """Evaluates a graph holding plugin nodes: TF for the TF regions, references for plugins.

    `shared` names nodes whose values `run` is given (`known`) instead of computing them;
    `on_plugin` is called with every plugin run, in order (`surgery.backends.plugin_dump`)."""

    def __init__(
        self, graph: Graph, feeds: Mapping[str, np.ndarray], *,
        shared: Collection[str] = (), on_plugin: Callable[[PluginRun], None] | None = None,
    ):  # fmt: skip
        self.graph = graph
        self.feeds = {parse_tensor(k).node: np.asarray(v) for k, v in feeds.items()}
        self.plugins = plugin_nodes(graph)
        self.shared = shared
        self.on_plugin = on_plugin
        self.values: dict[TensorRef, np.ndarray] = {}  # plugin inputs and outputs, fetches

    def run(
        self, fetches: Iterable[str | TensorRef] = (),
        known: Mapping[TensorRef, np.ndarray] | None = None,
    ) -> dict[TensorRef, np.ndarray]:  # fmt: skip
        """Run every plugin, then fetch `fetches`; returns every value computed, by tensor.

        `known` holds the values of the shared nodes' outputs the evaluation reads
        (`known_tensors`)."""
        from surgery.passes.tf_reference import TFSession

        wanted = [parse_tensor(f) if isinstance(f, str) else f for f in fetches]
        plan = RegionPlan(self.graph, self.plugins, wanted, self.shared)
        missing = [str(ref) for ref in plan.known if ref not in (known or {})]
        if missing:
            raise ValidationError(f"no value given for shared tensor(s) {', '.join(missing)}")
        self.values.update({ref: np.asarray(v) for ref, v in (known or {}).items()
                            if ref in plan.known})  # fmt: skip
        dtypes = {**self._standin_dtypes(plan), **{r: self.values[r].dtype for r in plan.known}}
        last_use = {ref: i for i, run in enumerate(plan.runs) for ref in run.carried_in}
        keep = {*wanted, *(r for p in self.plugins for r in self.graph.node(p).inputs)}
        session: TFSession | None = None
        try:
            for index, run in enumerate(plan.runs):
                if run.fetch:
                    if session is None:
                        session = TFSession(plan.region_graph(dtypes))
                    self.values.update(self._tf_run(session, run))
                for name in run.wave:
                    self._run_plugin(self.graph.node(name), dtypes)
                for ref in run.carried_in:  # free what no later run reads
                    if last_use[ref] == index and ref not in keep:
                        self.values.pop(ref, None)
        finally:
            if session is not None:
                session.close()
        return self.values

    def _standin_dtypes(self, plan: RegionPlan) -> dict[TensorRef, np.dtype]:
        """The dtype of each plugin output the region reads, by the plugin's schema."""
        from plugins.registry import full_fields, reference

        out: dict[TensorRef, np.dtype] = {}
        for ref in plan.standins:
            node = self.graph.node(ref.node)
            schema = reference(node.op).schema
            try:
                dtypes = schema.output_dtypes(full_fields(schema, node), len(node.inputs))
            except SurgeryError as exc:
                raise ValidationError(f"plugin node {node.name!r} ({node.op}): {exc}") from None
            if ref.port >= len(dtypes):
                raise ValidationError(
                    f"the graph reads {ref}, but plugin {node.op} has {len(dtypes)} output(s)"
                )
            out[ref] = np.dtype(dtypes[ref.port])
        return out

    def _run_plugin(self, node: Node, dtypes: Mapping[TensorRef, np.dtype]) -> None:
        """Run one plugin node's reference and keep its outputs."""
        from plugins.registry import run_node

        inputs = [self.values[ref] for ref in node.inputs]
        try:
            outputs = run_node(node, inputs)
        except SurgeryError as exc:
            shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
            raise ValidationError(
                f"plugin node {node.name!r} ({node.op}) on {shapes}: {exc}"
            ) from None
        for port, value in enumerate(outputs):
            ref = TensorRef(node.name, port)
            declared = dtypes.get(ref)
            if declared is not None and value.dtype != declared:
                raise ValidationError(
                    f"plugin node {node.name!r} ({node.op}): its reference gave {value.dtype} "
                    f"for output {port}, which its schema declares {declared}"
                )
            self.values[ref] = value
        if self.on_plugin is not None:
            self.on_plugin(PluginRun(node, inputs, outputs))

    def _tf_run(self, session: Any, run: _Run) -> dict[TensorRef, np.ndarray]:
        """One planned TF run: graph inputs, stand-ins and carried tensors fed."""
        missing = [name for name in run.placeholders if name not in self.feeds]
        if missing:
            raise ValidationError(f"no value for placeholder(s) {', '.join(missing)}")
        feeds = {f"{name}:0": self.feeds[name] for name in run.placeholders}
        feeds.update({f"{standin_name(ref)}:0": self.values[ref] for ref in run.standins})
        feeds.update({str(ref): self.values[ref] for ref in run.carried_in})
        fetch = list(run.fetch)
        try:
            result = session.run(feeds, [str(r) for r in fetch])
        except SurgeryError:
            raise
        except Exception as exc:  # TF runtime errors (bad shapes after a wrong rewrite, ...)
            raise ValidationError(
                f"TensorFlow failed on the rewritten graph: {_tf_error_summary(exc)}"
            ) from None
        return {ref: result[str(ref)] for ref in fetch}


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
