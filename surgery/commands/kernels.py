"""`surgery kernels DUMP_DIR [--model REWRITTEN.pb]`: the plugins' GPU kernels on a dump."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `kernels` subcommand."""
    parser = subparsers.add_parser(
        "kernels", help="run the plugins' GPU kernels on a `validate --dump` folder and compare",
        description="Run each dumped plugin node's GPU kernel on its stored inputs and compare "
        "with the stored reference outputs (needs CuPy and a GPU, not TensorFlow). Exit 0 when "
        "every kernel agrees, 1 otherwise.",
    )  # fmt: skip
    parser.add_argument("dump", help="folder written by `surgery validate ... --dump DIR`")
    parser.add_argument("--model", help="the rewritten model the dump was taken from: refuse a "
                        "dump of another model")  # fmt: skip
    parser.add_argument("--plugin", action="append", default=[], metavar="OP",
                        help="check only this plugin op (repeatable)")  # fmt: skip
    parser.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (1e-4)")
    parser.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (1e-5)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the dump; print a line per plugin node and a summary."""
    from plugins.gpu.dump_check import check_dump, match_model
    from surgery.backends.plugin_dump import load_dump

    dump = load_dump(args.dump)
    if args.model:
        from surgery.ir import model_io

        match_model(dump, model_io.load(args.model))
    results = check_dump(dump, rtol=args.rtol, atol=args.atol, plugins=args.plugin)
    for result in results:
        print(result.line())
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} of {len(results)} plugin nodes agree with the reference "
          f"(rtol {args.rtol:g}, atol {args.atol:g})")  # fmt: skip
    return 1 if failed or not results else 0
