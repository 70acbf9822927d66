"""What matching reports: a failed predicate (`Failure`), a rule's match (`Match`) and why a
rule does or does not match at a node (`Explanation`); the rewriter, the engine and `explain`
read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from surgery.ir.ports import TensorRef
from surgery.lang import rule_ast as ast
from surgery.lang.scope_instances import Binding, ScopeInstance


@dataclass(frozen=True)
class Failure:
    """A predicate that did not hold: why, where in the rule file, and at which node."""

    reason: str
    loc: ast.Loc
    node: str | None = None

    def __str__(self) -> str:
        at = f" (at node {self.node!r})" if self.node else ""
        return f"{self.loc}: {self.reason}{at}"


@dataclass
class Match:
    """One match of a rule: variable bindings, the nodes its op patterns matched, its anchor."""

    rule: ast.Rule
    bindings: dict[str, Binding]
    interior: tuple[str, ...]
    anchor: str
    scope: ScopeInstance | None = None

    def nodes(self) -> set[str]:
        """Interior nodes, or the whole region of a scope match."""
        return set(self.scope.nodes) if self.scope is not None else set(self.interior)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: anchor, bindings as tensor names, scope interface."""
        out: dict[str, Any] = {"anchor": self.anchor}
        binds: dict[str, Any] = {}
        for var, value in self.bindings.items():
            if isinstance(value, ScopeInstance):
                binds[var] = {
                    "namespace": value.namespace,
                    "nodes": len(value.nodes),
                    "enters": [str(t) for t in value.enters],
                    "leaves": [str(t) for t in value.leaves],
                }
                if value.side:
                    binds[var]["side"] = {role: str(t) for role, t in value.side}
            elif not isinstance(value, TensorRef):
                binds[var] = [str(t) for t in value]
            else:
                binds[var] = str(value)
        out["bindings"] = binds
        if self.scope is None:
            out["interior"] = list(self.interior)
        return out


@dataclass
class Explanation:
    """Why a rule does or does not match at a node."""

    rule: str
    node: str
    matched: bool
    failure: Failure | None = None
    match: Match | None = None
    notes: list[str] = field(default_factory=list)
