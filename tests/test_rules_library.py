"""The rules/ library: every rule file lints clean, is documented, and passes its cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from surgery.plugin_schema import load_catalog
from surgery.regression import run_suite
from surgery.regression_cases import cases_for_rules, load_cases
from surgery.rule_check import check_rules
from surgery.rule_parser import load_rules

RULES = Path(__file__).resolve().parent.parent / "rules"
LIBRARY = sorted(p for p in RULES.glob("*.rules") if p.name != "maskrcnn.rules")


def test_library_is_there() -> None:
    names = {p.stem for p in LIBRARY}
    assert {"leaky_relu", "l2_normalize", "upsample_nearest", "flatten_reshape", "ssd",
            "faster_rcnn"} <= names  # fmt: skip


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_rule_file_lints_clean_and_has_a_header(path: Path) -> None:
    rule_file = load_rules(path)
    problems = [p for p in check_rules(rule_file, load_catalog()) if p.severity == "error"]
    assert not problems, problems
    for heading in ("Model family:", "Graph flavour:", "Emits:"):
        assert heading in rule_file.header, f"{path.name}: header lacks {heading!r}"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_rule_file_has_cases(path: Path) -> None:
    cases = load_cases(cases_for_rules(path))
    assert cases
    for case in cases:
        assert case.matches, f"{case.label}: give per-rule match counts"


def test_whole_library_passes_its_cases() -> None:
    """`surgery test rules/`: structure, goldens and numeric checks on the fixtures."""
    lines: list[str] = []
    code = run_suite(RULES, echo=lines.append)
    assert code == 0, "\n".join(lines)
    assert lines[-1].startswith("ok: ")
