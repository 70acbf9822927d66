"""`surgery apply RULES... MODEL.pb -o OUT.pb [--log changes.json]`: rewrite a graph by rules."""

from __future__ import annotations

import argparse
import sys

from surgery import model_io
from surgery.errors import OutputPathError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "apply", help="apply rule files to a frozen graph",
        description="Apply rule files (in order) to MODEL and write the rewritten graph.",
    )  # fmt: skip
    parser.add_argument("files", nargs="+", metavar="RULES... MODEL",
                        help="rule files, then the frozen GraphDef (.pb or .pbtxt)")  # fmt: skip
    parser.add_argument("-o", "--output", required=True, help="where to write the result")
    parser.add_argument("--log", help="write every change (with its rule) as JSON here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.engine import apply_rules
    from surgery.provenance import changes_json
    from surgery.rule_parser import load_rules

    if len(args.files) < 2:
        print("surgery apply: error: give at least one rule file and a model", file=sys.stderr)
        return 2
    *rule_paths, model = args.files
    model_io.check_output_path(args.output, model, *rule_paths)
    if args.log:
        model_io.check_output_path(args.log, model, *rule_paths)
        if args.log == args.output:
            raise OutputPathError(f"{args.log}: --log and -o name the same file")
    rule_files = [load_rules(p) for p in rule_paths]
    graph = model_io.load(model)
    before = len(graph)
    result = apply_rules(graph, rule_files)
    for name, count in result.per_rule_counts.items():
        print(f"{name}: {count} match{'es' if count != 1 else ''} applied")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    model_io.save(result.graph, args.output, inputs=(model, *rule_paths))
    print(f"nodes: {before} -> {len(result.graph)}; wrote {args.output}")
    if args.log:
        text = changes_json(
            result.changes, result.per_rule_counts, result.warnings,
            model=model, rules=rule_paths, output=args.output,
            nodes_before=before, nodes_after=len(result.graph),
        )  # fmt: skip
        model_io.write_atomic(args.log, text.encode("utf-8"))
        print(f"log: {len(result.changes)} changes in {args.log}")
    return 0
