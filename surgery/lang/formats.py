"""Which model format a graph came from, and rule files written for another format's ops."""

from __future__ import annotations

from collections.abc import Iterable

from surgery.ir.graph import Graph
from surgery.lang import rule_ast as ast

NAMES = {"tensorflow": "TensorFlow", "onnx": "ONNX"}


def model_format(graph: Graph) -> str:
    """The format `graph` was loaded from: "onnx" for an ONNX model, else "tensorflow"."""
    from surgery.ir.onnx_io import is_onnx_graph

    return "onnx" if is_onnx_graph(graph) else "tensorflow"


def opset_warnings(graph: Graph) -> list[str]:
    """For an ONNX model, a warning per opset it imports that the installed onnx does not know
    (checks against its operator schemas may then be wrong)."""
    if model_format(graph) != "onnx":
        return []
    from surgery.ir.onnx_io import model_header, opset_warning

    found = (opset_warning(e.domain, e.version) for e in model_header(graph).opset_import)
    return [w for w in found if w is not None]


def format_warnings(rule_files: Iterable[ast.RuleFile], graph: Graph) -> list[str]:
    """A warning per rule file that does not state the graph's format (its ops are another
    format's op names, so its patterns may match nothing or mean something else), and the
    model's unknown opsets (`opset_warnings`)."""
    fmt = model_format(graph)
    warnings = opset_warnings(graph)
    for rule_file in rule_files:
        if fmt not in rule_file.model_formats:
            stated = ", ".join(NAMES[f] for f in rule_file.model_formats)
            warnings.append(
                f"{rule_file.path}: written for {stated} graphs, and the model is {NAMES[fmt]}: "
                f'its op names may not be {NAMES[fmt]} ops (a file for both states `formats '
                f'"tensorflow", "onnx"`; `surgery check --format {fmt}` checks it)'
            )
    return warnings
