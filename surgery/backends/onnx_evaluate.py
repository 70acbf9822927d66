"""Evaluate an ONNX model that holds plugin nodes: onnxruntime for its ONNX nodes, the plugins'
NumPy references for its plugin nodes (domain `trt.plugins`, which onnxruntime cannot run).

The model is evaluated in waves (`OnnxEvaluator`): a plugin is ready once every plugin upstream
of it has run; one onnxruntime run fetches the inputs of a wave's plugins, their references run,
and a last run fetches what was asked. onnxruntime runs every node of a model and wants every
input fed, so each run is a model cut out of the original: only the nodes the fetched tensors
need, reading the model's inputs and the tensors known so far (plugin outputs, tensors carried
from earlier runs). A run also fetches what it computed that a later run reads, so nothing is
computed twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from surgery.backends.validate_inputs import ValidationError
from surgery.errors import SurgeryError

__all__ = [
    "OnnxEvaluator", "OnnxPlugin", "PluginCallback", "graph_inputs", "node_label", "onnx_plugins",
]  # fmt: skip


# --------------------------------------------------------------------------- plugins
@dataclass(frozen=True)
class OnnxPlugin:
    """A plugin node of an ONNX model: the node, its catalog schema, its field values (schema
    defaults filled in) as the reference reads them."""

    node: Any  # onnx.NodeProto
    schema: Any  # surgery.ops.plugin_schema.PluginSchema
    fields: dict[str, Any]

    @property
    def label(self) -> str:
        """How reports name the node (`node_label`)."""
        return node_label(self.node)


# called with every plugin run: the plugin, its inputs and outputs as the reference saw them
PluginCallback = Callable[[OnnxPlugin, list[np.ndarray], list[np.ndarray]], None]


def node_label(node: Any) -> str:
    """An ONNX node's name, else `<op type> -> <first output>`."""
    return node.name or f"{node.op_type} -> {node.output[0] if node.output else '?'}"


def graph_inputs(model: Any) -> list[str]:
    """The names of a ModelProto's graph inputs that no initializer gives a value."""
    given = {t.name for t in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in given]


def onnx_plugins(model: Any) -> dict[int, OnnxPlugin]:
    """The plugin nodes (domain `trt.plugins`) of a ModelProto by node index, checked: a known
    creator (the catalog's name or a target library's) with a reference and valid fields."""
    from plugins.registry import has_reference
    from surgery.backends.export.plugin_nodes import (
        PluginFieldError,
        check_onnx_plugin_node,
    )  # fmt: skip
    from surgery.backends.trt_backend import plugin_key
    from surgery.ir.onnx_io import PLUGIN_DOMAIN
    from surgery.ops.plugin_schema import load_catalog
    from surgery.ops.targets import resolve_creator

    catalog = load_catalog()
    found = {}
    for index, node in enumerate(model.graph.node):
        if node.domain != PLUGIN_DOMAIN:
            continue
        name, version, _ = plugin_key(node)
        schema = resolve_creator(catalog, name, version)
        label = node_label(node)
        if schema is None or not has_reference(schema.name):
            why = "is not in the plugin catalog (plugins/catalog/)" if schema is None else (
                f"({schema.name}) has no reference implementation"
            )  # fmt: skip
            raise ValidationError(f"plugin node {label!r}: {name} version {version} {why}")
        if "" in node.input:
            raise ValidationError(f"plugin node {label!r} ({name}) has an empty input")
        try:
            fields = check_onnx_plugin_node(node, schema)
        except PluginFieldError as exc:
            raise ValidationError(str(exc)) from None
        full = {spec.name: spec.default for spec in schema.fields}
        found[index] = OnnxPlugin(node, schema, {**full, **fields})
    return found


