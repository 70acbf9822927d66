"""What `surgery validate` needs to know of a plugin beyond its computation: the optional schema
keys `"side_inputs"`, `"deviations"` (plugin level) and `"compare"` (per output), parsed and
checked here for `surgery.ops.plugin_schema`.

```json
"side_inputs": [{"name": "anchors", "reference": "implied_anchors", "doc": "..."}],
"deviations": [{"name": "border", "reference": "border_deviation", "doc": "..."}],
"outputs": [{"name": "detections", ...,
             "compare": {"padding": {"column": 4, "name": "class", "plugin": -1, "original": 0,
                                     "doc": "..."}}}]
```

A side input is a tensor the replaced subgraph read that the plugin does not take (a collapse
records it on the node as attr `_side_<name>`); its `reference`, a function of the plugin's
reference module (`plugins/reference/`), gives the value the original graph must be fed there for
the plugin to be equivalent (`plugins.registry.implied_value`). A deviation is a known difference
from the TF subgraph; its function says, from the plugin's input values and fields, how much of
them it touches, or None (`plugins.registry.deviations`). `compare.padding`: see `PaddingSpec`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surgery.errors import RuleError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class PaddingSpec:
    """An output's padding rows, e.g. `{"column": 4, "name": "class", "plugin": -1, "original": 0}`:
    the output is rows (the last axis holds the columns); where `column` holds `plugin` in the
    plugin's output and `original` in the original graph's, the row is padding. Validate
    compares the other rows as usual, requires padding in both graphs, and there takes `plugin`
    for `original` in that column."""

    column: int
    plugin: float
    original: float
    name: str = ""  # what the column holds, for reports ("class")
    doc: str = ""

    def describe(self) -> str:
        """`class -1 vs 0`."""
        what = self.name or f"column {self.column}"
        return f"{what} {_number(self.plugin)} vs {_number(self.original)}"


@dataclass(frozen=True)
class CompareSpec:
    """How validate compares an output with the original's tensor (`"compare"` in the JSON)."""

    padding: PaddingSpec


@dataclass(frozen=True)
class NamedReference:
    """A side input or a known deviation: its name, doc, and `reference`, the name of a function
    of the plugin's reference module."""

    name: str
    reference: str
    doc: str = ""


def _number(value: float) -> str:
    """`-1` for -1.0, `0.5` for 0.5."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def compare_spec(raw: Any, name: str, shape: Any, path: Path) -> CompareSpec | None:
    """An output's `"compare"` object, checked: only `padding`, a column within the last dim."""
    if raw is None:
        return None
    where = f"{path}: output {name!r} compare"
    if not isinstance(raw, dict) or set(raw) != {"padding"}:
        raise RuleError(f"{where}: expected an object with the key 'padding'")
    pad = raw["padding"]
    column = pad.get("column") if isinstance(pad, dict) else None
    numbers: list[Any] = [pad.get("plugin"), pad.get("original")] if column is not None else []
    if (not isinstance(pad, dict) or set(pad) - {"column", "plugin", "original", "name", "doc"}
            or isinstance(column, bool) or not isinstance(column, int) or column < 0
            or not numbers or any(isinstance(v, bool) or not isinstance(v, int | float)
                                  for v in numbers)):  # fmt: skip
        raise RuleError(
            f"{where}: padding needs a column (a whole number >= 0) and the numbers plugin "
            f"and original (and may have a name and a doc), got {pad!r}"
        )
    last = shape[-1] if isinstance(shape, list) and shape else None  # as written in the JSON
    if isinstance(last, int) and not isinstance(last, bool) and column >= last:
        raise RuleError(f"{where}: padding column {column} is beyond the last dim ({last})")
    spec = PaddingSpec(column, float(numbers[0]), float(numbers[1]),
                       str(pad.get("name", "")), str(pad.get("doc", "")))  # fmt: skip
    return CompareSpec(spec)


def named_references(raw: Any, key: str, path: Path) -> tuple[NamedReference, ...]:
    """`side_inputs` / `deviations`: a list of {name, reference, doc}, names unique."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RuleError(f"{path}: '{key}' must be a list of objects")
    found: list[NamedReference] = []
    for item in raw:
        if (
            not isinstance(item, dict)
            or set(item) - {"name", "reference", "doc"}
            or not all(isinstance(item.get(k), str) and item[k] for k in ("name", "reference"))
            or not all(_IDENTIFIER.fullmatch(item[k]) for k in ("name", "reference"))
        ):
            raise RuleError(
                f"{path}: each of '{key}' needs a name and a reference (identifiers) and may "
                f"have a doc, got {item!r}"
            )
        if any(f.name == item["name"] for f in found):
            raise RuleError(f"{path}: '{key}' names {item['name']!r} twice")
        found.append(NamedReference(item["name"], item["reference"], str(item.get("doc", ""))))
    return tuple(found)
