"""`surgery apply RULES... MODEL.pb -o OUT.pb [--log changes.json] [--report report.html]
[--input NAME=DIMS] [--infer-shapes]`: rewrite a graph by rules."""

from __future__ import annotations

import argparse
import sys

from surgery.commands.options import add_allow_invalid_option, add_input_option, add_set_option
from surgery.ops.targets import add_target_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "apply", help="apply rule files to a frozen graph",
        description="Apply rule files (in order) to MODEL and write the rewritten graph.",
    )  # fmt: skip
    parser.add_argument("files", nargs="+", metavar="RULES... MODEL",
                        help="rule files, then the frozen GraphDef (.pb or .pbtxt)")  # fmt: skip
    parser.add_argument("-o", "--output", required=True, help="where to write the result")
    parser.add_argument("--log", help="write every change (with its rule) as JSON here")
    parser.add_argument("--report", metavar="REPORT.html",
                        help="write an HTML report of the changes (before/after, per rule)")
    parser.add_argument("--infer-shapes", action="store_true",
                        help="record inferred shapes (_output_shapes) first, so rules can read "
                        "x.shape on frozen TF2 graphs (needs TensorFlow)")
    add_input_option(parser)
    add_set_option(parser)
    add_allow_invalid_option(parser)
    add_target_option(parser, "apply for this TensorRT target: rules stating other targets are "
                      "left out, and plugins it lacks are named (default: none, every rule)", None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery import cache

    # The model's digest keys the cached --input and shape edits (prepare_graph below); with
    # those flags it is hashed in a thread from here on, while the imports and the load run.
    cached = cache.directory() is not None and len(args.files) >= 2
    early = cached and bool(args.input or args.infer_shapes)
    source = cache.SourceDigest(args.files[-1]) if early else None

    from surgery.engine.provenance import changes_json
    from surgery.engine.run import apply_rules
    from surgery.errors import OutputPathError
    from surgery.ir import model_io
    from surgery.ir.gc_pause import gc_paused
    from surgery.lang.rule_params import needs_shapes, parse_settings
    from surgery.ops.graph_check import refuse_invalid
    from surgery.passes.prepare import drop_inferred_shapes, prepare_graph

    if len(args.files) < 2:
        print("surgery apply: error: give at least one rule file and a model", file=sys.stderr)
        return 2
    *rule_paths, model = args.files
    model_io.check_output_path(args.output, model, *rule_paths)
    written = {args.output: "-o"}
    for flag, path in (("--log", args.log), ("--report", args.report)):
        if not path:
            continue
        model_io.check_output_path(path, model, *rule_paths)
        if path in written:
            raise OutputPathError(f"{path}: {flag} and {written[path]} name the same file")
        written[path] = flag
    rule_files = [cache.load_rules(p) for p in rule_paths]
    if args.target is not None:  # files not meant for it warned about, rules for others left out
        from surgery.ops.targets import select_rules

        rule_files, notes = select_rules(rule_files, args.target)
        for severity, message in notes:
            print(f"{severity}: {message}", file=sys.stderr)
    if cached and source is None and needs_shapes(rule_files):  # the rules read shapes
        source = cache.SourceDigest(model)
    graph = model_io.load(model)
    # From the check to the save every pass walks the whole graph and makes millions of
    # long-lived objects (parsed inputs, the consumer index, new nodes, the saved pieces) but no
    # reference cycles to speak of: the cyclic GC would rescan them again and again (3.4 s of a
    # 1M-node ONNX apply). One pause covers them all; the passes' own pauses nest in it.
    with gc_paused(len(graph)):
        refuse_invalid(graph, model, args.allow_invalid)  # cycles, missing ports or nodes, empty
        from surgery.lang.formats import format_warnings

        for warning in format_warnings(rule_files, graph):
            print(f"warning: {warning}", file=sys.stderr)
        settings = parse_settings(args.set)
        # the rules see (and -o gets) the pinned, folded graph, with shapes when rules read them
        shaped = prepare_graph(graph, rule_files, args.input, args.infer_shapes, source=source)
        before = len(graph)
        original = graph.copy() if args.report else None  # apply_rules edits `graph` in place
        result = apply_rules(graph, rule_files, settings=settings)
        if shaped:  # recorded for the rules only: neither output nor report shows them
            drop_inferred_shapes(result.graph)
            if original is not None:
                drop_inferred_shapes(original)
        for name, count in result.per_rule_counts.items():
            print(f"{name}: {count} match{'es' if count != 1 else ''} applied")
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if args.target is not None:  # plugins the target lacks, deprecated ones, native ops
            from surgery.ops.targets import graph_messages

            for severity, message in graph_messages(result.graph, args.target):
                print(f"{severity}: {message}", file=sys.stderr)
        from surgery.backends.onnx_plugins import save_graph

        save_graph(result.graph, args.output, inputs=(model, *rule_paths), target=args.target)
    print(f"nodes: {before} -> {len(result.graph)}; wrote {args.output}")
    if args.log:
        text = changes_json(
            result.changes, result.per_rule_counts, result.warnings,
            model=model, rules=rule_paths, output=args.output,
            nodes_before=before, nodes_after=len(result.graph),
        )  # fmt: skip
        model_io.write_atomic(args.log, text.encode("utf-8"))
        print(f"log: {len(result.changes)} changes in {args.log}")
    if args.report and original is not None:
        from surgery.views.report import write_report

        meta = {rule: {"matches": n} for rule, n in result.per_rule_counts.items()}
        write_report(original, result.graph, args.report, changes=result.changes,
                     rules_meta=meta)  # fmt: skip
        print(f"report: {args.report}")
    from surgery.launch import keep_until_exit

    keep_until_exit(graph, result, original)  # freed by the process's end, not one by one
    return 0
