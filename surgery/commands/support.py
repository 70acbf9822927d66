"""`surgery support MODEL.pb|model.onnx [--target TARGET]`."""

from __future__ import annotations

import argparse

from surgery.backends import support
from surgery.ops.targets import add_target_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "support", help="which nodes a TensorRT target cannot take, and the rules that fix them"
    )
    parser.add_argument("model", help=".pb/.pbtxt (exported first) or .onnx")
    add_target_option(parser, "the TensorRT to check for (default: tensorrt-rtx, the one "
                      "that installs here)", "tensorrt-rtx")
    parser.add_argument("--rules", help="directory of rule files (default: rules/)")
    parser.add_argument("--no-python-plugins", action="store_true",
                        help="count only plugins the TensorRT library itself provides")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = support.check_support(
        args.model, args.target, args.rules, python_plugins=not args.no_python_plugins
    )
    print(report.format())
    return 0 if report.supported else 3
