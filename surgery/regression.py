"""`surgery test`: the rule regression suite — every rule file's cases, checked against goldens.

A case (see `surgery.regression_cases`) names a fixture model and the rule files to apply. The
runner applies them, checks the case's expectations (per-rule match counts, plugin nodes and
their fields, invariants), compares a summary of the rewrite with the case's golden JSON file
(a unified diff on mismatch) and runs the numeric check through `surgery.validate`. `--update`
rewrites the goldens (printing what changed) instead of comparing them.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from surgery.errors import SurgeryError
from surgery.graph import Graph
from surgery.regression_cases import (
    CASES_DIR,
    Case,
    CaseFileError,
    PluginExpect,
    cases_for_rules,
    load_cases,
)
from surgery.shapes import annotate_shapes

GOLDEN_FORMAT = 1
_FLOAT_DIGITS = 7  # significant digits kept in goldens (float32 precision)
_TENSOR_LIMIT = 16  # Const values with more elements are summarised (dtype, shape, checksum)


@dataclass
class CaseResult:
    """What one case produced: failures (empty: passed), diffs, notes, timing."""

    case: Case
    failures: list[str] = field(default_factory=list)
    diff: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """No failure and no golden difference."""
        return not self.failures and not self.diff


# ----------------------------------------------------------------------------- discovery
def discover(path: str | Path) -> list[Path]:
    """The case files to run for PATH: a directory of rule files, a rule file or a case file."""
    target = Path(path)
    if not target.exists():
        raise SurgeryError(f"{target}: no such file or directory")
    if target.is_dir():
        rule_files = sorted(target.glob("*.rules"))
        if not rule_files:
            raise SurgeryError(f"{target}: no *.rules files here")
        return [cases_for_rules(r) for r in rule_files]
    if target.suffix == ".rules":
        return [cases_for_rules(target)]
    if target.suffix == ".toml":
        return [target]
    raise SurgeryError(f"{target}: expected a directory, a .rules file or a .toml case file")


def _missing_cases_message(case_file: Path) -> str:
    rules = case_file.parent.parent / f"{case_file.stem}.rules"
    return (
        f"{rules}: no regression cases (expected {case_file}); every rule file needs at least "
        f"one case: write [[case]] tables there (see {case_file.parent / 'README.md'})"
    )


# ----------------------------------------------------------------------------- models
def load_model(case: Case) -> tuple[Graph, list[str]]:
    """The case's model as a Graph, and the output tensors that must survive the rewrite."""
    from surgery import model_io
    from surgery.models import FIXTURES, fixture_info

    if case.model in FIXTURES:
        info = fixture_info(case.model)
        graph, outputs = model_io.load(info.path), list(info.outputs)
    else:
        path = Path(case.model)
        if not path.is_absolute():
            path = case.case_file.resolve().parent / path
        if not path.exists():
            raise CaseFileError(
                f"{case.case_file}: case {case.name!r}: model {case.model!r} is neither a "
                f"fixture ({', '.join(FIXTURES)}) nor an existing file"
            )
        graph = model_io.load(path)
        outputs = [f"{n.name}:0" for n in graph.graph_outputs() if n.op not in ("NoOp", "Const")]
    if case.add_shapes:
        annotate_shapes(graph)
    return graph, outputs


# ----------------------------------------------------------------------------- summary
def _round(value: float) -> float | str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return float(f"{value:.{_FLOAT_DIGITS}g}")


