"""The rule engine: rules in file order, each to a bounded fixpoint, matches in graph order.

Within one iteration of a rule the matches are applied in graph order of their anchors and never
overlap (a match whose nodes an earlier match of the iteration touched waits for the next
iteration). After each match the changed neighbourhood is checked (no dangling input, no cycle)
and a violation rolls the match back and raises `RewriteRefused`. Cycle checks keep a
topological rank per node and repair it locally (Pearce-Kelly), so they cost little per match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from surgery import rule_ast as ast
from surgery.errors import GraphError, RewriteRefused, RuleError
from surgery.graph import Graph, Node, _gc_paused
from surgery.matcher import Match, RuleMatcher
from surgery.provenance import Change, ChangeLog, MatchContext, Recorder
from surgery.rewriter import Editor, Rewriter

_INF = float("inf")


@dataclass
class ApplyResult:
    """The rewritten graph, every change in order, matches applied per rule, warnings."""

    graph: Graph
    changes: Sequence[Change]  # a ChangeLog: Change objects made on first read
    per_rule_counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)


class Ranks:
    """A topological rank per node, kept valid under edits by local repair; finds new cycles."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.rank: dict[str, float] = {}
        self._built = False

    def _producers(self, node: Node) -> list[str]:
        """The nodes `node` reads from, data then control, but a while loop's back edge."""
        names = [r[0] for r in node._inputs]
        if node.proto.op == "Merge":
            names = [n for n in names if not self._back_edge(node, n)]
        return names + node._controls

    def build(self) -> None:
        """Ranks are graph positions when graph order is topological (the usual case: one
        pass over the edges checks it), else from Kahn's algorithm."""
        if self._built:
            return
        graph = self.graph
        pos = graph._pos
        get = pos.get
        ordered = True
        for name, node in graph._nodes.items():
            at = pos[name]
            for ref in node._inputs:
                src = get(ref[0])
                if src is not None and src >= at and not self._back_edge(node, ref[0]):
                    ordered = False
                    break
            else:
                for ctl in node._controls:
                    src = get(ctl)
                    if src is not None and src >= at:
                        ordered = False
                        break
            if not ordered:
                break
        if ordered:
            self.rank = dict(pos)  # type: ignore[arg-type]  # ints and floats compare alike
        else:
            try:
                order = graph.topological_order()
            except GraphError:
                order = [n.name for n in graph]  # already cyclic: check only what changes
            self.rank = {name: float(i) for i, name in enumerate(order)}
        self._built = True

    def _back_edge(self, node: Node, src: str) -> bool:
        """A while loop's NextIteration -> Merge edge, which does not order the two."""
        if node.proto.op != "Merge":
            return False
        producer = self.graph._nodes.get(src)
        return producer is not None and producer.proto.op == "NextIteration"

    def forget(self, names: Iterable[str]) -> None:
        """Drop removed nodes."""
        for name in names:
            self.rank.pop(name, None)

    def place(self, name: str) -> None:
        """Give a new node a rank just after its producers (before its consumers if possible)."""
        graph = self.graph
        node = graph._nodes[name]
        rank = self.rank
        get = rank.get
        below = -1.0
        for src in self._producers(node):
            at = get(src)
            if at is not None and at > below:
                below = at
        above = None
        consumers, controls = graph._index()
        users = [e[1] for e in consumers.get(name, ())]
        users.extend(controls.get(name, ()))
        for user in users:
            at = get(user)
            if at is not None and at > below and (above is None or at < above):
                above = at
        if above is None:
            above = below + 1.0
        rank[name] = below + (above - below) / 2 if above - below > 1e-9 else below + 0.5

    def check_edges_into(self, name: str) -> None:
        """Repair ranks for every edge into `name`; raise GraphError on a cycle."""
        node = self.graph._nodes.get(name)
        if node is None:
            return
        rank = self.rank
        get = rank.get
        for ref in node._inputs:
            at = get(ref[0])
            if at is not None and at >= get(name, _INF) and not self._back_edge(node, ref[0]):
                self._repair(ref[0], name)  # ranks read again each time: repairs move them
        for src in node._controls:
            at = get(src)
            if at is not None and at >= get(name, _INF):
                self._repair(src, name)

    def _repair(self, u: str, v: str) -> None:
        """Pearce-Kelly: reorder the affected region so that u comes before v, or find a cycle."""
        rank, graph = self.rank, self.graph
        upper, lower = rank[u], rank[v]
        forward: list[str] = []
        seen = {v}
        stack = [v]
        while stack:
            w = stack.pop()
            forward.append(w)
            for c in graph.consumer_names(w):
                if c == u:
                    raise GraphError(f"the rewrite creates a cycle through {u!r} and {v!r}")
                if c not in seen and c in rank and rank[c] <= upper:
                    seen.add(c)
                    stack.append(c)
        backward: list[str] = []
        seen_b = {u}
        stack = [u]
        while stack:
            w = stack.pop()
            backward.append(w)
            for p in self._producers(graph.node(w)):
                if p not in seen_b and p in rank and rank[p] >= lower and p in graph:
                    seen_b.add(p)
                    stack.append(p)
        backward.sort(key=rank.__getitem__)
        forward.sort(key=rank.__getitem__)
        pool = sorted(rank[w] for w in backward + forward)
        for w, r in zip(backward + forward, pool, strict=True):
            rank[w] = r


