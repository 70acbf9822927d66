"""`surgery preprocess CONFIG.py MODEL.pb -o OUT.pb`: run a graphsurgeon script unmodified."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `preprocess` subcommand."""
    parser = subparsers.add_parser(
        "preprocess",
        help="run a graphsurgeon preprocessing script (as uff's preprocessor= did)",
        description="Run an existing graphsurgeon preprocessing script, which defines "
        "preprocess(dynamic_graph), on a frozen graph; `import graphsurgeon` resolves to "
        "surgery's compatible API.",
    )
    parser.add_argument("config", help="the preprocessing script (config.py)")
    parser.add_argument("model", help="frozen GraphDef (.pb or .pbtxt)")
    parser.add_argument("-o", "--output", required=True, help="where to write the result")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="write the result even if it has dangling inputs or a cycle",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the script and report node counts."""
    from surgery.compat.preprocess import preprocess_file

    result = preprocess_file(args.config, args.model, args.output, check=not args.no_check)
    print(f"wrote {result.output}: {result.nodes_before} -> {result.nodes_after} nodes")
    return 0
