"""The engine's hot modules compiled with mypyc, and the choice at import: compiled or source.

`surgery.native.main()` (run by `make setup`; it does nothing when the build is current)
compiles `COMPILED` into extension modules next to their sources and records a hash of each
source. At import, `surgery/__init__.py` calls
`select()`: the compiled modules are used only when every one of them is built from the sources
as they are now; otherwise (or with SURGERY_PURE=1) all of them load from source, so an edit is
never shadowed by an old build and compiled and source modules are never mixed (compiled code
expects the compiled classes of its neighbours). Both run the same code: compiling changes speed
(1.6x at 1M nodes, 1.8x at 100k on the rules benchmark), not results.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

COMPILED = (
    "ir.graph", "ir.ports", "ir.onnx_load", "ir.onnx_load_values", "ir.onnx_load_wire",
    "ir.onnx_save", "ir.onnx_save_values", "ir.onnx_save_wire", "ops.graph_check",
    "lang.expr_eval", "engine.run", "engine.matcher", "engine.rewriter", "engine.call_plans",
    "engine.provenance",
)  # fmt: skip
"""Modules by their path under `surgery` (`ir.graph` is surgery/ir/graph.py)."""
LIBRARY = "surgery.native_lib"  # the shared library mypyc builds for the group
_HERE = Path(__file__).resolve().parent
_STAMP = _HERE / "native_build.json"  # {module: sha256 of the source it was compiled from}


def _source(module: str) -> Path:
    return _HERE.joinpath(*module.split(".")).with_suffix(".py")


def _source_hashes() -> dict[str, str]:
    return {m: hashlib.sha256(_source(m).read_bytes()).hexdigest() for m in COMPILED}


def _built(module: str) -> bool:
    base = _source(module).with_suffix("")
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return any(base.with_name(base.name + suffix).exists() for suffix in suffixes)


def state() -> str:
    """'compiled', or why the modules run from source: 'pure (SURGERY_PURE=1)', 'pure (not
    built)' or 'pure (stale: graph, ...)'."""
    if os.environ.get("SURGERY_PURE") == "1":
        return "pure (SURGERY_PURE=1)"
    if not _STAMP.exists() or not all(_built(m) for m in COMPILED):
        return "pure (not built)"
    try:
        recorded = json.loads(_STAMP.read_text())
    except (OSError, ValueError):
        return "pure (not built)"
    current = _source_hashes()
    stale = [m for m in COMPILED if recorded.get(m) != current[m]]
    return f"pure (stale: {', '.join(stale)})" if stale else "compiled"


class _SourceFinder:
    """Loads the compiled modules from their .py files (an extension module would win). A
    meta path finder by its `find_spec` alone: subclassing importlib.abc.MetaPathFinder would
    import importlib.resources and more on every start (20 ms of `surgery --help`)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        head, _, module = fullname.partition(".")
        if head != "surgery" or module not in COMPILED:
            return None
        import importlib.util

        return importlib.util.spec_from_file_location(fullname, _source(module))


def select() -> None:
    """Make `import surgery.<stage>.<hot module>` load the compiled build if it is current, else the
    sources (see the module docstring)."""
    if state() != "compiled" and not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())


def build() -> None:
    """Compile `COMPILED` in place (C sources and objects under build/native), then record the
    hashes of the sources they were compiled from."""
    from mypyc.build import mypycify
    from setuptools import setup

    _STAMP.unlink(missing_ok=True)  # a half-finished build is never taken for a current one
    hashes = _source_hashes()
    root = _HERE.parent
    os.chdir(root)
    paths = ["--ignore-missing-imports", *(str(_source(m).relative_to(root)) for m in COMPILED)]
    modules = mypycify(paths, group_name=LIBRARY, target_dir="build/native", opt_level="3")
    setup(
        name="surgery-native", ext_modules=modules, py_modules=[],
        script_args=["-q", "build_ext", "--inplace", "--build-temp", "build/native/temp"],
    )  # fmt: skip
    _STAMP.write_text(json.dumps(hashes, indent=1) + "\n")


def main() -> None:
    """Build when not built or stale (`make setup`), then say which modules run."""
    if state() not in ("compiled", "pure (SURGERY_PURE=1)"):
        build()
    print(f"surgery.native: {state()}", file=sys.stderr)
