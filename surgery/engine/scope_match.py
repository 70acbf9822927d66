"""Namespace matching for `scope` rules: which node names a scope's patterns select, each
namespace instance's region and interface (entering, leaving and side tensors), its contract."""

from __future__ import annotations

from surgery.errors import RuleError
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef
from surgery.lang import rule_ast as ast
from surgery.lang.name_patterns import NameRegex, glob_regex, name_regex
from surgery.lang.scope_instances import ScopeInstance


class Selector:
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


def selector(patterns: tuple[ast.NamePattern, ...]) -> Selector:
    """The patterns of a scope's `include`, `exclude` or side input, compiled."""
    regexes = []
    depths: list[int | None] = []
    for p in patterns:
        try:  # RE2 both: linear in the name's length (surgery.lang.name_patterns.NameRegex)
            regexes.append(name_regex(p.text) if p.kind == "regex" else glob_regex(p.text))
        except RuleError as exc:
            raise RuleError(f"{p.loc}: {exc}") from None
        depths.append(None if p.kind == "regex" else _glob_depth(p.text))
    bounded = [d for d in depths if d is not None]
    return Selector(regexes, None if len(bounded) < len(depths) else max(bounded, default=0))


def first_prefix(name: str, sel: Selector) -> str | None:
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


def scope_instances(graph: Graph, stmt: ast.ScopeStmt) -> dict[str, list[str]]:
    """namespace -> region nodes in graph order; an instance per distinct namespace."""
    include = selector(stmt.include)
    exclude = selector(stmt.exclude) if stmt.exclude else None
    out: dict[str, list[str]] = {}
    first = first_prefix
    for name in graph.names:
        ns = first(name, include)
        if ns is None or (exclude is not None and first(name, exclude) is not None):
            continue
        out.setdefault(ns, []).append(name)
    return out


def scope_instance(
    graph: Graph, rule: str, stmt: ast.ScopeStmt, namespace: str, nodes: list[str]
) -> ScopeInstance:
    """The region, entering and leaving tensors (ordered by producer position, then port) of
    the instance `namespace` of rule `rule`'s scope statement."""
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

    side: list[tuple[str, TensorRef]] = []
    for item in stmt.side:
        regexes = selector(item.patterns).regexes
        hits = [t for t in enters if any(rx.fullmatch(t.node) for rx in regexes)]
        if len(hits) > 1:
            shown = ", ".join(map(str, hits))
            raise RuleError(
                f"{item.loc}: rule {rule!r}: side input {item.role!r} of scope "
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


def check_contract(rule: str, stmt: ast.ScopeStmt, inst: ScopeInstance) -> None:
    """RuleError when the instance breaks the statement's `enters` / `leaves` counts."""
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
            f"{stmt.loc}: rule {rule!r}: scope {inst.namespace!r} breaks its "
            f"interface contract: {'; '.join(problems)}"
        )
