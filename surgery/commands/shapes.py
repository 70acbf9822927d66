"""`surgery shapes MODEL.pb [--input NAME=DIMS] [--static-reshape -o OUT.pb]`."""

from __future__ import annotations

import argparse

from surgery.commands.options import add_input_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("shapes", help="print inferred shapes; make Reshapes static")
    parser.add_argument("model", help="frozen GraphDef (.pb or .pbtxt)")
    add_input_option(parser, help="pin a placeholder's shape before inference, e.g. "
                     "input_image=1,128,128,3 (repeatable; -o writes it pinned)")
    parser.add_argument("--static-reshape", action="store_true",
                        help="replace every Reshape's shape operand by a Const (needs -o)")
    parser.add_argument("--annotate", action="store_true",
                        help="record shapes as _output_shapes attrs for rules (needs -o)")
    parser.add_argument("-o", "--output", help="where to write the edited graph")
    parser.add_argument("--ops", nargs="*", help="print only nodes of these op types")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.ir import model_io
    from surgery.ir.ports import TensorRef
    from surgery.passes import shapes
    from surgery.passes.input_shapes import parse_input_flags, pin_inputs

    if (args.static_reshape or args.annotate) and not args.output:
        raise shapes.ShapeError("--static-reshape and --annotate write a new graph: give -o")
    if args.output:
        model_io.check_output_path(args.output, args.model)
    graph = model_io.load(args.model)
    pin_inputs(graph, parse_input_flags(args.input))
    inferred = shapes.infer_shapes(graph)
    if args.static_reshape or args.annotate:
        if args.static_reshape:
            for name, dims in shapes.static_reshapes(graph, inferred):
                print(f"static Reshape {name}: {list(dims)}")
        if args.annotate:
            count = shapes.annotate_shapes(graph)
            print(f"recorded _output_shapes on {count} nodes")
        model_io.save(graph, args.output, inputs=(args.model,))
        print(f"wrote {args.output}")
        return 0
    wanted = set(args.ops or ())
    for node in graph:
        if wanted and node.op not in wanted:
            continue
        outs = []
        port = 0
        while TensorRef(node.name, port) in inferred:
            outs.append(shapes.format_shape(inferred[TensorRef(node.name, port)]))
            port += 1
        print(f"{node.name} ({node.op}): {', '.join(outs) or '-'}")
    return 0
