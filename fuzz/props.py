"""The fuzzing properties: each `check_*` runs one case and returns an outcome label ("ok",
"error:ModelLoadError", ...), or raises `Failure` when the case breaks the contract:

* an input, however broken, ends in a `SurgeryError` (library) or exit 1/2 with one line on
  stderr and no traceback (CLI), or in a valid result; never another exception, never longer
  than the case's time bound (`bounded`), never a file at `-o` (or a stray temporary file beside
  it) after a failure;
* a random valid graph rewritten by a shipped rule file is a valid graph (no dangling input,
  acyclic, ports in range), byte-identical run to run, and where the rules keep the graph's
  meaning, numerically equal to the original (`surgery.backends.validate`, TensorFlow).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fuzz.graphs import Built
from fuzz.mutate import shipped_rules
from surgery.errors import SurgeryError
from surgery.ir.graph import Graph
from surgery.ir.protos import GraphDef

ROOT = Path(__file__).resolve().parent.parent
# Rule files whose rules have no scope contracts: on a valid graph they must apply cleanly.
STRICT_FILES = ("leaky_relu", "upsample_nearest", "l2_normalize", "flatten_reshape")
# Rule files that keep the graph's meaning (plugins run by their NumPy references): numeric.
SEMANTIC_FILES = ("leaky_relu", "l2_normalize", "upsample_nearest", "flatten_reshape")


class Failure(AssertionError):
    """A case that broke the contract. `signature` groups failures with one cause."""

    def __init__(self, signature: str, message: str) -> None:
        super().__init__(f"{signature}: {message}")
        self.signature = signature
        self.message = message


# Failures found and reported, not fixed yet (in files the fuzz does not own): a signature
# containing the key is "known". Each has a strict xfail reproduction in tests/test_fuzz.py,
# which turns red once the bug is fixed: then remove the entry.
KNOWN: dict[str, str] = {}  # every failure the fuzzing found is fixed (tests/test_fuzz.py)


def known(signature: str) -> str | None:
    """Why a failure with this signature is known, or None."""
    return next((why for key, why in KNOWN.items() if key in signature), None)


class CaseTimeout(BaseException):
    """A case ran past its time bound (a BaseException: library code's `except Exception`
    must not swallow it)."""


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout in the main thread after `seconds` (SIGALRM); no-op off the main
    thread or where SIGALRM does not exist."""
    import threading

    main = threading.current_thread() is threading.main_thread()
    if not hasattr(signal, "setitimer") or not main:
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"case ran past {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _where(exc: BaseException) -> str:
    """file:function:line of the innermost frame in the project (else the innermost one)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(str(ROOT))
            and not any(part in f.filename for part in ("/fuzz/", "/.venv/", "site-packages"))]
    if not (ours or frames):
        return "?"
    frame = (ours or frames)[-1]
    path = os.path.relpath(frame.filename, ROOT) if frame.filename.startswith(str(ROOT)) else (
        Path(frame.filename).name)  # fmt: skip
    return f"{path}:{frame.name}:{frame.lineno}"


def unexpected(stage: str, exc: BaseException) -> Failure:
    """A Failure for an exception that is no SurgeryError, with its traceback's ends."""
    if isinstance(exc, CaseTimeout):
        return Failure(f"{stage}: hang (> time bound) in {_where(exc)}", str(exc))
    lines = traceback.format_exception(exc)
    text = "".join(lines).rstrip().splitlines()
    shown = "\n".join(text[:3] + ["    ..."] + text[-6:]) if len(text) > 10 else "\n".join(text)
    return Failure(f"{stage}: {type(exc).__name__} in {_where(exc)}", shown)


def guarded(stage: str, fn: Callable[[], Any]) -> tuple[Any, SurgeryError | None]:
    """(result, None), or (None, the SurgeryError); any other exception is a Failure."""
    try:
        return fn(), None
    except SurgeryError as exc:
        return None, exc
    except Failure:
        raise
    except BaseException as exc:  # noqa: BLE001 (classifying them is the point)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise unexpected(stage, exc) from None


