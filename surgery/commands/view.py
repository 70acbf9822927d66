"""`surgery view MODEL.pb [--focus NODE|SCOPE --radius K] -o OUT.html|.svg|.png|.dot`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "view", help="draw a graph or a neighbourhood (interactive HTML, SVG, PNG or DOT)"
    )
    parser.add_argument("model", help="frozen GraphDef (.pb or .pbtxt)")
    parser.add_argument(
        "-o", "--output", required=True, help="OUT.html, OUT.svg, OUT.png or OUT.dot"
    )
    parser.add_argument(
        "--focus", metavar="NODE|SCOPE", help="draw only around a node or namespace"
    )
    parser.add_argument(
        "--radius", type=int, default=2, metavar="K", help="hops around --focus (2)"
    )
    parser.add_argument(
        "--collapse",
        type=int,
        metavar="DEPTH",
        help="draw namespaces deeper than DEPTH as one node",
    )
    parser.add_argument(
        "--max-nodes",
        type=int,
        default=600,
        metavar="N",
        help="largest picture; bigger whole-graph views collapse namespaces (600)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.ir import model_io
    from surgery.views.visualize import write_view

    out = model_io.check_output_path(args.output, args.model)
    graph = model_io.load(args.model)
    path, caption = write_view(
        graph,
        out,
        focus=args.focus,
        radius=args.radius,
        collapse=args.collapse,
        max_nodes=args.max_nodes,
    )
    print(f"wrote {path}: {caption}")
    return 0
