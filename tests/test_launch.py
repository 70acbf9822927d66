"""The `surgery` console script: malloc on huge pages, set once, never over a user's choice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from surgery.launch import TUNABLE, allocator_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables are Linux-only")
def test_allocator_env_adds_the_tunable_once() -> None:
    assert allocator_env({"PATH": "/bin"}) == {"PATH": "/bin", "GLIBC_TUNABLES": TUNABLE}
    other = "glibc.malloc.arena_max=2"
    assert allocator_env({"GLIBC_TUNABLES": other})["GLIBC_TUNABLES"] == f"{other}:{TUNABLE}"
    assert allocator_env({"GLIBC_TUNABLES": TUNABLE}) is None  # already there: no re-exec
    assert allocator_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None  # the user's
    assert allocator_env({"SURGERY_MALLOC": "default"}) is None


def test_console_script_runs_through_the_relaunch(tmp_path: Path, box3d_pb: Path) -> None:
    script = Path(sys.executable).parent / "surgery"
    if not script.exists():
        pytest.skip(f"no console script at {script}: the package is not installed in this venv")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "SURGERY_MALLOC")}
    out = tmp_path / "out.pb"
    done = subprocess.run(
        [str(script), "apply", str(ROOT / "rules" / "leaky_relu.rules"), str(box3d_pb),
         "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "leaky_relu: 5 matches applied" in done.stdout
    assert out.stat().st_size > 0
