"""The HTML diff report: summary, one section per rule application, a table of every change.

`write_report(before, after, path, changes=None, rules_meta=None)` writes one self-contained
file (all JS, CSS and SVG inline). With the engine's provenance (`changes`) sections follow rule
applications; without it (`surgery diff`), each connected region of changed nodes is a section.
Only neighbourhoods of changes are drawn, never the whole graph.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surgery.ir.atomic_files import write_atomic
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef
from surgery.views import dot as pictures
from surgery.views import node_style
from surgery.views import visualize as viz
from surgery.views.graph_diff import GraphDiff, NodeChange, diff_graphs

MAX_DRAWN_SECTIONS = 60  # sections past this are listed without pictures
MAX_PICTURE_NODES = 120  # a bigger neighbourhood gets its namespaces collapsed


@dataclass
class ChangeRecord:
    """One change with its provenance (rule '' when the change comes from a plain diff)."""

    kind: str
    node: str
    rule: str = ""
    where: str = ""
    match: str = ""
    detail: str = ""


@dataclass
class Application:
    """A report section: one rule match (or one connected region of changes)."""

    rule: str
    where: str
    match: str
    records: list[ChangeRecord] = field(default_factory=list)
    nodes: dict[str, None] = field(default_factory=dict)


# --------------------------------------------------------------------------- provenance
def _get(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(getattr(value, "name", value)) if not isinstance(value, str) else value


def normalize_changes(changes: Iterable[Any], diff: GraphDiff) -> list[ChangeRecord]:
    """Engine change records (objects or dicts) -> ChangeRecords, details filled from the diff."""
    out = []
    added, removed = set(diff.added), set(diff.removed)
    for change in changes:
        where = _get(change, "where", "rule_loc", "loc", "location")
        if where is None:
            file, line = _get(change, "rule_file", "file"), _get(change, "rule_line", "line")
            where = f"{file}:{line}" if file and line else (file or "")
        node = _text(_get(change, "node", "name", "node_name"))
        kind = _text(_get(change, "kind", "action")).lower()
        detail = _text(_get(change, "detail", "details", "description"))
        if not detail:
            detail = describe_node(node, kind, diff, added, removed)
        out.append(
            ChangeRecord(
                kind=kind,
                node=node,
                rule=_text(_get(change, "rule", "rule_name")),
                where=str(where),
                match=_text(_get(change, "match_id", "match")),
                detail=detail,
            )
        )
    return out


def describe_node(name: str, kind: str, diff: GraphDiff, added: set[str], removed: set[str]) -> str:
    """What the diff says about one node, as one line."""
    if name in diff.changed:
        return "; ".join(change_lines(diff.changed[name]))
    if kind.startswith("add") or name in added:
        return "added"
    if kind.startswith("remove") or name in removed:
        return "removed"
    return ""


def change_lines(change: NodeChange) -> list[str]:
    """Readable lines for a changed node."""
    lines = []
    if change.op_changed:
        lines.append(f"op {change.op_before} -> {change.op_after}")
    for s in change.rewired:
        lines.append(f"input {s.slot}: {s.before or '(none)'} -> {s.after or '(none)'}")
    for key, a, b in change.attrs:
        lines.append(
            f"attr {key}: {'(unset)' if a is None else a} -> {'(unset)' if b is None else b}"
        )
    lines += [f"control ^{c} added" for c in change.controls_added]
    lines += [f"control ^{c} removed" for c in change.controls_removed]
    if change.device:
        lines.append(f"device {change.device[0]!r} -> {change.device[1]!r}")
    return lines


def records_from_diff(diff: GraphDiff, before: Graph, after: Graph) -> list[ChangeRecord]:
    """Change rows for a diff without provenance."""
    rows = [ChangeRecord("add", n, detail=f"added {after.node(n).op}") for n in diff.added]
    rows += [ChangeRecord("remove", n, detail=f"removed {before.node(n).op}") for n in diff.removed]
    for name, change in diff.changed.items():
        if change.op_changed:
            rows.append(
                ChangeRecord("op", name, detail=f"op {change.op_before} -> {change.op_after}")
            )
        for s in change.rewired:
            rows.append(
                ChangeRecord(
                    "rewire",
                    name,
                    detail=f"input {s.slot}: {s.before or '(none)'} -> {s.after or '(none)'}",
                )
            )
        for key, a, b in change.attrs:
            rows.append(ChangeRecord("set_attr", name, detail=f"{key}: {a} -> {b}"))
        for c in change.controls_added:
            rows.append(ChangeRecord("control", name, detail=f"^{c} added"))
        for c in change.controls_removed:
            rows.append(ChangeRecord("control", name, detail=f"^{c} removed"))
        if change.device:
            rows.append(ChangeRecord("set_attr", name, detail=f"device -> {change.device[1]!r}"))
    return rows


# --------------------------------------------------------------------------- grouping
def _data_neighbours(graph: Graph, name: str) -> list[str]:
    node = graph.get(name)
    if node is None:
        return []
    found = [r.node for r in node.inputs]
    for port in graph.used_ports(name):
        found += [user.name for user, _ in graph.consumers(TensorRef(name, port))]
    return found


def regions(names: Iterable[str], before: Graph, after: Graph) -> list[list[str]]:
    """Connected groups of `names` (data edges in either graph join them), in first-seen order."""
    members = list(dict.fromkeys(names))
    parent = {n: n for n in members}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for name in members:
        for graph in (before, after):
            for other in _data_neighbours(graph, name):
                if other in parent:
                    ra, rb = find(name), find(other)
                    if ra != rb:
                        parent[rb] = ra
    groups: dict[str, list[str]] = {}
    for name in members:
        groups.setdefault(find(name), []).append(name)
    return list(groups.values())


def group_applications(
    records: list[ChangeRecord], diff: GraphDiff, before: Graph, after: Graph, with_rules: bool
) -> list[Application]:
    """Sections: one per (rule, match) with provenance, else one per connected region."""
    apps: list[Application] = []
    if with_rules:
        by_key: dict[tuple[str, str, str], Application] = {}
        for rec in records:
            key = (rec.rule, rec.where, rec.match)
            app = by_key.get(key)
            if app is None:
                app = by_key[key] = Application(rec.rule, rec.where, rec.match)
                apps.append(app)
            app.records.append(rec)
            app.nodes[rec.node] = None
        covered = {rec.node for rec in records}
        loose = [n for n in diff.added + diff.removed + list(diff.changed) if n not in covered]
    else:
        loose = diff.added + diff.removed + list(diff.changed)
    by_node: dict[str, list[ChangeRecord]] = {}
    for rec in records:
        by_node.setdefault(rec.node, []).append(rec)
    for index, group in enumerate(regions(loose, before, after), 1):
        app = Application("" if not with_rules else "(no rule)", "", f"region {index}")
        app.nodes = dict.fromkeys(group)
        if not with_rules:
            for name in group:
                app.records += by_node.get(name, [])
        apps.append(app)
    return apps


# --------------------------------------------------------------------------- pictures
def context(graph_pair: tuple[Graph, Graph], names: Iterable[str], limit: int) -> list[str]:
    """`names` plus up to `limit` of their one-hop neighbours in both graphs (data and control).

    The after graph goes first: a collapse leaves few nodes there, and its inputs and readers are
    what the picture must show, however many nodes the before side removed.
    """
    chosen = dict.fromkeys(names)
    seeds = list(chosen)
    budget = limit
    for graph in reversed(graph_pair):
        for name in seeds:
            if budget <= 0:
                return list(chosen)
            if name in graph:
                around = viz.neighbours(graph, name)
                if len(around) > 24:  # a hub: its own edges only, not its whole fan
                    around = [n for n in around if n in chosen]
                for other in around:
                    if budget <= 0:
                        break
                    if other not in chosen:
                        chosen[other] = None
                        budget -= 1
    return list(chosen)


def _picture(
    graph: Graph, names: list[str], status: dict[str, str], prefix: str, title: str
) -> tuple[str, dict[str, Any]]:
    """DOT text and front-end data for one side of a section (namespaces collapsed if big)."""
    present = [n for n in names if n in graph]
    view = viz.to_networkx(graph, present)
    if len(present) > MAX_PICTURE_NODES:
        try:
            view, _ = viz.auto_collapse(view, MAX_PICTURE_NODES)
        except pictures.LayoutError:  # too few namespaces to collapse (an exporter's flat names)
            shown = present[:MAX_PICTURE_NODES]  # the match's own nodes come first
            view = viz.to_networkx(graph, shown)
            title = f"{title} (the first {len(shown)} of {len(present)} nodes)"
    return pictures.to_dot(view, title=title, prefix=prefix, status=status)


# --------------------------------------------------------------------------- HTML pieces
def _e(value: Any) -> str:
    return html.escape(str(value))


def _stat(label: str, value: Any) -> str:
    return f'<div class="stat"><b>{_e(value)}</b>{_e(label)}</div>'


def _rows(rows: Iterable[Iterable[Any]], header: Iterable[str], cls: str = "grid") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td><code>{_e(c)}</code></td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _roles(specs: Iterable[Any]) -> list[str]:
    """Role names by slot when every role takes exactly one tensor (else unknown: [])."""
    specs = list(specs or ())
    if any(getattr(t, "max", 1) != 1 or getattr(t, "min", 1) != 1 for t in specs):
        return []
    return [str(getattr(t, "name", "")) for t in specs]


def plugin_section(name: str, before: Graph, after: Graph) -> str:
    """Fields, input slots and output-port mapping of a plugin node that a change produced."""
    node = after.node(name)
    parts = [f"<h4>plugin <code>{_e(node.op)}</code> <code>{_e(name)}</code></h4>"]
    fields = node_style.plugin_fields(node)
    parts.append(
        _rows(fields, ["field", "type", "value"]) if fields else "<p class=muted>no fields</p>"
    )
    schema = node_style.plugin_catalog().get(node.op)
    in_roles = _roles(getattr(schema, "inputs", ()))
    out_roles = _roles(getattr(schema, "outputs", ()))
    slots = []
    for slot, ref in enumerate(node.inputs):
        src = after.get(ref.node)
        role = in_roles[slot] if slot < len(in_roles) else ""
        slots.append([slot, role, str(ref), src.op if src is not None else "(missing)"])
    parts.append("<b>input slots</b>" + _rows(slots, ["slot", "role", "tensor", "producer op"]))
    mapping = []
    for port in after.used_ports(name):
        role = out_roles[port] if port < len(out_roles) else ""
        for user, slot in after.consumers(TensorRef(name, port)):
            old = before.get(user.name)
            was = str(old.inputs[slot]) if old is not None and slot < len(old.inputs) else "(new)"
            mapping.append([f"{name}:{port}", role, f"{user.name}[{slot}]", was])
    parts.append(
        "<b>output ports</b>"
        + (
            _rows(mapping, ["plugin output", "role", "consumer[slot]", "consumer read before"])
            if mapping
            else "<p class=muted>no consumers</p>"
        )
    )
    return "".join(parts)


def write_report(
    before: Graph,
    after: Graph,
    path: str | os.PathLike,
    changes: Iterable[Any] | None = None,
    rules_meta: Mapping[str, Any] | None = None,
    *,
    title: str | None = None,
) -> GraphDiff:
    """Write the HTML report comparing `before` and `after` atomically; returns the diff."""
    diff = diff_graphs(before, after)
    page = render_report(before, after, diff, changes, rules_meta, title=title)
    write_atomic(Path(path), page.encode("utf-8"))
    return diff


def render_report(
    before: Graph,
    after: Graph,
    diff: GraphDiff,
    changes: Iterable[Any] | None,
    rules_meta: Mapping[str, Any] | None,
    *,
    title: str | None = None,
) -> str:
    """The report page as a string."""
    with_rules = changes is not None
    records = (
        normalize_changes(changes, diff)
        if changes is not None
        else records_from_diff(diff, before, after)
    )
    apps = (
        []
        if diff.identical and not records
        else group_applications(records, diff, before, after, with_rules)
    )
    title = title or "surgery report"
    counts = diff.counts()
    body: list[str] = []

    body.append('<section id="summary"><h2>Summary</h2>')
    if diff.identical and not records:
        body.append(
            f'<div class="identical" id="identical">The two graphs are identical '
            f"({len(before)} nodes): nothing to show.</div>"
        )
    body.append('<div class="summary">')
    body.append(_stat("nodes before", len(before)) + _stat("nodes after", len(after)))
    body.append(_stat("added", counts["added"]) + _stat("removed", counts["removed"]))
    body.append(_stat("rewired", counts["rewired"]) + _stat("op changed", counts["op_changed"]))
    body.append(_stat("attrs changed", counts["attrs_changed"]) + _stat("sections", len(apps)))
    body.append("</div>")
    if diff.functions_added or diff.functions_removed or diff.functions_changed:
        body.append(
            "<p>function library: "
            f"added {_e(', '.join(diff.functions_added) or '-')}; "
            f"removed {_e(', '.join(diff.functions_removed) or '-')}; "
            f"changed {_e(', '.join(diff.functions_changed) or '-')}</p>"
        )
    if with_rules or rules_meta:
        body.append(_rules_table(apps, records, rules_meta))
    body.append("</section>")

    views: dict[str, Any] = {}
    sources: list[str] = []
    slots: list[tuple[str, str]] = []  # (view key, picture placeholder)
    sections: list[str] = []
    status_before = {n: "removed" for n in diff.removed} | {n: "changed" for n in diff.changed}
    status_after = {n: "added" for n in diff.added} | {n: "changed" for n in diff.changed}
    # a node removed and added again under its own name (the engine's `replace y with ...`)
    kinds_of: dict[str, set[str]] = {}
    for rec in records:
        kinds_of.setdefault(rec.node, set()).add(rec.kind)
    for name, node_kinds in kinds_of.items():
        if {"add_node", "remove_node"} <= node_kinds or {"add", "remove"} <= node_kinds:
            status_before[name], status_after[name] = "removed", "added"
    for index, app in enumerate(apps, 1):
        sid = f"app-{index}"
        head = _e(app.rule or "change") + (
            f' <span class="muted">{_e(app.where)}</span>' if app.where else ""
        )
        kinds: dict[str, int] = {}
        for rec in app.records:
            kinds[rec.kind] = kinds.get(rec.kind, 0) + 1
        kind_text = ", ".join(f"{v} {k}" for k, v in kinds.items())
        parts = [
            f'<details class="app" id="{sid}" data-rule="{_e(app.rule)}">',
            f'<summary>#{index} {head} <span class="muted">{_e(app.match)} · {len(app.nodes)} nodes'
            f"{' · ' + _e(kind_text) if kind_text else ''}</span></summary>",
            '<div class="app-body">',
        ]
        if index <= MAX_DRAWN_SECTIONS:
            names = context((before, after), app.nodes, MAX_PICTURE_NODES)
            for side, graph, status in (
                ("before", before, status_before),
                ("after", after, status_after),
            ):
                key = f"a{index}{side[0]}"
                dot, data = _picture(graph, names, status, key + "_", f"{sid} {side}")
                views[key] = data
                sources.append(dot)
                slots.append((key, f"<!--PIC:{key}-->"))
            parts.append('<div class="side-by-side">')
            for side in ("before", "after"):
                key = f"a{index}{side[0]}"
                parts.append(
                    f'<div><h4>{side}</h4><div class="pic" data-view="{key}" data-side="{side}">'
                    '<div class="zoom"><button type="button" data-zoom="in">+</button>'
                    '<button type="button" data-zoom="out">&minus;</button>'
                    '<button type="button" data-zoom="fit">fit</button></div>'
                    f'<div class="canvas"><!--PIC:{key}--></div></div></div>'
                )
            parts.append("</div>")
        else:
            parts.append(
                f'<p class="note">pictures are drawn for the first {MAX_DRAWN_SECTIONS} '
                "sections only; this one's changes are in the table below.</p>"
            )
        for name in app.nodes:
            node = after.get(name)
            if node is not None and node_style.node_category(node) == "plugin":
                parts.append(plugin_section(name, before, after))
        parts.append(
            _rows([[r.kind, r.node, r.detail] for r in app.records], ["kind", "node", "detail"])
        )
        parts.append("</div></details>")
        sections.append("".join(parts))
    if apps:
        body.append(
            '<section id="applications"><h2>Changes by '
            + ("rule application" if with_rules else "region")
            + '</h2><div class="toolbar"><button type="button" data-action="open-sections">'
            'expand all</button><button type="button" data-action="close-sections">collapse all'
            "</button></div>"
        )
        body += sections
        body.append("</section>")
        body.append(_changes_table(records, apps))

    svgs = pictures.render_dot(sources) if sources else []
    page_body = "".join(body)
    for (_, marker), svg in zip(slots, svgs, strict=True):
        page_body = page_body.replace(marker, pictures.inline_svg(svg), 1)
    cats = {
        node_style.node_category(n)
        for g in (before, after)
        for n in (g.get(x) for x in diff.touched())
        if n
    }
    legend = viz.legend_html(cats | {"other"}) + "".join(
        f'<span class="chip st-{s}">{s}</span>' for s in ("added", "removed", "changed")
    )
    caption = "graphs are identical" if diff.identical and not records else diff.summary_line()
    return viz.fill_template(
        viz.asset("report.html"),
        {
            "TITLE": _e(title),
            "CAPTION": _e(caption),
            "CSS": viz.asset("viz.css"),
            "JS": viz.asset("viz.js"),
            "LEGEND": legend,
            "DATA": viz.json_for_script({"views": views}),
            "BODY": page_body,
        },
    )


def _rules_table(
    apps: list[Application], records: list[ChangeRecord], meta: Mapping[str, Any] | None
) -> str:
    per_rule: dict[str, dict[str, Any]] = {}
    for app in apps:
        row = per_rule.setdefault(app.rule, {"where": app.where, "apps": 0, "changes": 0})
        row["apps"] += 1
        row["changes"] += len(app.records)
    extra_cols: list[str] = []
    for rule, value in (meta or {}).items():
        row = per_rule.setdefault(str(rule), {"where": "", "apps": 0, "changes": 0})
        if isinstance(value, Mapping):
            for key, item in value.items():
                row[str(key)] = item
                if str(key) not in extra_cols and str(key) not in ("where", "apps", "changes"):
                    extra_cols.append(str(key))
        else:
            row["info"] = value
            if "info" not in extra_cols:
                extra_cols.append("info")
    rows = [
        [rule or "(none)", r.get("where", ""), r["apps"], r["changes"]]
        + [r.get(c, "") for c in extra_cols]
        for rule, r in per_rule.items()
    ]
    return (
        '<h2>Per rule</h2><div id="per-rule">'
        + _rows(rows, ["rule", "defined at", "applications", "changes", *extra_cols])
        + "</div>"
    )


def _badge(kind: str) -> str:
    """CSS class of a change kind (the engine says add_node, the diff says add)."""
    if "control" in kind:
        return "control"
    return kind.removesuffix("_node") if kind.endswith("_node") else kind


def _changes_table(records: list[ChangeRecord], apps: list[Application]) -> str:
    where_app: dict[int, int] = {}
    for number, app in enumerate(apps, 1):
        for rec in app.records:
            where_app[id(rec)] = number
    rows = []
    for number, rec in enumerate(records, 1):
        index = where_app.get(id(rec))
        link = f'<a href="#app-{index}" data-app="app-{index}">#{index}</a>' if index else ""
        rows.append(
            f'<tr><td data-sort="{number}">{number}</td><td>{_e(rec.rule)}</td>'
            f"<td><code>{_e(rec.where)}</code></td><td>{_e(rec.match)}</td>"
            f'<td><span class="badge {_e(_badge(rec.kind))}">{_e(rec.kind)}'
            f"</span></td><td><code>{_e(rec.node)}</code></td><td><code>{_e(rec.detail)}</code></td>"
            f'<td data-sort="{index or 0}">{link}</td></tr>'
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("#", "rule", "defined at", "match", "kind", "node", "detail", "section")
    )
    return (
        '<section id="all-changes"><h2>Every change</h2><div class="toolbar">'
        '<input id="table-filter" type="search" placeholder="filter rows" autocomplete="off">'
        f'<span id="table-count" class="muted">{len(records)} changes</span></div>'
        f'<table class="grid" id="changes"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
        "</tbody></table></section>"
    )
