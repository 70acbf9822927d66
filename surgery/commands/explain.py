"""`surgery explain RULES... MODEL.pb --rule R --node N [--input NAME=DIMS]`: why R does or does
not match at N. R is looked up in every rule file given; a name two files define is an error
naming both."""

from __future__ import annotations

import argparse

from surgery.commands.options import add_input_option, add_set_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain", help="say why a rule does or does not match at a node"
    )
    parser.add_argument("files", nargs="+", metavar="RULES... MODEL",
                        help="rule files, then the frozen GraphDef (.pb or .pbtxt)")  # fmt: skip
    parser.add_argument("--rule", required=True, help="the rule's name")
    parser.add_argument("--node", required=True, help="the node to explain")
    add_input_option(parser)
    add_set_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from surgery.cache import load_rules
    from surgery.commands.match import split_files
    from surgery.engine.explain import explain_at
    from surgery.engine.matcher import RuleMatcher
    from surgery.errors import RuleError
    from surgery.ir import model_io
    from surgery.lang.rule_params import bind_file, check_settings, parse_settings
    from surgery.passes.prepare import prepare_graph

    rule_paths, model = split_files(args.files)
    rule_files = [load_rules(p) for p in rule_paths]
    having = [(p, f) for p, f in zip(rule_paths, rule_files, strict=True)
              if any(r.name == args.rule for r in f.rules)]  # fmt: skip
    if not having:
        names = ", ".join(r.name for f in rule_files for r in f.rules) or "none"
        raise RuleError(f"{', '.join(rule_paths)}: no rule named {args.rule!r} (rules: {names})")
    if len(having) > 1:
        locs = ", ".join(
            str(next(r.loc for r in f.rules if r.name == args.rule)) for _, f in having
        )
        raise RuleError(f"--rule {args.rule!r} is ambiguous: {len(having)} files define it "
                        f"({locs}); give only the file you mean")  # fmt: skip
    [(_, rule_file)] = having
    graph = model_io.load(model)
    prepare_graph(graph, [rule_file], args.input)  # the rule sees the pinned, folded graph
    settings = parse_settings(args.set)
    if settings:  # a --set names a param of one of the files
        check_settings(rule_files, settings)
    bound = bind_file(rule_file, settings)
    rule = next(r for r in bound.rules if r.name == args.rule)
    out = explain_at(RuleMatcher(graph, rule, rule_file.commutative), args.node)
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
