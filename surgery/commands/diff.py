"""`surgery diff A.pb B.pb [-o diff.html]`: structural diff by node name, optionally as a report."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("diff", help="compare two graphs node by node (HTML report)")
    parser.add_argument("before", help="frozen GraphDef (.pb or .pbtxt)")
    parser.add_argument("after", help="frozen GraphDef (.pb or .pbtxt)")
    parser.add_argument("-o", "--output", help="write a self-contained HTML report here")
    parser.add_argument(
        "--exit-code", action="store_true", help="exit 3 when the graphs differ (like `diff`)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.ir import model_io
    from surgery.views.graph_diff import diff_graphs
    from surgery.views.report import change_lines, write_report

    out = model_io.check_output_path(args.output, args.before, args.after) if args.output else None
    before, after = model_io.load(args.before), model_io.load(args.after)
    if out is not None:
        diff = write_report(
            before, after, out, title=f"surgery diff: {args.before} -> {args.after}"
        )
    else:
        diff = diff_graphs(before, after)
    if diff.identical:
        print(f"graphs are identical ({len(before)} nodes)")
    else:
        print(f"{len(before)} -> {len(after)} nodes: {diff.summary_line()}")
        shown = 0
        for name in diff.added[:20]:
            print(f"  + {name} ({after.node(name).op})")
            shown += 1
        for name in diff.removed[:20]:
            print(f"  - {name} ({before.node(name).op})")
            shown += 1
        for name, change in list(diff.changed.items())[:20]:
            print(f"  ~ {name}: {'; '.join(change_lines(change))}")
            shown += 1
        total = len(diff.added) + len(diff.removed) + len(diff.changed)
        if total > shown:
            print(f"  ... and {total - shown} more (see the HTML report: -o diff.html)")
    if out is not None:
        print(f"wrote {out}")
    return 3 if args.exit_code and not diff.identical else 0
