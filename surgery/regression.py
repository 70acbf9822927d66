"""`surgery test`: the rule regression suite — every rule file's cases, checked against goldens.

A case (see `surgery.regression_cases`) names a fixture model and the rule files to apply. The
runner applies them, checks the case's expectations (per-rule match counts, plugin nodes and
their fields, invariants), compares a summary of the rewrite with the case's golden JSON file
(a unified diff on mismatch) and runs the numeric check through `surgery.backends.validate` (ONNX
models: `surgery.backends.validate_onnx`). `--update` rewrites the goldens (printing what changed)
instead of comparing them. A case with `export` runs on the ONNX export of its TensorFlow model,
made once by `surgery export` and cached beside the fixtures (`exported_model`).
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from surgery.errors import SurgeryError
from surgery.ir.graph import Graph
from surgery.passes.shapes import annotate_shapes
from surgery.regression_cases import (
    CASES_DIR,
    Case,
    CaseFileError,
    PluginExpect,
    cases_for_rules,
    load_cases,
)

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
# What an export's bytes depend on besides the TensorFlow model and the flags: surgery's export
# code (relative to surgery/) and the converter's distributions.
_EXPORT_SOURCES = ("backends/onnx_export.py", "passes/input_shapes.py", "backends/export")
_EXPORT_DISTS = ("tensorflow", "tf2onnx", "onnx")


def _model_file(case: Case) -> tuple[Path, tuple[str, ...] | None]:
    """The case's model file, and the fixture's output tensors (None for a path)."""
    from surgery.models import FIXTURES, fixture_info

    if case.model in FIXTURES:
        info = fixture_info(case.model)
        return info.path, tuple(info.outputs)
    path = Path(case.model)
    if not path.is_absolute():
        path = case.case_file.resolve().parent / path
    if not path.exists():
        raise CaseFileError(
            f"{case.case_file}: case {case.name!r}: model {case.model!r} is neither a "
            f"fixture ({', '.join(FIXTURES)}) nor an existing file"
        )
    return path, None


def _export_key(source: Path, inputs: Sequence[str]) -> str:
    """16 hex digits of SHA-256 over what an export of `source` with `inputs` depends on."""
    from importlib import metadata

    from surgery.backends.onnx_export import DEFAULT_OPSET

    digest = hashlib.sha256()
    with source.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(f"\0{DEFAULT_OPSET}\0{json.dumps(list(inputs))}".encode())
    for dist in _EXPORT_DISTS:
        try:
            digest.update(f"\0{dist} {metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"\0{dist} -".encode())
    package = Path(__file__).resolve().parent
    for entry in _EXPORT_SOURCES:
        for path in sorted([package / entry] if entry.endswith(".py") else
                           (package / entry).rglob("*.py")):  # fmt: skip
            digest.update(f"\0{path.relative_to(package)}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def exported_model(case: Case) -> Path:
    """The ONNX export of the case's TensorFlow model with its `export` inputs pinned: made by
    `surgery export` in a process of its own on first use (tf2onnx numbers the nodes it makes
    from process-wide counters, so an export made after others in one process has other names,
    and goldens would depend on what ran before), then read from the fixture cache (keyed by the
    model's bytes, the flags, surgery's export code and the converter's versions; written
    atomically, so concurrent runs at worst both convert)."""
    from surgery.models import default_cache_dir

    if case.export is None:
        raise CaseFileError(f"{case.case_file}: case {case.name!r} has no `export`")
    source, _ = _model_file(case)
    inputs = case.export.inputs
    cache = default_cache_dir()
    target = cache / f"{source.stem}.export-{_export_key(source, inputs)}.onnx"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".onnx", dir=cache, prefix=".export-")
    os.close(handle)
    argv = [sys.executable, "-m", "surgery", "export", str(source), "-o", temporary]
    for flag in inputs:
        argv += ["--input", flag]
    env = {**os.environ, "PYTHONHASHSEED": "0", "SURGERY_MALLOC": "default"}
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode
            raise CaseFileError(
                f"{case.case_file}: case {case.name!r}: `surgery export` failed: {why}"
            )
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


def model_path(case: Case) -> Path:
    """The file the case's rules are applied to (for an `export` case, the cached export)."""
    return exported_model(case) if case.export is not None else _model_file(case)[0]


