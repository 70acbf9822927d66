"""`surgery export MODEL.pb -o model.onnx`: ONNX with plugin nodes as custom-domain ops."""

from __future__ import annotations

import argparse
from typing import Any

from surgery.commands.options import add_allow_invalid_option, add_input_option
from surgery.ops.targets import add_target_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a (rewritten) graph to ONNX via tf2onnx")
    parser.add_argument("model", help="frozen GraphDef (.pb or .pbtxt), plugin nodes allowed")
    parser.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    parser.add_argument("--inputs", nargs="*", help="input tensors (default: the Placeholders)")
    parser.add_argument("--outputs", nargs="*", help="output tensors (default: the sinks)")
    add_input_option(parser, help="pin a placeholder's shape before conversion, so tf2onnx "
                     "sees static shapes (repeatable)")
    parser.add_argument("--shape", action="append", default=[], metavar="NODE:PORT=D0,D1,...",
                        help="a plugin output's shape when its reference cannot infer it")
    parser.add_argument("--opset", type=int)  # default: onnx_export.DEFAULT_OPSET
    parser.add_argument("--large-model", action="store_true",
                        help="weights as external data (<output>.data); automatic above 1 GiB")
    add_allow_invalid_option(parser)
    add_target_option(parser, "write the plugin creator names and versions this TensorRT target "
                      "expects (default: the catalog's, which surgery's creators register)", None)
    parser.set_defaults(func=run)


def _plugin_shape(text: str) -> tuple[str, tuple[int | None, ...]]:
    """`node:0=-1,3,8,8` -> ("node:0", (None, 3, 8, 8))."""
    from surgery.passes.shapes import ShapeError, parse_input_shape

    name, dims = parse_input_shape(text)
    if ":" not in name:
        raise ShapeError(f"--shape {text!r}: expected NODE:PORT=D0,D1,...")
    return name, tuple(None if d < 0 else d for d in dims)


def run(args: argparse.Namespace) -> int:
    from surgery.backends import onnx_export
    from surgery.ir import model_io
    from surgery.ops.graph_check import refuse_invalid
    from surgery.passes.input_shapes import parse_input_flags, pin_inputs

    input_shapes = parse_input_flags(args.input)
    model_io.check_output_path(args.output, args.model)
    source: Any = model_io.load(args.model)
    refuse_invalid(source, args.model, args.allow_invalid)  # cycles, missing ports or nodes
    if input_shapes:  # pinned before conversion (plugin nodes are fine: no TF needed)
        pin_inputs(source, input_shapes)
    result = onnx_export.export_onnx(
        source,
        args.output,
        inputs=args.inputs,
        outputs=args.outputs,
        input_shapes=input_shapes,
        shape_overrides=dict(_plugin_shape(t) for t in args.shape),
        opset=onnx_export.DEFAULT_OPSET if args.opset is None else args.opset,
        large_model=True if args.large_model else None,
        target=args.target,
    )
    print(result.summary())
    if args.target is not None:  # plugins the target lacks, deprecated ones, native ops
        import sys

        from surgery.ops.targets import graph_messages

        for severity, message in graph_messages(source, args.target):
            print(f"{severity}: {message}", file=sys.stderr)
    return 0
