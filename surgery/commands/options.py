"""Options that several commands declare the same way.

They live here, not beside the code that reads their values, because building the parser must
stay cheap: `surgery --help` imports every command module, and those modules import only
argparse-level code until their command runs (numpy, protobuf or TensorFlow would cost up to
seconds before any help is printed).
"""

from __future__ import annotations

import argparse

INPUT_HELP = (
    "pin a placeholder's shape, e.g. input_image=1,128,128,3 (repeatable); the shape "
    "arithmetic that becomes constant is folded into Consts"
)


def add_input_option(
    parser: argparse.ArgumentParser, *aliases: str, help: str = INPUT_HELP
) -> None:
    """Add the repeatable `--input NAME=D0,D1,...` option (values in `args.input`), so that every
    command that takes it declares it the same way; `aliases` are older spellings kept working
    (validate's `--shape`). `surgery.passes.input_shapes.pin_and_fold` reads the values."""
    parser.add_argument(
        "--input", *aliases, dest="input", action="append", default=[],
        metavar="NAME=D0,D1,...", help=help,
    )  # fmt: skip


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """`--set NAME=VALUE` (repeatable), declared the same way on apply, match and explain;
    `surgery.lang.rule_params.parse_settings` reads the values."""
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="value of a rule file's `param NAME` for this run (repeatable)",
    )  # fmt: skip


def add_allow_invalid_option(parser: argparse.ArgumentParser) -> None:
    """`--allow-invalid`, declared the same way on apply, layout and export; read by
    `surgery.ops.graph_check.refuse_invalid`."""
    parser.add_argument(
        "--allow-invalid", action="store_true",
        help="go on with a graph that has structural defects (cycles, self-loops, missing "
        "ports or nodes; `surgery inspect` lists them): for the brave",
    )  # fmt: skip
