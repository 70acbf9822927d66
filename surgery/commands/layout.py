"""`surgery layout nchw MODEL.pb -o OUT.pb [--nchw-inputs] [--input NAME=DIMS]`: convert an NHWC
graph to NCHW."""

from __future__ import annotations

import argparse

from surgery.commands.options import add_allow_invalid_option, add_input_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("layout", help="convert an NHWC graph to NCHW")
    parser.add_argument("target", choices=("nchw",), help="the layout to convert to")
    parser.add_argument("model", help="frozen GraphDef (.pb or .pbtxt)")
    parser.add_argument("-o", "--output", required=True, help="where to write the NCHW graph")
    parser.add_argument("--nchw-inputs", action="store_true",
                        help="also make 4-D graph inputs NCHW (feeds change layout)")
    add_input_option(parser)
    add_allow_invalid_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.ir import model_io
    from surgery.ops.graph_check import refuse_invalid
    from surgery.passes import layout
    from surgery.passes.input_shapes import pin_and_fold, print_report

    model_io.check_output_path(args.output, args.model)
    graph = model_io.load(args.model)
    refuse_invalid(graph, args.model, args.allow_invalid)  # cycles, missing ports or nodes, empty
    layout.refuse_plugin_nodes(graph)  # before --input: TensorFlow cannot import plugin ops
    if args.input:
        print_report(pin_and_fold(graph, args.input))
    report = layout.to_nchw(graph, nchw_inputs=args.nchw_inputs)
    model_io.save(graph, args.output, inputs=(args.model,))
    print(f"{len(report.converted)} ops switched to NCHW; Transposes: "
          f"{report.transposes_before} before, {report.transposes_after} after "
          f"({report.inserted} inserted, {report.cancelled} cancelled, {report.pushed} pushed)")
    print(f"wrote {args.output}")
    return 0
