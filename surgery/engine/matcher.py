"""Where a rule matches: patterns bind tensors `(node, port)`, scopes bind namespace instances.

The search is anchored on the op-type index (`graph.nodes_by_op` of the first root's ops), so
its cost grows with the number of candidate nodes, not with graph size times rules. Further roots
of a DAG pattern are found by walking up from tensors the earlier roots bound. Operands are
matched by role (from `surgery.ops.opdefs`) or position; only ops declared commutative try the
swapped order. Every failed predicate is recorded with a reason and its rule-file `Loc`, so
`explain` (`surgery.engine.explain`) can say which one failed first. A scope rule's namespaces
are selected by `surgery.engine.scope_match`; what matching reports is in `match_results.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from surgery.engine.match_results import Failure, Match
from surgery.engine.scope_match import (
    check_contract,
    scope_instance,
    scope_instances,
)
from surgery.errors import GraphError, RuleError
from surgery.ir.graph import Graph
from surgery.ir.node import Node
from surgery.ir.ports import TensorRef
from surgery.lang import rule_ast as ast
from surgery.lang.expr_eval import EvalFailure, Evaluator, compile_check
from surgery.lang.expr_text import value_text
from surgery.lang.scope_instances import Binding

_new_ref = tuple.__new__

BUILTIN_COMMUTATIVE = frozenset(
    {"Add", "AddV2", "Mul", "Maximum", "Minimum", "LogicalAnd", "LogicalOr", "Equal",
     "NotEqual", "SquaredDifference"}
)  # fmt: skip

_INTERIOR = "\x00interior"  # bindings key: nodes matched by op patterns, in match order
_NO_PLAN = object()


class _Slot:
    """A stand-in input while an operand plan is made: remembers which slot it is."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


def _vars_of(pattern: Any) -> set[str]:
    if isinstance(pattern, ast.Capture):
        return {pattern.var}
    if isinstance(pattern, ast.OpPattern):
        out = {pattern.var} if pattern.var else set()
        for operand in pattern.operands:
            out |= _vars_of(operand.pattern)
        return out
    return set()


def _path_to(pattern: Any, known: set[str]) -> list[Any] | None:
    """Patterns from `pattern` down to the first one naming a variable in `known`."""
    if isinstance(pattern, ast.Capture):
        return [pattern] if pattern.var in known else None
    if isinstance(pattern, ast.OpPattern):
        if pattern.var in known:
            return [pattern]
        for operand in pattern.operands:
            if operand.variadic:
                continue
            sub = _path_to(operand.pattern, known)
            if sub is not None:
                return [pattern, *sub]
    return None


