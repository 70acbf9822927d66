"""Rule regression cases: the TOML case files beside the rule library, read and checked strictly.

`rules/cases/NAME.toml` holds the cases of `rules/NAME.rules`; each case's golden summary lies in
`rules/cases/golden/NAME/CASE.json`. The format (every key, its type, its default) is described
in rules/cases/README.md; an unknown key, a wrong type or a missing required key is a
`CaseFileError` naming the file and the key.

A case's model is a TensorFlow graph (a fixture or a `.pb`), an ONNX model (a `.onnx` path), or
the ONNX export of a TensorFlow one (`export = { input = "NAME=D0,D1,..." }`: `surgery export`
with those pinned inputs, done once and cached beside the fixtures by `surgery.regression`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surgery.errors import SurgeryError

CASES_DIR = "cases"
GOLDEN_DIR = "golden"


class CaseFileError(SurgeryError):
    """A case file that cannot be read or does not follow the format; names file and key."""


@dataclass(frozen=True)
class PluginExpect:
    """Nodes of `op` (optionally named by a glob, with these field values) and how many."""

    op: str
    name: str | None = None
    count: int | None = None  # None: at least one
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Numeric:
    """Run original and rewritten graph through `surgery validate`, or say why not."""

    rtol: float = 1e-5
    atol: float = 1e-5
    seed: int = 0
    skip: str | None = None  # a reason: the check is not run
    per_boundary: bool = False  # also compare every plugin's boundary tensors
    input_map: dict[str, str] = field(default_factory=dict)  # NEW placeholder -> "OLD[:PERM]"
    exclude: tuple[str, ...] = ()  # tensor globs not compared (say why in the case file)
    # ONNX models: input name -> "PluginOp.role", the plugin side input whose implied value
    # (its schema's `side_inputs` reference) both models are fed there
    implied: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Export:
    """Run the case on the ONNX export of its TensorFlow model (`surgery export`)."""

    inputs: tuple[str, ...] = ()  # `--input NAME=D0,D1,...` flags: the pinned placeholders


@dataclass(frozen=True)
class Case:
    """One fixture model, the rule files applied to it, and what must come out."""

    name: str
    case_file: Path
    rules: tuple[Path, ...]
    model: str  # a fixture registry name or a path
    golden: Path | None  # None: no golden (`golden = false`)
    description: str = ""
    add_shapes: bool = False
    matches: dict[str, int] = field(default_factory=dict)
    plugins: tuple[PluginExpect, ...] = ()
    absent_ops: tuple[str, ...] = ()
    present_ops: tuple[str, ...] = ()
    nodes_min: int | None = None
    nodes_max: int | None = None
    well_formed: bool = True
    outputs_kept: bool = True
    no_warnings: bool = False
    numeric: Numeric = field(default_factory=Numeric)
    export: Export | None = None  # None: the model as it is
    settings: dict[str, str] = field(default_factory=dict)  # the rule files' params (`--set`)

    @property
    def is_onnx(self) -> bool:
        """Whether the rules see an ONNX model (an export, or a `.onnx` file)."""
        return self.export is not None or self.model.endswith(".onnx")

    @property
    def label(self) -> str:
        """`leaky_relu::box3d`: the case file's stem and the case name."""
        return f"{self.case_file.stem}::{self.name}"


# ----------------------------------------------------------------------------- typed reading
class _Reader:
    """Reads one table of a case file, remembering the dotted key path for error messages."""

    def __init__(self, path: Path, where: str, table: Any):
        self.path = path
        self.where = where
        if not isinstance(table, dict):
            raise self.error(where, f"expected a table, got {_kind(table)}")
        self.table = dict(table)
        self.used: set[str] = set()

    def error(self, key: str, why: str) -> CaseFileError:
        return CaseFileError(f"{self.path}: {key}: {why}")

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kinds: tuple[type, ...], default: Any = None, *,
            required: bool = False) -> Any:  # fmt: skip
        """The value of `name` if it has one of `kinds`; bools are never ints or floats."""
        self.used.add(name)
        if name not in self.table:
            if required:
                raise self.error(self.key(name), "required key is missing")
            return default
        value = self.table[name]
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            want = " or ".join(k.__name__ for k in kinds)
            raise self.error(self.key(name), f"expected {want}, got {_kind(value)} {value!r}")
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        """A list of strings (default empty)."""
        items = self.get(name, (list,), [])
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(f"{self.key(name)}[{i}]", f"expected str, got {_kind(item)}")
        return tuple(items)

    def done(self) -> None:
        """Refuse keys nobody asked for (typos must not pass silently)."""
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise self.error(self.key(unknown[0]), f"unknown key (known here: {known})")


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "table", list: "array"}
    return names.get(type(value), type(value).__name__)


