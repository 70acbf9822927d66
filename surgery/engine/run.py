"""The rule engine: rules in file order, each to a bounded fixpoint, matches in graph order.

Within one iteration of a rule the matches are applied in graph order of their anchors and never
overlap (a match whose nodes an earlier match of the iteration touched waits for the next
iteration). After each match the changed neighbourhood is checked (no dangling input, no cycle)
and a violation rolls the match back and raises `RewriteRefused`. Cycle checks keep a
topological rank per node and repair it locally (Pearce-Kelly), so they cost little per match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from surgery.engine.editor import Editor
from surgery.engine.match_results import Match
from surgery.engine.matcher import RuleMatcher
from surgery.engine.provenance import Change, ChangeLog, MatchContext, Recorder
from surgery.engine.rewriter import Rewriter
from surgery.errors import GraphError, RewriteRefused, RuleError
from surgery.ir.gc_pause import gc_paused
from surgery.ir.graph import Graph
from surgery.ir.node import Node
from surgery.lang import rule_ast as ast

_INF = float("inf")


@dataclass
class ApplyResult:
    """The rewritten graph, every change in order, matches applied per rule, warnings."""

    graph: Graph
    changes: Sequence[Change]  # a ChangeLog: Change objects made on first read
    per_rule_counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)


class Ranks:
    """A topological rank per node (`Node.rank`), kept valid under edits by local repair; finds
    new cycles. Nodes the rewrites remove take their stale ranks with them; a rollback puts
    nodes back, so it marks the ranks unbuilt."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._built = False

    def _producers(self, node: Node) -> list[str]:
        """The nodes `node` reads from, data then control, but a while loop's back edge."""
        names = [r[0] for r in node._inputs]
        if node.op == "Merge":
            names = [n for n in names if not self._back_edge(node, n)]
        names.extend(node._controls)
        return names

    def build(self) -> None:
        """Ranks are graph positions when graph order is topological (the usual case: one
        pass over the edges checks it), else from Kahn's algorithm."""
        if self._built:
            return
        graph = self.graph
        graph._index()
        nodes = graph._nodes
        ordered = True
        for node in nodes.values():  # every edge must point forward in graph order
            at = node.pos
            for edge in node._users or ():
                user = edge[1]
                if user.pos <= at and not _loop_edge(node, user):
                    ordered = False
                    break
            else:
                for user in node._cusers or ():
                    if user.pos <= at:
                        ordered = False
                        break
            if not ordered:
                break
        if ordered:
            for node in nodes.values():
                node.rank = float(node.pos)
        else:
            try:
                order = graph.topological_order()
            except GraphError:
                order = list(nodes)  # already cyclic: check only what changes
            for i, name in enumerate(order):
                nodes[name].rank = float(i)
        self._built = True

    def _back_edge(self, node: Node, src: str) -> bool:
        """Whether `node` reads `src` over a while loop's back edge (see `_loop_edge`)."""
        if node.op != "Merge":
            return False
        producer = self.graph._nodes.get(src)
        return producer is not None and _loop_edge(producer, node)

    def place(self, node: Node) -> None:
        """Give a new node a rank just after its producers (before its consumers if possible)."""
        graph = self.graph
        get = graph._nodes.get
        below = -1.0
        for src in self._producers(node):
            producer = get(src)
            if producer is not None and producer.rank > below:
                below = producer.rank
        above = _INF
        graph._index()
        for edge in node._users or ():
            if below < edge[1].rank < above:
                above = edge[1].rank
        for reader in node._cusers or ():
            if below < reader.rank < above:
                above = reader.rank
        if above == _INF:
            above = below + 1.0
        node.rank = below + (above - below) / 2 if above - below > 1e-9 else below + 0.5

    def check_edges_into(self, node: Node) -> None:
        """Repair ranks for every edge into `node`; raise GraphError on a dangling input or a
        cycle."""
        get = self.graph._nodes.get
        name = node.name
        for ref in node._inputs:
            producer = get(ref[0])
            if producer is None:
                raise GraphError(f"{name!r} would read {ref}, which does not exist")
            if producer.rank >= node.rank and not _loop_edge(producer, node):
                self._repair(producer, node)  # ranks read again each time: repairs move them
        for src in node._controls:
            producer = get(src)
            if producer is None:
                raise GraphError(f"{name!r} would depend on ^{src}, which does not exist")
            if producer.rank >= node.rank:
                self._repair(producer, node)

    def _repair(self, u: Node, v: Node) -> None:
        """Pearce-Kelly: reorder the affected region so that u comes before v, or find a cycle."""
        graph = self.graph
        get = graph._nodes.get
        upper, lower = u.rank, v.rank
        forward: list[Node] = []
        seen = {v.name}
        stack = [v]
        while stack:
            w = stack.pop()
            forward.append(w)
            for reader in graph.readers(w.name):
                if reader is u:
                    raise GraphError(
                        f"the rewrite creates a cycle through {u.name!r} and {v.name!r}"
                    )
                if reader.name not in seen and reader.rank <= upper:
                    seen.add(reader.name)
                    stack.append(reader)
        backward: list[Node] = []
        seen_b = {u.name}
        stack = [u]
        while stack:
            w = stack.pop()
            backward.append(w)
            for p in self._producers(w):
                producer = get(p)
                if p not in seen_b and producer is not None and producer.rank >= lower:
                    seen_b.add(p)
                    stack.append(producer)
        backward.sort(key=_rank_of)
        forward.sort(key=_rank_of)
        pool = sorted(w.rank for w in backward + forward)
        for w, r in zip(backward + forward, pool, strict=True):
            w.rank = r


