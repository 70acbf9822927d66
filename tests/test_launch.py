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


@pytest.mark.parametrize("code", [0, 1, 2, 141])
def test_finish_keeps_the_exit_code_output_and_atexit_handlers(code: int) -> None:
    """`finish` skips the interpreter's teardown, but not what a normal exit does for the user:
    buffered stdout and stderr reach the pipe, atexit handlers run, and the code is the exit
    status."""
    program = (
        "import atexit, sys\n"
        "from surgery.launch import finish\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "print('buffered line', end='')\n"
        "sys.stderr.write('err line')\n"
        f"finish({code})\n"
        "print('not reached')\n"
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)  # fmt: skip
    assert done.returncode == code
    assert done.stdout == "buffered linehandler ran\n"
    assert done.stderr == "err line"


def test_python_m_surgery_exits_with_the_commands_code(tmp_path: Path) -> None:
    """`python -m surgery` (where the console script's re-exec lands) ends through `finish`
    with the command's own status: 2 for a usage error, 1 for a model that cannot be read."""
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\xff\xff not a graph")
    usage = subprocess.run([sys.executable, "-m", "surgery", "apply", str(bad)],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert usage.returncode == 2 and "-o/--output" in usage.stderr
    broken = subprocess.run(
        [sys.executable, "-m", "surgery", "inspect", str(bad)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert broken.returncode == 1 and str(bad) in broken.stderr


def test_keep_until_exit_holds_nothing_inside_another_program() -> None:
    """Called from a program other than `surgery` itself (here pytest, as a notebook would),
    keep_until_exit must not hold a command's graphs: they are freed as usual."""
    import gc
    import weakref

    from surgery.launch import keep_until_exit

    class Big:
        pass

    obj = Big()
    ref = weakref.ref(obj)
    keep_until_exit(obj)
    del obj
    gc.collect()
    assert ref() is None


def test_program_keeps_what_it_is_given_until_exit(tmp_path: Path) -> None:
    """Run as the program (`run_program`), the objects stay alive to the end: their __del__
    never runs, as the process ends with os._exit and frees nothing one by one."""
    program = (
        "from surgery import launch\n"
        "class Big:\n"
        "    def __del__(self): print('freed', flush=True)\n"
        "def command():\n"
        "    big = Big()\n"
        "    launch.keep_until_exit(big)\n"
        "    return 0\n"
        "import surgery.cli\n"
        "surgery.cli.main = command\n"
        "launch.run_program()\n"
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "freed" not in done.stdout