# ----------------------------------------------------------------------------- loading
def rules_for_cases(case_file: Path) -> Path:
    """The default rule file of `rules/cases/NAME.toml`: `rules/NAME.rules`."""
    return case_file.resolve().parent.parent / f"{case_file.stem}.rules"


def cases_for_rules(rules_file: Path) -> Path:
    """Where the cases of `rules/NAME.rules` live: `rules/cases/NAME.toml`."""
    return rules_file.resolve().parent / CASES_DIR / f"{rules_file.stem}.toml"


def load_cases(path: str | Path) -> list[Case]:
    """Every case of one case file, in file order."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaseFileError(f"{path}: no such case file") from None
    except tomllib.TOMLDecodeError as exc:
        raise CaseFileError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"{path}: cannot read: {exc}") from None
    top = _Reader(path, "", data)
    base = path.resolve().parent
    rule_names = top.strings("rules")
    rules = tuple(base / r for r in rule_names) or (rules_for_cases(path),)
    for i, rule in enumerate(rules):
        if not rule.is_file():
            key = f"rules[{i}]" if rule_names else "rules"
            raise top.error(key, f"rule file {rule} does not exist")
    raw_cases = top.get("case", (list,), required=True)
    top.done()
    if not raw_cases:
        raise top.error("case", "no cases ([[case]] tables)")
    cases = [_case(path, base, rules, i, raw) for i, raw in enumerate(raw_cases)]
    seen: set[str] = set()
    for i, case in enumerate(cases):
        if case.name in seen:
            raise top.error(f"case[{i}].name", f"duplicate case name {case.name!r}")
        seen.add(case.name)
    return cases


def _case(path: Path, base: Path, rules: tuple[Path, ...], index: int, raw: Any) -> Case:
    r = _Reader(path, f"case[{index}]", raw)
    name = r.get("name", (str,), required=True)
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise r.error(r.key("name"), f"{name!r}: use letters, digits, '_' and '-' only")
    model = r.get("model", (str,), required=True)
    golden_text = r.get("golden", (str, bool))
    if golden_text is True:
        raise r.error(r.key("golden"), "true: give a path, or false for no golden")
    golden: Path | None = None  # `golden = false`: the rewrite's node names are not reproducible
    if golden_text is not False:
        golden = base / (golden_text or f"{GOLDEN_DIR}/{path.stem}/{name}.json")
    description = r.get("description", (str,), "")
    add_shapes = r.get("add_shapes", (bool,), False)
    matches = _matches(path, r)
    plugins = tuple(
        _plugin(path, f"{r.key('plugins')}[{i}]", item)
        for i, item in enumerate(r.get("plugins", (list,), []))
    )
    inv = _Reader(path, r.key("invariants"), r.get("invariants", (dict,), {}))
    invariants = dict(
        absent_ops=inv.strings("absent_ops"),
        present_ops=inv.strings("present_ops"),
        nodes_min=inv.get("nodes_min", (int,)),
        nodes_max=inv.get("nodes_max", (int,)),
        well_formed=inv.get("well_formed", (bool,), True),
        outputs_kept=inv.get("outputs_kept", (bool,), True),
        no_warnings=inv.get("no_warnings", (bool,), False),
    )
    inv.done()
    if "numeric" not in r.table:
        raise r.error(
            r.key("numeric"), "required key is missing: give tolerances "
            "(numeric = { rtol = 1e-5, atol = 1e-5 }) or a reason (numeric = { skip = \"...\" })",
        )  # fmt: skip
    num = _Reader(path, r.key("numeric"), r.get("numeric", (dict,)))
    numeric = Numeric(
        rtol=float(num.get("rtol", (float, int), 1e-5)),
        atol=float(num.get("atol", (float, int), 1e-5)),
        seed=num.get("seed", (int,), 0),
        skip=num.get("skip", (str,)),
        per_boundary=num.get("per_boundary", (bool,), False),
        input_map=_input_map(path, num),
        exclude=num.strings("exclude"),
        implied=_implied(num),
    )
    num.done()
    export = _export(r)
    settings = _settings(r)
    r.done()
    case = Case(
        name=name, case_file=path, rules=rules, model=model, golden=golden,
        description=description, add_shapes=add_shapes, matches=matches, plugins=plugins,
        numeric=numeric, export=export, settings=settings, **invariants,
    )  # fmt: skip
    _check_format(r, case)
    return case


def _export(r: _Reader) -> Export | None:
    """`export = { input = "NAME=D0,D1,..." }` (or a list of such flags); None when absent."""
    raw = r.get("export", (dict,))
    if raw is None:
        return None
    e = _Reader(r.path, r.key("export"), raw)
    flags = e.get("input", (str, list), [])
    inputs = (flags,) if isinstance(flags, str) else e.strings("input")
    for i, flag in enumerate(inputs):
        name, sep, dims = flag.partition("=")
        if not name.strip() or not sep or not dims.strip():
            raise e.error(f"{e.key('input')}[{i}]", f"{flag!r}: expected NAME=D0,D1,...")
    e.done()
    return Export(inputs=inputs)


def _settings(r: _Reader) -> dict[str, str]:
    """`set = { NAME = VALUE }`: values of the rule files' params, as `--set NAME=VALUE`."""
    table = r.get("set", (dict,), {})
    out = {}
    for name, value in table.items():
        if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
            out[name] = ",".join(str(v) for v in value)
        elif isinstance(value, str | int | float | bool):
            out[name] = str(value).lower() if isinstance(value, bool) else str(value)
        else:
            raise r.error(f"{r.key('set')}.{name}",
                          f"expected a string, number, bool or list of numbers, got "
                          f"{_kind(value)}")  # fmt: skip
    return out


