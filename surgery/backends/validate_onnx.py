"""`surgery validate ORIGINAL.onnx REWRITTEN.onnx`: both models run on the same inputs by
onnxruntime, the rewritten model's plugin nodes by their NumPy references
(`surgery.backends.onnx_evaluate`), and the outputs of the same names compared.

Inputs, comparisons and their contracts, the report, tolerances and the plugin dump are the
TensorFlow path's (`surgery.backends.validate_inputs`, `surgery.backends.validate_compare`,
`surgery.backends.plugin_dump`); the options that pair tensors of the two graphs (`--per-boundary`,
`--log`, `--input-map`) are TensorFlow's only.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from surgery.backends.onnx_evaluate import OnnxEvaluator, PluginCallback, graph_inputs
from surgery.backends.validate import DEFAULT_ATOL, DEFAULT_RTOL, ValidationReport
from surgery.backends.validate_compare import (
    Comparison,
    compare,
    compare_padded,
    deviation_notes,
    padding_contract,
)  # fmt: skip
from surgery.backends.validate_inputs import ValidationError, random_inputs
from surgery.errors import UsageError
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef
from surgery.passes.onnx_shapes import input_names, ir_flag

# options of `surgery validate` the ONNX path does not take, and why
_REFUSED = {
    "per_boundary": ("--per-boundary", "plugin boundaries are compared for TensorFlow graphs "
                     "only; --dump DIR writes every plugin's inputs and outputs"),
    "log": ("--log", "plugin boundaries are compared for TensorFlow graphs only"),
    "input_map": ("--input-map", "`surgery apply` keeps an ONNX model's inputs: both models are "
                  "fed the same arrays"),
    "engine": ("--engine", "compare an engine with `polygraphy run --trt --onnxrt` meanwhile"),
}  # fmt: skip


# --------------------------------------------------------------------------- inputs
def onnx_feeds(
    graph: Graph, *, npz: str | None = None, shape_flags: Sequence[str] = (), seed: int = 0
) -> dict[str, np.ndarray]:
    """Values for the inputs of the model loaded as `graph`, by ONNX input name: the arrays of
    `npz`, else seeded random ones (`surgery.backends.validate_inputs.random_inputs`), their
    dynamic dims pinned by `--input NAME=D0,D1,...` flags (NAME: the ONNX name or the
    Placeholder's)."""
    from surgery.passes.input_shapes import parse_input_flags, pin_inputs

    names = input_names(graph)
    if npz is not None:
        return _npz_feeds(npz, graph, names)
    onnx_name = {ir: name for name, ir in names.items()}
    flags = [ir_flag(text, names, ValidationError) for text in shape_flags]
    shapes = pin_inputs(graph, parse_input_flags(flags))
    return {onnx_name[k]: v for k, v in random_inputs(graph, shapes, seed).items()}


def _npz_feeds(path: str, graph: Graph, names: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` keyed by input name (ONNX or Placeholder), cast to the inputs'
    dtypes where that loses no kind (ints to floats); onnxruntime checks their shapes."""
    from surgery.backends.validate_inputs import input_specs

    try:
        with np.load(path, allow_pickle=False) as archive:
            raw = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: cannot read inputs as .npz: {exc}") from None
    dtypes = {spec.name: np.dtype(spec.dtype) for spec in input_specs(graph)}
    onnx_name = {ir: name for name, ir in names.items()}
    feeds = {}
    for key, value in raw.items():
        ir = names.get(key, key if key in onnx_name else None)
        if ir is None:
            raise ValidationError(f"{path}: array {key!r} names no input of the original model "
                                  f"(inputs: {', '.join(names) or 'none'})")  # fmt: skip
        want = dtypes[ir]
        if value.dtype.kind != want.kind and want.kind != "f":
            raise ValidationError(f"{path}: array {key!r} is {value.dtype}; input "
                                  f"{onnx_name[ir]!r} is {want}")  # fmt: skip
        feeds[onnx_name[ir]] = value.astype(want)
    missing = [name for name in names if name not in feeds]
    if missing:
        raise ValidationError(f"{path}: no array for input(s) {', '.join(missing)}")
    return feeds


# --------------------------------------------------------------------------- comparison
class _Contracts:
    """The plugins' comparison contracts (`surgery.backends.validate_compare`), read off the
    rewritten model's Graph IR: padding rows of a plugin output, known deviations of the plugins
    upstream of a failure. `values`: the evaluator's tensors by ONNX name."""

    def __init__(self, graph: Graph, values: Mapping[str, np.ndarray]):
        from plugins.registry import has_reference
        from surgery.ir.onnx_io import DOMAIN_ATTR, OUTPUTS_ATTR, PLUGIN_DOMAIN, onnx_name

        self.graph = graph
        self.refs: dict[str, TensorRef] = {}  # ONNX tensor name -> the IR's
        for node in graph:
            if OUTPUTS_ATTR in node.attr:
                for port, name in enumerate(node.attr[OUTPUTS_ATTR].list.s):
                    self.refs[name.decode()] = TensorRef(node.name, port)
            elif node.op in ("Placeholder", "Const"):
                self.refs[onnx_name(node)] = TensorRef(node.name, 0)
        self.plugins = [
            n.name for n in graph
            if DOMAIN_ATTR in n.attr and n.attr[DOMAIN_ATTR].s.decode() == PLUGIN_DOMAIN
            and has_reference(n.op)
        ]  # fmt: skip
        self.values = {self.refs[k]: v for k, v in values.items() if k in self.refs}

    def compare(self, name: str, want: Any, got: Any, rtol: float, atol: float) -> Comparison:
        """`compare` the output `name`, under its padding contract if it is a plugin's."""
        ref = self.refs.get(name)
        contract = None if ref is None else padding_contract(self.graph, ref, self.plugins)
        if contract is not None:
            _, op, padding = contract
            return compare_padded(name, name, name, want, got, rtol, atol, padding, op)
        return compare(name, name, name, want, got, rtol, atol)

    def explain(self, failed: Iterable[Comparison]) -> None:
        """Name the known deviations upstream of each failed comparison."""
        notes = deviation_notes(self.graph, self.plugins, self.values)
        for comparison in failed:
            ref = self.refs.get(comparison.rewritten)
            if ref is not None:
                comparison.deviation = notes(ref)


def validate_onnx(
    original: str | Path, rewritten: str | Path, feeds: Mapping[str, np.ndarray], *,
    rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, exclude: Sequence[str] = (),
    on_plugin: PluginCallback | None = None,
) -> ValidationReport:  # fmt: skip
    """Run both models on `feeds` (by input name) and compare the original's outputs with the
    rewritten model's outputs of the same names; outputs matching an `exclude` glob are listed
    as not compared. `on_plugin` is called with every plugin the rewritten model runs."""
    import onnx

    from surgery.ir import model_io

    graph = model_io.load(rewritten)  # checks the file, with readable errors
    want_model, got_model = onnx.load(str(original)), onnx.load(str(rewritten))
    outputs = [v.name for v in want_model.graph.output]
    if not outputs:
        raise ValidationError(f"{original}: the model has no outputs to compare")
    got_inputs = graph_inputs(got_model)
    extra = [name for name in got_inputs if name not in feeds]
    if extra:
        raise ValidationError(
            f"the rewritten model has input(s) {', '.join(extra)} that the original lacks: "
            "validate compares models with the same inputs"
        )
    got_feeds = {name: feeds[name] for name in got_inputs}
    got_evaluator = OnnxEvaluator(got_model, got_feeds, on_plugin=on_plugin, where=str(rewritten))
    got_names = {v.name for v in got_model.graph.output}
    report = ValidationReport([], plugins=[p.label for p in got_evaluator.plugins.values()],
                              rtol=rtol, atol=atol)  # fmt: skip
    wanted = []
    for name in outputs:
        pattern = next((p for p in exclude if fnmatch.fnmatchcase(name, p)), None)
        if pattern is not None:
            report.skipped.append(f"output {name}: excluded ({pattern})")
        elif name not in got_names:
            report.outputs.append(Comparison(name, name, "", None, np.inf, np.inf, False,
                                             "missing from the rewritten model"))  # fmt: skip
        else:
            wanted.append(name)
    want = OnnxEvaluator(want_model, feeds, where=str(original)).run(wanted)
    got = got_evaluator.run(wanted)
    contracts = _Contracts(graph, got_evaluator.known)
    report.outputs.extend(contracts.compare(n, want[n], got[n], rtol, atol) for n in wanted)
    contracts.explain(c for c in report.outputs if not c.passed and c.rewritten)
    return report


# --------------------------------------------------------------------------- command
def command(args: argparse.Namespace) -> int:
    """`surgery validate ORIGINAL.onnx REWRITTEN.onnx`: print the report; 0 pass, 1 fail."""
    from surgery.backends.plugin_dump import DumpWriter
    from surgery.ir import model_io

    refused = [f"{flag}: {why}" for key, (flag, why) in _REFUSED.items() if getattr(args, key)]
    if refused:
        raise UsageError("not for ONNX models: " + "; ".join(refused))
    if args.inputs and args.input:
        raise UsageError("--input pins the shapes of random inputs and --inputs gives the "
                         "arrays: give one of them")  # fmt: skip
    feeds = onnx_feeds(model_io.load(args.original), npz=args.inputs, shape_flags=args.input,
                       seed=args.seed)  # fmt: skip
    dump = DumpWriter(args.dump, args.rewritten) if args.dump else None
    with dump or contextlib.nullcontext():
        report = validate_onnx(
            args.original, args.rewritten, feeds,
            rtol=DEFAULT_RTOL if args.rtol is None else args.rtol,
            atol=DEFAULT_ATOL if args.atol is None else args.atol, exclude=args.exclude,
            on_plugin=None if dump is None else (lambda plugin, inputs, outputs: dump.add(
                plugin.label, plugin.schema.name, plugin.fields, inputs, outputs)),
        )  # fmt: skip
    print(report.format())
    if dump is not None:
        print(f"plugin dump: {len(report.plugins)} plugin nodes in {args.dump}")
    return 0 if report.passed else 1
