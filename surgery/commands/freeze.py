"""`surgery freeze INPUT -o OUT.pb`: a SavedModel directory or Keras file as a frozen GraphDef."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `freeze` subcommand."""
    parser = subparsers.add_parser(
        "freeze",
        help="freeze a SavedModel or Keras file into a GraphDef (needs TensorFlow)",
        description="Freeze a SavedModel directory or a .keras/.h5 file into a frozen GraphDef "
        "(variables as constants, deterministic bytes). Needs TensorFlow.",
    )
    parser.add_argument("input", help="SavedModel directory or .keras/.h5 file")
    parser.add_argument("-o", "--out", required=True, help="output GraphDef (.pb or .pbtxt)")
    parser.add_argument(
        "--output",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="keep only what these output tensors need (repeatable; default: all outputs)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Freeze, save atomically, and print where the inputs and outputs are."""
    from surgery.ir import model_io
    from surgery.passes import freeze

    model_io.check_output_path(args.out, args.input)
    frozen = freeze.freeze_to_file(args.input, args.out, args.output or None)
    print(f"wrote {args.out}: {len(frozen.graph_def.node)} nodes")
    for spec in frozen.inputs:
        shape = spec.shape
        dims = "?" if shape is None else "x".join("?" if d is None else str(d) for d in shape)
        print(f"  input  {spec.name}: {spec.dtype}[{dims}]")
    for name in frozen.outputs:
        print(f"  output {name}")
    return 0
