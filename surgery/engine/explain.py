"""`explain`: why a rule does or does not match at one node, asked of its matcher: the first
predicate that failed, or the match of the rule that the node takes part in."""

from __future__ import annotations

from surgery.engine.match_results import Explanation, Failure, Match
from surgery.engine.matcher import RuleMatcher
from surgery.engine.scope_match import first_prefix, selector
from surgery.errors import GraphError
from surgery.ir.ports import TensorRef


def explain_at(matcher: RuleMatcher, node_name: str) -> Explanation:
    """Why the matcher's rule does or does not match at `node_name` (its first failed
    predicate, or the match the node takes part in)."""
    out = Explanation(matcher.rule.name, node_name, matched=False)
    graph = matcher.graph
    if matcher.is_scope:
        stmt = matcher.scope_stmt()
        include = selector(stmt.include)
        ns = first_prefix(node_name, include)
        if ns is None:
            pats = ", ".join(f'"{p.text}"' for p in stmt.include)
            out.failure = Failure(f"{node_name!r} lies in no namespace matching {pats}",
                                  stmt.include[0].loc, node_name)  # fmt: skip
            return out
        if stmt.exclude and first_prefix(node_name, selector(stmt.exclude)):
            out.failure = Failure(f"{node_name!r} is excluded from scope {ns!r}",
                                  stmt.exclude[0].loc, node_name)  # fmt: skip
            return out
        found = matcher.match_at(ns)
    else:
        if node_name not in graph:
            raise GraphError(f"no node named {node_name!r}{graph._did_you_mean(node_name)}")
        found = matcher.match_at(node_name)
        first = matcher.first_failure
        if found is None:
            for other in matcher.matches():
                if node_name in other.interior or node_name in _bound_nodes(other):
                    out.notes.append(f"{node_name!r} takes part in the match anchored at "
                                     f"{other.anchor!r}")  # fmt: skip
                    break
        matcher.first_failure = first
    if found is not None:
        out.matched = True
        out.match = found
    else:
        out.failure = matcher.first_failure or Failure("no match", matcher.rule.loc, node_name)
    return out


def _bound_nodes(match: Match) -> set[str]:
    out: set[str] = set()
    for value in match.bindings.values():
        if isinstance(value, TensorRef):
            out.add(value.node)
        elif isinstance(value, tuple):  # a variadic capture
            out.update(t.node for t in value if isinstance(t, TensorRef))
    return out