def load_model(case: Case) -> tuple[Graph, list[str]]:
    """The case's model as a Graph, and the output tensors that must survive the rewrite (of an
    ONNX model: its output sinks, which keep the model's interface)."""
    from surgery.ir import model_io
    from surgery.ir.onnx_io import OUTPUT_OP

    path = model_path(case)
    graph = model_io.load(path)
    if case.is_onnx:
        outputs = [f"{n.name}:0" for n in graph if n.op == OUTPUT_OP]
    else:
        _, fixture_outputs = _model_file(case)
        outputs = (
            list(fixture_outputs) if fixture_outputs is not None else
            [f"{n.name}:0" for n in graph.graph_outputs() if n.op not in ("NoOp", "Const")]
        )  # fmt: skip
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
    """A node's attrs as Python values (without `_output_shapes`, nor an ONNX node's
    bookkeeping: `surgery.ir.onnx_io.shown_attrs`), in name order."""
    from surgery.ir.attrs import attr_value
    from surgery.ir.onnx_io import shown_attrs

    return {
        key: jsonable(attr_value(node.attr[key]))
        for key in shown_attrs(node)
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
    from surgery.ir.ports import parse_tensor

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
    """(failures, notes) of the numeric check through `surgery.backends.validate`."""
    if case.numeric.skip is not None:
        return [], [f"numeric check skipped: {case.numeric.skip}"]
    if case.is_onnx:
        return _check_numeric_onnx(case, original, rewritten)
    from surgery.backends.validate import parse_input_map, sources_from_changes, validate

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
    return _verdict(report)


def onnx_feeds(case: Case, original: Graph, rewritten: Graph) -> dict[str, np.ndarray]:
    """Inputs for both ONNX models, by input name: seeded random ones, and for each input of
    `numeric.implied` the value that plugin side input implies (`implied_feeds`, as if the
    rewrite had recorded the side input the way a TensorFlow collapse does)."""
    from surgery.backends.validate_inputs import implied_feeds, random_inputs
    from surgery.ir.ports import SIDE_ATTR_PREFIX
    from surgery.passes.onnx_shapes import input_names

    names = input_names(original)  # ONNX name -> Placeholder
    marked = rewritten.copy()
    for name, spec in case.numeric.implied.items():
        op, _, role = spec.partition(".")
        if name not in names:
            raise SurgeryError(f"numeric.implied: the model has no input {name!r} (inputs: "
                               f"{', '.join(names)})")  # fmt: skip
        plugins = marked.nodes_by_op(op)
        if not plugins:
            raise SurgeryError(f"numeric.implied.{name}: the rewrite made no {op} node")
        for node in plugins:
            node.attr[SIDE_ATTR_PREFIX + role].s = f"{names[name]}:0".encode()
    onnx_name = {ir: name for name, ir in names.items()}
    skip = {names[name] for name in case.numeric.implied}
    feeds = random_inputs(original, seed=case.numeric.seed, skip=skip)
    for feed in implied_feeds(original, marked):
        if feed.value is not None:
            feeds[feed.tensor.partition(":")[0]] = feed.value
    return {onnx_name[ir]: value for ir, value in feeds.items()}


def _check_numeric_onnx(
    case: Case, original: Graph, rewritten: Graph
) -> tuple[list[str], list[str]]:
    """`_check_numeric` for ONNX models: both run by onnxruntime (plugins by reference) through
    `surgery.backends.validate_onnx`, the rewrite saved to a temporary file for it."""
    from surgery.backends.onnx_plugins import save_graph
    from surgery.backends.validate_onnx import validate_onnx

    num = case.numeric
    try:
        feeds = onnx_feeds(case, original, rewritten)
        with tempfile.TemporaryDirectory(prefix="surgery-case-") as folder:
            saved = save_graph(rewritten, Path(folder) / "rewritten.onnx")
            report = validate_onnx(model_path(case), saved, feeds, rtol=num.rtol, atol=num.atol,
                                   exclude=num.exclude)  # fmt: skip
    except SurgeryError as exc:
        return [f"numeric check cannot run: {exc}"], []
    return _verdict(report)


def _verdict(report: Any) -> tuple[list[str], list[str]]:
    """(failures, notes) of a validation report."""
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
    from surgery.engine.run import apply_rules
    from surgery.lang.rule_parser import load_rules
    from surgery.passes.prepare import drop_inferred_shapes

    start = time.perf_counter()
    out = CaseResult(case)
    try:
        original, outputs = load_model(case)
        rule_files = [load_rules(p) for p in case.rules]
        rewritten = original.copy()
        result = apply_rules(rewritten, rule_files, settings=case.settings)
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
    if golden is None:
        out.notes.append("no golden (golden = false): matches, plugins, invariants and numbers")
    elif update:
        old = golden.read_text(encoding="utf-8") if golden.exists() else None
        if old != actual:
            golden.parent.mkdir(parents=True, exist_ok=True)
            from surgery.ir.atomic_files import write_atomic

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
    "exported_model",
    "golden_text",
    "load_model",
    "model_path",
    "onnx_feeds",
    "run_case",
    "run_suite",
    "summarize",
]