class RuleMatcher:
    """Find matches of one rule in one graph state (make a new one after the graph changes)."""

    def __init__(self, graph: Graph, rule: ast.Rule, commutative: Iterable[str] = ()):
        self.graph = graph
        self.rule = rule
        self._ops: Any = None  # the graph's op set (`opdefs.opset_of`), found on first need
        self.commutative = BUILTIN_COMMUTATIVE | frozenset(commutative)
        self._first: tuple[Any, ast.Loc, str | None] | Failure | None = None
        self._roles_cache: dict[tuple[str, int], list[str] | None] = {}
        self._instances: dict[str, list[str]] | None = None
        self._plans: dict[tuple[int, str, int], Any] = {}
        body = rule.body
        # the statement as its own kind (the other one None), so that each path reads it typed
        self._stmt: ast.MatchStmt | None = body if isinstance(body, ast.MatchStmt) else None
        self._scope: ast.ScopeStmt | None = body if isinstance(body, ast.ScopeStmt) else None
        self.is_scope = self._scope is not None  # namespaces, not op patterns
        self._evaluator = Evaluator(graph, {})  # `where` checks: bindings swapped per match
        where = getattr(body, "where", None)
        self._where = compile_check(where) if where is not None else None
        self._anchor_paths: list[list[Any] | None] = []
        if isinstance(body, ast.MatchStmt):
            if not body.roots:
                raise RuleError(f"{body.loc}: rule {rule.name!r} has no pattern to match")
            known: set[str] = set()
            for root in body.roots:
                self._anchor_paths.append(_path_to(root, known) if known else None)
                known |= _vars_of(root)

    def _match_stmt(self) -> ast.MatchStmt:
        """The rule's `match` statement (a scope rule has none)."""
        if self._stmt is None:
            raise RuleError(f"{self.rule.loc}: rule {self.rule.name!r} has no match pattern")
        return self._stmt

    def scope_stmt(self) -> ast.ScopeStmt:
        """The rule's `scope` statement (a match rule has none)."""
        if self._scope is None:
            raise RuleError(f"{self.rule.loc}: rule {self.rule.name!r} has no scope pattern")
        return self._scope

    # ---------------------------------------------------------------- failures
    @property
    def first_failure(self) -> Failure | None:
        """The first predicate that failed in the last `match_at` (its reason made on read)."""
        first = self._first
        if first is None or isinstance(first, Failure):
            return first
        reason, loc, node = first
        failure = Failure(reason() if callable(reason) else reason, loc, node)
        self._first = failure
        return failure

    @first_failure.setter
    def first_failure(self, value: Failure | None) -> None:
        self._first = value

    def _fail(self, reason: Any, loc: ast.Loc, node: str | None = None) -> None:
        if self._first is None:
            self._first = (reason, loc, node)

    # ---------------------------------------------------------------- candidates
    def candidates(self) -> list[str]:
        """Anchor nodes (or namespace instances) in graph order."""
        if self.is_scope:
            return list(self._scope_instances())
        root = self._match_stmt().roots[0]
        if not root.ops:
            return self.graph.names
        nodes = self.graph.nodes_by_op(*dict.fromkeys(root.ops))
        names = [n.name for n in nodes]
        if len(root.ops) > 1:
            names.sort(key=self.graph.position)
        return names

    def matches(self) -> Iterator[Match]:
        """Every match in graph order of its anchor (matches may overlap)."""
        for name in self.candidates():
            found = self.match_at(name)
            if found is not None:
                yield found

    def match_at(self, anchor: str) -> Match | None:
        """The first match whose first root (or scope instance) is `anchor`; None if none."""
        self._first = None
        if self.is_scope:
            return self._match_scope(anchor)
        node = self.graph.get(anchor)
        root = self._match_stmt().roots[0]
        if node is None:
            self._fail(f"no node named {anchor!r}", root.loc)
            return None
        bindings = self._search(0, _new_ref(TensorRef, (anchor, root.port)), {_INTERIOR: ()})
        if bindings is None:
            return None
        interior = bindings.pop(_INTERIOR)
        return Match(self.rule, bindings, tuple(dict.fromkeys(interior)), anchor)

    # ---------------------------------------------------------------- op patterns
    # The search is written in continuation-passing style: each step calls `cont` with every
    # binding it can make, in order, and returns the first full match a continuation returns
    # (None when none does). That is the order a chain of generators would try, without one.
    def _search(self, k: int, tensor: TensorRef | None, b: dict) -> dict | None:
        roots = self._match_stmt().roots
        if k == len(roots):
            if self._where is not None:
                evaluator = self._evaluator
                evaluator.bindings = b
                try:
                    self._where(evaluator)
                except EvalFailure as exc:
                    # the reason is worked out on read from this evaluator's bindings: keep it
                    self._evaluator = Evaluator(self.graph, {})
                    self._fail(_where_reason(exc), exc.loc, b[_INTERIOR][0])
                    return None
            return b
        cont = self._next_root(k + 1)  # made per call: kept on self it would be a cycle
        if tensor is not None:
            return self._match(roots[k], tensor, b, cont)
        taken = set(b[_INTERIOR]) if k else ()
        for t in self._root_candidates(k, b):
            if t.node in taken:
                continue
            found = self._match(roots[k], t, b, cont)
            if found is not None:
                return found
        return None

    def _next_root(self, k: int) -> Any:
        """The continuation after root `k - 1`: search root `k` (or check `where`)."""

        def cont(b: dict) -> dict | None:
            return self._search(k, None, b)

        return cont

    def _root_candidates(self, k: int, b: dict) -> list[TensorRef]:
        """Tensors root `k` may bind: walked up from a bound tensor, else by op index."""
        root = self._match_stmt().roots[k]
        path = self._anchor_paths[k]
        graph = self.graph
        if path is None:
            nodes = graph.nodes_by_op(*root.ops) if root.ops else list(graph)
            return [TensorRef(n.name, root.port) for n in nodes]
        last = path[-1]
        bound = b[last.var]
        if isinstance(bound, tuple) and not isinstance(bound, TensorRef):
            bound = bound[0] if bound else None
        if not isinstance(bound, TensorRef):
            return []
        if isinstance(last, ast.Capture) and last.port is not None:
            bound = TensorRef(bound.node, last.port)
        level = {bound}
        for parent in path[-2::-1]:  # from the one above the bound tensor up
            up: dict[TensorRef, None] = {}
            for t in level:
                for consumer, _slot in graph.consumers(t):
                    if not parent.ops or consumer.op in parent.ops:
                        up[TensorRef(consumer.name, parent.port)] = None
            level = set(up)
        return sorted(level, key=lambda t: (graph.position(t.node), t.port))

    def _match(self, pat: Any, t: TensorRef, b: dict, cont: Any) -> dict | None:
        kind = type(pat)
        if kind is ast.Wildcard:
            return cont(b)
        if kind is ast.Capture:
            return self._capture(pat, t, b, cont)
        node = self.graph._nodes.get(t[0])
        if node is None:
            self._fail(lambda: f"{t} reads a node that does not exist", pat.loc, t[0])
            return None
        op = node.op
        if pat.ops and op not in pat.ops:
            self._fail(lambda: f"{t[0]} is {op}, pattern wants {'|'.join(pat.ops)}",
                       pat.loc, t[0])  # fmt: skip
            return None
        if t[1] != pat.port:
            self._fail(lambda: f"{t} is output {t[1]} of {t[0]}, pattern wants output "
                       f"{pat.port}", pat.loc, t[0])  # fmt: skip
            return None
        var = pat.var
        if var:
            bound = b.get(var)
            if bound is not None and bound != t:
                self._fail(lambda: f"{var} is already {bound}, not {t}", pat.loc, t[0])
                return None
        b = dict(b)
        if var:
            b[var] = t
        b[_INTERIOR] = (*b[_INTERIOR], t[0])
        inputs = node._inputs  # read only
        pairs = self._pairs(pat, node, inputs)
        if pairs is not None:
            found = self._match_seq(pairs, 0, b, cont)
            if found is not None:
                return found
        if op in self.commutative and len(inputs) == 2 and inputs[0] != inputs[1]:
            pairs = self._pairs(pat, node, [inputs[1], inputs[0]])
            if pairs is not None:
                return self._match_seq(pairs, 0, b, cont)
        return None

    def _capture(self, pat: ast.Capture, t: TensorRef, b: dict, cont: Any) -> dict | None:
        var = pat.var
        bound = b.get(var)
        if pat.port is None:
            if bound is None:
                b = dict(b)
                b[var] = t
                return cont(b)
            if bound == t:
                return cont(b)
            self._fail(lambda: f"{var} is already {value_text(bound)}, here it would be {t}",
                       pat.loc, t[0])  # fmt: skip
            return None
        if bound is None:
            if t[1] != pat.port:
                self._fail(lambda: f"{t} is not output {pat.port} of its node", pat.loc, t[0])
                return None
            b = dict(b)
            b[var] = _new_ref(TensorRef, (t[0], 0))
            return cont(b)
        want = TensorRef(bound.node, pat.port) if isinstance(bound, TensorRef) else None
        if want == t:
            return cont(b)
        self._fail(lambda: f"{var}:{pat.port} is {want}, here it would be {t}", pat.loc, t[0])
        return None

    def _roles(self, node: Node) -> list[str] | None:
        key = (node.op, len(node.inputs))
        if key not in self._roles_cache:
            from surgery.ops.opdefs import input_roles, opset_of

            if self._ops is None:
                self._ops = opset_of(self.graph)
            ops = self._ops
            try:
                roles = input_roles(node.op, None, len(node.inputs), ops=ops)
                if any(r.endswith("[*]") for r in roles) or len(roles) != len(node.inputs):
                    roles = input_roles(node.op, node.attr, len(node.inputs), ops=ops)
            except GraphError:
                roles = None
            self._roles_cache[key] = roles
        return self._roles_cache[key]

    def _pairs(self, pat: ast.OpPattern, node: Node, inputs: list[TensorRef]) -> list | None:
        """`_assign` through a plan cached per (pattern, op, input count): which input slot (or
        slots, for a variadic operand) each operand takes, or None where `_assign` fails."""
        key = (id(pat), node.op, len(inputs))
        plan = self._plans.get(key, _NO_PLAN)
        if plan is _NO_PLAN:
            n = len(inputs)
            probe = [_Slot(i) for i in range(n)]
            first = self._first
            found = self._assign(pat, node, probe)
            self._first = first  # a plan is only a plan: failures are recorded on use
            plan = None
            if found is not None:
                plan = tuple(
                    (o, [t.index for t in x] if isinstance(x, list) else x.index)
                    for o, x in found
                )  # fmt: skip
            self._plans[key] = (pat, plan)  # keep `pat` alive: its id is the key
        else:
            plan = plan[1]
        if plan is None:
            return self._assign(pat, node, inputs)  # records why it fails
        return [
            (o, [inputs[i] for i in x] if type(x) is list else inputs[x]) for o, x in plan
        ]  # fmt: skip

    def _assign(self, pat: ast.OpPattern, node: Node, inputs: list[Any]) -> list | None:
        """(operand pattern, tensor or list of tensors, variadic) in operand order, or None."""
        n = len(inputs)
        slots: dict[int, Any] = {}
        claimed: set[int] = set()
        roles: list[str] | None = None
        for index, operand in enumerate(pat.operands):
            if operand.role is None:
                continue
            if roles is None:
                roles = self._roles(node)
                if roles is None:
                    self._fail(f"operand roles of op {node.op} are unknown; use positions",
                               operand.loc, node.name)  # fmt: skip
                    return None
                if len(roles) != n:  # e.g. a plugin node named like a TF op, fewer inputs
                    self._fail(
                        f"{node.name} ({node.op}) has {n} inputs, the op's definition has "
                        f"{len(roles)} ({', '.join(roles) or 'none'}): roles do not apply",
                        operand.loc, node.name,
                    )  # fmt: skip
                    return None
            if operand.variadic:
                picked = [i for i, r in enumerate(roles) if r.startswith(operand.role + "[")]
                if not picked and operand.role in roles:
                    picked = [roles.index(operand.role)]
                if not picked:
                    self._no_role(node, operand, roles)
                    return None
                slots[index] = [inputs[i] for i in picked]
                claimed.update(picked)
            else:
                if operand.role not in roles:
                    self._no_role(node, operand, roles)
                    return None
                slot = roles.index(operand.role)
                slots[index] = inputs[slot]
                claimed.add(slot)
        free = [i for i in range(n) if i not in claimed]
        positional = [i for i, o in enumerate(pat.operands) if o.role is None]
        variadic = [k for k, i in enumerate(positional) if pat.operands[i].variadic]
        if len(variadic) > 1:
            self._fail("at most one positional variadic operand", pat.loc, node.name)
            return None
        if variadic:
            v = variadic[0]
            after = len(positional) - v - 1
            if len(free) < len(positional) - 1:
                self._too_few(pat, node, n)
                return None
            for k, i in enumerate(positional):
                if k < v:
                    slots[i] = inputs[free[k]]
                elif k == v:
                    slots[i] = [inputs[s] for s in free[v : len(free) - after]]
                else:
                    slots[i] = inputs[free[len(free) - (len(positional) - k)]]
        else:
            if len(free) < len(positional):
                self._too_few(pat, node, n)
                return None
            if len(free) > len(positional) and not pat.allow_extra:
                self._fail(
                    f"{node.name} ({node.op}) has {n} inputs, the pattern lists "
                    f"{len(pat.operands)} (add '...' to allow more)",
                    pat.loc,
                    node.name,
                )
                return None
            for k, i in enumerate(positional):
                slots[i] = inputs[free[k]]
        return [(o, slots[i]) for i, o in enumerate(pat.operands)]

    def _no_role(self, node: Node, operand: ast.Operand, roles: list[str]) -> None:
        shown = ", ".join(roles) or "no inputs"
        self._fail(f"{node.op} has no input role {operand.role!r} (its roles: {shown})",
                   operand.loc, node.name)  # fmt: skip

    def _too_few(self, pat: ast.OpPattern, node: Node, n: int) -> None:
        self._fail(f"{node.name} ({node.op}) has {n} inputs, fewer than the pattern lists",
                   pat.loc, node.name)  # fmt: skip

    def _match_seq(self, pairs: list, i: int, b: dict, cont: Any) -> dict | None:
        # wildcards and plain captures are taken in a loop; only op patterns and lists recurse
        n = len(pairs)
        own = False  # whether `b` is this call's copy (the caller's may be tried again)
        while i < n:
            operand, target = pairs[i]
            pat = operand.pattern
            kind = type(pat)
            if kind is ast.Wildcard and type(target) is not list:
                i += 1
                continue
            if kind is not ast.Capture or pat.port is not None or type(target) is list:
                break
            bound = b.get(pat.var)
            if bound is None:
                if not own:
                    b = dict(b)
                    own = True
                b[pat.var] = target
            elif bound != target:
                return self._capture(pat, target, b, cont)  # records why it fails
            i += 1
        if i == n:
            return cont(b)
        operand, target = pairs[i]
        nxt = i + 1

        def step(b2: dict) -> dict | None:
            return self._match_seq(pairs, nxt, b2, cont)

        if type(target) is list:
            return self._match_list(operand, tuple(target), b, step)
        return self._match(operand.pattern, target, b, step)

    def _match_list(self, operand: ast.Operand, tensors: tuple, b: dict, cont: Any) -> Any:
        pat = operand.pattern
        if isinstance(pat, ast.Wildcard):
            return cont(b)
        if isinstance(pat, ast.Capture):
            bound = b.get(pat.var)
            if bound is None:
                return cont({**b, pat.var: tensors})
            if bound == tensors:
                return cont(b)
            self._fail(f"{pat.var} is already bound to other tensors", operand.loc)
            return None
        self._fail("a variadic operand must be a variable or '_'", operand.loc)
        return None

    # ---------------------------------------------------------------- scopes
    def _scope_instances(self) -> dict[str, list[str]]:
        """namespace -> region nodes in graph order (`scope_match.scope_instances`), once."""
        if self._instances is None:
            self._instances = scope_instances(self.graph, self.scope_stmt())
        return self._instances

    def _match_scope(self, namespace: str) -> Match | None:
        stmt = self.scope_stmt()
        nodes = [n for n in self._scope_instances().get(namespace, ()) if n in self.graph]
        if not nodes:
            self._fail(f"no node lies in namespace {namespace!r}", stmt.loc, namespace)
            return None
        instance = scope_instance(self.graph, self.rule.name, stmt, namespace, nodes)
        bindings: dict[str, Binding] = {stmt.var: instance}
        if stmt.where is not None:
            try:
                Evaluator(self.graph, bindings).check(stmt.where)
            except EvalFailure as exc:
                self._fail(_where_reason(exc), exc.loc, namespace)
                return None
        check_contract(self.rule.name, stmt, instance)
        return Match(self.rule, bindings, (), namespace, scope=instance)


def _where_reason(exc: EvalFailure) -> Callable[[], str]:
    """A failed `where` clause's reason, worked out when read (the exception is kept without
    its traceback, whose frames hold the matcher: that would be a reference cycle)."""
    kept = exc.with_traceback(None)
    return lambda: f"where: {kept.reason}"
