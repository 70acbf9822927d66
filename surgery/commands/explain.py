"""`surgery explain RULES MODEL.pb --rule R --node N`: why R does or does not match at N."""

from __future__ import annotations

import argparse

from surgery import model_io
from surgery.errors import RuleError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain", help="say why a rule does or does not match at a node"
    )
    parser.add_argument("rules", help="rule file")
    parser.add_argument("model", help="frozen GraphDef (.pb or .pbtxt)")
    parser.add_argument("--rule", required=True, help="the rule's name")
    parser.add_argument("--node", required=True, help="the node to explain")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.matcher import RuleMatcher
    from surgery.rule_parser import load_rules

    rule_file = load_rules(args.rules)
    rule = next((r for r in rule_file.rules if r.name == args.rule), None)
    if rule is None:
        names = ", ".join(r.name for r in rule_file.rules) or "none"
        raise RuleError(f"{args.rules}: no rule named {args.rule!r} (rules: {names})")
    graph = model_io.load(args.model)
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
