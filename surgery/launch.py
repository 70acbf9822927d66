"""The `surgery` command's entry point: glibc's malloc on huge pages, then the CLI.

A million-node graph keeps million-entry dicts and millions of small objects; on 4 KiB pages
their lookups miss the TLB and every first touch of a page faults. `glibc.malloc.hugetlb=1` has
malloc ask for transparent huge pages (where the kernel allows them), which measured 25.8 s ->
24.7 s for the 1M-node rules benchmark. The setting is read only at process start, so the
command (and `benchmarks/run.py`) re-executes itself once with it; SURGERY_MALLOC=default keeps
the allocator as it is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

TUNABLE = "glibc.malloc.hugetlb=1"


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


def relaunch(module: str) -> None:
    """Re-run `python -m module` with this process's arguments under `allocator_env`, if that
    changes anything; otherwise return."""
    env = allocator_env(os.environ)
    if env is not None:
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)


def entry() -> None:
    """The console script: re-run under `allocator_env` if needed, else run the CLI."""
    relaunch("surgery")
    from surgery.cli import main

    sys.exit(main())