class Engine:
    """Applies parsed rule files to a graph, recording provenance."""

    def __init__(self, graph: Graph, catalog: Any = None):
        self.graph = graph
        self.catalog = catalog
        self.recorder = Recorder()
        self.editor = Editor(graph, self.recorder)
        self.ranks = Ranks(graph)
        self.counts: dict[str, int] = {}
        self.warnings: list[str] = []
        self.rescan_all = False  # True: every iteration scans the whole op index (a cross-check)

    def snapshot_outputs(self) -> None:
        """Remember the graph outputs as they are now: `prune` never removes them."""
        if self.editor.outputs_before is None:
            self.editor.outputs_before = frozenset(n.name for n in self.graph.graph_outputs())

    def apply_file(self, rule_file: ast.RuleFile) -> None:
        """Every rule of the file, in order."""
        if uses_prune([rule_file]):
            self.snapshot_outputs()
        catalog = self.catalog
        if catalog is None:
            from surgery.plugin_schema import load_catalog

            catalog = load_catalog(rule_file.plugins)
        for rule in rule_file.rules:
            self.apply_rule(rule, catalog, rule_file.commutative)

    def apply_rule(self, rule: ast.Rule, catalog: Any, commutative: Iterable[str] = ()) -> int:
        """One rule to its fixpoint; returns the number of matches applied.

        The first iteration tries every candidate of the op index. A later one tries only the
        anchors that a change of the iteration before could have made match: those within the
        pattern's reach (data edges down) of a node it changed, or whose matches it skipped
        as overlapping (unless that iteration changed more nodes than the index holds: then
        scanning the index is cheaper). Rules that look further (scopes, roots found through
        consumers) and `rescan_all` scan the whole index every time.
        """
        applied = 0
        iterations = 0
        commutative = tuple(commutative)
        made: set[str] = set()  # nodes this rule created: a scope made only of them is done
        reach = None if self.rescan_all else pattern_reach(rule)
        changed: set[str] | None = None
        while True:
            matcher = RuleMatcher(self.graph, rule, commutative)
            if changed is None or reach is None or len(changed) >= self._indexed(rule):
                candidates = matcher.candidates()  # (scanning the index is the cheaper way)
            else:
                candidates = self._near(changed, reach, _first_ops(rule))
            changed = set()
            done = self._iteration(rule, matcher, catalog, applied, made, candidates, changed)
            if not done:
                break
            applied += done
            iterations += 1
            if iterations >= rule.max_iterations:
                probe = RuleMatcher(self.graph, rule, commutative)
                extra = next(
                    (m for m in probe.matches() if not (m.scope and m.nodes() <= made)), None
                )
                if extra is not None:
                    raise RuleError(
                        f"{rule.loc}: rule {rule.name!r} still matches (at {extra.anchor!r}) "
                        f"after max_iterations={rule.max_iterations} iterations; it does not "
                        "reach a fixpoint (add a `where` that the rewrite makes false)"
                    )
                break
        self.counts[rule.name] = self.counts.get(rule.name, 0) + applied
        if not applied:
            self.warnings.append(f"{rule.loc}: rule {rule.name!r} matched nothing")
        return applied

    def _indexed(self, rule: ast.Rule) -> int:
        """How many nodes the op index holds for the rule's first root."""
        ops = _first_ops(rule)
        if not ops:
            return len(self.graph)
        by_op = self.graph._by_op
        return sum(len(by_op.get(op, ())) for op in dict.fromkeys(ops))

    def _near(self, changed: set[str], reach: int, ops: tuple[str, ...]) -> list[str]:
        """Nodes at most `reach` data edges below a changed node (the changed ones included)
        whose op is one of `ops` (any op when empty), in graph order."""
        graph = self.graph
        nodes = graph._nodes
        consumers = graph._index()[0]
        seen = {name for name in changed if name in nodes}
        frontier = seen
        for _ in range(reach):
            below = set()
            for name in frontier:
                for edge in consumers.get(name, ()):
                    if edge[1] not in seen:
                        below.add(edge[1])
            seen |= below
            frontier = below
        wanted = frozenset(ops)
        found = [n for n in seen if not wanted or nodes[n].proto.op in wanted]
        found.sort(key=graph._pos.__getitem__)
        return found

    def _iteration(
        self, rule: ast.Rule, matcher: RuleMatcher, catalog: Any, base: int, made: set[str],
        candidates: list[str], changed: set[str],
    ) -> int:  # fmt: skip
        """One pass over `candidates`; returns how many matches were rewritten and adds to
        `changed` every node whose op, attributes, inputs or readers the rewrites changed,
        and every node of a match (a skipped overlapping match may hold it)."""
        busy: set[str] = set()
        done = 0
        graph = self.graph
        editor = self.editor
        is_scope = matcher.is_scope
        for anchor in candidates:
            if anchor in busy or (not is_scope and anchor not in graph._nodes):
                continue
            found = matcher.match_at(anchor)
            if found is None:
                continue
            nodes = found.nodes()
            if nodes & busy or (is_scope and nodes <= made):
                continue
            self._rewrite(found, catalog, f"{rule.name}#{base + done + 1}")
            if is_scope:
                made.update(editor.created)
            busy |= nodes
            busy.update(editor.created)
            busy.update(editor.touched)
            editor.changed_nodes(changed)
            done += 1
        changed |= busy
        return done

    def _rewrite(self, found: Match, catalog: Any, match_id: str) -> None:
        rule = found.rule
        editor = self.editor
        self.ranks.build()
        editor.begin()
        mark = self.recorder.mark()
        self.recorder.context = MatchContext(rule.name, rule.loc, match_id)
        try:
            Rewriter(self.graph, found, catalog, editor).run()
            self._check_local(found)
        except (RewriteRefused, RuleError, GraphError) as exc:
            editor.rollback()
            self.recorder.rollback(mark)
            self.ranks._built = False  # restored nodes lost their ranks: rebuild on next use
            if isinstance(exc, GraphError):
                raise RewriteRefused(
                    f"{rule.loc}: rule {rule.name!r} refused at {found.anchor!r}: {exc}"
                ) from None
            raise
        finally:
            self.recorder.context = None

    def _check_local(self, found: Match) -> None:
        """No dangling input among the changed nodes; no cycle through the changed edges."""
        graph, editor, ranks = self.graph, self.editor, self.ranks
        ranks.forget(editor.removed)
        nodes = graph._nodes
        for name in editor.touched:
            node = nodes.get(name)
            if node is None:
                continue
            for ref in node._inputs:
                if ref[0] not in nodes:
                    raise GraphError(f"{name!r} would read {ref}, which does not exist")
            for src in node._controls:
                if src not in nodes:
                    raise GraphError(f"{name!r} would depend on ^{src}, which does not exist")
        for name in editor.created:
            if name in nodes:
                ranks.place(name)
        for name in editor.touched:
            ranks.check_edges_into(name)


