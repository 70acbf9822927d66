"""`surgery check RULES...`: lint rule files against the plugin schemas, without a model."""

from __future__ import annotations

import argparse
import os
import sys

from surgery.ops.targets import add_target_option


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `check` subcommand."""
    parser = subparsers.add_parser("check", help="lint rule files (no model needed)")
    parser.add_argument("rules", nargs="+", help="rule files")
    parser.add_argument(
        "--no-tf", action="store_true",
        help="do not consult TensorFlow's op registry (unknown ops become warnings)",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=("tensorflow", "onnx"), dest="fmt",
        help="check the ops against this model format's op set (default: the formats each file "
        "states with `formats`, else TensorFlow's)",
    )  # fmt: skip
    add_target_option(parser, "check the plugins the rules emit against this TensorRT target, "
                      "with notes (default: each file against the targets it states)", None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print every diagnostic as `file:line:col: severity: message`; 1 if any error."""
    from surgery.lang.rule_check import check_paths

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's registry import is chatty
    errors = warnings = 0
    found = check_paths(args.rules, use_tf=not args.no_tf, target=args.target, fmt=args.fmt)
    for diagnostic in found:
        print(diagnostic, file=sys.stdout)
        if diagnostic.severity == "error":
            errors += 1
        elif diagnostic.severity == "warning":
            warnings += 1
    if errors or warnings:
        print(f"{errors} error(s), {warnings} warning(s)", file=sys.stderr)
    else:
        print(f"ok: {len(args.rules)} rule file(s), no problems found")
    return 1 if errors else 0
