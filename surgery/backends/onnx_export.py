"""`surgery export`: a (rewritten) frozen graph -> ONNX, plugin nodes as custom-domain ops.

Pipeline: find plugin nodes and check their fields against the catalog -> choose the weights
tf2onnx need not see (`surgery.backends.export.weight_standins`) -> stand plugins in for TensorFlow
and weights in as Placeholders (`surgery.backends.export.standin`) -> tf2onnx on that weightless
graph (`surgery.backends.export.tf2onnx_run`, errors captured) -> the weights back as initializers
holding the GraphDef's bytes (`surgery.backends.export.initializers`) -> post-checks (every plugin
present once, domain in opset_import, no transposes left in front of NCHW plugins) -> streamed to
the file one tensor at a time (`surgery.backends.export.onnx_file`), weights as external data when
the model is large (or on request) -> `onnx.checker` on the file. Memory stays near the loaded
graph's, whatever the size.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surgery.backends.export.initializers import attach_weights
from surgery.backends.export.onnx_file import write_model
from surgery.backends.export.plugin_nodes import find_plugin_nodes
from surgery.backends.export.standin import Shape, build_stand_ins
from surgery.backends.export.tf2onnx_run import ExportError, convert
from surgery.backends.export.weight_standins import select_weights
from surgery.errors import SurgeryError, TensorFlowMissing
from surgery.ir.graph import Graph
from surgery.ir.onnx_io import PLUGIN_DOMAIN
from surgery.ir.protos import GraphDef
from surgery.ops.plugin_schema import Catalog, load_catalog

DEFAULT_OPSET = 17
# Above this many bytes of constants the model is written with external data (protobuf's 2 GiB
# limit applies to the whole ModelProto).
LARGE_MODEL_BYTES = 1 << 30
_NO_OUTPUT_OPS = {"NoOp", "Assert", "Print", "PrintV2", "SaveV2", "Save", "Const"}

__all__ = ["DEFAULT_OPSET", "ExportError", "ExportResult", "export_onnx", "graph_io"]


@dataclass
class ExportResult:
    """What an export wrote and found."""

    path: Path
    inputs: list[str]
    outputs: list[str]
    opset: int
    plugins: dict[str, str]  # ONNX node name -> creator name
    nchw_plugins: list[str] = field(default_factory=list)  # given NCHW inputs by the exporter
    external_data: Path | None = None
    nodes: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """A few lines for the command line."""
        lines = [
            f"wrote {self.path} ({self.nodes} nodes, opset {self.opset}, {self.seconds:.1f} s)",
            f"inputs:  {', '.join(self.inputs)}",
            f"outputs: {', '.join(self.outputs)}",
        ]
        if self.external_data:
            lines.append(f"weights: {self.external_data}")
        if self.plugins:
            counts: dict[str, int] = {}
            for creator in self.plugins.values():
                counts[creator] = counts.get(creator, 0) + 1
            shown = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
            lines.append(f"plugins ({PLUGIN_DOMAIN}): {shown}")
        if self.nchw_plugins:
            lines.append(f"NCHW inputs given to: {', '.join(self.nchw_plugins)}")
        return "\n".join(lines)


def graph_io(graph: Graph) -> tuple[list[str], list[str]]:
    """Default (inputs, outputs): the Placeholders something reads, and port 0 of every sink but
    Consts, NoOps and Placeholders (an unread one is a side input a collapse dropped: it is
    neither an input nor an output of the network)."""
    inputs = [f"{n.name}:0" for n in graph if n.op == "Placeholder" and graph.is_read(n.name)]
    outputs = [
        f"{n.name}:0" for n in graph.graph_outputs()
        if n.op not in _NO_OUTPUT_OPS and n.op != "Placeholder"
    ]  # fmt: skip
    return inputs, outputs


def _const_bytes(graph_def: GraphDef) -> int:
    """Bytes held in Const tensors (sized, not copied)."""
    return sum(n.attr["value"].ByteSize() for n in graph_def.node if n.op == "Const")


def _tensor_names(names: Sequence[str]) -> list[str]:
    """`x` -> `x:0`; names with a port kept."""
    return [n if ":" in n else f"{n}:0" for n in names]


def export_onnx(
    source: Graph | str | os.PathLike,
    output: str | os.PathLike,
    *,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    input_shapes: Mapping[str, Shape] | None = None,
    shape_overrides: Mapping[str, Shape] | None = None,
    opset: int = DEFAULT_OPSET,
    large_model: bool | None = None,
    catalog: Catalog | None = None,
    target: str | None = None,
) -> ExportResult:
    """Convert a graph (or `.pb`/`.pbtxt`) to ONNX at `output`; ExportError if anything fails.
    Plugin nodes carry the creator names and versions TensorRT `target` expects (default: the
    catalog's, which surgery's own creators register)."""
    from surgery.ir import model_io

    start = time.perf_counter()
    sources: tuple[Any, ...] = ()
    if not isinstance(source, Graph):
        sources = (source,)
        source = model_io.load(source)
    out_path = model_io.check_output_path(output, *sources)
    _require_tools()
    catalog = catalog or load_catalog()
    graph = source
    plugins = find_plugin_nodes(graph, catalog, target)  # creator names/versions of `target`
    default_in, default_out = graph_io(graph)
    in_names = _tensor_names(inputs or default_in)
    out_names = _tensor_names(outputs or default_out)
    if not out_names:
        raise ExportError("the graph has no outputs to export (give --output-names)")
    shapes = {name.split(":")[0]: shape for name, shape in (input_shapes or {}).items()}
    weights = select_weights(graph, {p.name for p in plugins}, out_names)
    stand_ins = build_stand_ins(graph, plugins, shapes, shape_overrides, weights)
    if large_model is None:
        rest = _const_bytes(stand_ins.graph_def)  # the constants tf2onnx still holds
        large_model = rest + sum(w.nbytes for w in weights.values()) > LARGE_MODEL_BYTES
    # tf2onnx writes its own large tensors to its external storage too
    model, storage = convert(stand_ins, in_names, out_names, opset=opset, large_model=large_model)
    initializers = attach_weights(model, weights)
    onnx_plugins = _check_plugins(model, stand_ins)
    external = write_model(model, initializers, out_path, external=large_model, storage=storage)
    _run_checker(out_path)
    return ExportResult(
        path=out_path,
        inputs=[i.name for i in model.graph.input],
        outputs=[o.name for o in model.graph.output],
        opset=opset,
        plugins=onnx_plugins,
        nchw_plugins=list(stand_ins.transposed),
        external_data=external,
        nodes=len(model.graph.node),
        seconds=time.perf_counter() - start,
    )


def _require_tools() -> None:
    """TensorMissing/ExportError if TensorFlow, tf2onnx or onnx are not installed."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise TensorFlowMissing("export runs tf2onnx on TensorFlow: install the 'tf' extra") from (
            None
        )
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"export needs tf2onnx and onnx ({exc}); install the 'onnx' extra") from (
            None
        )