def _loop_edge(producer: Node, consumer: Node) -> bool:
    """A while loop's NextIteration -> Merge edge, which does not order the two."""
    return consumer.op == "Merge" and producer.op == "NextIteration"


def _rank_of(node: Node) -> float:
    return node.rank


class Engine:
    """Applies parsed rule files to a graph, recording provenance."""

    def __init__(
        self, graph: Graph, catalog: Any = None, settings: Mapping[str, str] | None = None
    ) -> None:
        self.graph = graph
        self.catalog = catalog
        self.settings = dict(settings or {})  # `--set NAME=VALUE` for the files' params
        self.recorder = Recorder()
        self.editor = Editor(graph, self.recorder)
        self.ranks = Ranks(graph)
        self.counts: dict[str, int] = {}
        self.warnings: list[str] = self.editor.warnings  # the rewriters' warnings too
        self.rescan_all = False  # True: every iteration scans the whole op index (a cross-check)

    def snapshot_outputs(self) -> None:
        """Remember the graph outputs as they are now: `prune` never removes them."""
        if self.editor.outputs_before is None:
            self.editor.outputs_before = frozenset(n.name for n in self.graph.graph_outputs())

    def apply_file(self, rule_file: ast.RuleFile) -> None:
        """Every rule of the file, in order (its params and lets substituted first)."""
        from surgery.lang.rule_params import bind_file

        rule_file = bind_file(rule_file, self.settings)
        if uses_prune([rule_file]):
            self.snapshot_outputs()
        catalog = self.catalog
        if catalog is None:
            from surgery.ops.plugin_schema import load_catalog

            catalog = load_catalog(rule_file.plugins)
        for rule in rule_file.rules:
            self.apply_rule(rule, catalog, rule_file.commutative)

    def apply_rule(self, rule: ast.Rule, catalog: Any, commutative: Iterable[str] = ()) -> int:
        """One rule to its fixpoint; returns the number of matches applied.

        The first iteration tries every candidate of the op index. A later one tries only the
        anchors that a change of the iteration before could have made match: those within the
        pattern's reach (data edges down) of a node it changed, or whose matches it skipped
        as overlapping (unless that iteration's changes, counted with repeats, outnumber the
        nodes the index holds: then scanning the index is cheaper). Rules that look further
        (scopes, roots found through consumers) and `rescan_all` scan the whole index every
        time.
        """
        applied = 0
        iterations = 0
        commutative = tuple(commutative)
        made: set[str] = set()  # nodes this rule created: a scope made only of them is done
        reach = None if self.rescan_all else pattern_reach(rule)
        changed: list[str] | None = None  # with repeats: appending is cheaper than a set
        while True:
            matcher = RuleMatcher(self.graph, rule, commutative)
            if changed is None or reach is None or len(changed) >= self._indexed(rule):
                candidates = matcher.candidates()  # (scanning the index is the cheaper way)
            else:
                candidates = self._near(changed, reach, _first_ops(rule))
            changed = []
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

    def _near(self, changed: list[str], reach: int, ops: tuple[str, ...]) -> list[str]:
        """Nodes at most `reach` data edges below a changed node (the changed ones included)
        whose op is one of `ops` (any op when empty), in graph order."""
        graph = self.graph
        nodes = graph._nodes
        seen = {name for name in changed if name in nodes}
        frontier = seen
        for _ in range(reach):
            below = set()
            for name in frontier:
                for edge in graph._edges(name):
                    if edge[1].name not in seen:
                        below.add(edge[1].name)
            seen |= below
            frontier = below
        wanted = frozenset(ops)
        found = [n for n in seen if not wanted or nodes[n].op in wanted]
        found.sort(key=graph.position)
        return found

    def _iteration(
        self, rule: ast.Rule, matcher: RuleMatcher, catalog: Any, base: int, made: set[str],
        candidates: list[str], changed: list[str],
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
            self._rewrite(found, catalog, base + done + 1)
            if is_scope:
                made.update(editor.created)
            busy |= nodes
            busy.update(editor.created)
            busy.update(editor.touched)
            editor.changed_nodes(changed)
            done += 1
        changed.extend(busy)
        return done

    def _rewrite(self, found: Match, catalog: Any, number: int) -> None:
        rule = found.rule
        editor = self.editor
        self.ranks.build()
        editor.begin()
        mark = self.recorder.mark()
        self.recorder.context = MatchContext(rule.name, rule.loc, number)
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
        editor, ranks = self.editor, self.ranks
        get = self.graph._nodes.get
        for name in editor.created:
            node = get(name)
            if node is not None:
                ranks.place(node)
        for name in editor.touched:
            node = get(name)
            if node is not None:
                ranks.check_edges_into(node)


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
    deepest = 0
    for k, root in enumerate(body.roots):
        start = 0
        if k:
            if root.var is None or root.var not in levels:
                return None  # found by walking down from what earlier roots bound
            start = levels[root.var]
        deepest = max(deepest, _depth(root, start, levels))
    return deepest


def _depth(pattern: Any, level: int, levels: dict[str, int]) -> int:
    """The deepest level under `pattern` (at `level`), recording each variable's first level
    (a module function: a nested recursive one would be a reference cycle per call)."""
    var = getattr(pattern, "var", None)
    if var:
        levels.setdefault(var, level)
    if not isinstance(pattern, ast.OpPattern):
        return level
    return max([level, *(_depth(o.pattern, level + 1, levels) for o in pattern.operands)])


def uses_prune(rule_files: Iterable[ast.RuleFile]) -> bool:
    """Whether any rule has a `prune` action."""
    return any(isinstance(a, ast.Prune) for f in rule_files for r in f.rules for a in r.actions)


def apply_rules(
    graph: Graph, rule_files: Iterable[ast.RuleFile], catalog: Any = None,
    settings: Mapping[str, str] | None = None,
) -> ApplyResult:  # fmt: skip
    """Apply rule files in order to `graph` (edited in place); see the module docstring.
    `settings` are `--set NAME=VALUE` values of the files' params."""
    engine = Engine(graph, catalog, settings)
    rule_files = list(rule_files)
    if settings:
        from surgery.lang.rule_params import check_settings

        check_settings(rule_files, settings)
    readers_before = {n.name for n in graph.graph_inputs() if graph.is_read(n.name)}
    # Rewrites allocate millions of long-lived objects and no reference cycles: the cyclic GC
    # would only rescan the whole graph again and again.
    with gc_paused(len(graph)):
        if uses_prune(rule_files):
            engine.snapshot_outputs()  # before any rule runs
        for rule_file in rule_files:
            engine.apply_file(rule_file)
    for name in sorted(readers_before, key=graph.position):
        if name in graph and not graph.is_read(name):
            engine.warnings.append(
                f"graph input {name!r} has no readers after the rewrite (a side input that "
                "a plugin does not take, or an input the rules replaced): it no longer "
                "affects the outputs"
            )
    return ApplyResult(graph, ChangeLog(engine.recorder), engine.counts, engine.warnings)


def bind_files(
    rule_files: Iterable[ast.RuleFile], settings: Mapping[str, str] | None
) -> list[ast.RuleFile]:
    """The files with their params (`settings` over defaults) and lets substituted."""
    from surgery.lang.rule_params import bind_file, check_settings

    files = list(rule_files)
    if settings:
        check_settings(files, settings)
    return [bind_file(f, settings) for f in files]


def find_matches(
    graph: Graph, rule_file: ast.RuleFile, settings: Mapping[str, str] | None = None
) -> list[tuple[ast.Rule, list[Match], list[str]]]:
    """Dry run: per rule, every match in the unchanged graph (and contract errors as text)."""
    (rule_file,) = bind_files([rule_file], settings)
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
