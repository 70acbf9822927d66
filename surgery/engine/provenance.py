"""Provenance: which rule (and which of its matches) added, removed or rewired what.

Every graph edit the rewriter makes is recorded as a `Change`; `changes_json` writes them for
`surgery apply --log` and the report/diff tools read them back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from surgery.ir.ports import TensorRef
from surgery.lang.rule_ast import Loc

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


@dataclass(slots=True)
class MatchContext:
    """The rule and match that the edits being recorded belong to (the match as its number:
    its `<rule>#<n>` text is made only when a change is read)."""

    rule: str
    loc: Loc
    number: int  # counting from 1 in application order

    @property
    def match_id(self) -> str:
        return f"{self.rule}#{self.number}"


class Recorder:
    """Collects changes for the match currently being rewritten.

    Recording is cheap: an entry is kept raw, as one flat tuple (kind, node, match context, the
    detail's keys then its values, or a function then its arguments making the detail), and
    turned into a `Change` only when `changes` is read, so that a million-node rewrite pays
    for provenance text and dicts only if someone reads them.
    """

    def __init__(self) -> None:
        self._items: list[Any] = []  # Change, or a raw tuple not yet made into one
        self._made = 0  # items before this index are Changes
        self.context: MatchContext | None = None

    def record(self, kind: str, node: str, keys: tuple[str, ...] = (), *values: Any) -> None:
        """Append a change attributed to the current match; its detail maps `keys` to `values`
        (TensorRef values become text when read)."""
        self._items.append((kind, node, self.context, keys, *values))

    def record_lazy(self, kind: str, node: str, detail: Callable[..., dict], *args: Any) -> None:
        """Like `record`, with the detail made by `detail(*args)` only when the change is read."""
        self._items.append((kind, node, self.context, detail, *args))

    @property
    def changes(self) -> list[Change]:
        """Every change so far, in order."""
        items = self._items
        if self._made < len(items):
            for i in range(self._made, len(items)):
                items[i] = _make_change(*items[i])
            self._made = len(items)
        return items

    def __len__(self) -> int:
        return len(self._items)

    def mark(self) -> int:
        """A position to roll back to."""
        return len(self._items)

    def rollback(self, mark: int) -> None:
        """Forget changes recorded after `mark`."""
        del self._items[mark:]
        self._made = min(self._made, mark)


class ChangeLog(Sequence):
    """The changes of an apply, made into `Change` objects on first read (`len` is free)."""

    def __init__(self, recorder: Recorder):
        self._recorder = recorder

    def __len__(self) -> int:
        return len(self._recorder)

    def __getitem__(self, index: Any) -> Any:
        return self._recorder.changes[index]

    def __iter__(self) -> Iterator[Change]:
        return iter(self._recorder.changes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChangeLog | list):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"ChangeLog({len(self)} changes)"


def _text(value: Any) -> Any:
    if isinstance(value, TensorRef):
        return str(value)
    if isinstance(value, list) and value and isinstance(value[0], TensorRef):
        return [str(v) for v in value]
    return value


def _make_change(
    kind: str, node: str, ctx: MatchContext | None, keys: Any, *values: Any
) -> Change:
    if callable(keys):
        detail = keys(*values)
    else:
        detail = {k: _text(v) for k, v in zip(keys, values, strict=True)}
    if ctx is None:
        return Change(kind, node, "", "", "", detail)
    return Change(kind, node, ctx.rule, str(ctx.loc), ctx.match_id, detail)


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
    changes: Sequence[Change], per_rule_counts: dict[str, int], warnings: list[str], **extra: Any
) -> str:
    """The `--log` document: counts per rule, warnings, then every change in order."""
    doc = {
        **{k: jsonable(v) for k, v in extra.items()},
        "per_rule_counts": per_rule_counts,
        "warnings": warnings,
        "changes": [c.to_json() for c in changes],
    }
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"
