"""The `surgery` command's entry point: glibc's malloc on huge pages, then the CLI.

A million-node graph keeps million-entry dicts and millions of small objects; on 4 KiB pages
their lookups miss the TLB and every first touch of a page faults. `glibc.malloc.hugetlb=1` has
malloc ask for transparent huge pages (where the kernel allows them), which measured 25.8 s ->
24.7 s for the 1M-node rules benchmark, and 0.33 s -> 0.21 s to load and save a 48 MiB model.
The setting is read only at process start, so the command (and `benchmarks/run.py`) re-executes
itself once with it; SURGERY_MALLOC=default keeps the allocator as it is.

The re-exec costs a second interpreter start (about 35 ms), so the command pays it only where
it pays back (`worth_relaunching`): not for `--help`, nor when the files it is given total less
than RELAUNCH_MIN_BYTES (on a 35 KiB model the setting changes nothing measurable; at 4 MiB it
already saves about as much as the re-exec costs).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping, Sequence

TUNABLE = "glibc.malloc.hugetlb=1"
RELAUNCH_MIN_BYTES = 4 << 20


def allocator_env(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to run the command in, or None to run it as it is (not Linux, the
    setting already there or chosen by the user, or SURGERY_MALLOC=default)."""
    if not sys.platform.startswith("linux") or environ.get("SURGERY_MALLOC") == "default":
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in current:
        return None
    env = dict(environ)
    env["GLIBC_TUNABLES"] = f"{current}:{TUNABLE}" if current else TUNABLE
    return env


def worth_relaunching(argv: Sequence[str]) -> bool:
    """Whether a command line is worth the re-exec: no help asked for, and either a directory
    among the arguments (a SavedModel, a folder of rules: size unknown) or existing files of
    RELAUNCH_MIN_BYTES or more in all. Only speed depends on it, never results."""
    total = 0
    for arg in argv:
        if arg in ("-h", "--help"):
            return False
        path = arg.partition("=")[2] if arg.startswith("-") else arg  # --log=FILE
        if not path:
            continue
        try:
            found = os.stat(path)
        except (OSError, ValueError):  # not a path (a flag, a value, a name too long)
            continue
        if stat.S_ISDIR(found.st_mode):
            return True
        total += found.st_size
    return total >= RELAUNCH_MIN_BYTES


def relaunch(module: str) -> None:
    """Re-run `python -m module` with this process's arguments under `allocator_env`, if that
    changes anything; otherwise return."""
    env = allocator_env(os.environ)
    if env is not None:
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)


_kept: list[object] = []
_keeping = False  # set by run_program: only the `surgery` program itself keeps objects


def keep_until_exit(*objects: object) -> None:
    """Hold `objects` (a command's loaded graphs) until `finish` ends the process, so they are
    never freed one by one (0.55-0.65 s for a 1M-node graph; clang's -disable-free does the
    same). Inside another program (tests, notebooks calling `cli.main`) it does nothing."""
    if _keeping:
        _kept.extend(objects)


def finish(code: int) -> None:  # returns never; typing.NoReturn would cost this process 5 ms
    """End the process with the command's exit code, skipping the interpreter's teardown: it
    frees every object one at a time (about 30 ms after the demo's apply), where the kernel
    frees the whole process at once. atexit handlers run and stdout and stderr are flushed
    first; a flush that fails leaves the exit to Python, which reports it."""
    import atexit

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


def run_program() -> None:
    """Run the CLI as the `surgery` program (console script or `python -m surgery`): objects
    given to `keep_until_exit` stay until `finish` ends the process."""
    global _keeping
    _keeping = True
    from surgery.cli import main

    finish(main())


def entry() -> None:
    """The console script: re-run under `allocator_env` where that pays, then run the CLI."""
    if worth_relaunching(sys.argv[1:]):
        relaunch("surgery")
    run_program()
