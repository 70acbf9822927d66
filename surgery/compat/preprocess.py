"""Run an existing graphsurgeon preprocessing script (uff's `preprocessor=`) on a frozen graph.

The script is executed unmodified: while it runs, `import graphsurgeon` resolves to
`surgery.compat.graphsurgeon` (and `import tensorflow` to a small dtype stand-in when TensorFlow is
not installed). Its `preprocess(dynamic_graph)` edits the graph; errors name the script's
file:line; the result is checked and written atomically, never over the input.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surgery.compat import graphsurgeon as gs_module
from surgery.compat.gs_graph import DynamicGraph
from surgery.errors import SurgeryError
from surgery.ir import model_io
from surgery.ir.tensor_values import NAME_TO_ENUM


class PreprocessError(SurgeryError):
    """A preprocessing script that is missing, does not compile, or fails; names file:line."""


@dataclass
class PreprocessResult:
    """What a run did: node counts before and after, and where the output went."""

    nodes_before: int
    nodes_after: int
    output: Path


class _DType:
    """A TensorFlow dtype stand-in: enough for `dtype=tf.float32` in gs calls."""

    def __init__(self, name: str, enum: int):
        self.name = name
        self.as_datatype_enum = enum

    def __repr__(self) -> str:
        return f"tf.{self.name}"


def _tensorflow_stand_in() -> types.ModuleType:
    """A module with TensorFlow's dtype names, for scripts that only need `tf.float32` & co."""
    module: Any = types.ModuleType("tensorflow")  # gets attributes ModuleType does not declare
    module.__doc__ = "surgery's stand-in for TensorFlow (dtypes only): TensorFlow is not installed"
    for name, enum in NAME_TO_ENUM.items():
        setattr(module, name, _DType(name, enum))
    module.DType = _DType
    return module


@contextmanager
def _aliases(names: dict[str, types.ModuleType]) -> Iterator[None]:
    """Make `import NAME` give the module in `names` while the block runs, then restore."""
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(names)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def _script_line(exc: BaseException, script: Path) -> str:
    """`file:line` of the innermost traceback frame inside the script."""
    where = str(script)
    target = os.path.realpath(script)
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.realpath(frame.filename) == target:
            where = f"{script}:{frame.lineno}"
    return where


def _modules() -> dict[str, types.ModuleType]:
    modules: dict[str, types.ModuleType] = {"graphsurgeon": gs_module}
    if "tensorflow" not in sys.modules and importlib.util.find_spec("tensorflow") is None:
        modules["tensorflow"] = _tensorflow_stand_in()
    return modules


def load_script(script: str | os.PathLike) -> types.ModuleType:
    """Execute the script's top level (with the aliases) and return it as a module."""
    path = Path(script)
    if path.is_dir():
        raise PreprocessError(f"{path}: is a directory, not a preprocessing script")
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PreprocessError(f"{path}: no such preprocessing script") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PreprocessError(f"{path}: cannot read the script ({exc})") from None
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise PreprocessError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    module = types.ModuleType(f"surgery_preprocess_{path.stem}")
    module.__file__ = str(path)
    with _aliases(_modules()):
        try:
            exec(code, module.__dict__)
        except Exception as exc:
            raise PreprocessError(
                f"{_script_line(exc, path)}: {type(exc).__name__}: {exc}"
            ) from exc
    return module


def run_script(script: str | os.PathLike, graph: DynamicGraph) -> None:
    """Run the script's `preprocess(dynamic_graph)` on `graph`; failures name file:line."""
    path = Path(script)
    module = load_script(path)
    func: Any = getattr(module, "preprocess", None)
    if not callable(func):
        raise PreprocessError(f"{path}: defines no preprocess(dynamic_graph) function")
    with _aliases(_modules()):
        try:
            func(graph)
        except Exception as exc:
            raise PreprocessError(
                f"{_script_line(exc, path)}: {type(exc).__name__}: {exc}"
            ) from exc


def preprocess_file(
    script: str | os.PathLike,
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    check: bool = True,
) -> PreprocessResult:
    """Load `model`, run `script` on it, check the result, write `output` atomically."""
    out = model_io.check_output_path(output, model, script)
    graph = model_io.load(model)
    before = len(graph)
    dynamic = DynamicGraph(graph)
    run_script(script, dynamic)
    result = dynamic.graph
    if check:
        try:
            result.check()
        except SurgeryError as exc:
            raise PreprocessError(
                f"{script}: the preprocessed graph is malformed: {exc} "
                "(pass --no-check to write it anyway)"
            ) from None
    model_io.save(result, out, inputs=(model, script))
    return PreprocessResult(before, len(result), out)
