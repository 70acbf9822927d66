"""`python -m fuzz [--cases N] [--jobs J] [--seed S] [--only P,...]`: the big fuzzing run.

The cases are split across the properties by their shares (at least one each), each property's
cases into chunks of at most `CHUNK` cases, each chunk one Hypothesis run (profile "fuzz") with
its own seed (derived from --seed, the property and the chunk: a run is repeatable), and the
chunks are spread over J worker processes. Inside a chunk every case is checked under its
property's time bound; a failure is recorded (signature, count, smallest input) and the run goes
on. At the end: cases and outcomes per property, then every distinct failure with its smallest
input minimised (byte and text fields, by deleting runs while the same failure shows) and saved
as JSON under --out. Exit status 1 when any failure was found.

`python -m fuzz --replay FILE.json` runs one saved case again and prints its outcome or failure.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK = 1000
PAYLOADS = ("data", "text", "rules", "model")  # the case fields the minimiser shortens
OUT = Path(__file__).resolve().parent.parent / "test_artifacts" / "fuzz"


# ----------------------------------------------------------------------------- cases as JSON
def encode(case: dict[str, Any]) -> dict[str, Any]:
    """A case as JSON-able values (bytes base64 under {"b64": ...})."""

    def enc(value: Any) -> Any:
        if isinstance(value, bytes):
            return {"b64": base64.b64encode(value).decode()}
        if isinstance(value, dict):
            return {k: enc(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [enc(v) for v in value]
        return value

    return enc(case)


def decode(data: Any) -> Any:
    if isinstance(data, dict):
        if set(data) == {"b64"}:
            return base64.b64decode(data["b64"])
        return {k: decode(v) for k, v in data.items()}
    if isinstance(data, list):
        return [decode(v) for v in data]
    return data


def case_size(case: dict[str, Any]) -> int:
    return len(json.dumps(encode(case)))


# ----------------------------------------------------------------------------- one chunk
@dataclass
class FailureRecord:
    signature: str
    prop: str
    message: str
    count: int
    case: dict[str, Any]  # the smallest one seen

    def merge(self, other: FailureRecord) -> None:
        self.count += other.count
        if case_size(other.case) < case_size(self.case):
            self.case, self.message = other.case, other.message


@dataclass
class ChunkResult:
    prop: str
    cases: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    failures: dict[str, FailureRecord] = field(default_factory=dict)
    slowest: float = 0.0


def run_case(prop: Any, case: dict[str, Any]) -> str:
    """Check one case under the property's time bound; Failure escapes, anything else too."""
    from fuzz.props import bounded

    with bounded(prop.limit):
        return prop.check(case)


def run_chunk(name: str, cases: int, seed: int, inflight: str | None = None) -> ChunkResult:
    """`cases` Hypothesis-generated cases of property `name`, from `seed`. With `inflight`, each
    case is written there (with the outcomes so far) before it runs, so that the parent can
    tell which case killed the process or stalled it."""
    from hypothesis import given, settings
    from hypothesis import seed as hseed

    from fuzz.cases import PROPERTIES
    from fuzz.props import Failure, known, unexpected

    prop = PROPERTIES[name]
    result = ChunkResult(name)
    if prop.needs_tf:
        _warm_tf()

    @settings(settings.get_profile("fuzz"), max_examples=cases)
    @hseed(seed)
    @given(prop.strategy())
    def body(case: dict[str, Any]) -> None:
        if result.cases >= cases:
            return
        if inflight:
            _write_inflight(inflight, result, case)
        result.cases += 1
        started = time.perf_counter()
        try:
            result.outcomes[run_case(prop, case)] += 1
        except Failure as failure:
            result.outcomes["KNOWN" if known(failure.signature) else "FAIL"] += 1
            _record(result, name, failure, case)
        except Exception as exc:  # noqa: BLE001 (the check itself broke: still a failure)
            result.outcomes["FAIL"] += 1
            _record(result, name, unexpected("check", exc), case)
        result.slowest = max(result.slowest, time.perf_counter() - started)

    started = time.perf_counter()
    body()
    result.seconds = time.perf_counter() - started
    if inflight:
        Path(inflight).unlink(missing_ok=True)
    return result