def jsonable(value: Any) -> Any:
    """Attr and field values as stable JSON: floats to 7 digits, big tensors summarised."""
    if isinstance(value, np.ndarray):
        if value.size > _TENSOR_LIMIT:
            digest = float(np.round(np.asarray(value, np.float64).sum(), 3))
            return {"dtype": str(value.dtype), "shape": list(value.shape), "sum": digest}
        return {"dtype": str(value.dtype), "value": jsonable(value.tolist())}
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return _round(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def node_attrs(node: Any) -> dict[str, Any]:
    """A node's attrs as Python values (without `_output_shapes`), in name order."""
    from surgery.attrs import attr_value

    return {
        key: jsonable(attr_value(node.attr[key]))
        for key in sorted(node.attr)
        if key != "_output_shapes"
    }


def _node_json(node: Any) -> dict[str, Any]:
    """Name, op, inputs (controls as `^x`) and attrs of a node."""
    inputs = [str(r) for r in node.inputs] + [f"^{c}" for c in node.controls]
    return {"name": node.name, "op": node.op, "inputs": inputs, "attrs": node_attrs(node)}


def summarize(before: Graph, after: Graph, result: Any) -> dict[str, Any]:
    """The golden summary of a rewrite: counts, created and changed nodes, removed names."""
    before_names = set(before.names)
    after_names = set(after.names)
    created = [n for n in after if n.name not in before_names]
    removed = sorted(before_names - after_names)
    changed = {}
    for node in after:
        if node.name not in before_names:
            continue
        old = before.node(node.name)
        now = _node_json(node)
        if now != _node_json(old):
            if old.op != node.op:
                now["was"] = old.op
            del now["name"]
            changed[node.name] = now
    ops_before, ops_after = Counter(n.op for n in before), Counter(n.op for n in after)
    return {
        "format": GOLDEN_FORMAT,
        "matches": dict(sorted(result.per_rule_counts.items())),
        "nodes": {"before": len(before), "after": len(after)},
        "ops_added": {op: ops_after[op] - ops_before[op]
                      for op in sorted(ops_after) if ops_after[op] > ops_before[op]},
        "ops_removed": {op: ops_before[op] - ops_after[op]
                        for op in sorted(ops_before) if ops_before[op] > ops_after[op]},
        "created": [_node_json(n) for n in sorted(created, key=lambda n: n.name)],
        "changed": dict(sorted(changed.items())),
        "removed": removed,
        "warnings": [_portable(w) for w in result.warnings],
    }  # fmt: skip


def _portable(message: str) -> str:
    """Rule-file paths reduced to file names, so goldens do not depend on the checkout's path."""
    return re.sub(r"(?:[^\s:'\"]*/)?([\w.-]+\.rules)", r"\1", message)


def golden_text(summary: dict[str, Any]) -> str:
    """The golden file's text: sorted-key JSON, one item per line, trailing newline."""
    return json.dumps(summary, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- expectations
def _field_matches(want: Any, got: Any) -> bool:
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(want) == len(got)
            and all(_field_matches(w, g) for w, g in zip(want, got, strict=True))
        )
    if isinstance(want, bool) or isinstance(got, bool):
        return want == got
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(float(want), float(got), rel_tol=1e-6, abs_tol=1e-9)
    return want == got


def check_plugins(expect: PluginExpect, graph: Graph) -> str | None:
    """None if the graph holds the expected plugin nodes, else what is wrong."""
    nodes = [
        n for n in graph.nodes_by_op(expect.op)
        if expect.name is None or fnmatch.fnmatchcase(n.name, expect.name)
    ]  # fmt: skip
    what = expect.op + (f" named {expect.name!r}" if expect.name else "")
    if expect.fields:
        what += " with " + ", ".join(f"{k} = {v!r}" for k, v in expect.fields.items())
        good = []
        for node in nodes:
            attrs = node_attrs(node)
            if all(k in attrs and _field_matches(v, attrs[k]) for k, v in expect.fields.items()):
                good.append(node)
        if not good and nodes:
            shown = "; ".join(
                f"{n.name}: " + ", ".join(
                    f"{k} = {node_attrs(n).get(k, '<missing>')!r}" for k in expect.fields)
                for n in nodes[:3]
            )  # fmt: skip
            if expect.count != 0:
                return f"expected {what}; found {len(nodes)} {expect.op} node(s) ({shown})"
        nodes = good
    if expect.count is None:
        return None if nodes else f"expected at least one {what}, found none"
    if len(nodes) != expect.count:
        return f"expected {expect.count} {what}, found {len(nodes)}"
    return None


def check_expectations(case: Case, graph: Graph, result: Any, outputs: list[str]) -> list[str]:
    """The case's hand-written expectations that do not hold, as messages."""
    from surgery.ports import parse_tensor

    failures = []
    counts = result.per_rule_counts
    for rule, want in case.matches.items():
        if rule not in counts:
            failures.append(
                f"matches.{rule}: no such rule in {', '.join(str(r.name) for r in case.rules)} "
                f"(rules: {', '.join(counts)})"
            )
        elif counts[rule] != want:
            failures.append(f"rule {rule}: expected {want} match(es), got {counts[rule]}")
    for expect in case.plugins:
        problem = check_plugins(expect, graph)
        if problem:
            failures.append(problem)
    ops = Counter(n.op for n in graph)
    for op in case.absent_ops:
        if ops[op]:
            names = ", ".join(n.name for n in graph.nodes_by_op(op)[:3])
            failures.append(f"invariant absent_ops: {ops[op]} {op} node(s) left ({names})")
    for op in case.present_ops:
        if not ops[op]:
            failures.append(f"invariant present_ops: no {op} node left")
    if case.nodes_min is not None and len(graph) < case.nodes_min:
        failures.append(f"invariant nodes_min: {len(graph)} nodes < {case.nodes_min}")
    if case.nodes_max is not None and len(graph) > case.nodes_max:
        failures.append(f"invariant nodes_max: {len(graph)} nodes > {case.nodes_max}")
    if case.well_formed:
        try:
            graph.check()
        except SurgeryError as exc:
            failures.append(f"invariant well_formed: {exc}")
    if case.outputs_kept:
        lost = [o for o in outputs if parse_tensor(o).node not in graph]
        if lost:
            failures.append(f"invariant outputs_kept: output(s) {', '.join(lost)} removed")
    if case.no_warnings and result.warnings:
        failures.append("invariant no_warnings: " + "; ".join(result.warnings))
    return failures


# ----------------------------------------------------------------------------- numeric
def check_numeric(
    case: Case, original: Graph, rewritten: Graph, changes: Sequence[Any] | None = None
) -> tuple[list[str], list[str]]:
    """(failures, notes) of the numeric check through `surgery.validate`."""
    if case.numeric.skip is not None:
        return [], [f"numeric check skipped: {case.numeric.skip}"]
    from surgery.validate import parse_input_map, sources_from_changes, validate

    num = case.numeric
    try:
        provenance = (
            sources_from_changes([c.to_json() for c in changes])
            if num.per_boundary and changes
            else None
        )
        input_map = [parse_input_map(f"{new}={old}") for new, old in num.input_map.items()]
        report = validate(
            original, rewritten, rtol=num.rtol, atol=num.atol, seed=num.seed,
            per_boundary=num.per_boundary, provenance=provenance, input_map=input_map,
            exclude=num.exclude,
        )  # fmt: skip
    except SurgeryError as exc:
        return [f"numeric check cannot run: {exc}"], []
    text = report.format()
    if report.passed:
        compared = report.compared
        worst_abs = max((c.max_abs for c in compared), default=0.0)
        worst_rel = max((c.max_rel for c in compared), default=0.0)
        boundaries = f", {len(report.boundaries)} boundary(ies)" if report.boundaries else ""
        skipped = f", {len(report.skipped)} not compared" if report.skipped else ""
        note = (
            f"numeric: {len(report.outputs)} output(s){boundaries} within tolerance "
            f"(max abs {worst_abs:.3g}, max rel {worst_rel:.3g}; plugins by reference: "
            f"{len(report.plugins)}{skipped})"
        )
        return [], [note]
    return ["numeric check failed:\n" + _indent(text)], []


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


# ----------------------------------------------------------------------------- running
def run_case(case: Case, update: bool = False, numeric: bool = True) -> CaseResult:
    """Apply the case's rules to its model and check everything the case asks for."""
    from surgery.engine import apply_rules
    from surgery.rule_params import drop_inferred_shapes
    from surgery.rule_parser import load_rules

    start = time.perf_counter()
    out = CaseResult(case)
    try:
        original, outputs = load_model(case)
        rule_files = [load_rules(p) for p in case.rules]
        rewritten = original.copy()
        result = apply_rules(rewritten, rule_files)
        if case.add_shapes:  # recorded for the rules (load_model); stale after the rewrite
            drop_inferred_shapes(rewritten)
    except CaseFileError:
        raise
    except SurgeryError as exc:
        out.failures.append(f"rewrite failed: {exc}")
        out.seconds = time.perf_counter() - start
        return out
    out.failures.extend(check_expectations(case, rewritten, result, outputs))
    actual = golden_text(summarize(original, rewritten, result))
    golden = case.golden
    if update:
        old = golden.read_text(encoding="utf-8") if golden.exists() else None
        if old != actual:
            golden.parent.mkdir(parents=True, exist_ok=True)
            from surgery.atomic_files import write_atomic

            write_atomic(golden, actual.encode("utf-8"))
            if old is None:
                out.notes.append(f"golden created: {golden}")
            else:
                out.notes.append(f"golden updated: {golden}\n" + _unified(old, actual, golden))
    elif not golden.exists():
        out.failures.append(
            f"golden file {golden} is missing; create it with "
            f"`surgery test {case.case_file} --update` (then review and commit it)"
        )
    else:
        expected = golden.read_text(encoding="utf-8")
        if expected != actual:
            out.diff = _unified(expected, actual, golden)
    if numeric:
        failures, notes = check_numeric(case, original, rewritten, result.changes)
        out.failures.extend(failures)
        out.notes.extend(notes)
    out.seconds = time.perf_counter() - start
    return out


def _unified(expected: str, actual: str, golden: Path) -> str:
    lines = difflib.unified_diff(
        expected.splitlines(keepends=True), actual.splitlines(keepends=True),
        fromfile=f"{golden} (golden)", tofile=f"{golden} (actual)",
    )  # fmt: skip
    return "".join(lines)


def run_suite(
    path: str | Path,
    *,
    update: bool = False,
    numeric: bool = True,
    select: str | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Run every case under PATH; 0 when all pass, 1 when any fails or a case file is bad."""
    case_files = discover(path)
    failed = passed = 0
    bad_files: list[str] = []
    for case_file in case_files:
        if not case_file.exists():
            bad_files.append(_missing_cases_message(case_file))
            continue
        try:
            cases = load_cases(case_file)
        except CaseFileError as exc:
            bad_files.append(str(exc))
            continue
        for case in cases:
            if select and not fnmatch.fnmatchcase(case.label, f"*{select}*"):
                continue
            try:
                result = run_case(case, update=update, numeric=numeric)
            except CaseFileError as exc:
                bad_files.append(str(exc))
                continue
            report(result, echo)
            if result.passed:
                passed += 1
            else:
                failed += 1
    for message in bad_files:
        echo(f"ERROR {message}")
    total = passed + failed
    verdict = "ok" if not failed and not bad_files else "FAILED"
    errors = f", {len(bad_files)} case-file error(s)" if bad_files else ""
    echo(f"{verdict}: {passed}/{total} case(s) passed{errors}")
    return 0 if not failed and not bad_files else 1


def report(result: CaseResult, echo: Callable[[str], None]) -> None:
    """Print one case's verdict, then what differs."""
    verdict = "PASS" if result.passed else "FAIL"
    echo(f"{verdict} {result.case.label} ({result.seconds:.1f} s)")
    for failure in result.failures:
        echo(_indent(failure, "  - ").replace("\n", "\n"))
    if result.diff:
        echo(f"  - golden differs from the actual rewrite (accept it with "
             f"`surgery test {result.case.case_file} --update`):")  # fmt: skip
        echo(_indent(result.diff.rstrip("\n")))
    for note in result.notes:
        echo(_indent(note, "    "))


__all__ = [
    "CASES_DIR",
    "CaseResult",
    "check_expectations",
    "discover",
    "golden_text",
    "load_model",
    "run_case",
    "run_suite",
    "summarize",
]
