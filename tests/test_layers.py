"""The package's stages import downwards only: ir < ops < lang < engine < passes < backends <
views < compat < commands. A lower stage never imports a higher one (type-checking imports aside),
so each can be read, tested and reused without what is built on it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "surgery"
STAGES = ["ir", "ops", "lang", "engine", "passes", "backends", "views", "compat", "commands"]
# Jupyter shows a Graph through `Graph._repr_html_`, which draws it with the visualizer: the one
# upward import, made only when a notebook asks for the picture.
ALLOWED = {("ir/graph.py", "surgery.views.visualize")}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "surgery":
                found += [(node.lineno, f"surgery.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if name.startswith("surgery.")]


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_higher_stage(stage: str) -> None:
    rank = STAGES.index(stage)
    wrong = []
    for path in sorted((PACKAGE / stage).rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        for line, name in _imports(path):
            target = name.split(".")[1]
            if target in STAGES and STAGES.index(target) > rank and (where, name) not in ALLOWED:
                wrong.append(f"{where}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from surgery.views.report import write_report\n")
    assert _imports(module) == [(2, "surgery.views.report")]