# ----------------------------------------------------------------------------- shared state
@functools.cache
def rule_files() -> dict[str, Any]:
    """stem -> the shipped rule file, parsed and its params and lets bound once per process
    (`apply_rules` would bind them again on every call: the fuzz runs thousands)."""
    import dataclasses

    from surgery.lang.rule_params import bind_file
    from surgery.lang.rule_parser import parse_rules

    out = {}
    for stem, text in shipped_rules().items():
        bound = bind_file(parse_rules(text, f"rules/{stem}.rules"))
        out[stem] = dataclasses.replace(bound, params=(), lets=())
    return out


@functools.cache
def scratch() -> Path:
    """A per-process directory for the files cases are read from and written to."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="surgery-fuzz-", dir=base))
    import atexit

    atexit.register(shutil.rmtree, path, True)
    return path


def _write(name: str, data: bytes) -> Path:
    path = scratch() / name
    path.write_bytes(data)
    return path


def copy_graph(graph_def: GraphDef) -> Graph:
    copy = GraphDef()
    copy.CopyFrom(graph_def)
    return Graph(copy)


# ----------------------------------------------------------------------------- graph checks
@functools.cache
def _catalog() -> Any:
    from surgery.ops.plugin_schema import load_catalog

    return load_catalog()


def _num_outputs(node: Any) -> int | None:
    """How many outputs `node` has, where that is known (built-in op table, plugin schema)."""
    from surgery.errors import SurgeryError as Err
    from surgery.ops.opdefs import output_roles

    catalog = _catalog()
    if node.op in catalog:
        low, high = catalog.get(node.op).output_count()
        return high
    try:
        roles = output_roles(node.op, node.attr, use_tf=False)
    except Err:
        return None
    if any(r.endswith("[*]") for r in roles):
        return None
    return len(roles)


def defects(graph: Graph, stage: str) -> list[str]:
    """surgery.ops.graph_check.find_defects (without TensorFlow) as texts; a SurgeryError from it
    is a defect too, any other exception a Failure."""
    from surgery.ops.graph_check import find_defects

    found, error = guarded(f"{stage} find_defects", lambda: find_defects(graph, use_tf=False))
    return [str(error)] if error is not None else [d.text for d in found]


def graph_problems(graph: Graph) -> list[str]:
    """What makes `graph` invalid: dangling inputs, a cycle, ports beyond a producer's outputs
    (our own checks, then graph_check.find_defects')."""
    from surgery.errors import GraphError

    problems = [f"{n} reads missing {i}" for n, i in graph.dangling_inputs()]
    try:
        graph.topological_order()
    except GraphError as exc:
        problems.append(str(exc))
    for node in graph:
        for ref in node.inputs:
            producer = graph.get(ref.node)
            if producer is None:
                continue
            count = _num_outputs(producer)
            if count is not None and ref.port >= count:
                problems.append(f"{node.name} reads {ref}, but {producer.op} has {count} output(s)")
    return problems or defects(graph, "check")


def _acyclic(graph: Graph) -> bool:
    from surgery.errors import GraphError

    try:
        graph.topological_order()
    except GraphError:
        return False
    return True


def _missing_sources(graph: Graph) -> set[str]:
    """Names read (data or control) that no node has."""
    missing: set[str] = set()
    for node in graph:
        missing.update(r.node for r in node.inputs if r.node not in graph)
        missing.update(c for c in node.controls if c not in graph)
    return missing


def apply_checked(graph: Graph, stem: str, stage: str) -> tuple[Any, SurgeryError | None]:
    """Apply shipped rule file `stem`; the result must not add dangling inputs or a cycle that
    the input graph did not have (the engine checks every match: it promises that)."""
    from surgery.engine.run import apply_rules

    missing = _missing_sources(graph)
    acyclic = _acyclic(graph)
    clean = not defects(graph, stage)
    result, error = guarded(stage, lambda: apply_rules(graph, [rule_files()[stem]]))
    if error is None:
        if clean:
            found = defects(graph, stage)
            if found:
                raise Failure(f"{stage}: {stem} made a valid graph invalid", "; ".join(found[:3]))
        new = _missing_sources(graph) - missing
        if new:
            raise Failure(f"{stage}: {stem} left new dangling inputs",
                          ", ".join(sorted(new)[:5]))  # fmt: skip
        if acyclic and not _acyclic(graph):
            raise Failure(f"{stage}: {stem} made a cycle", "")
        guarded(stage + " serialize", graph.serialize)
    return result, error


def _outcome(error: SurgeryError | None, stage: str = "") -> str:
    if error is None:
        return "ok" if not stage else f"ok:{stage}"
    return f"error:{type(error).__name__}"


# ----------------------------------------------------------------------------- library properties
def check_model_bytes(data: bytes, suffix: str, stem: str) -> str:
    """Load `data` as a `.pb`/`.pbtxt` file, then apply the shipped rule file `stem`."""
    from surgery.ir import model_io

    path = _write(f"model{suffix}", data)
    graph, error = guarded("load", lambda: model_io.load(path))
    if error is not None:
        return _outcome(error)
    _round_trip(graph, suffix)
    _, error = apply_checked(graph, stem, "apply")
    return _outcome(error, "apply")


def _round_trip(graph: Graph, suffix: str) -> None:
    """What loaded saves, and what it saved loads back to the same bytes (load-then-save is
    byte-identical once the file is in our deterministic form)."""
    from surgery.ir import model_io

    first, error = guarded("save", lambda: model_io.serialize(graph.to_graph_def(),
                                                              suffix == ".pbtxt"))  # fmt: skip
    if error is not None:
        raise Failure(f"save: {type(error).__name__} for a graph that loaded", str(error)[:300])
    path = _write(f"again{suffix}", first)
    again, error = guarded("reload", lambda: model_io.load(path))
    if error is not None:
        raise Failure(f"reload: {type(error).__name__} for a file we wrote", str(error)[:300])
    second = model_io.serialize(again.to_graph_def(), suffix == ".pbtxt")
    if first != second:
        raise Failure("round trip: load-save-load-save changed the bytes", f"{len(first)} bytes")


def check_rule_text(text: str, built: Built) -> str:
    """Parse `text` as a rule file, lint it, apply it to a valid graph: clean errors only, and
    a successful apply leaves a valid graph."""
    from surgery.engine.run import apply_rules
    from surgery.lang.rule_check import check_rules
    from surgery.lang.rule_parser import parse_rules

    rule_file, error = guarded("parse", lambda: parse_rules(text, "fuzz.rules"))
    if error is not None:
        return _outcome(error)
    _, error = guarded("check", lambda: check_rules(rule_file, use_tf=False))
    if error is not None:
        return "error:check:" + type(error).__name__
    graph = copy_graph(built.graph_def)
    _, error = guarded("apply", lambda: apply_rules(graph, [rule_file]))
    if error is None:
        problems = graph_problems(graph)
        if problems:
            raise Failure("apply: a mutated rule file left an invalid graph",
                          "; ".join(problems[:3]))  # fmt: skip
    return _outcome(error, "apply")


def check_graph_rules(built: Built) -> str:
    """Every shipped rule file on a random valid graph: valid result, same bytes twice;
    files without scope contracts must not fail on a valid graph. Every file is tried; the
    first failure not in KNOWN is raised (else the first known one)."""
    problems = graph_problems(copy_graph(built.graph_def))
    if problems:
        raise Failure("generator: made an invalid graph", "; ".join(problems[:3]))
    applied = 0
    failures: list[Failure] = []
    for stem in rule_files():
        try:
            applied += _graph_rules_one(built, stem)
        except Failure as failure:
            failures.append(failure)
    if failures:
        raise next((f for f in failures if not known(f.signature)), failures[0])
    return "ok:rewrote" if applied else "ok:nothing"


def _graph_rules_one(built: Built, stem: str) -> int:
    first = copy_graph(built.graph_def)
    second = copy_graph(built.graph_def)
    result, error = guarded(f"{stem}: apply", lambda: _apply(first, stem))
    again, error2 = guarded(f"{stem}: apply (2nd)", lambda: _apply(second, stem))
    if (error is None) != (error2 is None) or (error and str(error) != str(error2)):
        raise Failure(f"{stem}: not deterministic (errors differ)", f"{error!r} / {error2!r}")
    if error is not None:
        if stem in STRICT_FILES:
            raise Failure(f"{stem}: {_error_at(error)} on a valid graph", str(error)[:300])
        return 0
    problems = graph_problems(first)
    if problems:
        raise Failure(f"{stem}: rewritten graph is invalid", "; ".join(problems[:3]))
    if first.serialize() != second.serialize():
        raise Failure(f"{stem}: not deterministic (bytes differ run to run)", "")
    if result.per_rule_counts != again.per_rule_counts:
        raise Failure(f"{stem}: not deterministic (match counts differ)", "")
    return sum(result.per_rule_counts.values())


def _error_at(error: SurgeryError) -> str:
    """`RuleError at rules/x.rules:3:4` (the location its message starts with), for grouping."""
    head = str(error).split(": ", 1)[0]
    where = f" at {head}" if re.fullmatch(r"\S+:\d+:\d+", head) else ""
    return f"{type(error).__name__}{where}"


def _apply(graph: Graph, stem: str) -> Any:
    from surgery.engine.run import apply_rules

    return apply_rules(graph, [rule_files()[stem]])


def check_numeric(built: Built) -> str:
    """The semantic-preserving rule files on a random valid graph, then surgery.backends.validate
    (TF regions + the plugins' NumPy references) against the original."""
    from surgery.backends.validate import validate
    from surgery.engine.run import apply_rules
    from surgery.passes.prepare import drop_inferred_shapes

    original = copy_graph(built.graph_def)
    rewritten = copy_graph(built.graph_def)
    files = [rule_files()[s] for s in SEMANTIC_FILES]
    result, error = guarded("apply", lambda: apply_rules(rewritten, files))
    if error is not None:
        raise Failure(f"apply: {_error_at(error)} on a valid graph", str(error)[:300])
    drop_inferred_shapes(original)
    drop_inferred_shapes(rewritten)
    report, error = guarded("validate", lambda: validate(original, rewritten, shapes=built.inputs))
    if error is not None:
        raise Failure(f"validate: {type(error).__name__}", str(error)[:300])
    if not report.passed:
        raise Failure("validate: rewritten graph differs numerically", report.format()[-600:])
    return "ok:rewrote" if sum(result.per_rule_counts.values()) else "ok:nothing"


# ----------------------------------------------------------------------------- CLI properties
CLI_COMMANDS = (
    "apply", "apply", "apply", "apply_allow_invalid", "check", "inspect", "match", "explain",
    "layout", "shapes", "shapes_static",
)  # fmt: skip
_RAW = ("Cc", "Zl", "Zp")  # control characters (ESC, NEL, ...) and line/paragraph separators
_CHECK_SUMMARY = re.compile(r"\d+ error\(s\), \d+ warning\(s\)")
# TensorFlow's C++ logging, which a child process writes straight to its stderr (absl's
# "WARNING: All log messages before absl::InitializeLog()..." and glog lines "I0000 00:00...").
_TF_LOG = re.compile(r"WARNING: All log messages before absl|[IWEF]\d{4} \d\d:\d\d:\d\d")


def _cli_argv(command: str, rules: Path, model: Path, out: Path, log: bool) -> list[str]:
    """The argv of a CLI case; `command` is a subcommand or one of the variants above."""
    r, m, o = str(rules), str(model), str(out)
    if command.startswith("apply"):
        extra = ["--allow-invalid"] if command == "apply_allow_invalid" else []
        if log:
            extra += ["--log", str(out.with_suffix(".json"))]
        return ["apply", r, m, "-o", o, *extra]
    if command == "check":
        return ["check", r, "--no-tf"]
    if command == "inspect":
        return ["inspect", m]
    if command == "explain":
        found = re.search(r"^rule (\w+)", rules.read_text("utf-8", "replace"), re.M)
        node = "input_image" if b"input_image" in model.read_bytes() else "input_0"
        return ["explain", r, m, "--rule", found.group(1) if found else "r", "--node", node]
    if command == "layout":
        return ["layout", "nchw", m, "-o", o]
    if command == "shapes":
        return ["shapes", m]
    if command == "shapes_static":
        return ["shapes", m, "--static-reshape", "-o", o]
    return ["match", r, m]


def _check_cli_outcome(
    command: str, code: int, out_text: str, err_text: str, workdir: Path, inputs: set[str],
    out: Path, declared: set[str],
) -> str:  # fmt: skip
    sub = command.split("_")[0]  # the subcommand of a variant (apply_allow_invalid)
    if code not in (0, 1, 2):
        raise Failure(f"cli {command}: exit status {code}", err_text[-500:])
    for stream in (out_text, err_text):
        if "Traceback" in stream:
            raise Failure(f"cli {command}: traceback printed", stream[-800:])
    left = {p.name for p in workdir.iterdir()}
    if code != 0:
        lines = [ln for ln in err_text.split("\n")  # a terminal's lines, not splitlines()'s
                 if ln.strip() and not ln.startswith("warning:") and not _TF_LOG.match(ln)]
        one = len(lines) == 1 and (
            lines[0].startswith(f"surgery {sub}: error: ")
            or (command == "check" and code == 1 and _CHECK_SUMMARY.fullmatch(lines[0]))
        )  # (`check` lists its diagnostics on stdout, then a count on stderr)
        # `match` is a report too: a rule's contract errors are lines of it (stdout), exit 1
        one = one or (command == "match" and code == 1 and not lines and "  error: " in out_text)
        if not one:
            raise Failure(f"cli {command}: exit {code} without exactly one error line",
                          err_text[-500:] or "(nothing on stderr)")  # fmt: skip
        raw = [c for c in "".join(lines) if c != "\t" and unicodedata.category(c) in _RAW]
        if raw:
            source = ("a .pbtxt syntax error" if ".pbtxt syntax error" in lines[0] else
                      "a rule-file error" if re.search(r"\.rules:\d+:\d+: ", lines[0]) else
                      "an error")  # fmt: skip
            raise Failure(f"cli: {source} echoes control or line-separator characters",
                          f"{''.join(sorted(set(raw)))!r} in {lines[0][:300]!r}")  # fmt: skip
        if left != inputs:
            raise Failure(f"cli {command}: failed but left files",
                          ", ".join(sorted(left - inputs)))  # fmt: skip
        return f"exit{code}"
    stray = left - inputs - declared
    if stray:
        raise Failure(f"cli {command}: stray files after success", ", ".join(sorted(stray)))
    if command in ("apply", "apply_allow_invalid", "layout", "shapes_static"):
        from surgery.ir import model_io

        if not out.exists():
            raise Failure(f"cli {command}: exit 0 but no file at -o", out_text[-300:])
        _, error = guarded("reload", lambda: model_io.load(out))
        if error is not None:
            raise Failure(f"cli {command}: wrote an output that does not load", str(error)[:300])
    return "exit0"


def _cli_files(
    name: str, rules: bytes, model: bytes, suffix: str, out_suffix: str
) -> tuple[Path, Path, Path, Path]:
    """A fresh scratch folder `name` holding the rule and model files: (folder, rules, model,
    the output path a command is given)."""
    workdir = scratch() / name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    rules_path = workdir / "r.rules"
    model_path = workdir / f"m{suffix}"
    rules_path.write_bytes(rules)
    model_path.write_bytes(model)
    return workdir, rules_path, model_path, workdir / f"out{out_suffix}"


def check_cli(command: str, rules: bytes, model: bytes, suffix: str, out_suffix: str) -> str:
    """`surgery COMMAND` in-process (cli.main) on the given rule and model files."""
    from surgery.cli import main

    workdir, rules_path, model_path, out = _cli_files("cli", rules, model, suffix, out_suffix)
    log = len(model) % 2 == 0
    argv = _cli_argv(command, rules_path, model_path, out, log)
    out_io, err_io = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out_io), contextlib.redirect_stderr(err_io):
            code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Failure:
        raise
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise unexpected(f"cli {command}", exc) from None
    declared = {out.name, out.with_suffix(".json").name}
    return _check_cli_outcome(command, code, out_io.getvalue(), err_io.getvalue(), workdir,
                              {rules_path.name, model_path.name}, out, declared)  # fmt: skip


def check_cli_process(command: str, rules: bytes, model: bytes, suffix: str,
                      out_suffix: str) -> str:  # fmt: skip
    """The same as `check_cli`, through a real `python -m surgery` process."""
    workdir, rules_path, model_path, out = _cli_files("proc", rules, model, suffix, out_suffix)
    argv = _cli_argv(command, rules_path, model_path, out, False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run([sys.executable, "-m", "surgery", *argv], capture_output=True,
                              text=True, timeout=120, env=env, cwd=ROOT)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise Failure(f"cli process {command}: hang (> 120 s)", " ".join(argv)) from None
    return _check_cli_outcome(command, done.returncode, done.stdout, done.stderr, workdir,
                              {rules_path.name, model_path.name}, out, {out.name})  # fmt: skip
