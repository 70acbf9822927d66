"""`surgery validate ORIGINAL REWRITTEN`: compare a rewrite with its original numerically (two
frozen graphs, or two ONNX models: `surgery.backends.validate_onnx`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING

from surgery.commands.options import add_input_option
from surgery.errors import SurgeryError, UsageError

if TYPE_CHECKING:
    from surgery.ir.graph import Graph


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `validate` subcommand."""
    parser = subparsers.add_parser(
        "validate", help="run original and rewritten graphs on the same inputs and compare",
        description="Run both graphs (TensorFlow for TF regions, NumPy references for plugin "
        "nodes) on the same inputs and compare the original's outputs. Exit 0 pass, 1 fail.",
    )  # fmt: skip
    parser.add_argument("original", help="the original frozen graph (.pb/.pbtxt) or .onnx model")
    parser.add_argument("rewritten", help="the rewritten graph (.pb/.pbtxt) or .onnx model")
    parser.add_argument("--inputs", metavar="FILE.npz", help="input values by placeholder name")
    add_input_option(parser, "--shape", help="pin a placeholder's shape in both graphs and "
                     "make the random inputs that shape (repeatable; --shape is the old "
                     "spelling)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--rtol", type=float, default=None, help="relative tolerance (1e-4)")
    parser.add_argument("--atol", type=float, default=None, help="absolute tolerance (1e-5)")
    parser.add_argument("--per-boundary", action="store_true",
                        help="also compare every plugin's inputs and outputs; name the first "
                        "that diverges")  # fmt: skip
    parser.add_argument("--log", metavar="changes.json",
                        help="`surgery apply --log` output: maps plugin outputs to the original "
                        "tensors they replace; outputs read from a plugin port that "
                        "replaced several tensors are compared at the plugin boundaries "
                        "instead")  # fmt: skip
    parser.add_argument("--input-map", action="append", default=[], metavar="NEW=OLD[:PERM]",
                        help="feed the rewritten graph's placeholder NEW from the original's "
                        "tensor OLD (a placeholder or any tensor), transposed by PERM, e.g. "
                        "Input=image_tensor:0,3,1,2 (repeatable)")  # fmt: skip
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="do not compare tensors whose node (or node:port), in either "
                        "graph, matches GLOB; they are listed as not compared "
                        "(repeatable)")  # fmt: skip
    parser.add_argument("--dump", metavar="DIR",
                        help="write every plugin node's inputs and reference outputs, as the "
                        "plugin sees them, to DIR (one .npz per node and manifest.json; DIR "
                        "may hold only a previous dump)")  # fmt: skip
    parser.add_argument("--engine", metavar="model.engine",
                        help="also run this TensorRT engine against TensorFlow where the local "
                        "GPU and runtime can execute it; otherwise say why not")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the report; 0 if every comparison passes, 1 otherwise."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from surgery.ir import model_io

    onnx = [model_io.is_onnx_path(p) for p in (args.original, args.rewritten)]
    if any(onnx) and not all(onnx):
        raise UsageError(
            f"{args.original} and {args.rewritten}: one is an ONNX model, the other a "
            "TensorFlow graph; validate compares two of a kind (`surgery export` the graph, "
            "then rewrite the export)"
        )
    if all(onnx):
        from surgery.backends.validate_onnx import command

        return command(args)
    from surgery.backends.plugin_dump import DumpWriter
    from surgery.backends.validate import (
        DEFAULT_ATOL,
        DEFAULT_RTOL,
        LAYOUT_ATOL,
        LAYOUT_RTOL,
        layout_change,
        load_inputs,
        parse_input_map,
        provenance_sources,
        validate,
    )  # fmt: skip
    from surgery.backends.validate_inputs import side_placeholders

    if args.engine:
        from surgery.backends.trt_runtime import require_runnable

        require_runnable(args.engine)
        raise SurgeryError(
            "engine execution is not implemented yet for this runtime; the engine can run here, "
            "compare it with `polygraphy run --trt` meanwhile"
        )
    original = model_io.load(args.original)
    rewritten = model_io.load(args.rewritten)
    _freeze_weights(original, rewritten)
    shapes = _pin_both(original, rewritten, args.input)
    feeds = (
        load_inputs(args.inputs, original, optional=side_placeholders(rewritten))
        if args.inputs else None
    )  # fmt: skip
    provenance = provenance_sources(args.log) if args.log else None
    input_map = [parse_input_map(text) for text in args.input_map]
    rtol, atol = DEFAULT_RTOL, DEFAULT_ATOL
    moved = layout_change(original, rewritten)
    if moved and args.rtol is None and args.atol is None:
        rtol, atol = LAYOUT_RTOL, LAYOUT_ATOL
        print(f"tolerance rtol {rtol:g}, atol {atol:g}: {moved} (float32 sums in another "
              "order); --rtol/--atol override it")  # fmt: skip
    dump = DumpWriter(args.dump, args.rewritten) if args.dump else None
    with dump or contextlib.nullcontext():
        report = validate(
            original, rewritten, feeds,
            rtol=rtol if args.rtol is None else args.rtol,
            atol=atol if args.atol is None else args.atol,
            per_boundary=args.per_boundary or bool(args.log), provenance=provenance,
            shapes=shapes, seed=args.seed, input_map=input_map, exclude=args.exclude,
            on_plugin=None if dump is None else (lambda run: dump.add(
                run.node.name, run.node.op, run.fields(), run.inputs, run.outputs)),
        )  # fmt: skip
    print(report.format())
    if dump is not None:
        print(f"plugin dump: {len(report.plugins)} plugin nodes in {args.dump}")
    return 0 if report.passed else 1


def _freeze_weights(*graphs: Graph) -> None:
    """Let TensorFlow treat convolution and matmul weights as frozen (unless the user chose
    otherwise) when this process was started as `surgery validate` and every such weight in the
    graphs is a Const: the numeric reference can then feed the weights instead of copying them
    into every graph TensorFlow builds, and computes the same results
    (`surgery.passes.tf_reference.serialize_nodes`).

    The setting is TensorFlow's, for the whole process and for good: a weight that changes
    (training, eager Keras layers sharing a kernel, a weight computed at run time) would stay
    at the first value seen. So a program that calls the command in-process (a test) keeps
    TensorFlow as it is, and so does a graph with a weight that is not a Const."""
    from surgery.passes.tf_reference import FROZEN_WEIGHTS_ENV, dynamic_weights

    if sys.argv[1:2] == ["validate"] and not any(dynamic_weights(g) for g in graphs):
        os.environ.setdefault(FROZEN_WEIGHTS_ENV, "1")


def _pin_both(original: Graph, rewritten: Graph, texts: list[str]) -> dict[str, tuple[int, ...]]:
    """Pin `--input` shapes in both graphs (the rewritten one may lack a renamed input; a name
    neither has is an error) and return those the original's random inputs take."""
    from surgery.passes.input_shapes import parse_input_flags, pin_inputs

    shapes = parse_input_flags(texts)
    ours = {n: dims for n, dims in shapes.items() if n in original or n not in rewritten}
    pin_inputs(original, ours)
    pin_inputs(rewritten, shapes, missing_ok=True)
    return {name: dims for name, dims in ours.items() if original.node(name).op == "Placeholder"}
