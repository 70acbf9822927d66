"""Start-up: `surgery --help` and the parser build stay light (no heavy module imported, each
checked in a fresh interpreter), the console script re-execs for huge-page malloc only where
that pays, and ml_dtypes loads with the first bfloat16 value, not with tensor_values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from surgery.launch import RELAUNCH_MIN_BYTES, worth_relaunching

ROOT = Path(__file__).resolve().parents[1]

# What a parser build must not import: seconds (TensorFlow, ml_dtypes), or tens to hundreds of
# milliseconds each (numpy, protobuf, pyparsing, networkx, onnx, RE2), all for printing help.
HEAVY = (
    "tensorflow", "numpy", "ml_dtypes", "onnx", "tf2onnx", "networkx", "pyparsing",
    "google.protobuf", "re2", "tensorrt",
)  # fmt: skip


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code` (stdout discarded)."""
    probe = (
        "import contextlib, io, json, sys\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY)


@pytest.mark.parametrize("argv", [["--help"], ["apply", "--help"], ["validate", "--help"]])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    code = (
        "from surgery.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert exc.code == 0, exc\n"
    )
    loaded = _modules_after(code)
    command = argv[0] if argv[0] != "--help" else "apply"  # `--help` builds every command
    assert f"surgery.commands.{command}" in loaded  # the probe did build the parser
    assert not _heavy(loaded), f"`surgery {' '.join(argv)}` imported {_heavy(loaded)}"


def test_parser_build_imports_nothing_heavy() -> None:
    loaded = _modules_after("from surgery.cli import build_parser\nbuild_parser()")
    from surgery.cli import COMMANDS

    assert {f"surgery.commands.{name}" for name in COMMANDS} <= loaded
    assert not _heavy(loaded), f"building the parser imported {_heavy(loaded)}"


def test_the_probe_sees_heavy_imports() -> None:
    """The checks above can fail: a module that does load numpy and protobuf shows them."""
    loaded = _modules_after("import surgery.ops.graph_check\nimport numpy")
    assert {"numpy", "google.protobuf"} <= set(_heavy(loaded))


def test_ml_dtypes_loads_with_the_first_bfloat16() -> None:
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from surgery.ir import tensor_values as tv\n"
        "assert tv.to_numpy(tv.from_numpy(np.ones(3, np.float32))).sum() == 3\n"
        "assert 'ml_dtypes' not in sys.modules\n"
        "value = tv.to_numpy(tv.from_numpy([1.5, -2.0], 'bfloat16'))\n"
        "assert str(value.dtype) == 'bfloat16' and value.astype(float).tolist() == [1.5, -2.0]\n"
        "assert tv.dtype_enum(value.dtype) == tv.NAME_TO_ENUM['bfloat16']\n"
    )
    assert "ml_dtypes" in _modules_after(code)


def test_relaunch_only_where_it_pays(tmp_path: Path) -> None:
    small = tmp_path / "small.pb"
    small.write_bytes(b"\0" * 1024)
    big = tmp_path / "big.pb"
    with open(big, "wb") as handle:  # sparse: the size is what counts
        handle.truncate(RELAUNCH_MIN_BYTES)
    assert not worth_relaunching(["--help"])
    assert not worth_relaunching(["apply", "r.rules", str(big), "-o", "x.pb", "--help"])
    assert not worth_relaunching(["apply", "r.rules", str(small), "-o", "x.pb"])
    assert not worth_relaunching(["test"])  # no file given
    assert worth_relaunching(["apply", "r.rules", str(big), "-o", "x.pb"])
    assert worth_relaunching(["inspect", f"--json={big}"])  # the value of --opt=VALUE counts
    assert worth_relaunching(["freeze", str(tmp_path), "-o", "x.pb"])  # a SavedModel folder
    half = tmp_path / "half.pb"
    with open(half, "wb") as handle:
        handle.truncate(RELAUNCH_MIN_BYTES // 2)
    assert worth_relaunching(["diff", str(half), str(half)])  # sizes add up


def _interpreter_starts(argv: list[str], tmp_path: Path) -> int:
    """How many interpreters the console script starts for `argv`: each start imports `site`
    once, which PYTHONPROFILEIMPORTTIME reports on stderr."""
    script = Path(sys.executable).parent / "surgery"
    if not script.exists():
        pytest.skip(f"no console script at {script}: the package is not installed in this venv")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "SURGERY_MALLOC")}
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    done = subprocess.run([str(script), *argv], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    return sum(1 for line in done.stderr.splitlines() if line.endswith("| site"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables are Linux-only")
def test_console_script_relaunches_only_for_large_inputs(tmp_path: Path) -> None:
    big = tmp_path / "big.pb"
    with open(big, "wb") as handle:
        handle.truncate(RELAUNCH_MIN_BYTES)  # not a GraphDef: inspect fails, after the re-exec
    assert _interpreter_starts(["--help"], tmp_path) == 1
    assert _interpreter_starts(["inspect", "--no-tf", str(big)], tmp_path) == 2
    small = tmp_path / "small.pbtxt"
    small.write_text('node { name: "x" op: "Placeholder" }\n')
    assert _interpreter_starts(["inspect", "--no-tf", str(small)], tmp_path) == 1


def test_a_command_builds_only_its_own_parser() -> None:
    code = (
        "from surgery.cli import main\n"
        "try:\n    main(['check', '--help'])\nexcept SystemExit as exc:\n"
        "    assert exc.code == 0, exc\n"
    )
    loaded = _modules_after(code)
    assert "surgery.commands.check" in loaded
    assert "surgery.commands.validate" not in loaded
