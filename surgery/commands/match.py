"""`surgery match RULES MODEL.pb [--input NAME=DIMS]`: dry run; what each rule would match, and
where."""

from __future__ import annotations

import argparse
import json
import sys

from surgery import model_io
from surgery.input_shapes import add_input_option
from surgery.rule_params import add_set_option, parse_settings, prepare_graph


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "match", help="show what each rule would match (nothing is changed)"
    )
    parser.add_argument("rules", help="rule file")
    parser.add_argument("model", help="frozen GraphDef (.pb or .pbtxt)")
    parser.add_argument("--json", action="store_true", help="print the matches as JSON")
    add_input_option(parser)
    add_set_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.engine import find_matches
    from surgery.rule_parser import load_rules

    rule_file = load_rules(args.rules)
    graph = model_io.load(args.model)
    # the rules see the pinned, folded graph; --json keeps stdout pure JSON
    prepare_graph(graph, [rule_file], args.input, stream=sys.stderr if args.json else None)
    results = find_matches(graph, rule_file, parse_settings(args.set))
    failed = any(errors for _, _, errors in results)
    if args.json:
        doc = [
            {"rule": rule.name, "loc": str(rule.loc), "matches": [m.describe() for m in matches],
             "errors": errors}
            for rule, matches, errors in results
        ]  # fmt: skip
        print(json.dumps(doc, indent=1))
        return 1 if failed else 0
    for rule, matches, errors in results:
        count = len(matches)
        print(f"rule {rule.name} ({rule.loc}): {count} match{'es' if count != 1 else ''}")
        for found in matches:
            info = found.describe()
            binds = ", ".join(
                f"{var}={_short(value)}" for var, value in info["bindings"].items()
            )
            print(f"  at {found.anchor}: {binds}")
        for error in errors:
            print(f"  error: {error}")
    return 1 if failed else 0


def _short(value: object) -> str:
    if isinstance(value, dict):
        enters = ", ".join(value["enters"])
        leaves = ", ".join(value["leaves"])
        return f"scope {value['namespace']!r} ({value['nodes']} nodes; in: {enters}; out: {leaves})"
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return str(value)
