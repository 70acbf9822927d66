"""`surgery test [PATH] [--update] [-k TEXT] [--no-numeric]`: the rule regression suite."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "test", help="run the rule regression cases (rules/cases/*.toml) against their goldens",
        description="Apply each rule file to its cases' fixture models; check match counts, "
        "plugin nodes and fields, invariants, the golden summary and the numeric check. "
        "Exit 0 when every case passes, 1 otherwise.",
    )  # fmt: skip
    parser.add_argument("path", nargs="?", default="rules",
                        help="a directory of rule files, one .rules file or one case file "
                        "(default: rules)")  # fmt: skip
    parser.add_argument(
        "--update",
        action="store_true",
        help="rewrite the golden files from the actual rewrites; print the diff",
    )
    parser.add_argument(
        "-k",
        dest="select",
        metavar="TEXT",
        help="only cases whose label (FILE::CASE) contains TEXT",
    )
    parser.add_argument(
        "--no-numeric",
        action="store_true",
        help="skip the numeric checks (structure and goldens only)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.regression import run_suite

    return run_suite(args.path, update=args.update, numeric=not args.no_numeric, select=args.select)
