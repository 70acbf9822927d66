"""Start-up and the demo's apply, each in fresh processes, against their goals (issue 17).

    python -m benchmarks.run bench_startup [--runs N] [--model NCHW.pb]

Runs the `surgery` console script as a user would (its huge-page re-exec included): `surgery
--help`, `surgery apply --help`, and `make demo`'s apply step on the layout-converted Matterport
Mask R-CNN (small config): `apply rules/maskrcnn.rules NCHW.pb -o OUT --input input_image=...`,
once with just those flags and once with the demo's `--log` and `--report` as well. Each is run
N times (default 10) after one untimed run, and the median and the fastest are printed against
the goal; the untimed first apply runs with an empty cache (`surgery.cache`: rule parse, folding
and shape inference) and is printed as the cold time. The outputs of a cached run are compared
byte for byte with those of a run with SURGERY_CACHE=off.

Child processes write bytecode (PYTHONDONTWRITEBYTECODE is dropped from their environment), as
an installed surgery's modules have it; the layout-converted model is made once per run of the
benchmark (TensorFlow: about 10 s) unless --model gives one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = str(ROOT / "rules" / "maskrcnn.rules")
GOALS = {"help": 0.15, "apply": 0.35}  # seconds, on the 2-core development machine


def _command() -> list[str]:
    """The console script beside this interpreter (what a user runs), else `python -m`."""
    script = Path(sys.executable).parent / "surgery"
    return [str(script)] if script.exists() else [sys.executable, "-m", "surgery"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def _run(argv: Sequence[str], env: dict[str, str]) -> float:
    """Wall time of one fresh `surgery argv...`; a failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run([*_command(), *argv], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench_startup: `surgery {' '.join(argv)}` failed "
                         f"({done.returncode}): {done.stderr.strip()[-400:]}")  # fmt: skip
    return seconds


def _report(name: str, times: list[float], goal: float, note: str = "") -> dict[str, float]:
    median, fastest = statistics.median(times), min(times)
    verdict = "meets" if median <= goal else "misses"
    print(f"  {name:34s} median {median:6.3f} s  min {fastest:6.3f} s  ({len(times)} runs)  "
          f"goal {goal:.2f} s: {verdict}{note}", flush=True)  # fmt: skip
    return {"median": median, "min": fastest}


def _layout_model(work: Path, pin: list[str]) -> Path:
    """The demo's second step: Matterport's small Mask R-CNN converted to NCHW."""
    from surgery.models import fixture_info

    nchw = work / "maskrcnn_small.nchw.pb"
    info = fixture_info("matterport_small")
    print(f"  layout nchw of {info.path.name} ({info.size / 2**20:.0f} MiB) for the apply...",
          flush=True)  # fmt: skip
    _run(["layout", "nchw", str(info.path), "-o", str(nchw), *pin], _env())
    return nchw


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command (10)")
    parser.add_argument("--model", type=Path, help="the layout-converted demo model to apply to")
    args = parser.parse_args(argv)
    from surgery.models.matterport import matterport_config

    side = int(matterport_config("small").IMAGE_MAX_DIM)
    pin = ["--input", f"input_image=1,{side},{side},3"]
    rows: dict[str, dict[str, float]] = {}
    print(f"command: {' '.join(_command())}; {args.runs} timed runs each", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = _env(SURGERY_CACHE_DIR=str(work / "cache"))
        for name, help_argv in (("surgery --help", ["--help"]),
                                ("surgery apply --help", ["apply", "--help"])):  # fmt: skip
            _run(help_argv, env)
            rows[name] = _report(name, [_run(help_argv, env) for _ in range(args.runs)],
                                 GOALS["help"])  # fmt: skip
        model = args.model or _layout_model(work, pin)
        out = work / "out.pb"
        plain = ["apply", RULES, str(model), "-o", str(out), *pin]
        demo = [*plain, "--log", str(work / "changes.json"), "--report", str(work / "r.html")]
        for index, (name, apply_argv) in enumerate((
            ("apply -o --input", plain), ("apply, demo flags (+log, report)", demo),
        )):  # fmt: skip
            cached = _env(SURGERY_CACHE_DIR=str(work / f"cache{index}"))  # empty: cold first
            cold = _run(apply_argv, cached)
            times = [_run(apply_argv, cached) for _ in range(args.runs)]
            rows[name] = _report(name, times, GOALS["apply"], f"; cold cache {cold:.2f} s")
        shutil.copyfile(out, work / "cached.pb")
        shutil.copyfile(work / "changes.json", work / "cached.json")
        _run(demo, _env(SURGERY_CACHE="off"))
        same = (out.read_bytes() == (work / "cached.pb").read_bytes()
                and (work / "changes.json").read_text() == (work / "cached.json").read_text())
        print(f"  cached and uncached apply write the same model and log: {same}", flush=True)
        if not same:
            raise SystemExit("bench_startup: a cached apply wrote something else")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