def _write_inflight(path: str, result: ChunkResult, case: dict[str, Any]) -> None:
    payload = {"done": result.cases, "outcomes": dict(result.outcomes), "started": time.time(),
               "case": encode(case)}  # fmt: skip
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
    os.replace(tmp, path)


def _record(result: ChunkResult, name: str, failure: Any, case: dict[str, Any]) -> None:
    record = FailureRecord(failure.signature, name, failure.message, 1, case)
    known = result.failures.get(failure.signature)
    if known is None:
        result.failures[failure.signature] = record
    else:
        known.merge(record)


def _warm_tf() -> None:
    """Import TensorFlow before any case's clock starts (seconds, once per process)."""
    from surgery.ops.opdefs import tensorflow_available

    if tensorflow_available():
        import tensorflow  # noqa: F401


def _init_worker() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import warnings

    warnings.filterwarnings("ignore")


# ----------------------------------------------------------------------------- workers
def _worker(tasks: Any, results: Any) -> None:
    """A worker process: run chunks from `tasks` until None, reporting on `results`."""
    _init_worker()
    while True:
        task = tasks.get()
        if task is None:
            return
        results.put(("start", os.getpid(), task, None))
        try:
            results.put(("done", os.getpid(), task, run_chunk(*task)))
        except BaseException as exc:  # noqa: BLE001 (reported as a failure of the chunk)
            results.put(("error", os.getpid(), task, f"{type(exc).__name__}: {exc}"[:300]))


class Scheduler:
    """Runs chunks on J worker processes of its own (spawned: no fork after TensorFlow's
    threads). A worker that dies (TensorFlow aborting on a graph, say) or stalls in native code
    past its property's bound is replaced; the case it was running (from its in-flight file)
    is recorded as a failure, and the rest of its chunk runs again from another seed."""

    def __init__(self, jobs: int, merge: Any) -> None:
        self.jobs = max(1, jobs)
        self.merge = merge
        self.context = multiprocessing.get_context("spawn")
        self.tasks: Any = self.context.Queue()
        self.results: Any = self.context.Queue()
        self.inflight_dir = Path(tempfile.mkdtemp(prefix="surgery-fuzz-inflight-"))
        self.workers: dict[int, Any] = {}
        self.running: dict[int, tuple] = {}  # pid -> task

    def _spawn(self) -> None:
        process = self.context.Process(target=_worker, args=(self.tasks, self.results),
                                       daemon=True)  # fmt: skip
        process.start()
        assert process.pid is not None
        self.workers[process.pid] = process

    def run(self, chunks: list[tuple[str, int, int]]) -> None:
        from fuzz.cases import PROPERTIES

        left = 0
        for k, (name, cases, seed) in enumerate(chunks):
            self.tasks.put((name, cases, seed, str(self.inflight_dir / f"{k}.json")))
            left += 1
        for _ in range(self.jobs):
            self._spawn()
        try:
            while left:
                try:
                    kind, pid, task, payload = self.results.get(timeout=5)
                except queue.Empty:
                    left += self._check_workers(PROPERTIES)
                    continue
                if kind == "start":
                    self.running[pid] = task
                    continue
                self.running.pop(pid, None)
                left -= 1
                if kind == "done":
                    self.merge(payload)
                else:
                    left += self._lost(task, f"the chunk raised {payload}", PROPERTIES)
        finally:
            for _ in self.workers:
                self.tasks.put(None)
            for process in self.workers.values():
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
            shutil.rmtree(self.inflight_dir, ignore_errors=True)

    def _check_workers(self, properties: dict[str, Any]) -> int:
        """Replace dead or stalled workers; returns the change in chunks left to run."""
        added = 0
        for pid, process in list(self.workers.items()):
            task = self.running.get(pid)
            why = None
            if not process.is_alive():
                code = process.exitcode
                why = (f"the process died ({signal.Signals(-code).name})" if code and code < 0
                       else f"the process exited ({code})")  # fmt: skip
            elif task is not None:
                state = _read_inflight(task[3])
                limit = properties[task[0]].limit
                if state and time.time() - state["started"] > limit + 60:
                    process.kill()
                    process.join()
                    why = f"a case stalled past {limit + 60:g} s (not interruptible: killed)"
            if why is None:
                continue
            del self.workers[pid]
            self.running.pop(pid, None)
            self._spawn()
            if task is not None:  # that chunk is over; the rest of it may come back
                added += self._lost(task, why, properties) - 1
        return added

    def _lost(self, task: tuple, why: str, properties: dict[str, Any]) -> int:
        """Record the chunk's in-flight case as a failure; requeue the rest of the chunk."""
        name, cases, seed, inflight = task
        state = _read_inflight(inflight) or {"done": 0, "outcomes": {}, "case": {}}
        chunk = ChunkResult(name, cases=state["done"] + 1)
        chunk.outcomes.update(state["outcomes"])
        chunk.outcomes["CRASH"] += 1
        signature = f"{name}: {why}"
        case = decode(state["case"])
        chunk.failures[signature] = FailureRecord(signature, name, f"chunk seed {seed}", 1, case)
        self.merge(chunk)
        Path(inflight).unlink(missing_ok=True)
        rest = cases - chunk.cases
        if rest <= 0:
            return 0
        self.tasks.put((name, rest, (seed * 31 + 7) % 2**32, inflight))
        return 1


