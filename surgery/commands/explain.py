"""`surgery explain RULES MODEL.pb --rule R --node N [--input NAME=DIMS]`: why R does or does not
match at N."""

from __future__ import annotations

import argparse

from surgery import model_io
from surgery.errors import RuleError
from surgery.input_shapes import add_input_option
from surgery.rule_params import add_set_option, parse_settings, prepare_graph


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain", help="say why a rule does or does not match at a node"
    )
    parser.add_argument("rules", help="rule file")
    parser.add_argument("model", help="frozen GraphDef (.pb or .pbtxt)")
    parser.add_argument("--rule", required=True, help="the rule's name")
    parser.add_argument("--node", required=True, help="the node to explain")
    add_input_option(parser)
    add_set_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.engine import bind_files
    from surgery.matcher import RuleMatcher
    from surgery.rule_parser import load_rules

    rule_file = load_rules(args.rules)
    rule = next((r for r in rule_file.rules if r.name == args.rule), None)
    if rule is None:
        names = ", ".join(r.name for r in rule_file.rules) or "none"
        raise RuleError(f"{args.rules}: no rule named {args.rule!r} (rules: {names})")
    graph = model_io.load(args.model)
    prepare_graph(graph, [rule_file], args.input)  # the rule sees the pinned, folded graph
    (bound,) = bind_files([rule_file], parse_settings(args.set))
    rule = next(r for r in bound.rules if r.name == args.rule)
    out = RuleMatcher(graph, rule, rule_file.commutative).explain(args.node)
    if out.matched and out.match is not None:
        print(f"rule {rule.name} matches at {args.node!r} (anchor {out.match.anchor!r})")
        for var, value in out.match.describe()["bindings"].items():
            print(f"  {var} = {value}")
    else:
        print(f"rule {rule.name} does not match at {args.node!r}")
        if out.failure is not None:
            print(f"  first failed predicate: {out.failure}")
    for note in out.notes:
        print(f"  note: {note}")
    return 0
