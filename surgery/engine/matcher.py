"""Where a rule matches: patterns bind tensors `(node, port)`, scopes bind namespace instances.

The search is anchored on the op-type index (`graph.nodes_by_op` of the first root's ops), so
its cost grows with the number of candidate nodes, not with graph size times rules. Further roots
of a DAG pattern are found by walking up from tensors the earlier roots bound. Operands are
matched by role (from `surgery.ops.opdefs`) or position; only ops declared commutative try the
swapped order. Every failed predicate is recorded with a reason and its rule-file `Loc`, so
`explain` can say which one failed first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from surgery.errors import GraphError, RuleError
from surgery.ir.graph import Graph, Node
from surgery.ir.ports import TensorRef
from surgery.lang import rule_ast as ast
from surgery.lang.expr_eval import (
    Binding,
    EvalFailure,
    Evaluator,
    NameRegex,
    ScopeInstance,
    compile_check,
    glob_regex,
    name_regex,
    value_text,
)

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


class _Selector:
    """Namespace patterns compiled: `hits(prefix)` (memoised) and the most path segments any of
    them can match (None: unbounded), so deeper prefixes are never tried."""

    __slots__ = ("regexes", "depth", "_memo")

    def __init__(self, regexes: list[NameRegex], depth: int | None):
        self.regexes = regexes
        self.depth = depth
        self._memo: dict[str, bool] = {}

    def hits(self, prefix: str) -> bool:
        found = self._memo.get(prefix)
        if found is None:
            found = self._memo[prefix] = any(r.fullmatch(prefix) for r in self.regexes)
        return found


def _glob_depth(pattern: str) -> int | None:
    """Most path segments a glob can match: its slashes plus one (None with `**` or `[...]`,
    which may span segments)."""
    if "**" in pattern or "[" in pattern:
        return None
    return pattern.count("/") + 1


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

    def _scope_stmt(self) -> ast.ScopeStmt:
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
    def _selector(self, patterns: tuple[ast.NamePattern, ...]) -> _Selector:
        regexes = []
        depths: list[int | None] = []
        for p in patterns:
            try:  # RE2 both: linear in the name's length (surgery.lang.expr_eval.NameRegex)
                regexes.append(name_regex(p.text) if p.kind == "regex" else glob_regex(p.text))
            except RuleError as exc:
                raise RuleError(f"{p.loc}: {exc}") from None
            depths.append(None if p.kind == "regex" else _glob_depth(p.text))
        bounded = [d for d in depths if d is not None]
        return _Selector(regexes, None if len(bounded) < len(depths) else max(bounded, default=0))

    @staticmethod
    def _first_prefix(name: str, sel: _Selector) -> str | None:
        """The shortest namespace prefix of `name` (or `name` itself) that a selector hits."""
        hits, limit = sel.hits, sel.depth
        cut = name.find("/")
        depth = 1  # path segments in the prefix being tried
        while cut >= 0:
            if limit is not None and depth > limit:
                return None
            if hits(name[:cut]):
                return name[:cut]
            cut = name.find("/", cut + 1)
            depth += 1
        if limit is not None and depth > limit:
            return None
        return name if hits(name) else None

    def _scope_instances(self) -> dict[str, list[str]]:
        """namespace -> region nodes in graph order; an instance per distinct namespace."""
        if self._instances is None:
            stmt = self._scope_stmt()
            include = self._selector(stmt.include)
            exclude = self._selector(stmt.exclude) if stmt.exclude else None
            out: dict[str, list[str]] = {}
            first = self._first_prefix
            for name in self.graph.names:
                ns = first(name, include)
                if ns is None or (exclude is not None and first(name, exclude) is not None):
                    continue
                out.setdefault(ns, []).append(name)
            self._instances = out
        return self._instances

    def scope_instance(self, namespace: str, nodes: list[str]) -> ScopeInstance:
        """The region, entering and leaving tensors (ordered by producer position, then port)."""
        graph = self.graph
        region = set(nodes)
        enters: dict[TensorRef, None] = {}
        leaves: dict[TensorRef, None] = {}
        for name in nodes:
            node = graph.node(name)
            for ref in node.inputs:
                if ref.node not in region:
                    enters[ref] = None
            for port in graph.used_ports(name):
                ref = TensorRef(name, port)
                if any(user.name not in region for user, _ in graph.consumers(ref)):
                    leaves[ref] = None

        def key(t: TensorRef) -> tuple[int, int]:
            return (graph.position(t.node) if t.node in graph else -1, t.port)

        stmt = self._scope_stmt()
        side: list[tuple[str, TensorRef]] = []
        for item in stmt.side:
            regexes = self._selector(item.patterns).regexes
            hits = [t for t in enters if any(rx.fullmatch(t.node) for rx in regexes)]
            if len(hits) > 1:
                shown = ", ".join(map(str, hits))
                raise RuleError(
                    f"{item.loc}: rule {self.rule.name!r}: side input {item.role!r} of scope "
                    f"{namespace!r} selects {len(hits)} entering tensors ({shown}); it must "
                    "select at most one"
                )
            for hit in hits:
                side.append((item.role, hit))
                del enters[hit]
        return ScopeInstance(
            stmt.var, namespace, tuple(nodes),
            tuple(sorted(enters, key=key)), tuple(sorted(leaves, key=key)), tuple(side),
        )  # fmt: skip

    def _match_scope(self, namespace: str) -> Match | None:
        stmt = self._scope_stmt()
        nodes = [n for n in self._scope_instances().get(namespace, ()) if n in self.graph]
        if not nodes:
            self._fail(f"no node lies in namespace {namespace!r}", stmt.loc, namespace)
            return None
        instance = self.scope_instance(namespace, nodes)
        bindings: dict[str, Binding] = {stmt.var: instance}
        if stmt.where is not None:
            try:
                Evaluator(self.graph, bindings).check(stmt.where)
            except EvalFailure as exc:
                self._fail(_where_reason(exc), exc.loc, namespace)
                return None
        self._check_contract(stmt, instance)
        return Match(self.rule, bindings, (), namespace, scope=instance)

    def _check_contract(self, stmt: ast.ScopeStmt, inst: ScopeInstance) -> None:
        problems = []
        if stmt.enters is not None and len(inst.enters) != stmt.enters:
            shown = ", ".join(map(str, inst.enters)) or "none"
            side = "".join(f", side {role} {ref}" for role, ref in inst.side)
            problems.append(
                f"{len(inst.enters)} tensors enter, not {stmt.enters} ({shown}{side})"
            )
        if stmt.leaves is not None and len(inst.leaves) != stmt.leaves:
            shown = ", ".join(map(str, inst.leaves)) or "none"
            problems.append(f"{len(inst.leaves)} tensors leave, not {stmt.leaves} ({shown})")
        if problems:
            raise RuleError(
                f"{stmt.loc}: rule {self.rule.name!r}: scope {inst.namespace!r} breaks its "
                f"interface contract: {'; '.join(problems)}"
            )

    # ---------------------------------------------------------------- explain
    def explain(self, node_name: str) -> Explanation:
        """Why the rule does or does not match at `node_name` (first failed predicate)."""
        out = Explanation(self.rule.name, node_name, matched=False)
        graph = self.graph
        if self.is_scope:
            stmt = self._scope_stmt()
            include = self._selector(stmt.include)
            ns = self._first_prefix(node_name, include)
            if ns is None:
                pats = ", ".join(f'"{p.text}"' for p in stmt.include)
                out.failure = Failure(f"{node_name!r} lies in no namespace matching {pats}",
                                      stmt.include[0].loc, node_name)  # fmt: skip
                return out
            if stmt.exclude and self._first_prefix(node_name, self._selector(stmt.exclude)):
                out.failure = Failure(f"{node_name!r} is excluded from scope {ns!r}",
                                      stmt.exclude[0].loc, node_name)  # fmt: skip
                return out
            found = self.match_at(ns)
        else:
            if node_name not in graph:
                raise GraphError(f"no node named {node_name!r}{graph._did_you_mean(node_name)}")
            found = self.match_at(node_name)
            first = self.first_failure
            if found is None:
                for other in self.matches():
                    if node_name in other.interior or node_name in _bound_nodes(other):
                        out.notes.append(f"{node_name!r} takes part in the match anchored at "
                                         f"{other.anchor!r}")  # fmt: skip
                        break
            self.first_failure = first
        if found is not None:
            out.matched = True
            out.match = found
        else:
            out.failure = self.first_failure or Failure("no match", self.rule.loc, node_name)
        return out


def _where_reason(exc: EvalFailure) -> Callable[[], str]:
    """A failed `where` clause's reason, worked out when read (the exception is kept without
    its traceback, whose frames hold the matcher: that would be a reference cycle)."""
    kept = exc.with_traceback(None)
    return lambda: f"where: {kept.reason}"


def _bound_nodes(match: Match) -> set[str]:
    out: set[str] = set()
    for value in match.bindings.values():
        if isinstance(value, TensorRef):
            out.add(value.node)
        elif isinstance(value, tuple):  # a variadic capture
            out.update(t.node for t in value if isinstance(t, TensorRef))
    return out
