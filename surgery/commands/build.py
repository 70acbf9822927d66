"""`surgery build model.onnx -o model.engine [--fp16] [--plugins ...]`."""

from __future__ import annotations

import argparse

from surgery.backends import trt_backend
from surgery.ops.targets import add_target_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("build", help="build a TensorRT engine from an ONNX model")
    parser.add_argument("model", help="the .onnx file (plugin ops resolved by creator name)")
    parser.add_argument("-o", "--output", required=True, help="the engine file to write")
    parser.add_argument("--fp16", action="store_true", help="allow float16 kernels")
    parser.add_argument("--plugins", nargs="*", metavar="NAME",
                        help="surgery plugin creators to register (default: those the model uses)")
    parser.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
                        help="input shape for the optimization profile (default: dynamic dims 1)")
    parser.add_argument("--backend", choices=trt_backend.BACKENDS,
                        help="force a TensorRT module (default: tensorrt, else TensorRT-RTX)")
    parser.add_argument("--verbose", action="store_true", help="print TensorRT warnings")
    add_target_option(parser, "the TensorRT to build for: tensorrt-11 and tensorrt-rtx build "
                      "strongly typed (no --fp16); one not installed here is stood in for by "
                      "TensorRT-RTX (default: the installed one, tensorrt else tensorrt-rtx)", None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.passes.shapes import parse_input_shape

    result = trt_backend.build_engine(
        args.model,
        args.output,
        fp16=args.fp16,
        plugins=args.plugins,
        shapes=dict(parse_input_shape(t) for t in args.shape),
        backend=args.backend,
        verbose=args.verbose,
        progress=True,
        target=args.target,
    )
    print(result.summary())
    return 0
