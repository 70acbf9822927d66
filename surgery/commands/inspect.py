"""`surgery inspect MODEL.pb`: node count, op histogram, inputs/outputs, namespaces, unknown ops,
structural defects (`surgery.ops.graph_check`). Like the other facts, defects are reported, not
failed on: the exit status stays 0 (apply, layout and export are the ones that refuse)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inspect", help="summarise a frozen graph")
    parser.add_argument("model", help="frozen GraphDef (.pb or .pbtxt)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--no-tf", action="store_true", help="skip the TensorFlow op-registry check (faster)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from surgery.ir import model_io
    from surgery.views.inspection import format_summary, summarize

    graph = model_io.load(args.model)
    from surgery.lang.formats import model_format, opset_warnings

    for warning in opset_warnings(graph):
        print(f"warning: {warning}", file=sys.stderr)
    with_tf = not args.no_tf and model_format(graph) == "tensorflow"  # ONNX: its own op set
    summary = summarize(graph, with_tf=with_tf)
    print(json.dumps(asdict(summary), indent=1) if args.json else format_summary(summary))
    return 0