def _read_inflight(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
            return data
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- planning
def plan(total: int, only: list[str] | None, seed: int) -> list[tuple[str, int, int]]:
    """(property, cases, seed) chunks: `total` split by the properties' shares."""
    from fuzz.cases import PROPERTIES

    names = only or list(PROPERTIES)
    weight = sum(PROPERTIES[n].share for n in names)
    counts = {n: max(1, round(total * PROPERTIES[n].share / weight)) for n in names}
    biggest = max(names, key=lambda n: counts[n])
    counts[biggest] += total - sum(counts.values())  # the exact total
    chunks = []
    for name in names:
        left, k = counts[name], 0
        parts = max(1, -(-left // CHUNK))
        size = -(-left // parts)
        while left > 0:
            n = min(size, left)
            digest = hashlib.sha256(f"{seed}:{name}:{k}".encode()).digest()
            chunks.append((name, n, int.from_bytes(digest[:4], "big")))
            left -= n
            k += 1
    # the slow properties first, so that they do not finish last on one worker
    chunks.sort(key=lambda c: -PROPERTIES[c[0]].limit)
    return chunks


# ----------------------------------------------------------------------------- minimising
def minimise(record: FailureRecord, budget_s: float = 60.0) -> dict[str, Any]:
    """Delete runs of bytes/characters from the case's byte and text fields while the same
    failure (signature) shows, for at most `budget_s` seconds."""
    from fuzz.cases import PROPERTIES
    from fuzz.props import Failure

    if any(word in record.signature for word in ("hang", "process died", "stalled", "exited")):
        return record.case  # (re-running those here would hang or kill this process)
    prop = PROPERTIES[record.prop]
    deadline = time.perf_counter() + budget_s
    case = dict(record.case)

    def fails(candidate: dict[str, Any]) -> bool:
        try:
            run_case(prop, candidate)
        except Failure as failure:
            return failure.signature == record.signature
        except Exception:  # noqa: BLE001
            return False
        return False

    for key in [k for k in PAYLOADS if isinstance(case.get(k), bytes | str)]:
        value = case[key]
        chunk = max(1, len(value) // 2)
        while chunk >= 1 and time.perf_counter() < deadline:
            at, shrunk = 0, False
            while at < len(value) and time.perf_counter() < deadline:
                candidate = value[:at] + value[at + chunk :]
                if fails({**case, key: candidate}):
                    value, shrunk = candidate, True
                else:
                    at += chunk
            case[key] = value
            if not shrunk:
                chunk //= 2
    return case


# ----------------------------------------------------------------------------- reporting
def save(record: FailureRecord, index: int, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{record.prop}-{index}.json"
    payload = {"property": record.prop, "signature": record.signature,
               "message": record.message, "case": encode(record.case)}  # fmt: skip
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    for key, ext in (("data", ".pbtxt" if record.prop == "pbtxt" else ".pb"), ("text", ".rules"),
                     ("rules", ".rules"), ("model", record.case.get("suffix", ".pb"))):
        value = record.case.get(key)
        if isinstance(value, bytes | str):
            raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
            (out / f"{record.prop}-{index}{ext}").write_bytes(raw)
    if "graph" in record.case:
        graph = record.case["graph"]
        (out / f"{record.prop}-{index}.pb").write_bytes(graph["graph"] if isinstance(graph, dict)
                                                       else graph)  # fmt: skip
    return path


def replay(path: Path) -> int:
    from fuzz.cases import PROPERTIES
    from fuzz.props import Failure

    payload = json.loads(path.read_text(encoding="utf-8"))
    prop = PROPERTIES[payload["property"]]
    case = decode(payload["case"])
    if prop.needs_tf:
        _warm_tf()
    try:
        outcome = run_case(prop, case)
    except Failure as failure:
        print(f"FAIL {failure.signature}\n{failure.message}")
        return 1
    print(f"ok: {outcome} (recorded: {payload['signature']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="total cases (default 1e5)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--only", help="comma-separated properties")
    parser.add_argument("--out", type=Path, default=OUT, help=f"failures go here ({OUT})")
    parser.add_argument("--no-minimise", action="store_true")
    parser.add_argument("--replay", type=Path, metavar="FILE.json")
    args = parser.parse_args(argv)
    _init_worker()
    if args.replay:
        return replay(args.replay)
    from fuzz.cases import PROPERTIES

    only = args.only.split(",") if args.only else None
    for name in only or ():
        if name not in PROPERTIES:
            parser.error(f"unknown property {name!r} (known: {', '.join(PROPERTIES)})")
    chunks = plan(args.cases, only, args.seed)
    print(f"fuzz: {args.cases} cases, {len(chunks)} chunks, {args.jobs} worker(s), "
          f"seed {args.seed}", flush=True)  # fmt: skip
    started = time.perf_counter()
    totals: dict[str, ChunkResult] = {}
    failures: dict[tuple[str, str], FailureRecord] = {}
    done = 0

    def merge(chunk: ChunkResult) -> None:
        nonlocal done
        total = totals.setdefault(chunk.prop, ChunkResult(chunk.prop))
        total.cases += chunk.cases
        total.seconds += chunk.seconds
        total.outcomes.update(chunk.outcomes)
        total.slowest = max(total.slowest, chunk.slowest)
        for sig, record in chunk.failures.items():
            key = (chunk.prop, sig)  # one cause may show in several properties: each listed
            if key in failures:
                failures[key].merge(record)
            else:
                failures[key] = record
        done += chunk.cases
        print(f"  {done}/{args.cases} cases, {time.perf_counter() - started:.0f} s, "
              f"{len(failures)} distinct failure(s)", flush=True)  # fmt: skip

    Scheduler(args.jobs, merge).run(chunks)
    wall = time.perf_counter() - started
    print()
    print(f"{'property':<12} {'cases':>7} {'cpu s':>8} {'ms/case':>8} {'slowest s':>9}  outcomes")
    for name in PROPERTIES:
        if name not in totals:
            continue
        total = totals[name]
        shown = ", ".join(f"{k} {v}" for k, v in sorted(total.outcomes.items()))
        per = 1000 * total.seconds / max(total.cases, 1)
        print(f"{name:<12} {total.cases:>7} {total.seconds:>8.1f} {per:>8.2f} "
              f"{total.slowest:>9.2f}  {shown}")  # fmt: skip
    from fuzz.props import known

    count = sum(t.cases for t in totals.values())
    new = [r for r in failures.values() if not known(r.signature)]
    print(f"total: {count} cases in {wall:.0f} s wall on {args.jobs} worker(s); "
          f"{len(new)} new distinct failure(s), {len(failures) - len(new)} known")  # fmt: skip
    ordered = sorted(failures.values(), key=lambda r: (bool(known(r.signature)), r.prop,
                                                       r.signature))  # fmt: skip
    for index, record in enumerate(ordered):
        why = known(record.signature)
        if not args.no_minimise and not why:
            record.case = minimise(record)
        path = save(record, index, args.out)
        print(f"\n{'KNOWN' if why else 'FAIL'} [{record.prop}] {record.signature} "
              f"({record.count} case(s))")  # fmt: skip
        if why:
            print(f"  known: {why}")
        print("  " + record.message.replace("\n", "\n  "))
        print(f"  smallest case: {path}  (python -m fuzz --replay {path})")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
