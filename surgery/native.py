"""The engine's hot modules compiled with mypyc, and the choice at import: compiled or source.

`surgery.native.main()` (run by `make setup`; it does nothing when the build is current)
compiles `COMPILED` into extension modules next to their sources and records a checksum of
each source. At import, `surgery/__init__.py` calls
`select()`: the compiled modules are used only when every one of them is built from the sources
as they are now; otherwise (or with SURGERY_PURE=1) all of them load from source, so an edit is
never shadowed by an old build and compiled and source modules are never mixed (compiled code
expects the compiled classes of its neighbours). Both run the same code: compiling changes speed
(1.6x at 1M nodes, 1.8x at 100k on the rules benchmark), not results.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import zlib
from collections.abc import Sequence
from types import ModuleType

COMPILED = (
    "ir.graph", "ir.node", "ir.ports", "ir.onnx_load", "ir.onnx_load_values", "ir.onnx_load_wire",
    "ir.onnx_save", "ir.onnx_save_values", "ir.onnx_save_wire", "ir.wire", "ops.graph_check",
    "lang.expr_eval", "engine.run", "engine.matcher", "engine.rewriter", "engine.call_plans",
    "engine.provenance",
    "lang.name_patterns", "lang.scope_instances", "lang.tensor_props", "lang.expr_text",
    "lang.expr_values", "engine.match_results", "engine.scope_match", "engine.explain",
    "engine.editor", "engine.rewrite_context", "engine.region_replace", "engine.pruning",
)  # fmt: skip
"""Modules by their path under `surgery` (`ir.graph` is surgery/ir/graph.py)."""
LIBRARY = "surgery.native_lib"  # the shared library mypyc builds for the group
# Every command runs this at import, the `surgery` launcher's first process included (it only
# decides whether to re-execute itself): os.path and zlib, not pathlib, hashlib, json and
# contextlib, which cost that process 20 ms of imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
_STAMP = "native_build.txt"  # in _HERE: one `module checksum` line per compiled source


def _source(module: str) -> str:
    return os.path.join(_HERE, *module.split(".")) + ".py"


def _source_hashes() -> dict[str, str]:
    """Each compiled module's source, by size and CRC-32 (a staleness check, not a signature)."""
    sums = {}
    for module in COMPILED:
        with open(_source(module), "rb") as handle:
            data = handle.read()
        sums[module] = f"{len(data)}-{zlib.crc32(data):08x}"
    return sums


def _read_stamp() -> dict[str, str] | None:
    try:
        with open(os.path.join(_HERE, _STAMP), encoding="utf-8") as handle:
            return dict(line.split(" ", 1) for line in handle.read().splitlines() if " " in line)
    except OSError:
        return None


def _write_stamp(sums: dict[str, str]) -> None:
    with open(os.path.join(_HERE, _STAMP), "w", encoding="utf-8") as handle:
        handle.write("".join(f"{module} {value}\n" for module, value in sums.items()))


def _built(module: str) -> bool:
    base = _source(module)[: -len(".py")]
    return any(os.path.exists(base + suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def state() -> str:
    """'compiled', or why the modules run from source: 'pure (SURGERY_PURE=1)', 'pure (not
    built)' or 'pure (stale: graph, ...)'."""
    if os.environ.get("SURGERY_PURE") == "1":
        return "pure (SURGERY_PURE=1)"
    recorded = _read_stamp()
    if recorded is None or not all(_built(m) for m in COMPILED):
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

    try:  # a half-finished build is never taken for a current one
        os.unlink(os.path.join(_HERE, _STAMP))
    except FileNotFoundError:
        pass
    hashes = _source_hashes()
    root = os.path.dirname(_HERE)
    os.chdir(root)
    paths = ["--ignore-missing-imports", *(os.path.relpath(_source(m), root) for m in COMPILED)]
    modules = mypycify(paths, group_name=LIBRARY, target_dir="build/native", opt_level="3")
    setup(
        name="surgery-native", ext_modules=modules, py_modules=[],
        script_args=["-q", "build_ext", "--inplace", "--build-temp", "build/native/temp"],
    )  # fmt: skip
    _write_stamp(hashes)


def main() -> None:
    """Build when not built or stale (`make setup`), then say which modules run."""
    if state() not in ("compiled", "pure (SURGERY_PURE=1)"):
        build()
    print(f"surgery.native: {state()}", file=sys.stderr)
