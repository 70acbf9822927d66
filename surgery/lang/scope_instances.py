"""What a `scope` statement binds: one namespace instance (region, entering and leaving
tensors), and the tensors its `r.in[...]` / `r.out(...)` selectors name."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from surgery.errors import RuleError
from surgery.ir.ports import TensorRef
from surgery.lang import rule_ast as ast
from surgery.lang.name_patterns import glob_match


@dataclass(frozen=True)
class ScopeInstance:
    """One namespace instance a scope statement selected: its region and interface."""

    var: str
    namespace: str
    nodes: tuple[str, ...]  # graph order
    enters: tuple[TensorRef, ...]
    leaves: tuple[TensorRef, ...]
    side: tuple[tuple[str, TensorRef], ...] = ()  # (role, tensor): entering, not an input

    @functools.cached_property
    def node_set(self) -> frozenset[str]:
        """The region as a set."""
        return frozenset(self.nodes)


# what a rule variable is bound to: a tensor, a variadic operand's tensors, a scope instance
Binding = TensorRef | tuple[TensorRef, ...] | ScopeInstance


def select_scope_tensors(inst: ScopeInstance, sel: ast.ScopeTensor) -> list[TensorRef]:
    """The tensors `r.in[i]`, `r.in[*]`, `r.out("glob:1")` name; RuleError (no loc) if none."""
    pool = inst.enters if sel.direction == "in" else inst.leaves
    if sel.every:
        return list(pool)
    what = "entering" if sel.direction == "in" else "leaving"
    shown = ", ".join(map(str, pool)) or "none"
    if sel.index is not None:
        if not 0 <= sel.index < len(pool):
            raise RuleError(
                f"scope {inst.namespace!r} has {len(pool)} {what} tensors ({shown}); "
                f"{sel.scope}.{sel.direction}[{sel.index}] does not exist"
            )
        return [pool[sel.index]]
    glob = sel.glob or ""
    name_glob, port = glob, None
    head, sep, tail = glob.rpartition(":")
    if sep and tail.isdigit():
        name_glob, port = head, int(tail)
    # among a scope's few interface tensors, `*` may cross '/' (`*split:1`, `rpn_class*`)
    name_glob = name_glob.replace("**", "*").replace("*", "**")
    hits = [t for t in pool if glob_match(name_glob, t.node) and (port is None or t.port == port)]
    if len(hits) != 1:
        raise RuleError(
            f"{sel.scope}.{sel.direction}(\"{glob}\") selects {len(hits)} of the {what} tensors "
            f"of scope {inst.namespace!r} ({shown}); it must select one"
        )
    return hits
