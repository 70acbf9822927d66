"""`surgery weights MODEL.pb -o model.wts [--format v1|v2] [--layout oihw]`: dump Const weights."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="dump Const weights as TensorRT .wts")
    parser.add_argument("model", help="frozen GraphDef (.pb or .pbtxt)")
    parser.add_argument("-o", "--output", required=True, help="the .wts file to write")
    parser.add_argument("--format", choices=("v1", "v2"), default="v1",
                        help="v1: TensorRT samples' hex text; v2: shaped raw bytes")
    parser.add_argument("--layout", choices=("tf", "oihw"), default="tf",
                        help="oihw: conv HWIO->OIHW, deconv, dense [in,out]->[out,in]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.ir import model_io
    from surgery.passes import weights

    model_io.check_output_path(args.output, args.model)
    graph = model_io.load(args.model)
    written = weights.write(graph, args.output, version=int(args.format[1]), layout=args.layout)
    relaid = sum(1 for w in written if w.layout)
    total = sum(w.array.size for w in written)
    print(f"wrote {len(written)} weights ({total} values, {relaid} kernels re-laid out "
          f"to {args.layout.upper()}) to {args.output} and {args.output}.names.json")
    return 0
