"""`surgery match RULES... MODEL.pb [--input NAME=DIMS]`: dry run; what each rule would match, and
where. Several rule files are reported one after the other, in order, each matched against the
graph as given (a dry run rewrites nothing, so a later file does not see an earlier one's
rewrites as `apply` would)."""

from __future__ import annotations

import argparse
import json
import sys

from surgery.commands.options import add_input_option, add_set_option
from surgery.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "match", help="show what each rule would match (nothing is changed)"
    )
    parser.add_argument("files", nargs="+", metavar="RULES... MODEL",
                        help="rule files, then the frozen GraphDef (.pb or .pbtxt)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the matches as JSON")
    add_input_option(parser)
    add_set_option(parser)
    parser.set_defaults(func=run)


def split_files(files: list[str]) -> tuple[list[str], str]:
    """`RULES... MODEL` -> (rule paths, model); a UsageError without a rule file."""
    if len(files) < 2:
        raise UsageError("give at least one rule file and a model")
    *rule_paths, model = files
    return rule_paths, model


def run(args: argparse.Namespace) -> int:
    from surgery.cache import load_rules
    from surgery.engine.run import find_matches
    from surgery.ir import model_io
    from surgery.lang.rule_params import check_settings, parse_settings
    from surgery.passes.prepare import prepare_graph

    rule_paths, model = split_files(args.files)
    rule_files = [load_rules(p) for p in rule_paths]
    graph = model_io.load(model)
    # the rules see the pinned, folded graph; --json keeps stdout pure JSON
    prepare_graph(graph, rule_files, args.input, stream=sys.stderr if args.json else None)
    settings = parse_settings(args.set)
    if settings:  # a --set names a param of one of the files
        check_settings(rule_files, settings)
    per_file = []
    for path, rule_file in zip(rule_paths, rule_files, strict=True):
        own = {k: v for k, v in settings.items() if any(p.name == k for p in rule_file.params)}
        per_file.append((path, find_matches(graph, rule_file, own)))
    failed = any(errors for _, results in per_file for _, _, errors in results)
    if args.json:
        doc = [
            {"file": path, "rule": rule.name, "loc": str(rule.loc),
             "matches": [m.describe() for m in matches], "errors": errors}
            for path, results in per_file
            for rule, matches, errors in results
        ]  # fmt: skip
        print(json.dumps(doc, indent=1))
        return 1 if failed else 0
    for path, results in per_file:
        if len(per_file) > 1:
            print(f"{path}: {len(results)} rule{'s' if len(results) != 1 else ''}")
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
