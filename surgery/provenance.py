"""Provenance: which rule (and which of its matches) added, removed or rewired what.

Every graph edit the rewriter makes is recorded as a `Change`; `changes_json` writes them for
`surgery apply --log` and the report/diff tools read them back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from surgery.rule_ast import Loc

KINDS = (
    "add_node", "remove_node", "rewire", "add_control", "remove_control", "set_attr",
    "remove_function",
)  # fmt: skip


@dataclass(frozen=True)
class Change:
    """One edit: its kind, the node it touched, the rule and match that made it, and details."""

    kind: str
    node: str
    rule: str
    loc: str  # rule file:line:col
    match: str  # "<rule>#<n>", n counting from 1 in application order
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class MatchContext:
    """The rule and match that the edits being recorded belong to."""

    rule: str
    loc: Loc
    match_id: str


class Recorder:
    """Collects changes for the match currently being rewritten."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.context: MatchContext | None = None

    def record(self, kind: str, node: str, **detail: Any) -> None:
        """Append a change attributed to the current match."""
        ctx = self.context
        rule, loc, match = (ctx.rule, str(ctx.loc), ctx.match_id) if ctx else ("", "", "")
        self.changes.append(Change(kind, node, rule, loc, match, detail))

    def mark(self) -> int:
        """A position to roll back to."""
        return len(self.changes)

    def rollback(self, mark: int) -> None:
        """Forget changes recorded after `mark`."""
        del self.changes[mark:]


def jsonable(value: Any) -> Any:
    """Attribute values and the like as plain JSON (arrays as lists, bytes as text)."""
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return value.tolist() if value.size <= 64 else f"<array {value.shape} {value.dtype}>"
        if isinstance(value, np.generic):
            return value.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def changes_json(
    changes: list[Change], per_rule_counts: dict[str, int], warnings: list[str], **extra: Any
) -> str:
    """The `--log` document: counts per rule, warnings, then every change in order."""
    doc = {
        **{k: jsonable(v) for k, v in extra.items()},
        "per_rule_counts": per_rule_counts,
        "warnings": warnings,
        "changes": [c.to_json() for c in changes],
    }
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"