def _check_plugins(model: Any, stand_ins: Any) -> dict[str, str]:
    """Every plugin exactly once, in our domain, nothing stray in front of NCHW plugins."""
    found = {n.name: n.op_type for n in model.graph.node if n.domain == PLUGIN_DOMAIN}
    missing = [name for name in stand_ins.plugins if name not in found]
    if missing:
        raise ExportError(f"plugin node(s) lost in conversion: {', '.join(missing)}")
    leftovers = [n.name for n in model.graph.node if n.op_type in ("PyFunc", "EnsureShape")]
    if leftovers:
        raise ExportError(f"stand-in node(s) left in the ONNX graph: {', '.join(leftovers)}")
    if found and not any(o.domain == PLUGIN_DOMAIN for o in model.opset_import):
        raise ExportError(f"opset_import lacks the plugin domain {PLUGIN_DOMAIN!r}")
    producers = {out: n for n in model.graph.node for out in n.output}
    for name in stand_ins.transposed:
        node = next(n for n in model.graph.node if n.name == name)
        for tensor in node.input:
            feeder = producers.get(tensor)
            if feeder is not None and feeder.op_type == "Transpose":
                raise ExportError(
                    f"NCHW plugin {name!r} still reads a Transpose ({feeder.name!r}) after "
                    "conversion; its input layout could not be made NCHW"
                )
    return found


def _run_checker(path: Path) -> None:
    """onnx.checker on the written file (by path, so external data is followed)."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid model"
        raise ExportError(f"{path}: onnx.checker rejects the exported model: {first}") from None


def describe_error(exc: SurgeryError) -> str:
    """One line for the CLI."""
    return str(exc).splitlines()[0]
