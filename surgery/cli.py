"""The `surgery` command: one entry point, one module per subcommand under `surgery.commands`.

Exit codes: 0 ok, 1 a model/rule/graph error (one line on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from surgery.errors import SurgeryError, UsageError

# Each module defines `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
COMMANDS = [
    "inspect",
    "view",
    "diff",
    "freeze",
    "preprocess",
    "shapes",
    "layout",
    "weights",
    "check",
    "match",
    "explain",
    "apply",
    "test",
    "validate",
    "export",
    "support",
    "build",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surgery",
        description="Rewrite TensorFlow graphs for TensorRT with declarative rules.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"surgery.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SurgeryError as exc:
        print(f"surgery {args.command}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        print(f"surgery {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
