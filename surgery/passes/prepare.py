"""The graph as the rules see it: placeholders pinned and shape arithmetic folded (`--input`),
shapes inferred when rules read them (TensorFlow's for a GraphDef, onnx's for an ONNX model),
cached by content; and those shapes dropped again before the graph is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from surgery.lang import rule_ast as ast
from surgery.lang.rule_params import needs_shapes


def prepare_graph(
    graph: Any, rule_files: Sequence[ast.RuleFile], inputs: Sequence[str] = (),
    infer_shapes: bool = False, stream: Any = None, source: Any = None,
) -> bool:  # fmt: skip
    """What the rules see: placeholders pinned and shape arithmetic folded (`--input`), then
    inferred shapes recorded when asked or when a rule reads shapes (needs TensorFlow). True
    when shapes were recorded: they go stale as rules rewrite, so `drop_inferred_shapes`
    removes them before the graph is written or run.

    Both steps import the graph into TensorFlow (seconds); their edits are cached by the
    graph's bytes (or `source`, a `surgery.cache.SourceDigest` of the file it was loaded from),
    the flags and TensorFlow's identity (`surgery.cache.edit_graph`), so the same graph is
    prepared again without TensorFlow."""
    from surgery.lang.formats import model_format
    from surgery.ops.opdefs import tensorflow_available

    if model_format(graph) == "onnx":
        _prepare_onnx(graph, rule_files, inputs, infer_shapes, stream, source)
        return False  # onnx's inferred shapes are right after rewrites too: kept as value_info
    shapes = infer_shapes or (needs_shapes(rule_files) and tensorflow_available())
    if not inputs and not shapes:
        return False
    from surgery import cache
    from surgery.passes.input_shapes import pin_and_fold, print_report

    def prepare() -> Any:
        report = None
        if inputs:
            report = pin_and_fold(graph, inputs)
            print_report(report, stream=stream)
        if shapes:
            from surgery.passes.shapes import annotate_shapes

            annotate_shapes(graph)
        return report

    params = ("prepare", cache.tensorflow_identity(), str(shapes), *inputs)
    replayed, report = cache.edit_graph(graph, params, prepare, source)
    if replayed and report is not None:
        print_report(report, stream=stream)
    return shapes


def _prepare_onnx(
    graph: Any, rule_files: Sequence[ast.RuleFile], inputs: Sequence[str], infer_shapes: bool,
    stream: Any, source: Any,
) -> None:  # fmt: skip
    """`prepare_graph` for an ONNX model: inputs pinned and shapes inferred by onnx
    (`surgery.passes.onnx_shapes`) when flags ask or the rules read shapes; cached as TF's are."""
    if not (inputs or infer_shapes or needs_shapes(rule_files)):
        return
    import sys

    from surgery import cache
    from surgery.passes.onnx_shapes import pin_and_infer

    def prepare() -> dict[str, tuple[int, ...]]:
        return pin_and_infer(graph, inputs)

    onnx = cache.package_identity("onnx", "__init__.py", "onnx_cpp2py*")
    params = ("prepare-onnx", onnx, *inputs)
    _, pinned = cache.edit_graph(graph, params, prepare, source)
    for name, dims in pinned.items():
        print(f"pinned {name} to {list(dims)}", file=stream or sys.stderr)


def drop_inferred_shapes(graph: Any) -> None:
    """Remove the `_output_shapes` attributes `prepare_graph` recorded (stale after rewrites:
    TensorFlow refuses a graph whose recorded shapes disagree with its nodes)."""
    for node in graph:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