def _implied(num: _Reader) -> dict[str, str]:
    """`implied = { "input_anchors:0" = "ProposalLayer_TRT.anchors" }`: input -> "Op.role"."""
    table = num.get("implied", (dict,), {})
    for name, spec in table.items():
        op, dot, role = spec.partition(".") if isinstance(spec, str) else ("", "", "")
        if not (op and dot and role):
            raise num.error(
                f"{num.key('implied')}.{name}",
                f'expected "PluginOp.role" (a plugin\'s side input), got {spec!r}',
            )
    return dict(table)


def _check_format(r: _Reader, case: Case) -> None:
    """Keys that hold for one model format only."""
    if case.export is not None and case.model.endswith((".onnx", ".pbtxt")):
        raise r.error(r.key("export"), f"model {case.model!r}: export takes a fixture or a .pb")
    if case.is_onnx:
        refused = [
            ("add_shapes", case.add_shapes, "TensorFlow shape inference"),
            ("numeric.per_boundary", case.numeric.per_boundary, "TensorFlow graphs only"),
            ("numeric.input_map", case.numeric.input_map, "both models keep their inputs"),
        ]
        for key, value, why in refused:
            if value:
                raise r.error(r.key(key), f"not for an ONNX model ({why})")
    elif case.numeric.implied:
        raise r.error(
            r.key("numeric.implied"),
            "for ONNX models only: a TensorFlow rewrite "
            "records its side inputs (scope `side`) and validate feeds them itself",
        )


def _input_map(path: Path, num: _Reader) -> dict[str, str]:
    """`input_map = { Input = "image_tensor:0,3,1,2" }`: placeholder -> "OLD[:PERM]"."""
    table = num.get("input_map", (dict,), {})
    for new, old in table.items():
        if not isinstance(old, str):
            raise num.error(f"{num.key('input_map')}.{new}",
                            f"expected str \"OLD[:PERM]\", got {_kind(old)}")  # fmt: skip
    return dict(table)


def _matches(path: Path, r: _Reader) -> dict[str, int]:
    table = r.get("matches", (dict,), {})
    for rule, count in table.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise r.error(f"{r.key('matches')}.{rule}", f"expected a count >= 0, got {count!r}")
    return dict(table)


def _plugin(path: Path, where: str, raw: Any) -> PluginExpect:
    p = _Reader(path, where, raw)
    expect = PluginExpect(
        op=p.get("op", (str,), required=True),
        name=p.get("name", (str,)),
        count=p.get("count", (int,)),
        fields=dict(p.get("fields", (dict,), {})),
    )
    p.done()
    return expect