def _first_ops(rule: ast.Rule) -> tuple[str, ...]:
    """The ops the first root of a match rule may have (empty: any op, or a scope rule)."""
    body = rule.body
    return body.roots[0].ops if isinstance(body, ast.MatchStmt) else ()


def pattern_reach(rule: ast.Rule) -> int | None:
    """How many data edges up from its anchor a match can read (ops, attributes, readers of
    bound tensors); None when it reads elsewhere too (a scope, a root found through consumers)."""
    body = rule.body
    if not isinstance(body, ast.MatchStmt):
        return None
    levels: dict[str, int] = {}

    def walk(pattern: Any, level: int) -> int:
        var = getattr(pattern, "var", None)
        if var:
            levels.setdefault(var, level)
        if not isinstance(pattern, ast.OpPattern):
            return level
        return max([level, *(walk(o.pattern, level + 1) for o in pattern.operands)])

    deepest = 0
    for k, root in enumerate(body.roots):
        start = 0
        if k:
            if root.var is None or root.var not in levels:
                return None  # found by walking down from what earlier roots bound
            start = levels[root.var]
        deepest = max(deepest, walk(root, start))
    return deepest


def uses_prune(rule_files: Iterable[ast.RuleFile]) -> bool:
    """Whether any rule has a `prune` action."""
    return any(isinstance(a, ast.Prune) for f in rule_files for r in f.rules for a in r.actions)


def apply_rules(
    graph: Graph, rule_files: Iterable[ast.RuleFile], catalog: Any = None
) -> ApplyResult:
    """Apply rule files in order to `graph` (edited in place); see the module docstring."""
    engine = Engine(graph, catalog)
    rule_files = list(rule_files)
    # Rewrites allocate millions of long-lived objects and no reference cycles: the cyclic GC
    # would only rescan the whole graph again and again.
    with _gc_paused():
        if uses_prune(rule_files):
            engine.snapshot_outputs()  # before any rule runs
        for rule_file in rule_files:
            engine.apply_file(rule_file)
    return ApplyResult(graph, ChangeLog(engine.recorder), engine.counts, engine.warnings)


def find_matches(
    graph: Graph, rule_file: ast.RuleFile
) -> list[tuple[ast.Rule, list[Match], list[str]]]:
    """Dry run: per rule, every match in the unchanged graph (and contract errors as text)."""
    out = []
    for rule in rule_file.rules:
        matcher = RuleMatcher(graph, rule, rule_file.commutative)
        matches: list[Match] = []
        errors: list[str] = []
        for anchor in matcher.candidates():
            try:
                found = matcher.match_at(anchor)
            except RuleError as exc:
                errors.append(str(exc))
                continue
            if found is not None:
                matches.append(found)
        out.append((rule, matches, errors))
    return out