# --------------------------------------------------------------------------- evaluation
class OnnxEvaluator:
    """Evaluates a ModelProto: onnxruntime (CPU) for its ONNX nodes, references for its plugins.

    `feeds`: the graph inputs' values by name; `on_plugin(plugin, inputs, outputs)` is called
    for every plugin run, in order (`surgery.backends.plugin_dump`); `where` names the model in
    errors."""

    def __init__(
        self, model: Any, feeds: Mapping[str, np.ndarray], *,
        on_plugin: PluginCallback | None = None, where: str = "the model",
    ):  # fmt: skip
        graph = model.graph
        self.model = model
        self.where = where
        self.nodes = list(graph.node)
        self.plugins = onnx_plugins(model)
        self.on_plugin = on_plugin
        self.initializers = {t.name: t for t in graph.initializer}
        fed = set(graph_inputs(model))
        self.inputs = {v.name: v for v in graph.input if v.name in fed}
        self.outputs = {v.name for v in graph.output}
        self.producer = {name: i for i, n in enumerate(self.nodes) for name in n.output if name}
        self.reads = [self._reads(node) for node in self.nodes]
        self.readers: dict[str, list[int]] = {}
        for index, names in enumerate(self.reads):
            for name in names:
                self.readers.setdefault(name, []).append(index)
        self.known: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in feeds.items()}

    def _reads(self, node: Any) -> list[str]:
        """The tensors of the graph `node` reads: its inputs, and the enclosing graph's tensors
        its subgraphs (If, Loop, Scan) read."""
        names = [name for name in node.input if name]
        for attr in node.attribute:
            for graph in [attr.g] if attr.HasField("g") else attr.graphs:
                names.extend(name for inner in graph.node for name in self._reads(inner)
                             if name in self.producer or name in self.initializers
                             or name in self.inputs)  # fmt: skip
        return names

    def run(self, fetches: Iterable[str]) -> dict[str, np.ndarray]:
        """Run every plugin, wave by wave, then compute `fetches`; their values by name."""
        wanted = list(fetches)
        for wave in self.waves():
            self._compute([name for plugin in wave for name in plugin.node.input], carry=True)
            for plugin in wave:
                self._run_plugin(plugin)
        fetched = self._compute(wanted, carry=False)
        return {name: fetched[name] if name in fetched else self.known[name] for name in wanted}

    def waves(self) -> list[list[OnnxPlugin]]:
        """The plugins in waves: a plugin's wave is the length of the longest chain of plugins
        above it (graph order must be topological, as ONNX requires)."""
        level: list[int] = []
        for index, names in enumerate(self.reads):
            above = [self.producer[n] for n in names if n in self.producer]
            late = next((self.nodes[i] for i in above if i >= index), None)
            if late is not None:
                raise ValidationError(
                    f"node {self.nodes[index].name or index!r} reads {late.output[0]!r}, which a "
                    "later node computes: the model's nodes are not in topological order"
                )
            level.append(max((level[i] + (i in self.plugins) for i in above), default=0))
        waves: dict[int, list[OnnxPlugin]] = {}
        for index, plugin in self.plugins.items():
            waves.setdefault(level[index], []).append(plugin)
        return [waves[k] for k in sorted(waves)]

    def _compute(self, names: Sequence[str], *, carry: bool) -> dict[str, Any]:
        """Make `names` known: initializers read, the rest computed in one onnxruntime run,
        which also fetches (with `carry`) what it computes that other nodes read; what that
        run fetched."""
        from onnx import numpy_helper

        wanted = [name for name in dict.fromkeys(names) if name not in self.known]
        for name in [n for n in wanted if n in self.initializers]:
            self.known[name] = numpy_helper.to_array(self.initializers[name])
            wanted.remove(name)
        if not wanted:
            return {}
        nodes = self._needed(wanted)
        members = set(nodes)
        if carry:
            wanted += [
                name for i in nodes for name in self.nodes[i].output
                if name and name not in wanted and (name in self.outputs or any(
                    r not in members for r in self.readers.get(name, ())))
            ]  # fmt: skip
        values = self._session_run(nodes, wanted)
        # a sequence or map can be fetched, not fed to a later run: that one computes it again
        self.known.update({k: v for k, v in values.items() if isinstance(v, np.ndarray)})
        return values

    def _needed(self, names: Sequence[str]) -> list[int]:
        """Indices (graph order) of the nodes that compute `names` from known tensors and
        initializers."""
        found: set[int] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in self.known or name in self.initializers:
                continue
            index = self.producer.get(name)
            if index is None:
                what = "graph input" if name in self.inputs else "tensor, which no node computes,"
                raise ValidationError(f"no value for {what} {name!r}")
            if index not in found:
                found.add(index)
                stack.extend(self.reads[index])
        return sorted(found)

    def _session_run(self, nodes: list[int], fetches: list[str]) -> dict[str, Any]:
        """Run the model cut to `nodes` (fed known tensors) and fetch `fetches`."""
        import onnxruntime as ort
        from onnx import GraphProto, ModelProto, ValueInfoProto, helper

        inside = {name for i in nodes for name in self.nodes[i].output}
        sources = dict.fromkeys(n for i in nodes for n in self.reads[i] if n not in inside)
        graph = GraphProto(name=self.model.graph.name, node=[self.nodes[i] for i in nodes])
        graph.initializer.extend(self.initializers[n] for n in sources if n in self.initializers)
        fed = [n for n in sources if n not in self.initializers]
        graph.input.extend(
            self.inputs[n] if n in self.inputs else helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(self.known[n].dtype), None)
            for n in fed
        )  # fmt: skip
        graph.output.extend(ValueInfoProto(name=n) for n in fetches)
        model = ModelProto(ir_version=self.model.ir_version, graph=graph)
        model.opset_import.extend(self.model.opset_import)
        model.functions.extend(self.model.functions)
        options = ort.SessionOptions()
        options.log_severity_level = 4  # fatal only: its errors are raised, with the model named
        try:
            session = ort.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])  # fmt: skip
            values = session.run(fetches, {n: self.known[n] for n in fed})
        except Exception as exc:  # onnxruntime's errors derive from Exception alone
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValidationError(f"onnxruntime failed on {self.where}: {first}") from None
        return dict(zip(fetches, values, strict=True))

    def _run_plugin(self, plugin: OnnxPlugin) -> None:
        """Run one plugin node's reference and keep its outputs."""
        from plugins.registry import reference

        node, op = plugin.node, plugin.schema.name
        inputs = [self.known[name] for name in node.input]
        try:
            outputs = reference(op)(inputs, plugin.fields)
            dtypes = plugin.schema.output_dtypes(plugin.fields, len(inputs))
        except SurgeryError as exc:
            shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
            raise ValidationError(
                f"plugin node {plugin.label!r} ({op}) on {shapes}: {exc}"
            ) from None
        if len(outputs) < len(node.output):
            raise ValidationError(
                f"plugin node {plugin.label!r} ({op}) has {len(node.output)} outputs; its "
                f"reference gave {len(outputs)}"
            )
        for port, (name, value) in enumerate(zip(node.output, outputs, strict=False)):
            if port < len(dtypes) and value.dtype != np.dtype(dtypes[port]):
                raise ValidationError(
                    f"plugin node {plugin.label!r} ({op}): its reference gave {value.dtype} for "
                    f"output {port}, which its schema declares {dtypes[port]}"
                )
            if name:
                self.known[name] = value
        if self.on_plugin is not None:
            self.on_plugin(plugin, inputs, outputs)
