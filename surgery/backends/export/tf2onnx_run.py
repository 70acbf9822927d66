"""Running tf2onnx: its logger captured (ERROR fails the export), plugins restored from stand-ins.

tf2onnx's `from_graph_def` converts node by node and only *logs* a node it cannot convert, so
every record of level ERROR is collected and turned into an exception. Its large-model path calls
`np.product`, which NumPy 2 removed; `numpy_product_shim` gives tf2onnx's graph module (only it)
a NumPy view that still has the name, for the duration of one conversion.

The weights come as Placeholders (`surgery.backends.export.weight_standins`). Grappler, which
tf2onnx runs first, makes a filled tensor of its full shape for every Placeholder it is not told is
fed, and keeps them all while it optimises: a second copy of every weight. `grappler_feeds`
declares them fed, in the metagraph's signature_def as TensorFlow's OptimizeGraph documents, with
no shape.
"""

from __future__ import annotations

import contextlib
import logging
import types
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from surgery.backends.export.plugin_nodes import onnx_attributes
from surgery.backends.export.standin import StandIns
from surgery.errors import SurgeryError
from surgery.ir.onnx_io import PLUGIN_DOMAIN


class ExportError(SurgeryError):
    """tf2onnx could not convert the graph (or part of it); the message names the nodes."""


class _Collector(logging.Handler):
    """Keeps the formatted text of every ERROR record."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Store one message (without the traceback)."""
        self.messages.append(record.getMessage().strip())


@contextlib.contextmanager
def captured_errors(name: str = "tf2onnx") -> Iterator[_Collector]:
    """Collect ERROR records of logger `name` and quiet its INFO chatter meanwhile."""
    logger = logging.getLogger(name)
    tf_logger = logging.getLogger("tensorflow")  # its v1-API deprecation notices
    collector = _Collector()
    old_levels = logger.level, tf_logger.level
    logger.addHandler(collector)
    logger.setLevel(logging.WARNING)
    tf_logger.setLevel(logging.ERROR)
    try:
        yield collector
    finally:
        logger.removeHandler(collector)
        logger.setLevel(old_levels[0])
        tf_logger.setLevel(old_levels[1])


class _NumpyWithProduct(types.ModuleType):
    """NumPy as a module object that also answers `product` (an alias of `prod`)."""

    def __init__(self) -> None:
        super().__init__("numpy")
        self.product = np.prod

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


@contextlib.contextmanager
def numpy_product_shim() -> Iterator[None]:
    """Let tf2onnx.graph call `np.product` under NumPy 2 while inside this block."""
    import tf2onnx.graph as tf2onnx_graph

    if hasattr(np, "product"):
        yield
        return
    original = tf2onnx_graph.np
    tf2onnx_graph.np = _NumpyWithProduct()
    try:
        yield
    finally:
        tf2onnx_graph.np = original


@contextlib.contextmanager
def grappler_feeds(placeholders: Mapping[str, int]) -> Iterator[None]:
    """While inside, every grappler run (tf2onnx's) lists `placeholders` (name -> dtype enum) as
    fed inputs of its metagraph's signature, so grappler makes no full-size tensor for them."""
    from tensorflow.python.grappler import tf_optimizer

    original = tf_optimizer.OptimizeGraph
    if not placeholders:
        yield
        return

    def optimize(config_proto: Any, metagraph: Any, *args: Any, **kwargs: Any) -> Any:
        inputs = metagraph.signature_def["surgery_weight_standins"].inputs
        for name, dtype in placeholders.items():
            inputs[name].name = f"{name}:0"
            inputs[name].dtype = dtype  # shape left empty: a scalar is all grappler makes
        return original(config_proto, metagraph, *args, **kwargs)

    tf_optimizer.OptimizeGraph = optimize
    try:
        yield
    finally:
        tf_optimizer.OptimizeGraph = original


def _plugin_handler(stand_ins: StandIns) -> Any:
    """A tf2onnx custom-op handler turning each PyFunc stand-in back into its plugin node."""

    def handler(ctx: Any, node: Any, name: Any, args: Any) -> Any:
        token = node.get_attr_value("token")
        token = token.decode() if isinstance(token, bytes) else str(token)
        plugin = stand_ins.plugins.get(token)
        if plugin is None:
            raise ExportError(f"PyFunc {node.name!r} is not a surgery plugin stand-in")
        node.type = plugin.onnx_op  # the creator name the target's registry has
        node.domain = PLUGIN_DOMAIN
        node.attr.clear()
        for attr in onnx_attributes(plugin):
            node.attr[attr.name] = attr
        return node

    return handler


def convert(
    stand_ins: StandIns,
    inputs: list[str],
    outputs: list[str],
    *,
    opset: int,
    large_model: bool,
) -> tuple[Any, Any]:
    """(ModelProto, tf2onnx's external tensor storage or None); ExportError on any ERROR."""
    import tensorflow as tf
    import tf2onnx
    from tf2onnx import utils as tf2onnx_utils

    tf_def = tf.compat.v1.GraphDef.FromString(stand_ins.graph_def.SerializeToString())
    shape_override = {
        key: list(shape)
        for key, shape in stand_ins.shapes.items()
        if shape is not None
    }
    extra = [tf2onnx_utils.make_opsetid(PLUGIN_DOMAIN, 1)] if stand_ins.plugins else None
    handlers = {"PyFunc": (_plugin_handler(stand_ins), ())}
    weights = {name: weight.dtype for name, weight in stand_ins.weights.items()}
    with captured_errors() as collector, numpy_product_shim(), grappler_feeds(weights):
        try:
            model, storage = tf2onnx.convert.from_graph_def(
                tf_def,
                input_names=inputs,
                output_names=outputs,
                opset=opset,
                custom_op_handlers=handlers,
                extra_opset=extra,
                shape_override=shape_override or None,
                large_model=large_model,
            )
        except SurgeryError:
            raise
        except Exception as exc:  # tf2onnx raises bare ValueError/KeyError/... on bad graphs
            detail = "; ".join(collector.messages[:3])
            raise ExportError(
                f"tf2onnx failed: {type(exc).__name__}: {exc}" + (f" ({detail})" if detail else "")
            ) from None
    if collector.messages:
        shown = "\n  ".join(m.splitlines()[0] for m in collector.messages[:8])
        more = len(collector.messages) - 8
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise ExportError(
            f"tf2onnx could not convert {len(collector.messages)} part(s) of the graph; "
            f"no model written:\n  {shown}{tail}"
        )
    return model, storage if large_model else None
